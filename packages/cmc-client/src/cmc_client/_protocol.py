"""The CMC conversation: token, settings and the request sequence of one tender, as flows (sans-I/O).

Each method is a flow (see ``_steps``): it yields :class:`~cmc_client._steps.Call` steps and returns
what CMC said. Transient failures (network, 5xx, 429, an unreadable answer) surface as
:class:`~cmc_client.TransientError`; refused credentials as :class:`~cmc_client.AuthenticationError`.
"""

from __future__ import annotations

import base64
import email.utils
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar
from urllib.parse import quote, urlencode

import httpx2
import msgspec

from cmc_client import wire
from cmc_client._errors import AuthenticationError, TransientError
from cmc_client._outbox import OutboxEntry
from cmc_client._steps import Call, Flow, local, request
from cmc_client._tender import ENCODER, transaction_body

T = TypeVar("T")
TOKEN_MARGIN = 300.0
"""Renew a token this many seconds before it expires (ClearLine: refresh when under 5 minutes left)."""


@dataclass(frozen=True, slots=True)
class Delivered:
    """CMC accepted the tender; ``raw`` is its answer as received."""

    response: wire.TransactionResponse
    raw: bytes


@dataclass(frozen=True, slots=True)
class Rejected:
    """CMC refused the tender with a 4xx that retrying cannot fix."""

    problem: wire.Problem


@dataclass(frozen=True, slots=True)
class Skipped:
    """The tender must not be sent now: transactions disabled, or the POS is not ``Accepted``."""

    state: Literal["disabled", "not-accepted"]
    reason: str


Outcome = Delivered | Rejected | Skipped
"""What CMC did with a tender."""


class Conversation:
    """Token and settings caches plus the request sequence; one per client, shared by its threads."""

    def __init__(
        self,
        base_url: str,
        pos_system_id: str,
        credentials: tuple[str, str],
        *,
        clock: Callable[[], float],
        settings_ttl: float,
    ) -> None:
        """``credentials`` is the OAuth2 client id and secret; ``clock`` returns seconds since the epoch."""
        self.base = base_url.rstrip("/")
        self.pos = pos_system_id
        secret = base64.b64encode(":".join(credentials).encode()).decode("ascii")
        self._basic = f"Basic {secret}"
        self._clock = clock
        self._settings_ttl = settings_ttl
        self._token: str | None = None
        self._token_renew_at = 0.0
        self._settings: wire.SettingsData | None = None
        self._settings_expire_at = 0.0

    # --- token ---------------------------------------------------------------------------------

    def token(self, *, force: bool = False) -> Flow[str]:
        """A bearer token: the cached one, or a new one from ``/connect/token``."""
        if self._token is not None and not force and self._clock() < self._token_renew_at:
            return self._token
        response = yield from _send(
            Call(
                "POST",
                f"{self.base}/connect/token",
                {"Authorization": self._basic, "Content-Type": "application/x-www-form-urlencoded"},
                b"grant_type=client_credentials&scope=pos_integration",
            )
        )
        _raise_if_transient(response, now=self._clock())
        if response.status_code != 200:
            raise AuthenticationError(f"token request refused: {_problem(response).title}")
        answer = _decode(response, wire.TokenResponse)
        self._token = answer.access_token
        margin = min(TOKEN_MARGIN, answer.expires_in / 2)
        self._token_renew_at = self._clock() + answer.expires_in - margin
        return self._token

    def authorized(self, method: str, path: str, body: bytes | None = None) -> Flow[httpx2.Response]:
        """Make an API call with the bearer token; on 401 re-authenticate once and repeat it."""
        for force in (False, True):
            token = yield from self.token(force=force)
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            response = yield from _send(Call(method, f"{self.base}{path}", headers, body or b""))
            if response.status_code != 401:
                _raise_if_transient(response, now=self._clock())
                return response
            self._token = None
        raise AuthenticationError("CMC answered 401 even with a fresh token")

    # --- settings ------------------------------------------------------------------------------

    def settings(self, *, refresh: bool = False) -> Flow[wire.SettingsData]:
        """The POS system's settings (``GET /v2/pos/{pos}/settings/lookup``), cached ``settings_ttl`` s.

        A server without the lookup (any 4xx) counts as default settings: transactions enabled.
        """
        if self._settings is not None and not refresh and self._clock() < self._settings_expire_at:
            return self._settings
        response = yield from self.authorized("GET", f"/v2/pos/{self.pos}/settings/lookup")
        if response.status_code == 200:
            settings = _decode(response, wire.SettingsResponse).data
        else:
            settings = wire.SettingsData(
                companySettings=wire.CompanySettings(), notificationSettings=wire.NotificationSettings()
            )
        self._settings = settings
        self._settings_expire_at = self._clock() + self._settings_ttl
        return settings

    # --- the tender ------------------------------------------------------------------------------

    def deliver(self, tender: OutboxEntry, *, save_session: Callable[[str], None]) -> Flow[Outcome]:
        """Settings check, startInteraction (unless the tender already has a session), SendTransaction.

        ``save_session`` persists a new session id before it is used (run as local work), so a replay
        sends the identical body. A 404/410 session answer gets one fresh session and the same body again.
        """
        settings = yield from self.settings()
        if not settings.companySettings.isTransactionsEnabled:
            return Skipped("disabled", "CMC settings: isTransactionsEnabled is false")
        session = tender.session_id
        if session is None:
            started = yield from self._start_interaction(tender, save_session)
            if not isinstance(started, str):
                return started
            session = started
        response = yield from self._send_transaction(tender, session)
        if response.status_code in (404, 410):
            started = yield from self._start_interaction(tender, save_session)
            if not isinstance(started, str):
                return started
            response = yield from self._send_transaction(tender, started)
            if response.status_code in (404, 410):
                raise TransientError(f"CMC refused a fresh session too ({response.status_code})")
        return _outcome(response)

    def _send_transaction(self, tender: OutboxEntry, session_id: str) -> Flow[httpx2.Response]:
        body = transaction_body(tender.body, session_id)
        return (yield from self.authorized("POST", f"/pos/{self.pos}/transaction", body))

    def _start_interaction(
        self, tender: OutboxEntry, save_session: Callable[[str], None]
    ) -> Flow[str | Outcome]:
        request = wire.StartInteractionRequest(
            terminalId=tender.terminal_id,
            posLocationId=tender.location_id,
            posCompanyId=tender.company or None,
        )
        response = yield from self.authorized(
            "POST", f"/pos/{self.pos}/startInteraction", ENCODER.encode(request)
        )
        if response.status_code >= 300:
            return Rejected(_problem(response))
        data = _decode(response, wire.StartInteractionResponse).data
        if data.posStatus != "Accepted" or not data.sessionId:
            return Skipped("not-accepted", f"startInteraction answered posStatus {data.posStatus}")
        session_id = data.sessionId
        yield from local(lambda: save_session(session_id))
        return session_id

    # --- reconciliation ------------------------------------------------------------------------

    def recorded(self, transaction_id: str, company: str) -> Flow[bytes | wire.Problem]:
        """CMC's stored SendTransaction answer of a transaction, or the problem CMC answered instead.

        ``GET /pos/{pos}/transaction/{transactionId}[?posCompanyId=]``: 404 when CMC has no such
        transaction, 400 when two companies share the id and ``company`` is empty.
        """
        query = f"?{urlencode({'posCompanyId': company})}" if company else ""
        path = f"/pos/{self.pos}/transaction/{quote(transaction_id, safe='')}{query}"
        response = yield from self.authorized("GET", path)
        if response.status_code == 200:
            return response.content
        return _problem(response)


def _send(call: Call) -> Flow[httpx2.Response]:
    try:
        return (yield from request(call))
    except httpx2.TransportError as exc:
        raise TransientError(f"{type(exc).__name__}: {exc or 'network error'}") from exc


def _outcome(response: httpx2.Response) -> Outcome:
    if response.status_code >= 300:
        return Rejected(_problem(response))
    answer = _decode(response, wire.TransactionResponse)
    if answer.data.posStatus != "Accepted":
        return Skipped("not-accepted", f"SendTransaction answered posStatus {answer.data.posStatus}")
    return Delivered(answer, response.content)


def _decode(response: httpx2.Response, type_: type[T]) -> T:
    try:
        return msgspec.json.decode(response.content, type=type_)
    except msgspec.DecodeError as exc:
        # A proxy's HTML page or a half-written body: not the tender's fault, so try again later.
        raise TransientError(f"unreadable {response.status_code} answer from {response.url}: {exc}") from exc


def _problem(response: httpx2.Response) -> wire.Problem:
    try:
        return msgspec.json.decode(response.content, type=wire.Problem)
    except msgspec.DecodeError:
        return wire.Problem(
            type="about:blank",
            title=response.reason_phrase or f"HTTP {response.status_code}",
            status=response.status_code,
            detail=response.text[:500] or None,
        )


def _raise_if_transient(response: httpx2.Response, *, now: float) -> None:
    status = response.status_code
    if status == 429 or status >= 500:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"), now=now)
        raise TransientError(f"CMC answered {status} {_problem(response).title}", retry_after=retry_after)


def retry_after_seconds(value: str | None, *, now: float) -> float | None:
    """Parse ``Retry-After`` (delta-seconds or an HTTP date) into seconds from ``now``."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)
