"""``POST /connect/token``: OAuth2 client credentials, as ClearLine's identity server answers them.

POS clients get ``scope=pos_integration``, merchant clients ``scope=merchant``; wrong guesses are
throttled and cost the same time for known and unknown ids (``cmc.login``).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import msgspec
from litestar import Response, post

from cmc import auth
from cmc.api import HttpRequest
from cmc.api.services import Services
from cmc.errors import UnsupportedMediaType
from cmc_client import wire

_encode = msgspec.json.Encoder().encode


@post("/connect/token", status_code=200)
async def token(request: HttpRequest) -> Response[bytes]:
    """Exchange HTTP Basic client credentials for a Bearer token (a POS system's, or a merchant company's)."""
    services = Services.of(request)
    media = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("Send the token request as application/x-www-form-urlencoded.")
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
    client_id, secret = auth.parse_basic(request.headers.get("authorization"))
    asked = auth.check_grant(form)
    address = request.client.host if request.client else "unknown"
    client = await services.login.client(client_id, secret, address=address)
    scope = auth.scope_for(client, asked)
    access_token = services.tokens.issue(client, now=services.clock())
    answer = wire.TokenResponse(
        access_token=access_token, expires_in=int(services.tokens.ttl.total_seconds()), scope=scope
    )
    return Response(_encode(answer), media_type="application/json", headers={"Cache-Control": "no-store"})
