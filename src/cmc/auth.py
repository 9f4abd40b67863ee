"""OAuth2 client credentials: ``/connect/token`` issues signed JWTs; routes check who may do what.

Tokens are HS256 JWTs (PyJWT), signed with ``CMC_JWT_SECRET`` or, when unset, a random key created
once and kept in the database (``meta``), so every process sharing it agrees. Three kinds:

- ``pos_integration``: a POS client acting for its POS system (the POS API, ``/pos/...``);
- ``merchant``: a merchant's API client, bound to one company (the merchant API, ``/v1/pos/...``);
- ``console``: a console user of one company (issued by the console's login).

Each token carries a fingerprint of the stored hash of the credential it was issued for, checked
against the registry snapshot on every request: a rotated secret, a changed password or a removed
client or user ends its tokens as soon as the snapshot has the change (within
``CMC_REGISTRY_REFRESH_SECONDS`` in every process, at once on PostgreSQL). A merchant's role is read
from the snapshot too, so a changed role counts at once.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import jwt

from cmc import signouts
from cmc.errors import BadRequest, Forbidden, InvalidClient, NotFound, Unauthorized
from cmc.registry import DirectoryCache
from cmc.registry.snapshot import Client, ConsoleUser, Directory
from cmc.roles import Right, Role, may
from cmc.store.database import Database

POS_SCOPE = "pos_integration"
MERCHANT_SCOPE = "merchant"
CONSOLE_SCOPE = "console"
SCOPE = POS_SCOPE
ALGORITHM = "HS256"
_VERIFIED_CACHE_SIZE = 10_000

Kind = Literal["pos", "merchant", "user"]
_SCOPES: dict[Kind, str] = {"pos": POS_SCOPE, "merchant": MERCHANT_SCOPE, "user": CONSOLE_SCOPE}
_KINDS = {scope: kind for kind, scope in _SCOPES.items()}


@dataclass(frozen=True)
class Principal:
    """Who is calling: a POS client, a merchant client or a console user, as the token says.

    ``role`` is the one the registry holds now (merchants only); ``company_id`` is None for POS clients.
    """

    kind: Kind
    subject: str
    """The client id, or the console user's email."""
    pos_system_id: str
    company_id: str | None
    fingerprint: str
    expires_at: float
    role: Role | None = None

    @property
    def actor(self) -> str:
        """How the audit trail names this caller: ``client:<id>`` or ``user:<email>``."""
        return f"{'user' if self.kind == 'user' else 'client'}:{self.subject}"


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


def check_grant(form: dict[str, str]) -> str | None:
    """Validate the token request form; return the scope asked for (None: the client's own)."""
    grant = form.get("grant_type")
    if grant != "client_credentials":
        raise BadRequest(
            "Only grant_type=client_credentials is supported.",
            errors={"grant_type": ["must be client_credentials"]},
        )
    scopes = (form.get("scope") or "").split()
    if not scopes:
        return None
    if len(scopes) != 1 or scopes[0] not in (POS_SCOPE, MERCHANT_SCOPE):
        raise BadRequest(
            f"Ask for scope={POS_SCOPE} (POS clients) or scope={MERCHANT_SCOPE} (merchant clients).",
            errors={"scope": [f"must be {POS_SCOPE} or {MERCHANT_SCOPE}"]},
        )
    return scopes[0]


def scope_for(client: Client, asked: str | None) -> str:
    """The scope ``client`` gets: its own kind's; asking for the other kind's is 400."""
    own = MERCHANT_SCOPE if client.company_id is not None else POS_SCOPE
    if asked is not None and asked != own:
        raise BadRequest(f"This client may only get scope={own}.", errors={"scope": [f"must be {own}"]})
    return own


class Tokens:
    """Issues and verifies access tokens with one key, against the registry snapshot."""

    def __init__(self, key: str, *, ttl: timedelta, directory: DirectoryCache, db: Database) -> None:
        self._key = key
        self.ttl = ttl
        self._directory = directory
        self._db = db
        self._verified: dict[str, Principal] = {}

    def issue(self, client: Client, *, now: datetime) -> str:
        """A signed token for an API client (its POS system; a merchant client's company too)."""
        kind: Kind = "merchant" if client.company_id is not None else "pos"
        return self._sign(
            kind, client.client_id, client.pos_system_id, client.company_id, client.fingerprint, now
        )

    def issue_for_user(self, user: ConsoleUser, *, now: datetime) -> str:
        """A signed token for a console user (what the console's login hands out)."""
        return self._sign("user", user.email, user.pos_system_id, user.company_id, user.fingerprint, now)

    def _sign(
        self, kind: Kind, subject: str, pos: str, company: str | None, fingerprint: str, now: datetime
    ) -> str:
        issued = int(now.timestamp())
        claims: dict[str, Any] = {
            "sub": subject,
            "pos": pos,
            "scope": _SCOPES[kind],
            "fp": fingerprint,
            "iat": issued,
            "exp": issued + int(self.ttl.total_seconds()),
            # Two tokens issued in one second differ: signing out one must not sign out the next.
            "jti": secrets.token_urlsafe(12),
        }
        if company is not None:
            claims["company"] = company
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    async def verify(self, header: str | None, *, now: float) -> Principal:
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
        # Only console sessions can be signed out; POS and merchant tokens cost no read here.
        if principal.kind == "user" and await self._db.read(signouts.is_signed_out, token):
            self._verified.pop(token, None)
            raise Unauthorized("This console session was signed out: sign in again.")
        current = _as_registered(principal, self._directory.current)
        if current is None:
            # The credential may have changed after this process's last reload (a token issued by
            # another process for a new secret): look once more, at the registry as it is now.
            await self._directory.catch_up()
            current = _as_registered(principal, self._directory.current)
        if current is None:
            self._verified.pop(token, None)
            raise Unauthorized(
                "The access token's credential was changed or removed: get a new one at /connect/token."
            )
        return current

    def _decode(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                # The app clock decides expiry (checked below); PyJWT would check iat against the wall clock.
                options={"require": ["exp", "sub", "pos", "fp"], "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError:
            raise Unauthorized("The access token is invalid.") from None
        kind = _KINDS.get(claims.get("scope"))  # type: ignore[arg-type]
        company = claims.get("company")
        if kind is None or (kind == "pos") != (company is None):
            raise Unauthorized("The access token has no scope CMC knows.")
        return Principal(
            kind=kind,
            subject=str(claims["sub"]),
            pos_system_id=str(claims["pos"]),
            company_id=None if company is None else str(company),
            fingerprint=str(claims["fp"]),
            expires_at=claims["exp"],
        )


def _as_registered(principal: Principal, directory: Directory) -> Principal | None:
    """The principal with its current role, if its credential is still the one the token was issued for."""
    wanted = (principal.pos_system_id, principal.company_id, principal.fingerprint)
    if principal.kind == "user":
        assert principal.company_id is not None
        user = directory.users.get((principal.pos_system_id, principal.company_id, principal.subject))
        if user is None or (user.pos_system_id, user.company_id, user.fingerprint) != wanted:
            return None
        return dataclasses.replace(principal, role=user.role)
    client = directory.clients.get(principal.subject)
    if client is None or (client.pos_system_id, client.company_id, client.fingerprint) != wanted:
        return None
    return dataclasses.replace(principal, role=client.role) if client.role != principal.role else principal


def require_pos_system(principal: Principal, pos_system_id: str) -> None:
    """A POS token, for the POS system in the path (compared case-insensitively)."""
    if principal.kind != "pos":
        raise Forbidden("Merchant tokens may not use the POS API: use a POS client's token.")
    if principal.pos_system_id.lower() != pos_system_id.lower():
        raise Forbidden(f"This token acts for POS system {principal.pos_system_id!r}, not {pos_system_id!r}.")


def require_company(principal: Principal, pos_system_id: str, company_id: str, right: Right) -> Role:
    """A merchant token of this company whose role has ``right``; returns the role.

    Another company's path is 404 with nothing about it (as for a company that does not exist); a
    POS token is 403; a role without the right is 403.
    """
    if principal.kind == "pos":
        raise Forbidden("POS tokens may not use the merchant API: use a merchant client's token.")
    if principal.pos_system_id.lower() != pos_system_id.lower() or principal.company_id != company_id:
        raise NotFound("No such company.")
    assert principal.role is not None
    if not may(principal.role, right):
        raise Forbidden(f"The {principal.role} role may not {right}.")
    return principal.role
