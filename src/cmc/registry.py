"""Registry as code: ``cmc apply FILE`` makes the database hold what a YAML file declares.

The file lists POS systems with their API clients, companies, locations and terminals (and, per
company, the marketing configuration: widgets, templates, rules). Applying is idempotent and
declarative per POS system: a POS system named in the file ends up exactly as written (its
companies, locations, terminals and clients missing from the file are removed); POS systems not in
the file are left alone; transactions, sessions and profiles are never deleted.

A malformed file is refused as a whole, with the line and the field at fault; validation happens
before the first write and the writes share one database transaction.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec
import phonenumbers
import yaml
from sqlalchemy import Connection, Table, delete, insert, select, update

from cmc import campaign, credentials, rules
from cmc.errors import RegistryError
from cmc.store import notifications, tables
from cmc_client import wire

_IdStr = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^/\s]+$")]
"""Ids appear in URL paths: no slashes, no spaces."""


class Spec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Registry file entries: unknown keys are typos, so they are refused."""


class TerminalSpec(Spec):
    id: _IdStr
    cfs: bool = True


class LocationSpec(Spec):
    id: _IdStr
    name: str
    timezone: str
    country: str = "US"
    quietHours: str = "21:00-08:00"
    """Local time window in which SMS waits (``HH:MM-HH:MM``; equal ends: no quiet hours)."""
    terminals: list[TerminalSpec] = []


class CompanySpec(Spec):
    id: _IdStr
    name: str
    locations: list[LocationSpec] = []
    widgets: list[dict[str, Any]] = []
    cfsTemplates: list[dict[str, Any]] = []
    messageTemplates: list[dict[str, Any]] = []
    rules: list[dict[str, Any]] = []


class ClientSpec(Spec):
    clientId: _IdStr
    secret: str


class SettingsSpec(wire.CompanySettings, forbid_unknown_fields=True):
    """ClearLine's six feature flags, as the settings lookup answers them; a misspelt flag is refused."""


class PosSystemSpec(Spec):
    id: _IdStr
    name: str
    status: Literal["Accepted", "Disabled", "NotAvailable"] = "Accepted"
    settings: SettingsSpec = msgspec.field(default_factory=SettingsSpec)
    clients: list[ClientSpec] = []
    companies: list[CompanySpec] = []


class RegistrySpec(Spec):
    posSystems: list[PosSystemSpec]


@dataclass
class ApplyReport:
    """What ``apply`` changed, per table: rows inserted, updated and deleted."""

    inserted: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """Anything at all was written."""
        return any(self.inserted.values()) or any(self.updated.values()) or any(self.deleted.values())

    def summary(self) -> str:
        """One line for the CLI."""
        if not self.changed:
            return "registry unchanged"
        parts = []
        for verb, counts in (
            ("inserted", self.inserted),
            ("updated", self.updated),
            ("deleted", self.deleted),
        ):
            parts += [f"{n} {table} {verb}" for table, n in counts.items() if n]
        return "registry updated: " + ", ".join(parts)


def parse(text: str, *, source: str = "<registry>") -> RegistrySpec:
    """Parse and type-check a registry file; ``RegistryError`` names ``source:line`` and the field."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise RegistryError(f"{source}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if (duplicate := _duplicate_key(root)) is not None:
        raise RegistryError(f"{source}:{duplicate[0]}: key {duplicate[1]!r} appears twice in one mapping")
    try:
        spec = msgspec.convert(data, RegistrySpec)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).rpartition(" - at `")
        path = path.rstrip("`") if message else "$"
        message = message or str(exc)
        raise RegistryError(
            f"{source}:{_line_of(root, path)}: {path.removeprefix('$.')}: {message}"
        ) from None
    for path, problem in _semantic_problems(spec):
        raise RegistryError(f"{source}:{_line_of(root, '$.' + path)}: {path}: {problem}")
    return spec


def load_file(path: str) -> RegistrySpec:
    """Read and parse a registry file."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read: {exc.strerror}") from None
    return parse(text, source=path)


def apply(conn: Connection, spec: RegistrySpec) -> ApplyReport:
    """Make the registry tables match ``spec`` for every POS system it names (one transaction)."""
    report = ApplyReport()
    configs = {
        (pos.id, company.id): _campaign_config(company, f"posSystems[{i}].companies[{j}]")
        for i, pos in enumerate(spec.posSystems)
        for j, company in enumerate(pos.companies)
    }
    for pos in spec.posSystems:
        _sync_pos_system(conn, pos, configs, report)
    if report.changed:
        bump_version(conn)
        notifications.notify(conn, notifications.REGISTRY_CHANNEL)
    return report


def current_version(conn: Connection) -> int:
    """The registry's version: bumped by every ``apply`` that changed something."""
    value = conn.execute(select(tables.meta.c.value).where(tables.meta.c.key == "registry_version")).scalar()
    return int(value) if value is not None else 0


def bump_version(conn: Connection) -> int:
    """Mark the registry changed so every running process reloads it."""
    version = current_version(conn) + 1
    meta = tables.meta
    if conn.execute(update(meta).where(meta.c.key == "registry_version").values(value=str(version))).rowcount:
        return version
    conn.execute(insert(meta).values(key="registry_version", value=str(version)))
    return version


def _sync_pos_system(
    conn: Connection,
    pos: PosSystemSpec,
    configs: Mapping[tuple[str, str], dict[str, Any]],
    report: ApplyReport,
) -> None:
    t = tables
    settings = msgspec.to_builtins(pos.settings)
    pos_row = {"id": pos.id, "name": pos.name, "status": pos.status, "settings": settings}
    _sync_rows(conn, t.pos_systems, [pos_row], scope={"id": pos.id}, report=report)
    _sync_rows(
        conn,
        t.companies,
        [
            {"pos_system_id": pos.id, "id": c.id, "name": c.name, "config": configs[(pos.id, c.id)]}
            for c in pos.companies
        ],
        scope={"pos_system_id": pos.id},
        report=report,
    )
    location_rows, terminal_rows = [], []
    for company in pos.companies:
        for loc in company.locations:
            location_rows.append(
                {
                    "pos_system_id": pos.id,
                    "id": loc.id,
                    "company_id": company.id,
                    "name": loc.name,
                    "timezone": loc.timezone,
                    "country": loc.country.upper(),
                    "quiet_hours": loc.quietHours,
                }
            )
            terminal_rows += [
                {"pos_system_id": pos.id, "location_id": loc.id, "id": term.id, "cfs": term.cfs}
                for term in loc.terminals
            ]
    _sync_rows(conn, t.locations, location_rows, scope={"pos_system_id": pos.id}, report=report)
    _sync_rows(conn, t.terminals, terminal_rows, scope={"pos_system_id": pos.id}, report=report)
    _sync_rows(conn, t.api_clients, _client_rows(conn, pos), scope={"pos_system_id": pos.id}, report=report)


def _client_rows(conn: Connection, pos: PosSystemSpec) -> list[dict[str, Any]]:
    """Desired client rows, keeping the stored hash when the secret still verifies (hashes are salted)."""
    ids = [c.clientId for c in pos.clients]
    stored = dict(
        conn.execute(
            select(tables.api_clients.c.client_id, tables.api_clients.c.secret_hash).where(
                tables.api_clients.c.client_id.in_(ids)
            )
        ).all()
    )
    rows = []
    for client in pos.clients:
        old = stored.get(client.clientId)
        keep = old is not None and credentials.verify_secret(client.secret, old)
        secret_hash = old if keep and old else credentials.hash_secret(client.secret)
        rows.append({"client_id": client.clientId, "pos_system_id": pos.id, "secret_hash": secret_hash})
    return rows


def _sync_rows(
    conn: Connection,
    table: Table,
    desired: Iterable[dict[str, Any]],
    *,
    scope: Mapping[str, str],
    report: ApplyReport,
) -> None:
    """Insert, update and delete rows of ``table`` within ``scope`` so that it holds ``desired``."""
    keys = [c.name for c in table.primary_key.columns]
    where = [table.c[name] == value for name, value in scope.items()]
    existing = {
        tuple(row[k] for k in keys): dict(row) for row in conn.execute(select(table).where(*where)).mappings()
    }
    wanted = {tuple(row[k] for k in keys): row for row in desired}
    name = table.name
    for counts in (report.inserted, report.updated, report.deleted):
        counts.setdefault(name, 0)
    for key, row in wanted.items():
        old = existing.get(key)
        if old is None:
            # A key outside the scope (a client id moving between POS systems) is updated in place.
            pk_match = [table.c[k] == v for k, v in zip(keys, key, strict=True)]
            if conn.execute(update(table).where(*pk_match).values(**row)).rowcount:
                report.updated[name] += 1
            else:
                conn.execute(insert(table).values(**row))
                report.inserted[name] += 1
        elif any(old.get(col) != value for col, value in row.items()):
            pk_match = [table.c[k] == v for k, v in zip(keys, key, strict=True)]
            conn.execute(update(table).where(*pk_match).values(**row))
            report.updated[name] += 1
    for key in existing.keys() - wanted.keys():
        conn.execute(delete(table).where(*[table.c[k] == v for k, v in zip(keys, key, strict=True)]))
        report.deleted[name] += 1


def _semantic_problems(spec: RegistrySpec) -> Iterable[tuple[str, str]]:
    """What types alone cannot check: duplicates, time zones, countries."""
    yield from _duplicates((p.id for p in spec.posSystems), "posSystems[{}].id")
    client_ids = [(i, j, c.clientId) for i, p in enumerate(spec.posSystems) for j, c in enumerate(p.clients)]
    seen: set[str] = set()
    for i, j, client_id in client_ids:
        if client_id in seen:
            yield f"posSystems[{i}].clients[{j}].clientId", f"duplicate clientId {client_id!r}"
        seen.add(client_id)
    for i, pos in enumerate(spec.posSystems):
        for j, client in enumerate(pos.clients):
            if len(client.secret) < 6:
                yield f"posSystems[{i}].clients[{j}].secret", "secret must have at least 6 characters"
        yield from _duplicates((c.id for c in pos.companies), f"posSystems[{i}].companies[{{}}].id")
        for j, company in enumerate(pos.companies):
            try:
                _campaign_config(company, f"posSystems[{i}].companies[{j}]")
            except campaign.ConfigError as exc:
                yield exc.field, exc.message
            except rules.RuleError as exc:
                yield exc.field, (f"rule {exc.rule!r}: " if exc.rule else "") + exc.message
        locations = [(j, k, loc) for j, c in enumerate(pos.companies) for k, loc in enumerate(c.locations)]
        seen = set()
        for j, k, loc in locations:
            where = f"posSystems[{i}].companies[{j}].locations[{k}]"
            if loc.id in seen:
                yield f"{where}.id", f"duplicate location id {loc.id!r} in POS system {pos.id!r}"
            seen.add(loc.id)
            if not _is_timezone(loc.timezone):
                yield f"{where}.timezone", f"unknown time zone {loc.timezone!r}"
            if loc.country.upper() not in phonenumbers.SUPPORTED_REGIONS:
                yield f"{where}.country", f"unknown country code {loc.country!r} (ISO 3166 alpha-2)"
            if not _QUIET.fullmatch(loc.quietHours):
                yield f"{where}.quietHours", f"{loc.quietHours!r} is not a window like 21:00-08:00"
            yield from _duplicates((t.id for t in loc.terminals), f"{where}.terminals[{{}}].id")


def _duplicates(ids: Iterable[str], path: str) -> Iterable[tuple[str, str]]:
    seen: set[str] = set()
    for index, value in enumerate(ids):
        if value in seen:
            yield path.format(index), f"duplicate id {value!r}"
        seen.add(value)


def _is_timezone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


_QUIET = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]")


def _campaign_config(company: CompanySpec, path: str) -> dict[str, Any]:
    raw = {
        "widgets": company.widgets,
        "cfsTemplates": company.cfsTemplates,
        "messageTemplates": company.messageTemplates,
        "rules": company.rules,
    }
    return campaign.check(raw, locations=[loc.id for loc in company.locations], path=path)


def _duplicate_key(node: yaml.Node | None) -> tuple[int, str] | None:
    """The first key written twice in one mapping (YAML forbids it; PyYAML keeps the last silently)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[object] = set()
        for key, value in node.value:
            if key.value in seen:
                return key.start_mark.line + 1, str(key.value)
            seen.add(key.value)
            if (found := _duplicate_key(value)) is not None:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            if (found := _duplicate_key(item)) is not None:
                return found
    return None


_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def _line_of(root: yaml.Node | None, path: str) -> int:
    """The 1-based line of the YAML node at a msgspec-style path like ``$.a[0].b``."""
    node = root
    line = node.start_mark.line + 1 if node else 1
    for key, index in _STEP.findall(path.removeprefix("$")):
        child: yaml.Node | None = None
        if key and isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
            if child is None:
                break
            # Point at the key's line: for a scalar that is where the value is too.
            line = next(k for k, v in node.value if v is child).start_mark.line + 1
        elif index and isinstance(node, yaml.SequenceNode) and int(index) < len(node.value):
            child = node.value[int(index)]
            line = child.start_mark.line + 1
        else:
            break
        node = child
    return line
