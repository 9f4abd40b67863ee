"""Column types that keep exact decimals and UTC instants on every dialect, and how JSON is written."""

from __future__ import annotations

import datetime as dt
import functools
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import DateTime, Dialect, Numeric, String
from sqlalchemy.types import TypeDecorator, TypeEngine


class ExactDecimal(TypeDecorator[Decimal]):
    """NUMERIC on PostgreSQL; text on SQLite, whose NUMERIC affinity would round through float."""

    impl = String(40)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(24, 6, asdecimal=True))
        return dialect.type_descriptor(String(40))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """An aware UTC instant: timestamptz on PostgreSQL, ``YYYY-MM-DD HH:MM:SS.ffffff`` UTC text on SQLite.

    The SQLite text is the format SQLAlchemy's own DATETIME uses (so it sorts and compares in time
    order), written directly: the tender path binds a dozen instants and a second conversion layer
    cost more than the statement.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(26))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is not dt.UTC:
            if value.tzinfo is None:
                raise ValueError("UtcDateTime needs an aware datetime")
            value = value.astimezone(dt.UTC)
        if dialect.name == "postgresql":
            return value
        return _sqlite_text(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)  # type: ignore[no-any-return]
        return value.astimezone(dt.UTC)  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=256)
def _sqlite_text(value: dt.datetime) -> str:
    # A sale binds the same instant (its ``now``) to several columns; formatting costs a microsecond.
    return value.isoformat(sep=" ", timespec="microseconds")[:26]  # without the "+00:00"


_json = msgspec.json.Encoder()


def json_text(value: Any) -> str:
    """A ``JSON`` column's value as its text (every engine and dialect CMC builds uses this).

    Compact, UTF-8, and ten times faster than ``json.dumps``: each sale at a screen writes one.
    """
    return _json.encode(value).decode()
