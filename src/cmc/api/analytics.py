"""The analytics API: what a company's marketing did, its customers and its message log.

Paths under the merchant API's ``/v1/pos/{posSystemId}/companies/{companyId}``, authorised the same
way (``cmc.api.merchant._call``: another company's path 404, a POS token 403, no token 401); every
one reads with the ``read`` right (viewer and up), the retry of a dead message needs ``retry``
(editor and up) and honours ``Idempotency-Key``. Each route is a thin layer over a use case of
``cmc.analytics`` (which the console calls directly); lists and series answer CSV to
``Accept: text/csv`` (``cmc.api.spreadsheet``). Answers carry customer contact data: nothing here logs.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
from litestar import Response, get, post

from cmc import analytics, lift
from cmc.api import HttpRequest, spreadsheet
from cmc.api.merchant import BASE, JSON, _answer, _Call, _call
from cmc.api.params import in_years, whole_number
from cmc.errors import NotFound, ValidationFailed
from cmc.merchant import idempotency

_encode = msgspec.json.Encoder().encode
LIFT_COHORT = timedelta(days=7)
"""Whose lift the lift endpoint reports unless ``from`` says: the customers first exposed in 7 days."""


class Series(msgspec.Struct, frozen=True, rename="camel"):
    """A time series: ``points`` start at each UTC bucket; every bucket of the window is present."""

    metric: str
    bucket: str
    from_: datetime = msgspec.field(name="from")
    to: datetime = msgspec.field(name="to")
    points: list[analytics.Point] = msgspec.field(default_factory=list)
    timezone: str = "UTC"


class SummaryAnswer(msgspec.Struct, frozen=True):
    data: analytics.Summary


class SeriesAnswer(msgspec.Struct, frozen=True):
    data: Series


class LiftAnswer(msgspec.Struct, frozen=True):
    data: lift.LiftReport


class TimelineAnswer(msgspec.Struct, frozen=True):
    data: analytics.Timeline


class MessageAnswer(msgspec.Struct, frozen=True):
    data: analytics.Message


def _json(value: Any) -> Response[bytes]:
    return Response(_encode(value), media_type=JSON)


def _csv(body: bytes, *, next_page: str | None = None) -> Response[bytes]:
    # The next page's cursor of a paginated list, where a CSV body has no place for it.
    headers = {} if next_page is None else {"X-Next-Cursor": next_page}
    return Response(body, media_type=spreadsheet.MEDIA_TYPE, headers=headers)


def _time(request: HttpRequest, name: str) -> datetime | None:
    text = request.query_params.get(name)
    if text is None or not text.strip():
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValidationFailed(
            errors={name: ["must be an ISO 8601 time, like 2026-11-01T00:00:00Z"]}
        ) from None
    return in_years(value, name)


def _whole(request: HttpRequest, name: str, default: int) -> int:
    text = request.query_params.get(name)
    if text is None or not text.strip():
        return default
    number = whole_number(text.strip())
    if number is None:
        raise ValidationFailed(errors={name: ["must be a whole number"]})
    return number


def _text(request: HttpRequest, name: str) -> str | None:
    text = request.query_params.get(name)
    return text if text else None


def _company(call: _Call) -> dict[str, Any]:
    """What every use case is first given: the store and the company the caller acts on."""
    return {"db": call.services.db, "pos_system_id": call.pos_system_id, "company_id": call.company_id}


def _csv_wanted(request: HttpRequest) -> bool:
    return spreadsheet.wanted(request.headers.get("accept"))


@get(BASE + "/analytics/summary")
async def summary(request: HttpRequest) -> Response[bytes]:
    """Tenders, identified share, firings, scans, messages by state, opt-outs, influenced revenue."""
    call = await _call(request, "read")
    now = call.services.clock()
    since, until = analytics.window(_time(request, "from"), _time(request, "to"), now=now)
    found = await analytics.summary(**_company(call), since=since, until=until, now=now)
    if _csv_wanted(request):
        return _csv(spreadsheet.of_mapping(msgspec.to_builtins(found)))
    return _json(SummaryAnswer(found))


@get(BASE + "/analytics/timeseries")
async def timeseries(request: HttpRequest) -> Response[bytes]:
    """One metric per UTC hour or day, zero-filled."""
    call = await _call(request, "read")
    metric = request.query_params.get("metric") or ""
    bucket = request.query_params.get("bucket") or "day"
    raw_since, raw_until = _time(request, "from"), _time(request, "to")
    if raw_since is None and bucket == "hour":  # an hourly series' default: the last day
        raw_since = (raw_until or call.services.clock()) - timedelta(days=1)
    # The window's own checks; ``timeseries`` then checks it against the bucket.
    since, until = analytics.window(raw_since, raw_until, now=call.services.clock())
    points = await analytics.timeseries(
        **_company(call),
        metric=metric,
        bucket=bucket,
        since=since,
        until=until,
        rule=_text(request, "rule"),
        now=call.services.clock(),
    )
    if _csv_wanted(request):
        return _csv(spreadsheet.of_structs(analytics.Point, points))
    start = points[0].at if points else since
    return _json(SeriesAnswer(Series(metric, bucket, start, until, points)))


@get(BASE + "/rules/{rule_name:str}/lift")
async def rule_lift(request: HttpRequest) -> Response[bytes]:
    """The rule's lift over its holdout (null, with the reason, while an arm is under the minimum)."""
    call = await _call(request, "read")
    rule = request.path_params["rule_name"]
    company = call.services.directory.current.companies.get((call.pos_system_id, call.company_id))
    known = (
        {r.name for loc in call.locations() for r in company.setup.rules.for_location(loc)}
        if company
        else set()
    )
    if rule not in known:
        raise NotFound("The active marketing version has no such rule.")
    days = _whole(request, "days", lift.DEFAULT_DAYS)
    now = call.services.clock()
    # The cohort: customers first exposed in [from, to); by default the LIFT_COHORT that ends ``days``
    # before now (each of them followed for ``days`` full days). A bounded cohort keeps the answer
    # quick however long the rule's history (at 1,000,000 sales a 30-day one took 800 ms on SQLite);
    # ``from`` asks for a longer one.
    to = _time(request, "to") or now - timedelta(days=min(days, analytics.MAX_DAYS))
    since, until = analytics.window(_time(request, "from") or to - LIFT_COHORT, to, now=now)
    report = await analytics.rule_lift(
        **_company(call), rule=rule, now=now, days=days, since=since, until=until
    )
    return _json(LiftAnswer(report))


@get(BASE + "/customers")
async def customers(request: HttpRequest) -> Response[bytes]:
    """Customers by email, phone, card, POS customer id or name, a page at a time (``cursor``)."""
    call = await _call(request, "read")
    page = await analytics.find_customers(
        **_company(call),
        query=request.query_params.get("query") or "",
        cursor=_text(request, "cursor"),
        limit=_whole(request, "limit", 50),
    )
    if _csv_wanted(request):
        return _csv(spreadsheet.of_structs(analytics.Customer, page.data), next_page=page.next)
    return _json(page)


@get(BASE + "/customers/{profile_id:str}")
async def customer(request: HttpRequest) -> Response[bytes]:
    """One customer's profile and timeline: visits, firings, messages, scans, opt-outs, conflicts."""
    call = await _call(request, "read")
    found = await analytics.customer_timeline(
        **_company(call),
        profile_id=request.path_params["profile_id"],
    )
    if found is None:
        raise NotFound("This company has no such customer.")
    if _csv_wanted(request):  # the visits: the timeline's list a spreadsheet is asked for
        return _csv(spreadsheet.of_structs(analytics.Visit, found.visits))
    return _json(TimelineAnswer(found))


@get(BASE + "/messages")
async def messages(request: HttpRequest) -> Response[bytes]:
    """The message log, newest first, with the text sent and why a message failed."""
    call = await _call(request, "read")
    page = await analytics.messages(
        **_company(call),
        state=_text(request, "state"),
        channel=_text(request, "channel"),
        cursor=_text(request, "cursor"),
        limit=_whole(request, "limit", 50),
    )
    if _csv_wanted(request):
        return _csv(spreadsheet.of_structs(analytics.Message, page.data), next_page=page.next)
    return _json(page)


@post(BASE + "/messages/{message_id:str}/retry", status_code=200)
async def retry_message(request: HttpRequest) -> Response[bytes]:
    """A dead message back in the queue (409 when it is not dead)."""
    call = await _call(request, "retry")
    message_id = request.path_params["message_id"]
    now = call.services.clock()

    def perform(conn: idempotency.Transaction) -> idempotency.Answer:
        done = analytics.retry(
            conn, pos_system_id=call.pos_system_id, company_id=call.company_id, message_id=message_id, now=now
        )
        return idempotency.Answer(200, _encode(MessageAnswer(done)))

    return _answer(await idempotency.once(call.services.db, call.key(await request.body()), perform, now=now))


ROUTES = [summary, timeseries, rule_lift, customers, customer, messages, retry_message]
