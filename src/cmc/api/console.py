"""The merchant console: server-rendered pages for a company's people at ``/console/{pos}/{company}``.

A company's console lives under its own path, as its merchant API does: the login form there checks
the email and password against that company's console users only (``Login.user``), and a session
works only under its own company's path; another company's page or action is 404, the same 404 as
a company that does not exist. Without a session a page redirects to the login form, an action
(POST, htmx) is 401. Actions also need the session's CSRF token and an Origin of CMC
(``cmc.console_session``); roles are the merchant API's (``cmc.roles``): a viewer reads, an editor
also drafts, simulates and retries messages, a publisher also publishes.

The pages call the same use cases as the merchant and analytics APIs (``merchant.service``,
``merchant.simulation``, ``merchant.audit``, ``cmc.analytics``), never the APIs over HTTP. htmx
updates parts of a page: the responses are whole pages, and ``hx-select`` picks the part.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict, TypeVar
from urllib.parse import quote

from litestar import Response, Router, get, post
from litestar.datastructures import CacheControlHeader, FormMultiDict
from litestar.exceptions import HTTPException
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

from cmc import analytics, auth, console_session, signouts, stored_text
from cmc.api import HttpRequest, problems
from cmc.api.html import console_page
from cmc.api.params import version_number, whole_number
from cmc.api.services import Services
from cmc.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PreconditionFailed,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
)
from cmc.merchant import audit, idempotency, service, simulation, wire
from cmc.outbox import optouts as optouts_store
from cmc.roles import Right, may
from cmc.store.buckets import Span
from cmc.web import NEUTRAL, Look, company_look, console_assets, console_format

T = TypeVar("T")
BASE = "/console/{pos_system_id:str}/{company_id:str}"
PERIODS = {"today": 1, "7d": 7, "30d": 30}
"""The overview's windows: today (UTC, by the hour), the last 7 and 30 days (by the day)."""
SIMULATION_DAYS = (7, 30, 90)
STATES = ("queued", "sent", "delivered", "failed", "bounced", "suppressed", "dead")
CHANNELS = ("email", "sms")
OPT_OUTS_SHOWN = 200
SUBMISSION = "_submission"
"""The hidden field of the forms that change something, new at every render: the merchant API's
``Idempotency-Key`` for a page, so that a form sent twice (a double click, a browser resending after
a slow answer) changes the company once and both answers show the one result."""
NAV = (
    ("overview", "", "Overview"),
    ("rules", "/rules", "Rules"),
    ("versions", "/versions", "Versions"),
    ("customers", "/customers", "Customers"),
    ("messages", "/messages", "Messages"),
    ("optouts", "/optouts", "Opt-outs"),
    ("audit", "/audit", "Audit"),
)


class Tenant(TypedDict):
    pos_system_id: str
    company_id: str


class Console:
    """A console request by a signed-in user of the company in its path."""

    def __init__(self, request: HttpRequest, principal: auth.Principal, session: str) -> None:
        self.request = request
        self.services = Services.of(request)
        self.principal = principal
        self.session = session
        assert principal.company_id is not None
        assert principal.role is not None
        self.pos_system_id = principal.pos_system_id
        self.company_id = principal.company_id
        self.role = principal.role
        self.email = principal.subject
        self.csrf = console_session.csrf_token(session)
        self.base = f"/console/{self.pos_system_id}/{self.company_id}"
        company = self.services.directory.current.companies.get((self.pos_system_id, self.company_id))
        self.look = company_look(company)

    def may(self, right: Right) -> bool:
        return may(self.role, right)

    def submission(self) -> str:
        """A new key for one form (``SUBMISSION``)."""
        return secrets.token_urlsafe(16)

    async def once(
        self, form: Mapping[str, Any], parts: list[bytes], perform: Callable[[Any], str]
    ) -> Response[bytes]:
        """``perform`` (a write, answering where to go next) once per form sent, then a redirect there.

        A form sent again with its ``SUBMISSION`` key redirects where the first one did; ``parts``
        are what makes two sends the same request (the key with other content is 422, as on the API).
        """
        key = idempotency.key_of(
            str(form.get(SUBMISSION) or "") or None, pos_system_id=self.pos_system_id,
            company_id=self.company_id, actor=f"console:{self.principal.actor}", parts=parts,
        )  # fmt: skip

        def change(conn: Any) -> idempotency.Answer:
            return idempotency.Answer(303, b"", {"location": perform(conn)})

        answer = await idempotency.once(self.services.db, key, change, now=self.now)
        return _redirect(answer.headers["location"])

    @property
    def actor(self) -> service.Actor:
        return service.Actor(self.principal.actor, "console")

    @property
    def now(self) -> datetime:
        return self.services.clock()

    @property
    def tenant(self) -> Tenant:
        """The keyword arguments naming this company, as the analytics use cases take them."""
        return Tenant(pos_system_id=self.pos_system_id, company_id=self.company_id)

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(conn, posSystemId, companyId, *args)`` in a read transaction."""
        return await self.services.db.read(fn, self.pos_system_id, self.company_id, *args, **kwargs)

    def locations(self) -> list[str]:
        return self.services.directory.current.company_locations(self.pos_system_id, self.company_id)

    def render(self, template: str, *, page: str, status: int = 200, **context: Any) -> Response[bytes]:
        """A page of the console's layout, in the company's look."""
        return console_page(
            f"console/{template}", look=self.look, status=status, console=self, page=page, nav=NAV,
            asset=console_assets.url, fmt=console_format, partial=_htmx(self.request), **context,
        )  # fmt: skip


async def _console(request: HttpRequest, right: Right, *, action: bool = False) -> Console:
    """The console request, if its session belongs to the path's company and its role has ``right``.

    No session (or an ended one) is ``Unauthorized`` (the login page, or 401); another company's
    path is 404; an action without the session's CSRF token or from another origin is 403.
    """
    services = Services.of(request)
    session = request.cookies.get(console_session.COOKIE)
    if not session:
        raise Unauthorized("Sign in to the console.")
    principal = await services.tokens.verify(f"Bearer {session}", now=services.clock().timestamp())
    if principal.kind != "user":
        raise Unauthorized("Sign in to the console.")
    params = request.path_params
    auth.require_company(principal, params["pos_system_id"], params["company_id"], "read")
    if action:
        _check_origin(request, services)
        # Read (and checked, ``_form``) before the action does anything, token in a header or not.
        form = await _form(request)
        sent = request.headers.get(console_session.CSRF_HEADER)
        if sent is None:
            sent = form.get(console_session.CSRF_FIELD)
        if not console_session.csrf_matches(session, sent):
            raise Forbidden("This form has expired: reload the page and try again.")
    console = Console(request, principal, session)
    request.state.console = console  # for the error page: the company's look, for its own users only
    if not console.may(right):
        raise Forbidden(f"Your role ({console.role}) may not {right}: ask a publisher of your company.")
    return console


async def _form(request: HttpRequest) -> FormMultiDict:
    """The posted form; a NUL in any field is refused (``cmc.stored_text``), whatever reads it."""
    form = await request.form()
    nul = [name for name, value in form.multi_items() if "\x00" in name or "\x00" in str(value)]
    if nul:
        names = [name.replace("\x00", "") for name in nul]  # the page shows them: without the NUL
        raise ValidationFailed(
            f"{', '.join(names)} {stored_text.NUL_PROBLEM}.",
            errors={name: [stored_text.NUL_PROBLEM] for name in names},
        )
    return form


def _check_origin(request: HttpRequest, services: Services) -> None:
    """A state-changing request must come from CMC's own pages (its public URL or the host asked)."""
    ours = [
        console_session.origin_of(services.settings.public_url),
        console_session.origin_of(str(request.base_url)),
    ]
    headers = request.headers
    if not console_session.same_origin(
        headers.get("origin"), headers.get("referer"), ours=[o for o in ours if o is not None]
    ):
        raise Forbidden("This request did not come from the console's own pages.")


def _redirect(target: str) -> Response[bytes]:
    """303 See Other: after a POST, the browser GETs ``target`` (a reload does not post again)."""
    return Response(b"", status_code=303, headers={"Location": target})


def _htmx(request: HttpRequest) -> bool:
    return request.headers.get("hx-request") == "true"


# --- signing in and out -------------------------------------------------------------------------


@get("/console")
async def landing(request: HttpRequest) -> Response[bytes]:
    """Where a merchant finds their company's console: its POS system and company id."""
    pos, company = (
        request.query_params.get("pos", "").strip(),
        request.query_params.get("company", "").strip(),
    )
    if pos and company:
        return _redirect(f"/console/{quote(pos, safe='')}/{quote(company, safe='')}/login")
    return console_page("console/landing.html", look=NEUTRAL, asset=console_assets.url)


def _login_page(
    request: HttpRequest, *, status: int = 200, problem: str | None = None, **headers: str
) -> Response[bytes]:
    params = request.path_params
    base = f"/console/{params['pos_system_id']}/{params['company_id']}"
    return console_page(
        "console/login.html", look=NEUTRAL, status=status, headers=headers, asset=console_assets.url,
        base=base, company_id=params["company_id"], pos_system_id=params["pos_system_id"], problem=problem,
        next=console_session.safe_next(request.query_params.get("next"), base=base),
        email=request.query_params.get("email", ""),
    )  # fmt: skip


@get(BASE + "/login")
async def login_form(request: HttpRequest) -> Response[bytes]:
    """The login form; the same for every company id (it tells nothing about which exist)."""
    return _login_page(request)


@post(BASE + "/login", status_code=303)
async def login(request: HttpRequest) -> Response[bytes]:
    """Check the email and password against the company's console users; on success, the session cookie."""
    services = Services.of(request)
    _check_origin(request, services)
    params = request.path_params
    base = f"/console/{params['pos_system_id']}/{params['company_id']}"
    form = await _form(request)
    email, password = str(form.get("email") or ""), str(form.get("password") or "")
    address = request.client.host if request.client else "unknown"
    try:
        user = await services.login.user(
            params["pos_system_id"], params["company_id"], email, password, address=address
        )
    except TooManyRequests as refused:
        wait = refused.headers["Retry-After"]
        problem = f"Too many attempts to sign in. Wait {wait} seconds, then try again."
        return _login_page(request, status=429, problem=problem, **refused.headers)
    except Unauthorized:
        # One answer for an unknown email and a wrong password: it tells nothing about who has an account.
        return _login_page(request, status=401, problem="Wrong email or password.")
    now = services.clock()
    token = services.tokens.issue_for_user(user, now=now)
    target = console_session.safe_next(str(form.get("next") or ""), base=base)
    answer = _redirect(target)
    _set_session(answer, services, token, max_age=int(services.tokens.ttl.total_seconds()))
    return answer


def _set_session(answer: Response[Any], services: Services, token: str, *, max_age: int) -> None:
    cookie = console_session.cookie_for(services.settings.public_url, max_age=max_age)
    answer.set_cookie(
        console_session.COOKIE, token, max_age=cookie.max_age, path=cookie.path, secure=cookie.secure,
        httponly=cookie.httponly, samesite=cookie.samesite,
    )  # fmt: skip


@post(BASE + "/logout", status_code=303)
async def logout(request: HttpRequest) -> Response[bytes]:
    """End the session: recorded as signed out (refused everywhere from now on), and its cookie cleared."""
    console = await _console(request, "read", action=True)
    expires_at = datetime.fromtimestamp(console.principal.expires_at, UTC)
    await console.services.db.write(signouts.record, console.session, expires_at=expires_at)
    answer = _redirect(f"{console.base}/login")
    _set_session(answer, console.services, "", max_age=0)
    return answer


# --- what the marketing does --------------------------------------------------------------------


def _period(request: HttpRequest, now: datetime) -> tuple[str, datetime, str]:
    """The overview's window from ``?period=``: its name, its start, its bucket."""
    name = request.query_params.get("period", "7d")
    if name not in PERIODS:
        name = "7d"
    return name, _whole_days(now, PERIODS[name]), "hour" if name == "today" else "day"


def _whole_days(now: datetime, days: int) -> datetime:
    """The start of the ``days`` UTC days that end with today: midnight, ``days - 1`` days ago.

    Whole days, since the chart shows one bar per day: a window that began at this time of day would
    show its first day half counted (and drop a sale of that morning from a "7 days" total)."""
    return now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days - 1)


async def _series(
    console: Console, metrics: tuple[str, ...], *, since: datetime, bucket: str
) -> dict[str, Any]:
    """Chart.js data (labels and one dataset per metric) for ``metrics`` per bucket."""
    labels: list[str] = []
    datasets = []
    for metric in metrics:
        points = await analytics.timeseries(
            console.services.db,
            **console.tenant,
            metric=metric,
            bucket=bucket,
            since=since,
            until=console.now,
        )
        labels = [console_format.bucket(p.at, bucket) for p in points]
        datasets.append({"label": console_format.METRIC_NAMES[metric], "data": [p.value for p in points]})
    return {"labels": labels, "datasets": datasets}


@get(BASE)
async def overview(request: HttpRequest) -> Response[bytes]:
    """The summary and the activity chart of today, the last 7 or the last 30 days."""
    console = await _console(request, "read")
    now = console.now
    period, since, bucket = _period(request, now)
    summary = await analytics.summary(console.services.db, **console.tenant, since=since, until=now)
    chart = await _series(console, ("tenders", "firings", "scans"), since=since, bucket=bucket)
    states = [s for s in STATES if summary.messages.get(s)]
    messages = {
        "labels": states,
        "datasets": [{"label": "Messages", "data": [summary.messages[s] for s in states]}],
    }
    return console.render(
        "overview.html", page="overview", period=period, periods=PERIODS, summary=summary, chart=chart,
        messages_chart=messages,
    )  # fmt: skip


@get(BASE + "/rules")
async def rules(request: HttpRequest) -> Response[bytes]:
    """Each rule of the live version: what it did in the last 30 days, and its lift over its holdout."""
    console = await _console(request, "read")
    now = console.now
    live = await console.read(service.active)
    activity = await console.services.db.read(
        analytics.rule_activity, **console.tenant, since=now - timedelta(days=30), until=now
    )
    rows = []
    for rule in live.document.get("rules", []):
        name = rule["name"]
        report = await analytics.rule_lift(console.services.db, **console.tenant, rule=name, now=now)
        rows.append({"rule": rule, "activity": activity.get(name, analytics.RuleActivity()), "lift": report})
    return console.render("rules.html", page="rules", version=live, rows=rows)


# --- versions, drafts, simulation, publishing ---------------------------------------------------


@get(BASE + "/versions")
async def versions(request: HttpRequest) -> Response[bytes]:
    """Every version of the company's marketing, newest first."""
    console = await _console(request, "read")
    found = await console.read(service.listing)
    return console.render("versions.html", page="versions", versions=found)


async def _version_page(
    console: Console,
    number: int,
    *,
    status: int = 200,
    replay: wire.Simulation | None = None,
    days: int = 30,
    problem: str | None = None,
    published: bool = False,
) -> Response[bytes]:
    """A version's page; with the simulation just run, or the problem of a refused publication."""
    found = await console.read(service.version, number)
    live = await console.read(service.active)
    document = json.dumps(found.document, indent=2, ensure_ascii=False)
    return console.render(
        "version.html", page="versions", status=status, version=found, active=live, document=document,
        simulation_days=SIMULATION_DAYS, simulation=replay, days=days, problem=problem,
        published=published,
    )  # fmt: skip


@get(BASE + "/versions/{version:str}")
async def version(request: HttpRequest) -> Response[bytes]:
    """One version: its document, and what the role may do with it (simulate, publish)."""
    console = await _console(request, "read")
    published = request.query_params.get("published") == "1"
    return await _version_page(console, version_number(request.path_params["version"]), published=published)


@get(BASE + "/draft")
async def draft_form(request: HttpRequest) -> Response[bytes]:
    """The draft editor: the live document (or ``?from=`` a version's) as JSON, to change."""
    console = await _console(request, "draft")
    start = request.query_params.get("from")
    if start:
        found = await console.read(service.version, version_number(start))
    else:
        found = await console.read(service.active)
    document = json.dumps(found.document, indent=2, ensure_ascii=False)
    return console.render(
        "draft.html", page="versions", document=document, note="", problems={}, source=found
    )


@post(BASE + "/draft", status_code=303)
async def create_draft(request: HttpRequest) -> Response[bytes]:
    """Save the editor's document as a new draft; every problem at once, by field path, when invalid."""
    console = await _console(request, "draft", action=True)
    form = await _form(request)
    text, note = str(form.get("document") or ""), str(form.get("note") or "").strip() or None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as bad:
        problems = {"document": [f"not JSON: {bad.msg} at line {bad.lineno}, column {bad.colno}"]}
        return _draft_problems(console, text, note, problems)
    except RecursionError:
        return _draft_problems(console, text, note, {"document": ["nests too deeply"]})
    try:
        document = service.check_draft(raw, locations=console.locations())
    except BadRequest as invalid:
        return _draft_problems(console, text, note, invalid.errors or {"document": [invalid.detail]})

    def save(conn: Any) -> str:
        number = service.create_draft(
            conn, console.pos_system_id, console.company_id, document, actor=console.actor, note=note,
            now=console.now,
        )  # fmt: skip
        return f"{console.base}/versions/{number}"

    return await console.once(form, [b"draft", text.encode(), (note or "").encode()], save)


def _draft_problems(
    console: Console, text: str, note: str | None, problems: Mapping[str, list[str]]
) -> Response[bytes]:
    return console.render(
        "draft.html",
        page="versions",
        status=400,
        document=text,
        note=note or "",
        problems=problems,
        source=None,
    )


@post(BASE + "/versions/{version:str}/simulate", status_code=200)
async def simulate(request: HttpRequest) -> Response[bytes]:
    """Replay the last N days' stored sales through this version and the live one; writes nothing."""
    console = await _console(request, "simulate", action=True)
    number = version_number(request.path_params["version"])
    days_text = str((await _form(request)).get("days") or "30")
    days = whole_number(days_text)
    days = days if days in SIMULATION_DAYS else 30
    services, now = console.services, console.now
    result = await simulation.simulate_version(
        services.db, services.directory.current, console.pos_system_id, console.company_id, number,
        window=simulation.Window(now - timedelta(days=days), now), slots=services.simulations,
    )  # fmt: skip
    return await _version_page(console, number, replay=result, days=days)


@post(BASE + "/versions/{version:str}/publish", status_code=303)
async def publish(request: HttpRequest) -> Response[bytes]:
    """Make this version live, if the live one is still the one the page showed (the API's If-Match)."""
    console = await _console(request, "activate", action=True)
    number = version_number(request.path_params["version"])
    form = await _form(request)
    shown = str(form.get("if_match") or "")
    live = whole_number(shown)
    expected = set() if live is None else {live}

    def go_live(conn: Any) -> str:
        service.activate(
            conn, console.pos_system_id, console.company_id, number, expected=expected,
            actor=console.actor, locations=console.locations(), now=console.now,
        )  # fmt: skip
        return f"{console.base}/versions/{number}?published=1"

    try:
        return await console.once(form, [b"publish", str(number).encode(), shown.encode()], go_live)
    except PreconditionFailed:
        problem = (
            "Someone published another version since this page was opened: review it, then publish again."
        )
        return await _version_page(console, number, status=412, problem=problem)
    except Conflict as unfit:
        return await _version_page(console, number, status=409, problem=unfit.detail)


@get(BASE + "/audit")
async def audit_trail(request: HttpRequest) -> Response[bytes]:
    """Who changed what, newest first, a page at a time."""
    console = await _console(request, "read")
    cursor = request.query_params.get("cursor")
    after = whole_number(cursor, digits=18)
    entries, following = await console.read(audit.page, after=after)
    return console.render("audit.html", page="audit", entries=entries, next=following)


# --- customers and messages ---------------------------------------------------------------------


def _cursor(request: HttpRequest) -> str | None:
    cursor = request.query_params.get("cursor")
    return cursor if cursor and len(cursor) <= 200 else None


@get(BASE + "/customers")
async def customers(request: HttpRequest) -> Response[bytes]:
    """Find a customer by email, phone, loyalty card, POS customer id or name."""
    console = await _console(request, "read")
    query = request.query_params.get("query", "").strip()[:200]
    found = None
    if query:
        found = await analytics.find_customers(
            console.services.db, **console.tenant, query=query, cursor=_cursor(request)
        )
    return console.render("customers.html", page="customers", query=query, found=found, searched=bool(query))


@get(BASE + "/customers/{profile_id:str}")
async def customer(request: HttpRequest) -> Response[bytes]:
    """One customer's timeline: visits, firings, messages, scans, opt-outs, identifier conflicts."""
    console = await _console(request, "read")
    profile_id = request.path_params["profile_id"]
    timeline = await analytics.customer_timeline(console.services.db, **console.tenant, profile_id=profile_id)
    if timeline is None:
        raise NotFound("This company has no such customer.")
    return console.render(
        "customer.html", page="customers", timeline=timeline, events=console_format.events(timeline)
    )


@get(BASE + "/messages")
async def messages(request: HttpRequest) -> Response[bytes]:
    """The message log: rendered text, state and reason; dead ones may be retried (editor and up)."""
    console = await _console(request, "read")
    params = request.query_params
    state = params.get("state") if params.get("state") in STATES else None
    channel = params.get("channel") if params.get("channel") in CHANNELS else None
    found = await analytics.messages(
        console.services.db, **console.tenant, state=state, channel=channel, cursor=_cursor(request)
    )
    return console.render(
        "messages.html", page="messages", found=found, state=state, channel=channel, states=STATES,
        channels=CHANNELS, retried=params.get("retried"),
    )  # fmt: skip


@post(BASE + "/messages/{message_id:str}/retry", status_code=303)
async def retry(request: HttpRequest) -> Response[bytes]:
    """Queue a dead message again (editor and up, as the analytics API's retry)."""
    console = await _console(request, "retry", action=True)
    message_id = request.path_params["message_id"]
    # Back to the log as it was filtered (the form's ``back``: its query string), saying what was done.
    back = str((await _form(request)).get("back") or "")
    await analytics.retry_message(
        console.services.db, **console.tenant, message_id=message_id, now=console.now
    )
    target = f"{console.base}/messages?{back}&retried={quote(message_id)}"
    return _redirect(console_session.safe_next(target, base=console.base))


@get(BASE + "/optouts")
async def optouts(request: HttpRequest) -> Response[bytes]:
    """Opt-outs over the last 30 days: how many, by the day, and the latest (who, on which channel)."""
    console = await _console(request, "read")
    now = console.now
    since = _whole_days(now, 30)
    summary = await analytics.summary(console.services.db, **console.tenant, since=since, until=now)
    chart = await _series(console, ("optouts",), since=since, bucket="day")
    contact = (request.query_params.get("contact") or "").strip()[:200]
    if contact:  # one contact's opt-outs, whenever they were asked
        latest = await analytics.opt_outs_of(console.services.db, **console.tenant, contact=contact)
    else:
        span = Span(console.pos_system_id, console.company_id, since, now)
        latest = await console.services.db.read(optouts_store.latest, span, limit=OPT_OUTS_SHOWN)
    return console.render(
        "optouts.html", page="optouts", summary=summary, chart=chart, latest=latest, contact=contact
    )


# --- errors, as pages -----------------------------------------------------------------------------


def _error_page(request: HttpRequest, exc: ApiError) -> Response[bytes]:
    """A refused console request as a page (problem details are for the APIs).

    No session: a page goes to the login form (and comes back after it), an action is 401 (htmx
    follows ``HX-Redirect`` there). A 404 wears no company's look: it must not tell a company exists.
    """
    params = request.path_params
    headers = dict(exc.headers)
    headers.pop("WWW-Authenticate", None)
    if isinstance(exc, Unauthorized) and "company_id" in params:
        login = f"/console/{params['pos_system_id']}/{params['company_id']}/login"
        if request.method == "GET" and not _htmx(request):
            answer = _redirect(f"{login}?next={quote(request.url.path)}")
        else:
            headers["HX-Redirect"] = login
            answer = console_page(
                "console/error.html", look=NEUTRAL, status=401, headers=headers, asset=console_assets.url,
                title="Signed out", detail="Your session has ended: sign in again.", link=login,
            )  # fmt: skip
        if console_session.COOKIE in request.cookies:
            answer.delete_cookie(console_session.COOKIE, path=console_session.PATH)
        return answer
    look: Look = NEUTRAL
    link = "/console"
    console: Console | None = request.state.get("console")
    if console is not None and exc.status != 404:
        # A signed-in user of this company was refused (a role, a stale form): its look is no secret.
        look, link = console.look, console.base
    detail = "There is no such page." if exc.status == 404 else exc.detail
    return console_page(
        "console/error.html", look=look, status=exc.status, headers=headers, asset=console_assets.url,
        title={403: "Not allowed", 404: "Not found"}.get(exc.status, "Something is wrong"), detail=detail,
        link=link,
    )  # fmt: skip


PAGES = [
    login_form,
    login,
    logout,
    overview,
    rules,
    versions,
    version,
    draft_form,
    create_draft,
    simulate,
    publish,
    audit_trail,
    customers,
    customer,
    messages,
    retry,
    optouts,
]
"""Every route of a company's console (``tests/test_console.py`` checks each against other tenants)."""

STATIC = create_static_files_router(
    path=console_assets.URL,
    directories=[console_assets.STATIC],
    cache_control=CacheControlHeader(max_age=365 * 24 * 3600, public=True, immutable=True),
    include_in_schema=False,
)
"""The console's script, style sheet and vendored libraries (``cmc.web.console_assets``)."""


def framework_error_page(request: HttpRequest, exc: HTTPException) -> Response[bytes]:
    """A framework refusal on a console path (no such page, wrong method, body too large): a page
    too. Routing errors reach only the app's handlers: ``cmc.api.app`` sends console paths here."""
    return _error_page(request, problems.from_http_exception(exc))


def _unexpected_error_page(request: HttpRequest, exc: Exception) -> Response[bytes]:
    """Store trouble (503) or a bug (500, logged as the APIs log it): a page too, not problem JSON."""
    return _error_page(request, problems.as_api_error(exc, path=request.url.path))


def is_console_path(path: str) -> bool:
    return path == "/console" or path.startswith("/console/")


ROUTER = Router(
    path="/",
    route_handlers=[landing, *PAGES],
    exception_handlers={
        ApiError: _error_page,
        HTTPException: framework_error_page,
        Exception: _unexpected_error_page,
    },
)
ROUTES: list[ControllerRouterHandler] = [ROUTER, STATIC]
