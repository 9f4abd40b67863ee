"""How the merchant console writes numbers, times and a customer's history (pure; templates call it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

METRIC_NAMES = {
    "tenders": "Tenders",
    "firings": "Rule firings",
    "scans": "QR scans",
    "messages": "Messages",
    "optouts": "Opt-outs",
}
NONE = "-"
"""What a missing figure shows."""
STATE_HELP = {
    "queued": "waiting to be sent",
    "sent": "handed to the provider",
    "delivered": "the phone received it",
    "failed": "the provider could not deliver it",
    "bounced": "the address refused it for good",
    "suppressed": "not sent on purpose",
    "dead": "every attempt failed",
}


def when(moment: datetime | None) -> str:
    """``2026-11-26 18:15 UTC`` (the console speaks UTC, as its charts' buckets do)."""
    if moment is None:
        return NONE
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def bucket(moment: datetime, size: str) -> str:
    """A chart's label for the bucket starting at ``moment``: ``14:00`` or ``Nov 26``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%H:00") if size == "hour" else moment.strftime("%b %d")


def number(value: int | None) -> str:
    return NONE if value is None else f"{value:,}"


def money(value: Decimal | float | None) -> str:
    return NONE if value is None else f"{Decimal(str(value)):,.2f}"


def percent(share: float | None) -> str:
    return NONE if share is None else f"{share * 100:.1f}%"


def signed(value: float | None, *, digits: int = 2, scale: float = 1.0, unit: str = "") -> str:
    return NONE if value is None else f"{value * scale:+.{digits}f}{unit}"


@dataclass(frozen=True)
class Event:
    """One line of a customer's timeline."""

    at: datetime
    kind: str
    """``visit``, ``firing``, ``message``, ``scan``, ``opt-out``, ``conflict``."""
    title: str
    detail: str


def events(timeline: Any) -> list[Event]:
    """Everything of an ``analytics.Timeline`` as one list, newest first."""
    found = [
        Event(v.occurred_at, "visit", f"{v.transaction_type} {money(v.amount)}",
              f"at {v.location_id} / {v.terminal_id}" + (" (reversal)" if v.is_reversal else ""))
        for v in timeline.visits
    ]  # fmt: skip
    found += [
        Event(f.fired_at, "firing", f"Rule '{f.rule}' fired",
              "held out: nothing shown or sent" if f.variant == "holdout" else "treatment")
        for f in timeline.firings
    ]  # fmt: skip
    found += [
        Event(m.created_at, "message", f"{m.channel.upper()} {m.state}",
              m.subject or m.body if not m.reason else f"{m.reason}: {m.subject or m.body}")
        for m in timeline.messages
    ]  # fmt: skip
    found += [
        Event(s.scanned_at, "scan", "Scanned a QR" + (" (bot)" if s.bot else ""),
              f"{s.agent}" + (f", rule '{s.rule}'" if s.rule else ""))
        for s in timeline.scans
    ]  # fmt: skip
    found += [
        Event(o.created_at, "opt-out", f"Opted out of {o.channel}", o.recipient) for o in timeline.opt_outs
    ]
    found += [
        Event(c.created_at, "conflict", f"Identifier {c.kind} also points at another profile",
              f"{c.value}: kept apart from {c.other_profile_id}")
        for c in timeline.conflicts
    ]  # fmt: skip
    return sorted(found, key=lambda e: e.at, reverse=True)
