"""Fixtures of the service tests. Helpers live in ``support.py``; tests import them from there
(``from support import ...``), never from ``conftest``, whose module name the SDK's tests share."""

from support import (
    api,
    api_factory,
    backend,
    database_url,
    garbage_collected,
    made_statement,
    pytest_sessionfinish,
    settings,
)

__all__ = [
    "api",
    "api_factory",
    "backend",
    "database_url",
    "garbage_collected",
    "made_statement",
    "pytest_sessionfinish",
    "settings",
]
