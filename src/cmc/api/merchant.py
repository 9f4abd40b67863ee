"""The merchant API: a company's marketing versions, their simulation and activation, the audit trail.

Every path is under ``/v1/pos/{posSystemId}/companies/{companyId}`` and needs a merchant token of that
company (``scope=merchant``, or a console user's): another company's path is 404, a POS token 403, a
role without the right 403 (``cmc.roles``). POSTs honour ``Idempotency-Key`` (``merchant.idempotency``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from litestar import Response, get, post

from cmc import auth
from cmc.api import HttpRequest
from cmc.api.body import decode_json
from cmc.api.params import in_years, version_number, whole_number
from cmc.api.services import Services
from cmc.errors import BadRequest, PreconditionRequired
from cmc.merchant import audit, idempotency, service, simulation, wire
from cmc.merchant.versions import Version
from cmc.roles import Right

T = TypeVar("T")
BASE = "/v1/pos/{pos_system_id:str}/companies/{company_id:str}"
JSON = "application/json"
_encode = msgspec.json.Encoder().encode
_new_version = msgspec.json.Decoder(wire.NewVersion)
_simulation = msgspec.json.Decoder(wire.SimulationRequest)


class _Call:
    """An authorised call: the services, the caller and the company it acts on."""

    def __init__(self, request: HttpRequest, principal: auth.Principal) -> None:
        self.request = request
        self.services = Services.of(request)
        self.principal = principal
        assert principal.company_id is not None
        self.pos_system_id = principal.pos_system_id
        self.company_id = principal.company_id

    @property
    def actor(self) -> service.Actor:
        return service.Actor(self.principal.actor, "console" if self.principal.kind == "user" else "api")

    @property
    def base(self) -> str:
        return f"/v1/pos/{self.pos_system_id}/companies/{self.company_id}"

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(conn, posSystemId, companyId, *args)`` in a read transaction."""
        return await self.services.db.read(fn, self.pos_system_id, self.company_id, *args, **kwargs)

    def locations(self) -> list[str]:
        return self.services.directory.current.company_locations(self.pos_system_id, self.company_id)

    def key(self, body: bytes) -> idempotency.Key | None:
        headers = self.request.headers
        return idempotency.key_of(
            headers.get(idempotency.HEADER),
            pos_system_id=self.pos_system_id,
            company_id=self.company_id,
            actor=self.principal.actor,
            parts=[self.request.method.encode(), self.request.url.path.encode(), body,
                   (headers.get("if-match") or "").encode()],
        )  # fmt: skip


async def _call(request: HttpRequest, right: Right) -> _Call:
    """The caller of this merchant path, if its token may ``right`` at the path's company."""
    services = Services.of(request)
    pos_system_id, company_id = request.path_params["pos_system_id"], request.path_params["company_id"]
    principal = await services.tokens.verify(
        request.headers.get("authorization"), now=services.clock().timestamp()
    )
    auth.require_company(principal, pos_system_id, company_id, right)
    return _Call(request, principal)


def _answer(answer: idempotency.Answer) -> Response[bytes]:
    headers = dict(answer.headers)
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(answer.body, status_code=answer.status, media_type=JSON, headers=headers)


def _etag(version: int) -> str:
    return f'"{version}"'


def _detail(found: Version) -> wire.VersionAnswer:
    return wire.VersionAnswer(msgspec.convert(found, wire.VersionDetail, from_attributes=True))


def if_match(header: str | None) -> set[int] | None:
    """The versions ``If-Match`` names (None for ``*``: whichever is active); missing is 428."""
    if header is None or not header.strip():
        raise PreconditionRequired()
    if header.strip() == "*":
        return None
    tags = set()
    for tag in header.split(","):
        text = tag.strip().removeprefix("W/").strip('"')
        if (number := whole_number(text)) is not None:
            tags.add(number)
    return tags


@get(BASE + "/marketing")
async def active_marketing(request: HttpRequest) -> Response[bytes]:
    """The active marketing document, with its version as ``ETag``."""
    call = await _call(request, "read")
    found = await call.read(service.active)
    return Response(_encode(_detail(found)), media_type=JSON, headers={"ETag": _etag(found.version)})


@get(BASE + "/marketing/versions")
async def list_versions(request: HttpRequest) -> Response[bytes]:
    """Every version, newest first."""
    call = await _call(request, "read")
    found = await call.read(service.listing)
    listing = wire.VersionList([msgspec.convert(v, wire.VersionInfo, from_attributes=True) for v in found])
    return Response(_encode(listing), media_type=JSON)


@post(BASE + "/marketing/versions", status_code=201)
async def create_version(request: HttpRequest) -> Response[bytes]:
    """A new draft from ``{document, note?}``; every problem of an invalid document at once (400)."""
    call = await _call(request, "draft")
    body = await decode_json(request, _new_version)
    document = service.check_draft(body.document, locations=call.locations())
    now = call.services.clock()

    def perform(conn: idempotency.Transaction) -> idempotency.Answer:
        number = service.create_draft(
            conn, call.pos_system_id, call.company_id, document, actor=call.actor, note=body.note, now=now
        )
        answer = wire.DraftAnswer(wire.Draft(number))
        location = f"{call.base}/marketing/versions/{number}"
        return idempotency.Answer(201, _encode(answer), {"Location": location})

    return _answer(await idempotency.once(call.services.db, call.key(await request.body()), perform, now=now))


@get(BASE + "/marketing/versions/{version:str}")
async def get_version(request: HttpRequest) -> Response[bytes]:
    """One version's document and status."""
    call = await _call(request, "read")
    found = await call.read(service.version, version_number(request.path_params["version"]))
    return Response(_encode(_detail(found)), media_type=JSON)


@post(BASE + "/marketing/versions/{version:str}/simulate", status_code=200)
async def simulate_version(request: HttpRequest) -> Response[bytes]:
    """Replay stored sales through this version and the active one; writes nothing."""
    call = await _call(request, "simulate")
    raw = await request.body()
    body = await decode_json(request, _simulation) if raw.strip() else wire.SimulationRequest()
    now = call.services.clock()
    end = in_years(body.to, "to") or now
    start = in_years(body.from_, "from") or end - simulation.DEFAULT_WINDOW
    if start >= end:
        raise BadRequest("from must be before to.", errors={"from": ["must be before to"]})
    number = version_number(request.path_params["version"])
    services = call.services

    async def compute() -> idempotency.Answer:
        result = await simulation.simulate_version(
            services.db, services.directory.current, call.pos_system_id, call.company_id, number,
            window=simulation.Window(start, end, body.limit), slots=services.simulations,
        )  # fmt: skip
        return idempotency.Answer(200, _encode(wire.SimulationAnswer(result)))

    return _answer(await idempotency.cached(services.db, call.key(raw), compute, now=now))


@post(BASE + "/marketing/versions/{version:str}/activate", status_code=200)
async def activate_version(request: HttpRequest) -> Response[bytes]:
    """Make this version live; ``If-Match`` names the active version (412 when stale, 428 when missing)."""
    call = await _call(request, "activate")
    expected = if_match(request.headers.get("if-match"))
    number = version_number(request.path_params["version"])
    now = call.services.clock()

    def perform(conn: idempotency.Transaction) -> idempotency.Answer:
        done = service.activate(
            conn, call.pos_system_id, call.company_id, number, expected=expected, actor=call.actor,
            locations=call.locations(), now=now,
        )  # fmt: skip
        answer = wire.ActivatedAnswer(wire.Activated(done.version, done.previous))
        return idempotency.Answer(200, _encode(answer), {"ETag": _etag(done.version)})

    return _answer(await idempotency.once(call.services.db, call.key(await request.body()), perform, now=now))


@get(BASE + "/audit")
async def audit_trail(request: HttpRequest) -> Response[bytes]:
    """The audit trail, newest first, a page at a time (``?cursor=`` from the previous page's ``next``)."""
    call = await _call(request, "read")
    cursor = request.query_params.get("cursor")
    after = whole_number(cursor, digits=18)
    if cursor is not None and after is None:
        raise BadRequest("cursor must be a previous page's next.", errors={"cursor": ["unknown cursor"]})
    entries, following = await call.read(audit.page, after=after)
    page = wire.AuditPage(
        entries,
        None if following is None else str(following),
    )
    return Response(_encode(page), media_type=JSON)


ROUTES = [
    active_marketing,
    list_versions,
    create_version,
    get_version,
    simulate_version,
    activate_version,
    audit_trail,
]
