"""Registry as code: ``cmc.registry.parse/apply/load_file`` against a real SQLite file."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, select

from cmc import credentials, registry
from cmc.errors import RegistryError
from cmc.store import migrate, tables
from cmc.store.database import Database
from support import REGISTRY, Api, apply_registry, basic, count_rows, make_settings

# Issue 2, item 3, verbatim: "This file must load unchanged".
EXAMPLE = """\
posSystems:
  - id: pax                    # the {posSystemId} path segment
    name: PAX
    status: Accepted           # Accepted | Disabled | NotAvailable
    settings: {isTransactionsEnabled: true, isPosRulesEnabled: true}
    clients:
      - {clientId: pax-demo, secret: "s3cr3t!"}   # stored only as a hash
    companies:
      - id: comp5              # posCompanyId
        name: Green Leaf
        locations:
          - id: loc5           # posLocationId
            name: Downtown
            timezone: America/Los_Angeles
            country: US        # default region for phone numbers
            terminals:
              - {id: term5, cfs: true}
"""

REGISTRY_TABLES = (
    tables.pos_systems,
    tables.companies,
    tables.locations,
    tables.terminals,
    tables.api_clients,
)


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the first line of ``text`` containing ``needle``."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in text")


def edited(old: str, new: str, text: str = EXAMPLE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty database in a temp SQLite file."""
    database = Database.open(make_settings(tmp_path).database_url)
    migrate.upgrade(database)
    yield database
    asyncio.run(database.close())


def apply_text(db: Database, text: str) -> registry.ApplyReport:
    return db.run_sync(registry.apply, registry.parse(text))


def version(db: Database) -> int:
    return db.run_sync(registry.current_version)


def rows(db: Database, table: Any) -> list[dict[str, Any]]:
    def read(conn: Connection) -> list[dict[str, Any]]:
        keys = list(table.primary_key.columns)
        return [dict(r) for r in conn.execute(select(table).order_by(*keys)).mappings()]

    return db.run_sync(read)


def snapshot(db: Database) -> dict[str, Any]:
    """Everything ``apply`` may write: the registry tables and the version."""
    state: dict[str, Any] = {t.name: rows(db, t) for t in REGISTRY_TABLES}
    state["version"] = version(db)
    return state


# --- loading -----------------------------------------------------------------------------------


def test_issue_example_parses() -> None:
    spec = registry.parse(EXAMPLE)
    [pos] = spec.posSystems
    assert (pos.id, pos.name, pos.status) == ("pax", "PAX", "Accepted")
    assert pos.settings.isTransactionsEnabled is True
    assert pos.settings.isPosRulesEnabled is True
    assert [(c.clientId, c.secret) for c in pos.clients] == [("pax-demo", "s3cr3t!")]
    [company] = pos.companies
    assert (company.id, company.name) == ("comp5", "Green Leaf")
    [location] = company.locations
    assert (location.id, location.name, location.timezone, location.country) == (
        "loc5",
        "Downtown",
        "America/Los_Angeles",
        "US",
    )
    assert [(t.id, t.cfs) for t in location.terminals] == [("term5", True)]


def test_issue_example_applies_to_an_empty_database(db: Database) -> None:
    assert version(db) == 0
    report = apply_text(db, EXAMPLE)
    assert report.changed is True
    assert report.summary().startswith("registry updated: ")
    for table in ("pos_systems", "companies", "locations", "terminals", "api_clients"):
        assert report.inserted[table] == 1, table
    assert version(db) == 1
    [pos] = rows(db, tables.pos_systems)
    assert pos["status"] == "Accepted"
    assert pos["settings"]["isTransactionsEnabled"] is True
    [loc] = rows(db, tables.locations)
    assert {k: loc[k] for k in ("pos_system_id", "id", "company_id", "name", "timezone", "country")} == {
        "pos_system_id": "pax",
        "id": "loc5",
        "company_id": "comp5",
        "name": "Downtown",
        "timezone": "America/Los_Angeles",
        "country": "US",
    }
    [term] = rows(db, tables.terminals)
    assert {k: term[k] for k in ("pos_system_id", "location_id", "id", "cfs")} == {
        "pos_system_id": "pax",
        "location_id": "loc5",
        "id": "term5",
        "cfs": True,
    }


def test_load_file_reads_the_file_and_names_it_in_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(EXAMPLE)
    assert registry.load_file(str(good)) == registry.parse(EXAMPLE)

    bad = tmp_path / "bad.yaml"
    bad.write_text(edited("country: US", "country: XX"))
    with pytest.raises(RegistryError, match=rf"^{re.escape(str(bad))}:15: "):
        registry.load_file(str(bad))

    missing = tmp_path / "nope.yaml"
    with pytest.raises(RegistryError, match=rf"^{re.escape(str(missing))}: cannot read"):
        registry.load_file(str(missing))


def test_the_demo_and_test_registries_load() -> None:
    root = REGISTRY.parent.parent
    assert registry.load_file(str(root / "examples" / "demo.yaml")).posSystems[0].id == "pax"
    assert {p.id for p in registry.load_file(str(REGISTRY)).posSystems} >= {"pax", "clover"}


# --- idempotence and edits ---------------------------------------------------------------------


def test_applying_twice_changes_nothing(db: Database) -> None:
    apply_text(db, EXAMPLE)
    before = snapshot(db)
    report = apply_text(db, EXAMPLE)
    assert report.changed is False
    assert report.summary() == "registry unchanged"
    assert snapshot(db) == before
    assert version(db) == before["version"] == 1


@pytest.mark.parametrize(
    ("old", "new", "table", "column", "value"),
    [
        ("name: Downtown", "name: Midtown", "locations", "name", "Midtown"),
        ("{id: term5, cfs: true}", "{id: term5, cfs: false}", "terminals", "cfs", False),
        ("status: Accepted ", "status: Disabled ", "pos_systems", "status", "Disabled"),
        ("status: Accepted ", "status: NotAvailable ", "pos_systems", "status", "NotAvailable"),
        ("name: Green Leaf", "name: Red Leaf", "companies", "name", "Red Leaf"),
        (
            "timezone: America/Los_Angeles",
            "timezone: America/New_York",
            "locations",
            "timezone",
            "America/New_York",
        ),
        ("country: US ", "country: ca ", "locations", "country", "CA"),
    ],
)
def test_editing_a_field_updates_it_and_bumps_the_version(
    db: Database, old: str, new: str, table: str, column: str, value: object
) -> None:
    apply_text(db, EXAMPLE)
    before = snapshot(db)
    report = apply_text(db, edited(old, new))
    assert report.changed is True
    assert report.updated[table] == 1
    assert sum(report.inserted.values()) == sum(report.deleted.values()) == 0
    after = snapshot(db)
    [row] = after[table]
    assert row[column] == value
    assert after["version"] == before["version"] + 1
    # Every other table is untouched.
    assert {k: v for k, v in after.items() if k not in (table, "version")} == {
        k: v for k, v in before.items() if k not in (table, "version")
    }
    # And applying the edited file again is a no-op.
    assert apply_text(db, edited(old, new)).changed is False
    assert version(db) == after["version"]


def test_editing_settings_updates_the_pos_system(db: Database) -> None:
    apply_text(db, EXAMPLE)
    report = apply_text(db, edited("isTransactionsEnabled: true", "isTransactionsEnabled: false"))
    assert report.updated["pos_systems"] == 1
    [pos] = rows(db, tables.pos_systems)
    assert pos["settings"]["isTransactionsEnabled"] is False
    assert pos["settings"]["isPosRulesEnabled"] is True


def test_removing_a_terminal_deletes_it(db: Database) -> None:
    two = edited(
        "- {id: term5, cfs: true}", "- {id: term5, cfs: true}\n              - {id: term6, cfs: false}"
    )
    apply_text(db, two)
    assert [t["id"] for t in rows(db, tables.terminals)] == ["term5", "term6"]
    v = version(db)
    report = apply_text(db, EXAMPLE)
    assert report.deleted["terminals"] == 1
    assert report.summary() == "registry updated: 1 terminals deleted"
    assert [t["id"] for t in rows(db, tables.terminals)] == ["term5"]
    assert version(db) == v + 1


def test_adding_a_location_inserts_it(db: Database) -> None:
    apply_text(db, EXAMPLE)
    more = EXAMPLE + (
        "          - id: loc6\n"
        "            name: Uptown\n"
        "            timezone: Europe/Paris\n"
        "            country: FR\n"
        "            terminals: [{id: term8}]\n"
    )
    report = apply_text(db, more)
    assert report.inserted["locations"] == report.inserted["terminals"] == 1
    assert [(loc["id"], loc["country"]) for loc in rows(db, tables.locations)] == [
        ("loc5", "US"),
        ("loc6", "FR"),
    ]
    # A terminal's cfs flag defaults to true.
    assert {t["id"]: t["cfs"] for t in rows(db, tables.terminals)} == {"term5": True, "term8": True}


def test_pos_systems_missing_from_the_file_are_left_alone(db: Database) -> None:
    other = EXAMPLE.replace("pax", "clover").replace("comp5", "comp7").replace("loc5", "loc7")
    other = other.replace("term5", "term7").replace("s3cr3t!", "cl0ver!")
    apply_text(db, EXAMPLE)
    apply_text(db, other)
    assert [p["id"] for p in rows(db, tables.pos_systems)] == ["clover", "pax"]
    assert sorted(loc["id"] for loc in rows(db, tables.locations)) == ["loc5", "loc7"]
    assert apply_text(db, EXAMPLE).changed is False


TWO_POS_SYSTEMS = EXAMPLE + (
    "  - id: clover\n"
    "    name: Clover\n"
    "    clients:\n"
    '      - {clientId: clover-demo, secret: "cl0ver!"}\n'
    "    companies:\n"
    "      - id: comp7\n"
    "        name: Other\n"
    "        locations:\n"
    "          - {id: loc7, name: Elsewhere, timezone: UTC, country: GB, terminals: [{id: term7}]}\n"
)


def test_an_edit_to_any_pos_system_is_counted_and_bumps_the_version(db: Database) -> None:
    first = apply_text(db, TWO_POS_SYSTEMS)
    assert first.inserted["pos_systems"] == 2
    assert first.inserted["locations"] == first.inserted["terminals"] == first.inserted["api_clients"] == 2
    v = version(db)
    report = apply_text(db, edited("name: Downtown", "name: Midtown", TWO_POS_SYSTEMS))
    assert [loc["name"] for loc in rows(db, tables.locations) if loc["id"] == "loc5"] == ["Midtown"]
    assert report.changed is True
    assert report.updated["locations"] == 1
    assert version(db) == v + 1


def test_an_edit_to_the_last_pos_system_bumps_the_version(db: Database) -> None:
    apply_text(db, TWO_POS_SYSTEMS)
    v = version(db)
    report = apply_text(db, edited("name: Elsewhere", "name: Somewhere", TWO_POS_SYSTEMS))
    assert report.changed is True
    assert report.updated["locations"] == 1
    assert version(db) == v + 1


# --- malformed files ---------------------------------------------------------------------------

DUPLICATE_LOCATION = EXAMPLE + (
    "          - id: loc5\n            name: Again\n            timezone: UTC\n            country: US\n"
)
DUPLICATE_CLIENT = edited(
    '      - {clientId: pax-demo, secret: "s3cr3t!"}',
    '      - {clientId: pax-demo, secret: "s3cr3t!"}\n      - {clientId: pax-demo, secret: "0ther!!"}',
)
DUPLICATE_CLIENT_ACROSS_POS = EXAMPLE + (
    '  - id: clover\n    name: Clover\n    clients:\n      - {clientId: pax-demo, secret: "cl0ver!"}\n'
)

# (case, file text, line the message must name, field path it must name, words it must contain)
MALFORMED = [
    ("wrong-type", edited("cfs: true}", "cfs: maybe}"), line_of(EXAMPLE, "term5"),
     "posSystems[0].companies[0].locations[0].terminals[0].cfs", "Expected `bool`"),
    ("wrong-type-list", edited("name: Downtown", "name: [1, 2]"), line_of(EXAMPLE, "Downtown"),
     "posSystems[0].companies[0].locations[0].name", "Expected `str`"),
    ("bad-status", edited("status: Accepted", "status: Enabled"), line_of(EXAMPLE, "status:"),
     "posSystems[0].status", "Enabled"),
    ("unknown-timezone", edited("America/Los_Angeles", "Mars/Olympus_Mons"), line_of(EXAMPLE, "timezone:"),
     "posSystems[0].companies[0].locations[0].timezone", "unknown time zone 'Mars/Olympus_Mons'"),
    ("path-as-timezone", edited("America/Los_Angeles", "../../etc/passwd"), line_of(EXAMPLE, "timezone:"),
     "posSystems[0].companies[0].locations[0].timezone", "unknown time zone"),
    ("bad-country", edited("country: US", "country: XX"), line_of(EXAMPLE, "country:"),
     "posSystems[0].companies[0].locations[0].country", "unknown country code 'XX'"),
    ("duplicate-location", DUPLICATE_LOCATION, line_of(DUPLICATE_LOCATION, "Again") - 1,
     "posSystems[0].companies[0].locations[1].id", "duplicate location id 'loc5'"),
    ("duplicate-client", DUPLICATE_CLIENT, line_of(DUPLICATE_CLIENT, "0ther!!"),
     "posSystems[0].clients[1].clientId", "duplicate clientId 'pax-demo'"),
    ("duplicate-client-across-pos", DUPLICATE_CLIENT_ACROSS_POS,
     line_of(DUPLICATE_CLIENT_ACROSS_POS, "cl0ver!"),
     "posSystems[1].clients[0].clientId", "duplicate clientId 'pax-demo'"),
    ("missing-name", edited("            name: Downtown\n", ""), line_of(EXAMPLE, "id: loc5"),
     "posSystems[0].companies[0].locations[0]", "missing required field `name`"),
    ("missing-timezone", edited("            timezone: America/Los_Angeles\n", ""),
     line_of(EXAMPLE, "id: loc5"),
     "posSystems[0].companies[0].locations[0]", "missing required field `timezone`"),
    ("short-secret", edited('"s3cr3t!"', '"abc"'), line_of(EXAMPLE, "clientId"),
     "posSystems[0].clients[0].secret", "at least 6 characters"),
    ("slash-in-id", edited("id: loc5 ", "id: loc/5 "), line_of(EXAMPLE, "id: loc5"),
     "posSystems[0].companies[0].locations[0].id", "Expected `str` matching regex"),
]  # fmt: skip


def with_company(block: str) -> str:
    """EXAMPLE with ``block`` (YAML at the company's indentation) under comp5's name."""
    return edited("        name: Green Leaf\n", "        name: Green Leaf\n" + block)


BRANDED = with_company(
    "        branding:\n"
    "          name: Green Leaf Co.\n"
    '          logoUrl: "https://cdn.example/logo.svg"\n'
    '          colors: {primary: "#2f7d4f", background: "#fff"}\n'
    "          font: Inter\n"
    "        cfsTemplates:\n"
    "          - id: 7\n"
    "            name: Thank you\n"
    '            slides: [{title: "Welcome to {companyName}", body: "at {locationName}"}]\n'
    '            thanks: "Thanks, {firstName}!"\n'
    "            displaySeconds: 20\n"
)
BAD_SLIDE = edited("Welcome to {companyName}", "Welcome back, {firstName}", BRANDED)
MALFORMED += [
    ("bad-colour", edited('primary: "#2f7d4f"', "primary: red", BRANDED), line_of(BRANDED, "colors:"),
     "posSystems[0].companies[0].branding.colors.primary", "Expected `str` matching regex"),
    ("css-in-font", edited("font: Inter", 'font: "x; } body { display: none"', BRANDED),
     line_of(BRANDED, "font:"), "posSystems[0].companies[0].branding.font", "Expected `str` matching regex"),
    ("script-logo", edited("https://cdn.example/logo.svg", "javascript:alert(1)", BRANDED),
     line_of(BRANDED, "logoUrl"), "posSystems[0].companies[0].branding.logoUrl",
     "must be an absolute http(s) URL or a data:image/... URL"),
    ("branding-typo", edited("font: Inter", "fnt: Inter", BRANDED), line_of(BRANDED, "branding:"),
     "posSystems[0].companies[0].branding", "unknown field `fnt`"),
    ("shopper-on-idle-slide", BAD_SLIDE, line_of(BAD_SLIDE, "slides:"),
     "posSystems[0].companies[0].cfsTemplates[0].slides[0].title",
     "{firstName}: idle slides are shown to every shopper"),
    ("display-seconds", edited("displaySeconds: 20", "displaySeconds: 0", BRANDED),
     line_of(BRANDED, "displaySeconds"), "posSystems[0].companies[0].cfsTemplates[0].displaySeconds",
     "Expected `int` >= 1"),
]  # fmt: skip


def test_branding_and_screen_templates_apply(db: Database) -> None:
    apply_text(db, BRANDED)
    directory = db.run_sync(registry.snapshot.load)
    setup = directory.companies[("pax", "comp5")].setup
    assert setup.branding.name == "Green Leaf Co." and setup.branding.font == "Inter"
    assert (setup.branding.colors.primary, setup.branding.colors.background) == ("#2f7d4f", "#fff")
    assert setup.branding.colors.text == "#1d2330"  # a default
    template = setup.cfs_templates[7]
    assert (template.thanks, template.displaySeconds) == ("Thanks, {firstName}!", 20)
    assert apply_text(db, BRANDED).changed is False  # re-applying changes nothing


@pytest.mark.parametrize(
    ("text", "line", "field", "words"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_file_is_refused_naming_line_and_field(
    text: str, line: int, field: str, words: str
) -> None:
    with pytest.raises(RegistryError) as caught:
        registry.parse(text, source="reg.yaml")
    message = str(caught.value)
    assert message.startswith(f"reg.yaml:{line}: {field}: "), message
    assert words in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("old", "new", "typo", "key_line"),
    [
        ("timezone:", "timezon:", "timezon", line_of(EXAMPLE, "timezone:")),
        ("status: Accepted", "status: Accepted\n    colour: red", "colour", line_of(EXAMPLE, "status:") + 1),
        ("isPosRulesEnabled", "isPosRulesEnabld", "isPosRulesEnabld", line_of(EXAMPLE, "isPosRulesEnabled")),
        ("{id: term5, cfs: true}", "{id: term5, cfs: true, cfz: true}", "cfz", line_of(EXAMPLE, "term5")),
    ],
)
def test_unknown_key_is_refused_as_a_typo(old: str, new: str, typo: str, key_line: int) -> None:
    with pytest.raises(RegistryError) as caught:
        registry.parse(edited(old, new), source="reg.yaml")
    message = str(caught.value)
    found = re.match(r"^reg\.yaml:(\d+): (\S+): ", message)
    assert found, message
    assert f"unknown field `{typo}`" in message
    # The line is the key's own line or the line of the object holding it.
    assert int(found.group(1)) <= key_line
    assert key_line - int(found.group(1)) <= 4, message


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        (edited("name: Downtown", "name: [Downtown"), {13, 14}),
        (edited('secret: "s3cr3t!"}', 'secret: "s3cr3t!}'), set(range(7, 19))),
        (edited("            timezone:", "          timezone:"), {14}),
        (EXAMPLE + "\tbad: tab\n", {18}),
    ],
    ids=["unclosed-bracket", "unclosed-quote", "bad-indent", "tab"],
)
def test_bad_yaml_syntax_is_refused_naming_a_line(text: str, lines: set[int]) -> None:
    with pytest.raises(RegistryError) as caught:
        registry.parse(text, source="reg.yaml")
    found = re.match(r"^reg\.yaml:(\d+): not valid YAML: ", str(caught.value))
    assert found, str(caught.value)
    assert int(found.group(1)) in lines


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "posSystems: 3\n", "posSystem: []\n"])
def test_a_file_of_the_wrong_shape_is_refused(text: str) -> None:
    with pytest.raises(RegistryError, match=r"^reg\.yaml:1: "):
        registry.parse(text, source="reg.yaml")


def test_a_duplicate_key_is_refused() -> None:
    text = edited("            name: Downtown\n", "            name: Downtown\n            name: Uptown\n")
    with pytest.raises(RegistryError, match=r"^reg\.yaml:14: .*name"):
        registry.parse(text, source="reg.yaml")


def test_a_bad_file_changes_nothing(db: Database) -> None:
    """The good part of a bad file is not applied: parsing refuses it before any write."""
    apply_text(db, EXAMPLE)
    before = snapshot(db)
    # The first POS system is a valid edit; the second one is broken.
    bad = edited("name: Downtown", "name: Midtown") + (
        "  - id: clover\n"
        "    name: Clover\n"
        "    companies:\n"
        "      - id: comp7\n"
        "        name: Other\n"
        "        locations:\n"
        "          - {id: loc7, name: Elsewhere, timezone: Not/AZone}\n"
    )
    with pytest.raises(RegistryError, match=r"unknown time zone 'Not/AZone'"):
        apply_text(db, bad)
    assert snapshot(db) == before


def test_apply_writes_in_the_callers_transaction(db: Database) -> None:
    """``apply`` does not commit on its own: a failure later in the same unit of work undoes it."""
    apply_text(db, EXAMPLE)
    before = snapshot(db)
    spec = registry.parse(edited("name: Downtown", "name: Midtown").replace("term5", "term9"))

    def apply_then_fail(conn: Connection) -> None:
        assert registry.apply(conn, spec).changed
        raise RuntimeError("later step failed")

    with pytest.raises(RuntimeError, match="later step failed"):
        db.run_sync(apply_then_fail)
    assert snapshot(db) == before


# --- secrets -----------------------------------------------------------------------------------


def secret_hashes(db: Database) -> dict[str, str]:
    return {row["client_id"]: row["secret_hash"] for row in rows(db, tables.api_clients)}


def test_secrets_are_stored_only_as_hashes(db: Database, tmp_path: Path) -> None:
    apply_text(db, EXAMPLE)
    [client] = rows(db, tables.api_clients)
    assert client["pos_system_id"] == "pax"
    assert "s3cr3t!" not in repr(client)
    assert client["secret_hash"].startswith("scrypt$")
    assert credentials.verify_secret("s3cr3t!", client["secret_hash"])
    assert not credentials.verify_secret("s3cr3t?", client["secret_hash"])
    # Nor anywhere in the database files (main file and write-ahead log).
    files = list(tmp_path.glob("cmc.db*"))
    assert files
    for path in files:
        assert b"s3cr3t!" not in path.read_bytes(), path


def test_same_secret_keeps_the_hash_and_a_new_secret_changes_it(db: Database) -> None:
    apply_text(db, EXAMPLE)
    first = secret_hashes(db)["pax-demo"]
    assert apply_text(db, EXAMPLE).changed is False
    assert secret_hashes(db)["pax-demo"] == first

    report = apply_text(db, edited('"s3cr3t!"', '"n3w-s3cr3t!"'))
    assert report.updated["api_clients"] == 1
    second = secret_hashes(db)["pax-demo"]
    assert second != first
    assert credentials.verify_secret("n3w-s3cr3t!", second)
    assert not credentials.verify_secret("s3cr3t!", second)


def test_removing_a_client_deletes_it(db: Database) -> None:
    apply_text(db, edited("    clients:\n", '    clients:\n      - {clientId: pax-two, secret: "tw0tw0"}\n'))
    assert set(secret_hashes(db)) == {"pax-demo", "pax-two"}
    report = apply_text(db, EXAMPLE)
    assert report.deleted["api_clients"] == 1
    assert set(secret_hashes(db)) == {"pax-demo"}


# --- against the running app -------------------------------------------------------------------


def write_registry(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


async def get_token(api: Api, authorization: str) -> int:
    answer = await api.http.post(
        "/connect/token",
        headers={"Authorization": authorization},
        data={"grant_type": "client_credentials", "scope": "pos_integration"},
    )
    return answer.status_code


async def test_a_changed_secret_replaces_the_old_one(api: Api, tmp_path: Path) -> None:
    old = basic("pax")
    assert await get_token(api, old) == 200
    changed = write_registry(
        tmp_path, "new-secret.yaml", REGISTRY.read_text().replace("s3cr3t!", "n3w-s3cr3t!")
    )
    await asyncio.to_thread(apply_registry, api.settings, changed)
    assert await get_token(api, old) == 401
    new = "Basic " + base64.b64encode(b"pax-demo:n3w-s3cr3t!").decode()
    assert await get_token(api, new) == 200


async def test_apply_never_deletes_transactions(api: Api, tmp_path: Path) -> None:
    answer = await api.tender()
    assert answer.status_code == 200, answer.text
    tx_id = answer.json()["data"]["id"]
    counts = {t: await count_rows(api, t) for t in ("transactions", "profiles")}
    assert counts["transactions"] == 1

    # Company comp5 with location loc5 (where the sale happened) is gone from the file.
    text = REGISTRY.read_text()
    start, end = text.index("      - id: comp5"), text.index("      - id: comp6")
    without = write_registry(tmp_path, "without-loc5.yaml", text[:start] + text[end:])
    await asyncio.to_thread(apply_registry, api.settings, without)

    for table, n in counts.items():
        assert await count_rows(api, table) == n, table
    db = api.db()
    try:
        stored = await db.read(
            lambda conn: conn.execute(
                select(tables.transactions.c.location_id).where(tables.transactions.c.id == tx_id)
            ).scalar()
        )
        locations = await db.read(lambda conn: conn.execute(select(tables.locations.c.id)).scalars().all())
    finally:
        await db.close()
    assert stored == "loc5"
    assert "loc5" not in locations

    # Removing the whole POS system's companies still keeps every transaction.
    bare = REGISTRY.read_text()
    start, end = bare.index("    companies:\n      - id: comp5"), bare.index("  - id: clover")
    empty = write_registry(tmp_path, "no-companies.yaml", bare[:start] + bare[end:])
    await asyncio.to_thread(apply_registry, api.settings, empty)
    assert await count_rows(api, "transactions") == 1


async def test_a_running_app_sees_an_edit_without_restarting(
    api_factory: Callable[..., Any], tmp_path: Path
) -> None:
    async with api_factory(registry_refresh=timedelta(milliseconds=50)) as api:
        where = {"pos": "quiet", "terminal": "term4", "location": "loc4"}
        assert (await api.start(**where)).json()["data"]["posStatus"] == "Accepted"
        text = REGISTRY.read_text()
        quiet = text.index("  - id: quiet")
        disabled = text[:quiet] + text[quiet:].replace("status: Accepted", "status: Disabled", 1)
        path = write_registry(tmp_path, "disabled.yaml", disabled)
        report = await asyncio.to_thread(apply_registry, api.settings, path)
        assert report.updated["pos_systems"] == 1
        data: dict[str, Any] = {}
        for _ in range(100):
            data = (await api.start(**where)).json()["data"]
            if data["posStatus"] != "Accepted":
                break
            await asyncio.sleep(0.05)
        assert data["posStatus"] == "Disabled"
        assert data["sessionId"] is None
