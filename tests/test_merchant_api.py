"""The merchant API against the real app, on both engines: roles, tenants, drafts, simulation,
activation and rollback, the audit trail, idempotent POSTs, and ``cmc apply`` through the same layer."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from cmc.api.app import create_app
from cmc.errors import RegistryError, Unauthorized
from support import (
    MERCHANT_SECRETS,
    MERCHANTS,
    Api,
    Lifespan,
    ManualClock,
    apply_registry,
    basic_of,
    count_rows,
    seed_transaction,
)

BASE = "/v1/pos/pax/companies/comp5"
OTHER = "/v1/pos/pax/companies/comp6"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


class Merchant:
    """A merchant client talking to the app."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.http = api.http
        self._tokens: dict[str, str] = {}

    async def token(self, client_id: str) -> str:
        if client_id not in self._tokens:
            answer = await self.http.post(
                "/connect/token",
                headers={"Authorization": basic_of(client_id, MERCHANT_SECRETS[client_id])},
                data={"grant_type": "client_credentials", "scope": "merchant"},
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["scope"] == "merchant"
            self._tokens[client_id] = answer.json()["access_token"]
        return self._tokens[client_id]

    async def call(
        self,
        method: str,
        path: str,
        *,
        who: str = "gl-publisher",
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> httpx2.Response:
        auth = {"Authorization": f"Bearer {await self.token(who)}", **(headers or {})}
        return await self.http.request(method, path, headers=auth, **kw)

    async def document(self) -> dict[str, Any]:
        answer = await self.call("GET", f"{BASE}/marketing")
        assert answer.status_code == 200, answer.text
        document: dict[str, Any] = answer.json()["data"]["document"]
        return document

    async def draft(self, document: dict[str, Any], *, who: str = "gl-editor", **kw: Any) -> int:
        answer = await self.call(
            "POST", f"{BASE}/marketing/versions", who=who, json={"document": document}, **kw
        )
        assert answer.status_code == 201, answer.text
        number: int = answer.json()["data"]["version"]
        return number

    async def activate(self, version: int, if_match: int | str | None, **kw: Any) -> httpx2.Response:
        headers = (
            {}
            if if_match is None
            else {"If-Match": f'"{if_match}"' if isinstance(if_match, int) else if_match}
        )
        return await self.call("POST", f"{BASE}/marketing/versions/{version}/activate", headers=headers, **kw)


@pytest.fixture
async def merchant(api_factory: Callable[..., Any]) -> AsyncIterator[Merchant]:
    async with api_factory(registry=MERCHANTS) as api:
        yield Merchant(api)


def changed_rules(document: dict[str, Any]) -> dict[str, Any]:
    """The document with a wider coupon band without its limit, and a new rule."""
    changed = copy.deepcopy(document)
    changed["rules"][0]["when"]["all"][0]["amount"] = {"between": ["15", "70"]}
    del changed["rules"][0]["limit"]
    big = {"customer": {"lifetimeSpend": {"gte": 75}}}
    changed["rules"].append({"name": "big spender", "priority": 7, "when": big, "then": {"qrWidget": 2}})
    return changed


# --- reading ------------------------------------------------------------------------------------


async def test_the_applied_setup_is_version_1_active(merchant: Merchant) -> None:
    answer = await merchant.call("GET", f"{BASE}/marketing", who="gl-viewer")
    assert answer.status_code == 200, answer.text
    assert answer.headers["etag"] == '"1"'
    data = answer.json()["data"]
    assert (data["version"], data["status"], data["source"], data["createdBy"]) == (
        1,
        "active",
        "cli",
        "cmc apply",
    )
    assert [rule["name"] for rule in data["document"]["rules"]] == ["mid-basket coupon", "edibles fan"]
    assert data["document"]["widgets"][0]["landingUrl"] == "https://example.com/coupon?c={code}"
    listing = (await merchant.call("GET", f"{BASE}/marketing/versions", who="gl-viewer")).json()["data"]
    assert [(v["version"], v["status"], v["source"]) for v in listing] == [(1, "active", "cli")]


# --- roles ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "draft", "simulate", "activate"),
    [("gl-viewer", 403, 403, 403), ("gl-editor", 201, 200, 403), ("gl-publisher", 201, 200, 200)],
)
async def test_each_role_has_its_rights(
    merchant: Merchant, who: str, draft: int, simulate: int, activate: int
) -> None:
    for path in ("/marketing", "/marketing/versions", "/marketing/versions/1", "/audit"):
        assert (await merchant.call("GET", BASE + path, who=who)).status_code == 200, path
    document = await merchant.document()
    created = await merchant.call("POST", f"{BASE}/marketing/versions", who=who, json={"document": document})
    assert created.status_code == draft, created.text
    version = created.json()["data"]["version"] if draft == 201 else 1
    simulated = await merchant.call("POST", f"{BASE}/marketing/versions/{version}/simulate", who=who, json={})
    assert simulated.status_code == simulate, simulated.text
    activated = await merchant.activate(version, 1, who=who)
    assert activated.status_code == activate, activated.text
    if activate == 403:
        assert activated.headers["content-type"] == "application/problem+json"
        assert who.split("-")[1] in activated.json()["detail"]


async def test_a_console_user_signs_in_with_a_role(merchant: Merchant) -> None:
    services = merchant.api.app.app.state.services
    user = await services.login.user("pax", "comp5", "ann@greenleaf.example", "correct horse", address="test")
    assert (user.email, user.role) == ("ann@greenleaf.example", "editor")
    token = services.tokens.issue_for_user(user, now=datetime.now(UTC))
    headers = {"Authorization": f"Bearer {token}"}
    created = await merchant.http.post(f"{BASE}/marketing/versions", headers=headers,
                                       json={"document": await merchant.document()})  # fmt: skip
    assert created.status_code == 201, created.text
    listing = (await merchant.call("GET", f"{BASE}/marketing/versions")).json()["data"]
    assert (listing[0]["source"], listing[0]["createdBy"]) == ("console", "user:ann@greenleaf.example")
    forbidden = await merchant.http.post(
        f"{BASE}/marketing/versions/2/activate", headers={**headers, "If-Match": '"1"'}
    )
    assert forbidden.status_code == 403
    with pytest.raises(Unauthorized, match="wrong password"):
        await services.login.user("pax", "comp5", "ann@greenleaf.example", "wrong horse", address="test")


# --- tenants ------------------------------------------------------------------------------------

EVERY_PATH = [
    ("GET", "/marketing"),
    ("GET", "/marketing/versions"),
    ("POST", "/marketing/versions"),
    ("GET", "/marketing/versions/1"),
    ("POST", "/marketing/versions/1/simulate"),
    ("POST", "/marketing/versions/1/activate"),
    ("GET", "/audit"),
]


@pytest.mark.parametrize(("method", "path"), EVERY_PATH)
async def test_another_company_gets_nothing(merchant: Merchant, method: str, path: str) -> None:
    body = {"json": {"document": {}}} if path == "/marketing/versions" and method == "POST" else {}
    headers = {"If-Match": '"1"'}
    own = await merchant.call(method, OTHER + path, who="bd-publisher", headers=headers, **body)
    assert own.status_code in {200, 201}, own.text  # Blue Door's own paths work...
    strangers = [
        ("bd-publisher", BASE),
        ("clover-merchant", BASE),
        ("gl-publisher", OTHER),
        ("gl-publisher", "/v1/pos/pax/companies/nope"),
        ("gl-publisher", "/v1/pos/clover/companies/comp7"),
    ]
    for who, where in strangers:
        answer = await merchant.call(method, where + path, who=who, headers=headers, **body)
        assert answer.status_code == 404, (who, where, answer.text)
        # ... and another's reveal nothing: the same answer as a company that does not exist.
        assert answer.json()["detail"] == "No such company.", answer.text
    listing = (await merchant.call("GET", f"{BASE}/marketing/versions")).json()["data"]
    assert [v["version"] for v in listing] == [1]  # nothing was created at Green Leaf


@pytest.mark.parametrize(("method", "path"), EVERY_PATH)
async def test_a_pos_token_may_not_use_the_merchant_api(merchant: Merchant, method: str, path: str) -> None:
    pos_token = await merchant.api.token("pax")
    answer = await merchant.http.request(
        method, BASE + path, headers={"Authorization": f"Bearer {pos_token}"}
    )
    assert answer.status_code == 403, answer.text


async def test_a_merchant_token_may_not_use_the_pos_api(merchant: Merchant) -> None:
    start = {"terminalId": "term5", "posLocationId": "loc5"}
    answer = await merchant.call("POST", "/pos/pax/startInteraction", json=start)
    assert answer.status_code == 403, answer.text
    assert (await merchant.call("GET", "/v2/pos/pax/settings/lookup")).status_code == 403


async def test_scopes_belong_to_their_clients(merchant: Merchant) -> None:
    async def token(authorization: str, scope: str | None) -> httpx2.Response:
        form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
        return await merchant.http.post("/connect/token", headers={"Authorization": authorization}, data=form)

    publisher = basic_of("gl-publisher", MERCHANT_SECRETS["gl-publisher"])
    pos = basic_of("pax-demo", "s3cr3t!")
    assert (await token(publisher, None)).json()["scope"] == "merchant"
    assert (await token(pos, None)).json()["scope"] == "pos_integration"
    assert (await token(publisher, "pos_integration")).status_code == 400
    assert (await token(pos, "merchant")).status_code == 400
    assert (await token(pos, "admin")).status_code == 400


# --- drafts -------------------------------------------------------------------------------------


async def test_an_invalid_draft_names_every_problem_with_its_field(merchant: Merchant) -> None:
    document = await merchant.document()
    document["widgets"][0]["landingUrl"] = "ftp://nowhere"
    document["rules"][0]["when"]["all"][0]["amount"] = {"between": [50, 15]}
    document["rules"][1]["then"] = {"qrWidget": 9}
    document["rules"].append({"name": "far away", "locations": ["loc9"], "then": {"qrWidget": 1}})
    document["rules"].append(
        {"name": "typo", "when": {"amount": {"gte": 1}}, "then": {"qrWidget": 1}, "prority": 3}
    )
    document["colour"] = "green"
    answer = await merchant.call(
        "POST", f"{BASE}/marketing/versions", who="gl-editor", json={"document": document}
    )
    assert answer.status_code == 400, answer.text
    problem = answer.json()
    assert problem["status"] == 400
    assert answer.headers["content-type"] == "application/problem+json"
    errors = problem["errors"]
    assert set(errors) == {
        "colour",
        "widgets[0].landingUrl",
        "rules[0].when.all[0].amount.between",
        "rules[1].then.qrWidget",
        "rules[2].locations[0]",  # loc9 is Blue Door's: not among Green Leaf's locations
        "rules[3].prority",
    }, errors
    assert "low 50 is above high 15" in errors["rules[0].when.all[0].amount.between"][0]
    assert "unknown widget 9" in errors["rules[1].then.qrWidget"][0]
    assert "'far away'" in errors["rules[2].locations[0]"][0]
    assert "6 problems" in problem["detail"]
    listing = (await merchant.call("GET", f"{BASE}/marketing/versions")).json()["data"]
    assert len(listing) == 1  # nothing stored


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "document"), ({"document": [1]}, "document"), ({"document": {}, "note": 3}, "note"),
     ({"document": {}, "extra": 1}, "extra")],
)  # fmt: skip
async def test_a_malformed_draft_body_is_400(merchant: Merchant, body: dict[str, Any], field: str) -> None:
    answer = await merchant.call("POST", f"{BASE}/marketing/versions", who="gl-editor", json=body)
    assert answer.status_code == 400, answer.text
    assert field in str(answer.json()["errors"]), answer.text


async def test_a_draft_is_stored_and_read_back(merchant: Merchant) -> None:
    changed = changed_rules(await merchant.document())
    answer = await merchant.call(
        "POST",
        f"{BASE}/marketing/versions",
        who="gl-editor",
        json={"document": changed, "note": "wider band"},
    )
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"data": {"version": 2, "status": "draft"}}
    assert answer.headers["location"] == f"{BASE}/marketing/versions/2"
    stored = (await merchant.call("GET", answer.headers["location"], who="gl-viewer")).json()["data"]
    assert (stored["status"], stored["note"], stored["source"], stored["createdBy"]) == (
        "draft", "wider band", "api", "client:gl-editor")  # fmt: skip
    assert stored["document"]["rules"][0]["when"]["all"][0]["amount"] == {"between": ["15", "70"]}
    assert stored["document"]["rules"][2]["name"] == "big spender"
    # The draft is not live: the active document is still version 1.
    assert (await merchant.call("GET", f"{BASE}/marketing")).headers["etag"] == '"1"'
    assert (await merchant.call("GET", f"{BASE}/marketing/versions/99")).status_code == 404
    assert (await merchant.call("GET", f"{BASE}/marketing/versions/abc")).status_code == 404


# --- activation ---------------------------------------------------------------------------------


async def dry_run_effects(api: Api, amount: float) -> list[str]:
    body = seed_transaction(transactionAmount=amount, sessionId=await api.session(), products=[])
    answer = await api.send(body, params={"dryRun": "true"})
    assert answer.status_code == 200, answer.text
    return list(dict.fromkeys(effect["rule"] for effect in answer.json()["data"]["effects"]))


async def test_activate_with_good_stale_and_missing_if_match_then_roll_back(merchant: Merchant) -> None:
    two = await merchant.draft(changed_rules(await merchant.document()))
    assert await dry_run_effects(merchant.api, 65) == []  # 65 is outside version 1's band

    missing = await merchant.activate(two, None)
    assert missing.status_code == 428, missing.text
    stale = await merchant.activate(two, 7)
    assert stale.status_code == 412, stale.text
    assert "active version is 1" in stale.json()["detail"]

    good = await merchant.activate(two, 1)
    assert good.status_code == 200, good.text
    assert good.json() == {"data": {"version": 2, "previous": 1, "status": "active"}}
    assert good.headers["etag"] == '"2"'
    assert (await merchant.call("GET", f"{BASE}/marketing")).headers["etag"] == '"2"'
    await merchant.api.app.app.state.services.directory.catch_up()
    assert await dry_run_effects(merchant.api, 65) == ["mid-basket coupon"]

    # The old ETag is stale now; activating version 1 again with the current one is the rollback.
    assert (await merchant.activate(1, 1)).status_code == 412
    back = await merchant.activate(1, 2)
    assert back.status_code == 200, back.text
    assert back.json()["data"] == {"version": 1, "previous": 2, "status": "active"}
    await merchant.api.app.app.state.services.directory.catch_up()
    assert await dry_run_effects(merchant.api, 65) == []
    listing = (await merchant.call("GET", f"{BASE}/marketing/versions")).json()["data"]
    assert [(v["version"], v["status"]) for v in listing] == [(2, "retired"), (1, "active")]
    # Activating the active version again changes nothing; If-Match: * accepts whichever is active.
    assert (await merchant.activate(1, 1)).status_code == 200
    assert (await merchant.activate(2, "*")).json()["data"]["version"] == 2


async def test_a_second_process_uses_the_new_version_within_2_seconds(
    api_factory: Callable[..., Any], tmp_path: Path
) -> None:
    """Two apps (each its own snapshot, as two processes have) on one database."""
    async with api_factory(registry=MERCHANTS, registry_refresh=timedelta(milliseconds=200)) as first:
        app = create_app(first.settings)
        async with Lifespan(app):
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://cmc.test") as http:
                other = Api(http, app, first.settings)
                merchant = Merchant(first)
                two = await merchant.draft(changed_rules(await merchant.document()))
                assert await dry_run_effects(other, 65) == []
                assert (await merchant.activate(two, 1)).status_code == 200
                activated = asyncio.get_running_loop().time()
                while await dry_run_effects(other, 65) != ["mid-basket coupon"]:
                    assert asyncio.get_running_loop().time() - activated < 2.0, (
                        "the second process never saw it"
                    )
                    await asyncio.sleep(0.02)


# --- the audit trail ----------------------------------------------------------------------------


async def test_the_audit_trail_names_who_changed_what(merchant: Merchant) -> None:
    two = await merchant.draft(changed_rules(await merchant.document()))
    assert (await merchant.activate(two, 1)).status_code == 200
    assert (await merchant.activate(1, two)).status_code == 200
    entries = (await merchant.call("GET", f"{BASE}/audit", who="gl-viewer")).json()
    assert entries["next"] is None
    assert [(e["action"], e["version"], e["actor"], e["source"]) for e in entries["data"]] == [
        ("activate", 1, "client:gl-publisher", "api"),
        ("activate", 2, "client:gl-publisher", "api"),
        ("draft", 2, "client:gl-editor", "api"),
        ("apply", 1, "cmc apply", "cli"),
    ]
    summaries = [e["summary"] for e in entries["data"]]
    assert (
        summaries[2]
        == "draft 2 against active 1: rules added: 'big spender'; rules changed: 'mid-basket coupon'"
    )
    assert (
        summaries[1]
        == "version 2 active (was 1): rules added: 'big spender'; rules changed: 'mid-basket coupon'"
    )
    assert (
        summaries[0]
        == "version 1 active (was 2): rules removed: 'big spender'; rules changed: 'mid-basket coupon'"
    )

    assert summaries[3].startswith("version 1 active: widgets added: 1, 2; cfsTemplates added: 7;")
    # Blue Door's trail holds only its own apply.
    other = (await merchant.call("GET", f"{OTHER}/audit", who="bd-publisher")).json()["data"]
    assert [e["action"] for e in other] == ["apply"]


async def test_the_audit_trail_pages_with_a_cursor(merchant: Merchant) -> None:
    document = await merchant.document()
    for n in range(60):
        document["rules"][1]["priority"] = n
        await merchant.draft(document)
    first = (await merchant.call("GET", f"{BASE}/audit")).json()
    assert len(first["data"]) == 50
    assert first["data"][0]["version"] == 61
    second = (await merchant.call("GET", f"{BASE}/audit", params={"cursor": first["next"]})).json()
    assert [e["version"] for e in second["data"]] == [*range(11, 1, -1), 1]
    assert second["next"] is None
    assert (await merchant.call("GET", f"{BASE}/audit", params={"cursor": "x"})).status_code == 400


async def test_cmc_apply_makes_a_version_and_an_audit_entry(merchant: Merchant, tmp_path: Path) -> None:
    # Re-applying the same file changes nothing; a merchant's activation survives it.
    two = await merchant.draft(changed_rules(await merchant.document()))
    assert (await merchant.activate(two, 1)).status_code == 200
    report = await asyncio.to_thread(apply_registry, merchant.api.settings, MERCHANTS)
    assert report.changed is False
    assert (await merchant.call("GET", f"{BASE}/marketing")).headers["etag"] == '"2"'

    edited = tmp_path / "edited.yaml"
    edited.write_text(MERCHANTS.read_text().replace("between: [15, 50]", "between: [10, 50]"))
    report = await asyncio.to_thread(apply_registry, merchant.api.settings, edited)
    assert report.inserted["marketing_versions"] == 1
    active = await merchant.call("GET", f"{BASE}/marketing")
    assert active.headers["etag"] == '"3"'
    assert (active.json()["data"]["source"], active.json()["data"]["createdBy"]) == ("cli", "cmc apply")
    assert active.json()["data"]["document"]["rules"][0]["when"]["all"][0]["amount"] == {
        "between": ["10", "50"]
    }
    [entry] = (await merchant.call("GET", f"{BASE}/audit")).json()["data"][:1]
    assert (entry["action"], entry["version"], entry["actor"], entry["source"]) == (
        "apply",
        3,
        "cmc apply",
        "cli",
    )
    assert entry["summary"] == (
        "version 3 active (was 2): rules removed: 'big spender'; rules changed: 'mid-basket coupon'"
    )


async def test_apply_refuses_to_remove_a_location_the_live_version_names(
    merchant: Merchant, tmp_path: Path
) -> None:
    document = await merchant.document()
    document["rules"][1]["locations"] = ["loc6"]
    two = await merchant.draft(document)
    assert (await merchant.activate(two, 1)).status_code == 200
    text = MERCHANTS.read_text()
    start = text.index("          - id: loc6")
    without = tmp_path / "without-loc6.yaml"
    without.write_text(text[:start] + text[text.index("        merchantClients:") :])
    with pytest.raises(RegistryError, match=r"active marketing version 2 .*loc6"):
        await asyncio.to_thread(apply_registry, merchant.api.settings, without)


# --- idempotency --------------------------------------------------------------------------------


async def test_a_repeated_post_with_its_key_replays_the_answer(merchant: Merchant) -> None:
    document = changed_rules(await merchant.document())
    key = {"Idempotency-Key": "draft-1"}
    first = await merchant.call(
        "POST", f"{BASE}/marketing/versions", headers=key, json={"document": document}
    )
    again = await merchant.call(
        "POST", f"{BASE}/marketing/versions", headers=key, json={"document": document}
    )
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    listing = (await merchant.call("GET", f"{BASE}/marketing/versions")).json()["data"]
    assert [v["version"] for v in listing] == [2, 1]

    other = await merchant.call("POST", f"{BASE}/marketing/versions", headers=key,
                                json={"document": document, "note": "changed"})  # fmt: skip
    assert other.status_code == 422, other.text
    # Keys belong to their caller: the editor's same key is a new request.
    editor = await merchant.call("POST", f"{BASE}/marketing/versions", who="gl-editor", headers=key,
                                 json={"document": document})  # fmt: skip
    assert editor.json()["data"]["version"] == 3

    activate = {"Idempotency-Key": "go-live", "If-Match": '"1"'}
    live = await merchant.call("POST", f"{BASE}/marketing/versions/2/activate", headers=activate)
    retry = await merchant.call("POST", f"{BASE}/marketing/versions/2/activate", headers=activate)
    assert (live.status_code, retry.status_code) == (200, 200), retry.text
    assert retry.content == live.content
    audit = (await merchant.call("GET", f"{BASE}/audit")).json()["data"]
    assert [e["action"] for e in audit].count("activate") == 1


async def test_concurrent_retries_with_one_key_make_one_version(merchant: Merchant) -> None:
    document = changed_rules(await merchant.document())
    key = {"Idempotency-Key": "burst"}
    answers = await asyncio.gather(*(
        merchant.call("POST", f"{BASE}/marketing/versions", headers=key, json={"document": document})
        for _ in range(8)
    ))  # fmt: skip
    assert {a.status_code for a in answers} == {201}, [a.text for a in answers]
    assert len({a.content for a in answers}) == 1
    listing = (await merchant.call("GET", f"{BASE}/marketing/versions")).json()["data"]
    assert [v["version"] for v in listing] == [2, 1]


async def test_concurrent_drafts_get_distinct_numbers(merchant: Merchant) -> None:
    document = await merchant.document()
    answers = await asyncio.gather(*(merchant.draft(document) for _ in range(6)))
    assert sorted(answers) == [2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize("key", ["", "x" * 201])
async def test_a_bad_idempotency_key_is_400(merchant: Merchant, key: str) -> None:
    answer = await merchant.call("POST", f"{BASE}/marketing/versions", headers={"Idempotency-Key": key},
                                 json={"document": {}})  # fmt: skip
    assert answer.status_code == 400, answer.text


# --- simulation ---------------------------------------------------------------------------------

CUSTOMER_A = {
    "id": "A",
    "firstName": "Ann",
    "contacts": [{"email": "a@example.com", "phone": "(415) 555-0101"}],
}
CUSTOMER_B = {"id": "B", "firstName": "Bob", "contacts": [{"email": "b@example.com"}]}
EDIBLES = [{"productId": "p-1", "productName": "Gummies", "productCategory": "Edibles", "quantity": 2}]
GEAR = [{"productId": "p-3", "productName": "Mug", "productCategory": "Gear", "quantity": 1}]

# (days after T0, customer, amount, type, products): the stored history the simulation replays.
HISTORY: list[tuple[float, dict[str, Any] | None, float, str, list[dict[str, Any]]]] = [
    (-40, CUSTOMER_A, 100.00, "Sale", GEAR),  # before the window: counts in A's lifetime spend only
    (-10, CUSTOMER_A, 23.47, "Sale", GEAR),
    (-9, CUSTOMER_B, 60.00, "Sale", GEAR),
    (-8, CUSTOMER_A, 30.00, "Sale", GEAR),
    (-7, None, 25.00, "Sale", GEAR),
    (-6, CUSTOMER_B, 18.00, "Sale", EDIBLES),
    (-5, CUSTOMER_A, -23.47, "Refund", []),
]


async def seed_history(api: Api, clock: ManualClock) -> None:
    for n, (days, customer, amount, kind, products) in enumerate(HISTORY):
        clock.now = T0 + timedelta(days=days)
        api._tokens.clear()  # the clock jumped: get tokens valid at the new time
        body = seed_transaction(
            transactionId=f"hist-{n}", transactionAmount=amount, transactionType=kind, products=products,
            transactionDate=clock.now.isoformat(), customer=customer, loyalty=None,
        )  # fmt: skip
        answer = await api.tender(body)
        assert answer.status_code == 200, answer.text
    clock.now = T0


async def test_simulation_replays_stored_sales_against_the_active_version(
    api_factory: Callable[..., Any],
) -> None:
    clock = ManualClock(T0)
    async with api_factory(registry=MERCHANTS, clock=clock) as api:
        await seed_history(api, clock)
        merchant = Merchant(api)
        live = await merchant.document()
        changed = changed_rules(live)
        changed["rules"] = [changed["rules"][0], changed["rules"][1], changed["rules"][2]]
        two = await merchant.draft(changed)
        counts_before = await _counts(api)
        answer = await merchant.call(
            "POST", f"{BASE}/marketing/versions/{two}/simulate", who="gl-editor", json={}
        )
        assert answer.status_code == 200, answer.text
        result = answer.json()["data"]
        assert await _counts(api) == counts_before  # wrote nothing

    assert (result["version"], result["activeVersion"]) == (2, 1)
    assert result["from"].startswith("2026-10-02T12:00:00")  # 30 days before now
    assert (result["sales"], result["truncated"], result["skipped"]) == (6, False, 0)
    by_rule = {r["rule"]: (r["version"], r["active"], r["changed"]) for r in result["rules"]}
    assert list(by_rule) == ["mid-basket coupon", "edibles fan", "big spender"]
    # By hand: version 1 fires the coupon for A (day -10; day -8 is within its 7-day limit) and for B
    # (day -6; 60.00 is above 50); never for the anonymous sale (limited rules need a customer).
    # Version 2 has no limit and a band up to 70: days -10, -9, -8, -7 and -6. Messages: SMS and email
    # for A, email only for B, none for the anonymous sale. "big spender" (lifetime >= 75) fires for A
    # on days -10 (100 + 23.47) and -8 (153.47), and for B on day -6 (60 + 18).
    assert by_rule["mid-basket coupon"] == (counts(5, 6, 2), counts(2, 3, 2), True)
    assert by_rule["edibles fan"] == (counts(1, 0, 1), counts(1, 0, 1), False)
    assert by_rule["big spender"] == (counts(3, 0, 2), counts(0, 0, 0), True)
    assert result["differing"] == 5
    samples = result["samples"]
    assert [s["transactionId"] for s in samples] == ["hist-1", "hist-2", "hist-3", "hist-4", "hist-5"]
    first = samples[0]
    assert first["version"]["fired"] == ["mid-basket coupon", "big spender"]
    assert first["active"]["fired"] == ["mid-basket coupon"]
    assert "FIRED" in first["version"]["text"] and "big spender" in first["version"]["text"]
    third = samples[2]
    assert third["active"]["fired"] == []
    assert any(t["outcome"] == "limited" for t in third["active"]["explanation"])


async def test_simulation_window_and_limit(api_factory: Callable[..., Any]) -> None:
    clock = ManualClock(T0)
    async with api_factory(registry=MERCHANTS, clock=clock) as api:
        await seed_history(api, clock)
        merchant = Merchant(api)
        path = f"{BASE}/marketing/versions/1/simulate"
        window = {
            "from": (T0 - timedelta(days=9, hours=1)).isoformat(),
            "to": (T0 - timedelta(days=6, hours=1)).isoformat(),
        }
        result = (await merchant.call("POST", path, json=window)).json()["data"]
        assert (result["sales"], result["differing"], result["samples"]) == (3, 0, [])  # days -9, -8, -7
        limited = (await merchant.call("POST", path, json={"limit": 2})).json()["data"]
        assert (limited["sales"], limited["truncated"]) == (2, True)
        for bad in ({"from": window["to"], "to": window["from"]}, {"limit": 0}, {"limit": 10_001},
                    {"from": "2026-10-01T00:00:00"}, {"to": "soon"}, {"window": 3}):  # fmt: skip
            answer = await merchant.call("POST", path, json=bad)
            assert answer.status_code == 400, (bad, answer.text)


def counts(firings: int, messages: int, customers: int) -> dict[str, int]:
    return {"firings": firings, "messages": messages, "customers": customers}


async def _counts(api: Api) -> tuple[int, ...]:
    written = ("transactions", "rule_firings", "messages", "short_links", "profiles", "marketing_versions",
               "marketing_audit", "idempotency_keys")  # fmt: skip
    return tuple([await count_rows(api, table) for table in written])


# --- hostile rules: each a 400 naming its field, never a 500 ------------------------------------


def _nested(levels: int, kind: str) -> object:
    """A condition ``levels`` deep (``kind``: all, not), or (``list``) lists ``levels`` deep around a 1."""
    if kind == "list":
        value: object = 1
        for _ in range(levels):
            value = [value]
        return value
    condition: object = {"amount": {"gte": 1}}
    for _ in range(levels - 1):
        condition = {"not": condition} if kind == "not" else {kind: [condition]}
    return condition


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"holdoutPercent": 51}, "rules[2].holdoutPercent", "must be at most 50"),
        ({"holdoutPercent": "abc"}, "rules[2].holdoutPercent", "must be an integer, not 'abc'"),
        ({"limit": {"perCustomer": 1, "per": "99999999999d"}}, "rules[2].limit.per", "at most 3650d"),
        ({"limit": {"perCustomer": 1, "per": "9" * 40 + "s"}}, "rules[2].limit.per", "at most 3650d"),
        ({"when": _nested(200, "not")}, "rules[2].when" + ".not" * 32, "nests deeper than 32"),
        ({"when": _nested(200, "all")}, "rules[2].when" + ".all[0]" * 32, "nests deeper than 32"),
        ({"priority": _nested(300, "list")}, "rules[2].priority", "must be an integer, not [[[[...]]]]"),
        ({"priority": 2**60}, "rules[2].priority", "must be between"),
        ({"name": "half/half"}, "rules[2].name", 'must not contain "/"'),
        ({"name": "bell\x07"}, "rules[2].name", "must not contain control characters"),
        ({"name": "x" * 201}, "rules[2].name", "at most 200 characters"),
    ],
)  # fmt: skip
async def test_a_hostile_rule_is_a_400_naming_its_field(
    merchant: Merchant, fields: dict[str, Any], field: str, message: str
) -> None:
    document = await merchant.document()
    document["rules"].append({"name": "hostile", "then": {"qrWidget": 1}, **fields})
    answer = await merchant.call(
        "POST", f"{BASE}/marketing/versions", who="gl-editor", json={"document": document}
    )
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    errors = answer.json()["errors"]
    assert list(errors) == [field], errors
    (text,) = errors[field]
    assert message in text, text
    listing = (await merchant.call("GET", f"{BASE}/marketing/versions")).json()["data"]
    assert len(listing) == 1  # nothing stored
