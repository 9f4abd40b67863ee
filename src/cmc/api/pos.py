"""The POS API around the tender: reading a transaction back, the settings lookup, the CFS carousel URL.

StartInteraction and SendTransaction, the two calls of every tender, are served by ``cmc.api.hot``.
"""

from __future__ import annotations

import msgspec
from litestar import get, post
from litestar.params import FromPath
from litestar.response.base import ASGIResponse

from cmc import auth, interactions, screens, transactions
from cmc.api import HttpRequest
from cmc.api.body import decode_json
from cmc.api.services import Services
from cmc.errors import BadRequest, NotFound, TransactionNotFound
from cmc.registry import Directory, PosSystem
from cmc_client import wire

_settings_decoder = msgspec.json.Decoder(wire.SettingsLookupRequest)
_carousel_decoder = msgspec.json.Decoder(wire.CarouselRequest)
_encode = msgspec.json.Encoder().encode
JSON = "application/json"


def json_response(body: bytes) -> ASGIResponse:
    """A 200 JSON answer, built as Litestar's low-level response: the hot routes skip its conversion step."""
    return ASGIResponse(body=body, media_type=JSON, status_code=200)


async def pos_system_of(services: Services, authorization: str | None, pos_system_id: str) -> PosSystem:
    """Authenticate the caller (``Authorization`` header) and return the POS system it acts for."""
    principal = await services.tokens.verify(authorization, now=services.clock().timestamp())
    auth.require_pos_system(principal, pos_system_id)
    pos = services.directory.current.pos_systems.get(principal.pos_system_id)
    if pos is None:
        raise NotFound(f"POS system {pos_system_id!r} is not registered with CMC.")
    return pos


@get("/pos/{pos_system_id:str}/transaction/{transaction_id:str}")
async def get_transaction(
    request: HttpRequest, pos_system_id: FromPath[str], transaction_id: FromPath[str]
) -> ASGIResponse:
    """The stored SendTransaction answer of a transaction, byte for byte (reconciliation)."""
    services = Services.of(request)
    pos = await pos_system_of(services, request.headers.get("authorization"), pos_system_id)
    wanted = request.query_params.get("posCompanyId")
    companies = [c for (p, c) in services.directory.current.companies if p == pos.id and wanted in (None, c)]
    found = await services.db.query(
        transactions.stored_responses,
        pos_system_id=pos.id,
        company_ids=companies,
        transaction_id=transaction_id,
    )
    if not found:
        raise TransactionNotFound(f"CMC has no transaction {transaction_id!r} for POS system {pos.id!r}.")
    if len(found) > 1:
        raise BadRequest(
            "Several companies of this POS system have this transactionId: name one with posCompanyId.",
            errors={"posCompanyId": [f"one of {', '.join(sorted(found))}"]},
        )
    return json_response(next(iter(found.values())))


@get("/v2/pos/{pos_system_id:str}/settings/lookup")
async def settings_lookup(request: HttpRequest, pos_system_id: FromPath[str]) -> ASGIResponse:
    """Settings lookup, guide form (no body): the POS system's feature flags."""
    pos = await pos_system_of(Services.of(request), request.headers.get("authorization"), pos_system_id)
    return json_response(_encode(_settings(pos, company_id=None)))


@post("/v2/pos/{pos_system_id:str}/settings/lookup", status_code=200)
async def settings_lookup_for_company(request: HttpRequest, pos_system_id: FromPath[str]) -> ASGIResponse:
    """Settings lookup, API-reference form (``{"posCompanyId"}``)."""
    services = Services.of(request)
    pos = await pos_system_of(services, request.headers.get("authorization"), pos_system_id)
    body = await decode_json(request, _settings_decoder)
    known = (pos.id, body.posCompanyId) in services.directory.current.companies
    return json_response(_encode(_settings(pos, company_id=body.posCompanyId, known=known)))


@get("/pos/{pos_system_id:str}/settings/{pos_company_id:str}")
async def legacy_settings(
    request: HttpRequest, pos_system_id: FromPath[str], pos_company_id: FromPath[str]
) -> ASGIResponse:
    """Legacy settings form: ``{"data": {"settings": {...}}}``."""
    pos = await pos_system_of(Services.of(request), request.headers.get("authorization"), pos_system_id)
    flags = msgspec.convert(pos.settings, wire.CompanySettings)
    return json_response(_encode({"data": {"settings": flags}}))


@post("/v2/pos/{pos_system_id:str}/carousel", status_code=200)
async def carousel(request: HttpRequest, pos_system_id: FromPath[str]) -> ASGIResponse:
    """The URL of a terminal's customer-facing screen, with its pairing credential (ClearLine 2.7)."""
    services = Services.of(request)
    pos = await pos_system_of(services, request.headers.get("authorization"), pos_system_id)
    token = _screen_token(services.directory.current, pos, await decode_json(request, _carousel_decoder))
    url = screens.page_url(services.settings.base_url, token)
    return json_response(_encode(wire.CarouselResponse(data=wire.CarouselData(url=url))))


def _screen_token(directory: Directory, pos: PosSystem, where: wire.CarouselRequest) -> str:
    """The pairing token of the terminal's screen: 404 for an unknown terminal or one without a screen."""
    terminal = where.terminalId
    location = interactions.resolve_terminal(
        directory, pos, location_id=where.posLocationId, terminal_id=terminal, company_id=None
    )
    token = location.screen_tokens.get(terminal)
    if token is None:
        raise NotFound(
            f"Terminal {terminal!r} has no customer-facing screen (it is registered with cfs: false)."
        )
    return token


def _settings(pos: PosSystem, *, company_id: str | None, known: bool = True) -> wire.SettingsResponse:
    return wire.SettingsResponse(
        data=wire.SettingsData(
            posCompanyId=company_id,
            accountStatus=None if company_id is None else ("Active" if known else "AccountNotFound"),
            companySettings=msgspec.convert(pos.settings, wire.CompanySettings),
            notificationSettings=wire.NotificationSettings(),
        )
    )


ROUTES = [
    get_transaction,
    settings_lookup,
    settings_lookup_for_company,
    legacy_settings,
    carousel,
]
