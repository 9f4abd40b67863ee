"""The registry: POS systems, their clients, companies, locations, terminals and marketing setups.

- ``spec``: the YAML file, parsed and validated (``parse``, ``load_file``) into a ``Registry``.
- ``setup``: a company's marketing setup (widgets, templates, rules): validated ``Document``,
  compiled ``Setup``.
- ``apply``: ``cmc apply`` writes a ``Registry`` to the database.
- ``store``: every statement on the registry tables, and the registry version.
- ``snapshot``: the in-memory ``Directory`` each process keeps, and the ``DirectoryCache`` that
  reloads it when the version moves.
"""

from cmc.registry.apply import apply
from cmc.registry.snapshot import Client, Company, Directory, DirectoryCache, Location, PosSystem
from cmc.registry.spec import Registry, load_file, parse
from cmc.registry.store import ApplyReport, current_version

__all__ = [
    "ApplyReport",
    "Client",
    "Company",
    "Directory",
    "DirectoryCache",
    "Location",
    "PosSystem",
    "Registry",
    "apply",
    "current_version",
    "load_file",
    "parse",
]
