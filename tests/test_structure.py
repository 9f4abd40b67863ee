"""The code's ownership rules, checked: one module per table, no SQL in the HTTP layer."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

from cmc.store import tables

SRC = Path(__file__).resolve().parent.parent / "src" / "cmc"
TABLES = set(tables.metadata.tables)
SQL_WORDS = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN|TABLE)\s+\"?([a-z_]+)", re.IGNORECASE)


def modules() -> list[Path]:
    """Every service module but the schema itself and its migrations (which restate the tables)."""
    return [
        path
        for path in sorted(SRC.rglob("*.py"))
        if path != SRC / "store" / "tables.py" and "migrations" not in path.parts
    ]


def tables_used(path: Path) -> set[str]:
    """The tables a module names: ``tables.<name>``, ``from cmc.store.tables import <name>``, raw SQL."""
    tree = ast.parse(path.read_text(), filename=str(path))
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "tables":
            used.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module == "cmc.store.tables":
            used.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            used.update(name for name in SQL_WORDS.findall(node.value) if name in TABLES)
    return used & TABLES


def test_every_table_has_exactly_one_owner_module() -> None:
    owners: dict[str, list[str]] = defaultdict(list)
    for path in modules():
        for table in tables_used(path):
            owners[table].append(str(path.relative_to(SRC)))
    shared = {table: where for table, where in owners.items() if len(where) > 1}
    assert not shared, f"tables with more than one owner module: {shared}"
    assert set(owners) == TABLES, f"tables nobody owns: {TABLES - set(owners)}"


def test_the_http_layer_holds_no_sql() -> None:
    for path in sorted((SRC / "api").glob("*.py")):
        text = path.read_text()
        tree = ast.parse(text)
        imported = {
            node.module.split(".")[0] if isinstance(node, ast.ImportFrom) and node.module else ""
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
        } | {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        assert "sqlalchemy" not in imported, path.name
        assert "tables." not in text, path.name
        assert not tables_used(path), path.name


def test_the_checker_sees_what_it_must(tmp_path: Path) -> None:
    """The ownership scan finds all three spellings (a checker that finds nothing proves nothing)."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from cmc.store.tables import messages\n"
        "x = tables.profiles\n"
        "q = 'SELECT count(*) FROM rule_firings'\n"
    )
    assert tables_used(sample) == {"messages", "profiles", "rule_firings"}
