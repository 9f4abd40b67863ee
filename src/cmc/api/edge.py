"""The ASGI edge around the app: case-insensitive paths, request ids, metrics and access logs.

ClearLine's backend is ASP.NET, whose routes match case-insensitively, and its docs write both
``/Pos/...`` and ``/pos/...``; POS integrations use either. The edge rewrites the static segments
of a known route to their canonical case before routing (ids in the path are left as sent).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import structlog

from cmc.api.hot import TEMPLATES as HOT_TEMPLATES
from cmc.api.hot import HotRoutes, route_of
from cmc.api.metrics import Metrics

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]

log = structlog.get_logger("cmc.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


class PathCanon:
    """Maps a request path to its route's canonical casing."""

    def __init__(self, templates: Iterable[str]) -> None:
        self._routes: dict[int, list[list[str | None]]] = {}
        self._seen: dict[str, str] = {}
        for template in templates:
            parts = template.strip("/").split("/")
            shape = [None if p.startswith("{") else p for p in parts]
            self._routes.setdefault(len(parts), []).append(shape)

    def canonical(self, path: str) -> str:
        """``/Pos/pax/StartInteraction`` → ``/pos/pax/startInteraction``; unknown paths unchanged."""
        known = self._seen.get(path)
        if known is None:
            known = self._canonical(path)
            if len(self._seen) < 10_000:  # a POS hits a handful of paths; junk must not grow this
                self._seen[path] = known
        return known

    def _canonical(self, path: str) -> str:
        parts = path.strip("/").split("/")
        for shape in self._routes.get(len(parts), ()):
            if all(s is None or s.lower() == p.lower() for s, p in zip(shape, parts, strict=True)):
                fixed = [p if s is None else s for s, p in zip(shape, parts, strict=True)]
                return "/" + "/".join(fixed)
        return path


class Edge:
    """Wraps the app: rewrites paths, tags each request with an id, measures and logs it.

    ``hot`` serves the tender's two routes itself (``cmc.api.hot``); everything else goes to ``app``.
    """

    def __init__(
        self, app: ASGIApp, *, templates: Iterable[str], metrics: Metrics, access_log: bool, hot: HotRoutes
    ) -> None:
        self.app = app
        self.canon = PathCanon([*templates, *HOT_TEMPLATES.values()])
        self.metrics = metrics
        self.access_log = access_log
        self.hot = hot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = self.canon.canonical(scope["path"])
        if path != scope["path"]:
            scope = {**scope, "path": path, "raw_path": path.encode()}
        request_id = _request_id(scope)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            if (hot := route_of(path)) is not None:
                await self.hot(scope, receive, send_with_id, hot)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("path_template") or "unmatched"
            self.metrics.observe(scope["method"], route, status, elapsed)
            if self.access_log:
                log.info(
                    "request",
                    method=scope["method"],
                    route=route,
                    status=status,
                    ms=round(elapsed * 1000, 2),
                )
            structlog.contextvars.clear_contextvars()


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _REQUEST_ID.match(candidate):
                return candidate
    # A correlation id, not a secret: os.urandom would cost a system call (and a GIL release) per
    # request. Formatted like uuid4().hex.
    return f"{random.getrandbits(128):032x}"
