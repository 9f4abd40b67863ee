"""Statements for the driver: a Core statement compiled once per dialect, with its own conversions.

SQLAlchemy's execution machinery (execution context, events, result wrapping) costs about as much as
the SQLite work of a small INSERT, and on PostgreSQL the async engine adds a greenlet hop to every
statement. A ``Statement`` keeps the SQL written once in Core, so each dialect gets its own SQL and
parameter style, and compiles it once per dialect. A driver transaction (``cmc.store.driver``) runs
it on the DBAPI / asyncpg connection with exactly the conversions SQLAlchemy would apply: the column
types' bind processors on the way in, their result processors on the way out (SQLite's text
decimals become ``Decimal``, its integers ``bool``, its UTC text aware instants). A contract test
runs every statement both ways, through the driver and through ``Connection.execute``, on both
engines, and compares the results.

Only public SQLAlchemy compiler attributes are read (``positiontup``, ``binds``, ``string``) and the
types' public ``bind_processor`` / ``result_processor``; SQLAlchemy is pinned below the next minor
release in ``pyproject.toml`` because the compiled form's layout is what this relies on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast, overload

from sqlalchemy import Select, Table, bindparam, insert, literal_column, null, select, union_all
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement, ColumnElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.selectable import ReturnsRows
from sqlalchemy.sql.util import find_tables
from sqlalchemy.types import TypeDecorator, TypeEngine

from cmc.store.types import json_text

R = TypeVar("R")
Processor = Callable[[Any], Any] | None
Conversion = tuple[int, Callable[[Any], Any]]
"""A position in the parameters (or a row) and the function that converts the value there."""

DIALECTS: dict[str, Dialect] = {
    "sqlite": sqlite.pysqlite.dialect(json_serializer=json_text),
    "postgresql": postgresql.asyncpg.dialect(json_serializer=json_text),  # type: ignore[no-untyped-call]
}
"""The two dialects CMC runs on, as the drivers see them (stdlib sqlite3, asyncpg)."""

ALL: list[Statement[Any]] = []
"""Every statement made, in creation order (the contract test runs each one)."""


@dataclass(frozen=True, slots=True)
class Compiled:
    """One statement in one dialect: its SQL, parameter order, conversions and fixed values."""

    sql: str
    names: tuple[str, ...]
    results: tuple[Processor, ...]
    fixed: Mapping[str, Any]
    bind_conversions: tuple[Conversion, ...]
    """The parameters whose type converts them, by position (most need no conversion)."""
    result_conversions: tuple[Conversion, ...]
    """The same for the columns of ``results``."""

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        """The positional parameters for ``params``, converted as the columns' types want them."""
        merged = {**self.fixed, **params} if self.fixed else params
        values = [merged[name] for name in self.names]
        for i, process in self.bind_conversions:
            if values[i] is not None:
                values[i] = process(values[i])
        return values

    def row(self, raw: Sequence[Any]) -> tuple[Any, ...]:
        """A driver row with each column converted as its type wants it."""
        if len(raw) != len(self.results):
            raise ValueError(f"a row of {len(raw)} columns for a statement of {len(self.results)}")
        if not self.result_conversions:
            return tuple(raw)
        values = list(raw)
        for i, process in self.result_conversions:
            if values[i] is not None:
                values[i] = process(values[i])
        return tuple(values)


class Statement(Generic[R]):
    """A statement ready to run on a driver connection; ``into`` builds each result row.

    ``into`` is a NamedTuple (or any callable taking the columns positionally); without it a row is
    a plain tuple. ``name`` identifies the statement in the contract test and in logs.
    """

    @overload
    def __init__(
        self: Statement[tuple[Any, ...]],
        statement: ClauseElement,
        *,
        name: str,
        keys: Sequence[str] | None = None,
        into: None = None,
        only: str | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self,
        statement: ClauseElement,
        *,
        name: str,
        keys: Sequence[str] | None = None,
        into: Callable[..., R],
        only: str | None = None,
    ) -> None: ...

    def __init__(
        self,
        statement: ClauseElement,
        *,
        name: str,
        keys: Sequence[str] | None = None,
        into: Callable[..., R] | None = None,
        only: str | None = None,
    ) -> None:
        self.statement = statement
        self.name = name
        self.only = only
        """The one dialect that can run it (PostgreSQL's data-modifying CTEs, say); None: both."""
        self.keys = list(keys) if keys is not None else None
        self.into: Callable[..., R] = into if into is not None else cast(Callable[..., R], _plain)
        self._compiled: dict[str, Compiled] = {}
        ALL.append(self)

    @functools.cached_property
    def tables(self) -> frozenset[str]:
        """The tables it reads or writes (a deferred write waits only for a statement on its table)."""
        found = find_tables(self.statement, include_crud=True, include_aliases=True, include_joins=True)
        return frozenset(getattr(table, "name", "") for table in found)

    def compiled(self, dialect: str) -> Compiled:
        """The statement compiled for ``dialect`` (``sqlite`` or ``postgresql``), once."""
        found = self._compiled.get(dialect)
        if found is None:
            found = self._compiled[dialect] = _compile(self.statement, DIALECTS[dialect], self.keys)
        return found

    def rows(self, dialect: str, raw: Iterable[Sequence[Any]]) -> list[R]:
        """Driver rows as result rows."""
        compiled = self.compiled(dialect)
        return [self.into(*compiled.row(r)) for r in raw]

    def __repr__(self) -> str:
        return f"Statement({self.name!r})"


def _plain(*columns: Any) -> tuple[Any, ...]:
    return columns


def _compile(statement: ClauseElement, dialect: Dialect, keys: list[str] | None) -> Compiled:
    compiled = statement.compile(dialect=dialect, column_keys=keys)
    assert isinstance(compiled, SQLCompiler)
    names = tuple(compiled.positiontup or ())
    binds = tuple(_bind_processor(compiled, name, dialect) for name in names)
    # Values written into the statement itself (``.values(status="sent")``) travel as binds too.
    fixed = {name: compiled.binds[name].value for name in names if not compiled.binds[name].required}
    results: tuple[Processor, ...] = ()
    if isinstance(statement, ReturnsRows):
        results = tuple(_result_processor(column.type, dialect) for column in statement.exported_columns)
    return Compiled(compiled.string, names, results, fixed, _conversions(binds), _conversions(results))


def _conversions(processors: tuple[Processor, ...]) -> tuple[Conversion, ...]:
    return tuple((i, process) for i, process in enumerate(processors) if process is not None)


def _result_processor(kind: TypeEngine[Any], dialect: Dialect) -> Processor:
    if dialect.name != "postgresql":
        return kind.dialect_impl(dialect).result_processor(dialect, None)
    # asyncpg hands back native values for every type CMC uses (numeric as Decimal, timestamptz as
    # an aware datetime, boolean, json through the codec both pools install), so SQLAlchemy's own
    # asyncpg processors are no-ops here; only our column types' conversions remain.
    if isinstance(kind, TypeDecorator):
        return functools.partial(kind.process_result_value, dialect=dialect)
    return None


def _bind_processor(compiled: SQLCompiler, name: str, dialect: Dialect) -> Processor:
    bind = compiled.binds[name]
    process = bind.type.dialect_impl(dialect).bind_processor(dialect)
    return process if callable(process) else None


@dataclass(frozen=True)
class Write:
    """A write that can travel inside another statement, as a data-modifying CTE (``Tx.defer``).

    Its bind parameters are named ``{prefix}{column}``, so that they cannot collide with those of the
    statement carrying it; ``params`` adds the prefix.
    """

    statement: Statement[Any]
    prefix: str
    rows: int = 1
    """How many rows it inserts (``of_rows`` names their values)."""

    @classmethod
    def insert(
        cls,
        table: Table,
        *,
        name: str,
        prefix: str,
        columns: Sequence[str] | None = None,
        rows: int = 1,
        returning: ColumnElement[Any] | None = None,
        only: str | None = None,
    ) -> Write:
        """``rows`` rows into ``table``: every column (or ``columns``), bound as ``{prefix}{column}``.

        With more than one row, row ``n``'s are ``{prefix}{column}{n}`` (``of_rows``).
        ``returning``: an expression PostgreSQL evaluates for each row even when nothing reads it
        (a data-modifying CTE always runs to completion): ``pg_notify``, say.
        """
        names = [c.name for c in table.columns] if columns is None else list(columns)
        suffixes = [""] if rows == 1 else [str(n) for n in range(rows)]
        values = [
            {c: bindparam(f"{prefix}{c}{suffix}", type_=table.c[c].type) for c in names}
            for suffix in suffixes
        ]
        statement = insert(table).values(values[0] if rows == 1 else values)
        if returning is not None:
            statement = statement.returning(returning)
        return cls(Statement(statement, name=name, only=only), prefix, rows)

    def params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` under this write's parameter names."""
        return {self.prefix + name: value for name, value in values.items()}

    def of_rows(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The values of its ``rows`` rows under their names: row ``n``'s column ``c`` as ``c{n}``
        (``params`` adds the prefix); a one-row write's as they are."""
        if len(rows) != self.rows:
            raise ValueError(f"{self.statement.name} inserts {self.rows} rows, not {len(rows)}")
        if self.rows == 1:
            return dict(rows[0])
        return {f"{name}{n}": value for n, row in enumerate(rows) for name, value in row.items()}


def _check_same(cached: Sequence[Statement[Any]], asked: Sequence[Statement[Any]]) -> None:
    """The combinations are cached by their parts' names: two statements of one name (a
    statement's SQLite and PostgreSQL forms share one; a statement made per call would fill the
    cache) are refused loudly rather than handed each other's SQL."""
    if any(a is not b for a, b in zip(cached, asked, strict=True)):
        names = ", ".join(statement.name for statement in asked)
        raise ValueError(f"another statement of the same name was combined before ({names}): name them apart")


@dataclass(frozen=True)
class _Carrying:
    parts: tuple[Statement[Any], ...]
    statement: Statement[Any]


_CARRYING: dict[tuple[str, ...], _Carrying] = {}


def carrying(statement: Statement[Any], writes: Sequence[Write]) -> Statement[Any]:
    """One statement doing ``writes`` and then ``statement`` (made once per combination).

    PostgreSQL runs every data-modifying CTE of a statement, and in one snapshot: so the writes must
    be ones nothing in ``statement`` reads. ``statement`` binds its values explicitly (no ``keys``:
    SQLAlchemy would apply those to the CTEs' writes too).
    """
    parts = (statement, *(write.statement for write in writes))
    key = tuple(part.name for part in parts)
    found = _CARRYING.get(key)
    if found is None:
        if statement.keys is not None:
            raise ValueError(f"{statement.name} cannot carry writes: it binds its columns by keys")
        ctes = [write.statement.statement.cte(write.prefix.rstrip("_")) for write in writes]  # type: ignore[attr-defined]
        core = statement.statement.add_cte(*ctes)  # type: ignore[attr-defined]
        name = f"{statement.name}[{'+'.join(key[1:])}]"
        found = _CARRYING[key] = _Carrying(parts, Statement(core, name=name, only="postgresql"))
    _check_same(found.parts, parts)
    return found.statement


@dataclass(frozen=True)
class Query(Generic[R]):
    """A query with its parameters: what ``Tx.together`` runs with another in one round trip."""

    statement: Statement[R]
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Together:
    """Two or more queries as one (``together``), and where each one's columns are in its rows."""

    statement: Statement[tuple[Any, ...]]
    parts: tuple[Statement[Any], ...]
    spans: tuple[tuple[int, int], ...]

    def split(self, rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
        """The combined rows as each part's result rows (in no promised order, as any union's)."""
        found: list[list[Any]] = [[] for _ in self.parts]
        for part, *values in rows:
            start, end = self.spans[part]
            found[part].append(self.parts[part].into(*values[start:end]))
        return found


_TOGETHER: dict[tuple[str, ...], Together] = {}


def together(parts: Sequence[Statement[Any]]) -> Together:
    """One query returning the rows of all ``parts`` (PostgreSQL; made once per combination).

    A ``UNION ALL`` of the parts, each in a subquery (so a part may lock its rows: ``FOR UPDATE`` is
    not allowed on a union itself), tagged with the part's number and padded with typed NULLs to
    one row shape. The parts run in one snapshot. A parameter name two parts share is one
    parameter: the caller gives one value for it (``Tx.together`` checks).
    """
    key = tuple(part.name for part in parts)
    found = _TOGETHER.get(key)
    if found is not None:
        _check_same(found.parts, parts)
        return found
    columns = []
    for part in parts:
        if not isinstance(part.statement, ReturnsRows) or not part.statement.exported_columns:
            raise ValueError(f"{part.name} returns no rows to run together")
        columns.append(list(part.statement.exported_columns))
    spans, start = [], 0
    for part_columns in columns:
        spans.append((start, start + len(part_columns)))
        start += len(part_columns)
    branches: list[Select[Any]] = []
    for number, part in enumerate(parts):
        rows = part.statement.subquery(f"part{number}")  # type: ignore[attr-defined]
        own = list(rows.c)  # by position: two of a part's columns may share a name
        # CAST, not a bare NULL: with three parts or more, PostgreSQL would type a column of NULLs
        # in two branches as text before it met the third's type.
        padded = [
            own[index] if other == number else sql_cast(null(), column.type)
            for other, part_columns in enumerate(columns)
            for index, column in enumerate(part_columns)
        ]
        labelled = [value.label(f"c{n}") for n, value in enumerate(padded)]
        branches.append(select(literal_column(str(number)).label("part"), *labelled).select_from(rows))
    name = f"together[{'+'.join(key)}]"
    statement = Statement(union_all(*branches), name=name, only="postgresql")
    found = _TOGETHER[key] = Together(statement, tuple(parts), tuple(spans))
    return found
