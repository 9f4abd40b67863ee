"""OAuth2 client credentials: ``/connect/token`` issues signed JWTs bound to one POS system.

Tokens are HS256 JWTs (PyJWT) carrying the client id, its POS system and the scope, so any process
on any node verifies them without a lookup. The signing key is ``CMC_JWT_SECRET`` or, when unset,
a random key created once and kept in the database (``meta``), so every process sharing it agrees.
Client secrets are checked against the registry snapshot's hashes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from cmc import credentials
from cmc.errors import BadRequest, Forbidden, InvalidClient, Unauthorized
from cmc.registry import store as registry_store
from cmc.store.database import Database

SCOPE = "pos_integration"
ALGORITHM = "HS256"
_VERIFIED_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API client acting for one POS system."""

    client_id: str
    pos_system_id: str
    expires_at: float


def parse_basic(header: str | None) -> tuple[str, str]:
    """``Authorization: Basic base64(id:secret)`` → (id, secret)."""
    if not header or not header[:6].lower() == "basic ":
        raise InvalidClient("Send the client id and secret with HTTP Basic authentication.")
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClient("Malformed Basic credentials.") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep or not client_id:
        raise InvalidClient("Malformed Basic credentials.")
    return client_id, secret


def check_grant(form: dict[str, str]) -> str:
    """Validate the token request form; return the granted scope."""
    grant = form.get("grant_type")
    if grant != "client_credentials":
        raise BadRequest(
            "Only grant_type=client_credentials is supported.",
            errors={"grant_type": ["must be client_credentials"]},
        )
    scopes = (form.get("scope") or SCOPE).split()
    if scopes != [SCOPE]:
        raise BadRequest(f"Only scope={SCOPE} is supported.", errors={"scope": [f"must be {SCOPE}"]})
    return SCOPE


async def authenticate_client(db: Database, client_id: str, secret: str) -> str:
    """Check a client's secret against the stored hash; return its POS system id.

    The hash costs ~50 ms of CPU (scrypt): it runs in a worker thread, never on the event loop.
    """
    client = await db.query(registry_store.client, client_id)
    if client is None or not await asyncio.to_thread(credentials.verify_secret, secret, client.secret_hash):
        raise InvalidClient()
    return client.pos_system_id


class Tokens:
    """Issues and verifies access tokens with one key."""

    def __init__(self, key: str, *, ttl: timedelta) -> None:
        self._key = key
        self.ttl = ttl
        self._verified: dict[str, Principal] = {}

    def issue(self, client_id: str, pos_system_id: str, *, now: datetime) -> str:
        """A signed token for ``client_id`` acting for ``pos_system_id``."""
        issued = int(now.timestamp())
        claims = {
            "sub": client_id,
            "pos": pos_system_id,
            "scope": SCOPE,
            "iat": issued,
            "exp": issued + int(self.ttl.total_seconds()),
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def verify(self, header: str | None, *, now: float) -> Principal:
        """The principal behind ``Authorization: Bearer <token>``, or ``Unauthorized``."""
        if not header or header[:7].lower() != "bearer ":
            raise Unauthorized("A Bearer token is required: get one at /connect/token.")
        token = header[7:].strip()
        # Verifying a JWT costs a HMAC and two JSON decodes; a POS reuses its token for an hour.
        principal = self._verified.get(token)
        if principal is None:
            principal = self._decode(token)
            if len(self._verified) >= _VERIFIED_CACHE_SIZE:
                self._verified.clear()
            self._verified[token] = principal
        if principal.expires_at <= now:
            self._verified.pop(token, None)
            raise Unauthorized("The access token has expired: get a new one at /connect/token.")
        return principal

    def _decode(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                # The app clock decides expiry (checked below); PyJWT would check iat against the wall clock.
                options={"require": ["exp", "sub", "pos"], "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError:
            raise Unauthorized("The access token is invalid.") from None
        if claims.get("scope") != SCOPE:
            raise Unauthorized("The access token lacks the pos_integration scope.")
        return Principal(
            client_id=str(claims["sub"]), pos_system_id=str(claims["pos"]), expires_at=claims["exp"]
        )


def require_pos_system(principal: Principal, pos_system_id: str) -> None:
    """The token's POS system must be the one in the path (compared case-insensitively)."""
    if principal.pos_system_id.lower() != pos_system_id.lower():
        raise Forbidden(f"This token acts for POS system {principal.pos_system_id!r}, not {pos_system_id!r}.")
