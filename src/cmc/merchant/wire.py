"""The merchant API's bodies: what ``/v1/pos/{posSystemId}/companies/{companyId}/...`` reads and answers.

Answers wrap their payload in ``data`` as the POS API does; field names are camelCase. The OpenAPI
document (``cmc.api.openapi``) is generated from these Structs.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

from cmc.registry.setup import Document
from cmc.rules import Effect, RuleTrace

MAX_SIMULATED = 10_000
"""The most sales one simulation replays (its default ``limit``)."""

Instant = Annotated[datetime, msgspec.Meta(tz=True)]
"""An RFC 3339 date-time with its offset (``2026-11-01T00:00:00Z``)."""
Status = Literal["draft", "active", "retired"]
Source = Literal["api", "cli", "console"]
Action = Literal["draft", "activate", "apply"]


class _Body(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A request body: unknown fields are refused (a typo must not pass silently)."""


class NewVersion(_Body):
    """``POST .../marketing/versions``: a draft of the company's marketing sections."""

    document: dict[str, Any]
    """widgets, cfsTemplates, messageTemplates, rules (as ``GET .../marketing`` answers them)."""
    note: Annotated[str, msgspec.Meta(max_length=1000)] | None = None


class SimulationRequest(_Body):
    """``POST .../marketing/versions/{version}/simulate``: which stored sales to replay."""

    from_: Instant | None = msgspec.field(default=None, name="from")
    """Start of the window (inclusive; default ``to`` minus 30 days)."""
    to: Instant | None = None
    """End of the window (exclusive; default now)."""
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_SIMULATED)] = MAX_SIMULATED
    """At most this many sales: the latest in the window."""


class VersionInfo(msgspec.Struct, kw_only=True, rename="camel"):
    """One version as the listing shows it (``createdAt``, ``createdBy``)."""

    version: int
    status: Status
    created_at: datetime
    created_by: str
    source: Source
    note: str | None = None


class VersionDetail(VersionInfo, kw_only=True, rename="camel"):
    """One version with its document."""

    document: Document


class VersionAnswer(msgspec.Struct):
    """``GET .../marketing`` (the active version) and ``GET .../marketing/versions/{version}``."""

    data: VersionDetail


class VersionList(msgspec.Struct):
    """``GET .../marketing/versions``: newest first."""

    data: list[VersionInfo]


class Draft(msgspec.Struct):
    """A new draft's number."""

    version: int
    status: Literal["draft"] = "draft"


class DraftAnswer(msgspec.Struct):
    """``POST .../marketing/versions`` → 201."""

    data: Draft


class Activated(msgspec.Struct):
    """The version now live and the one it replaced."""

    version: int
    previous: int | None
    status: Literal["active"] = "active"


class ActivatedAnswer(msgspec.Struct):
    """``POST .../marketing/versions/{version}/activate`` → 200 with the new ``ETag``."""

    data: Activated


class Counts(msgspec.Struct):
    """What one rule does over the replayed sales under one version."""

    firings: int = 0
    messages: int = 0
    """Emails and SMS it would queue (customers with the channel's contact; opt-outs not counted)."""
    customers: int = 0
    """Distinct known customers it fires for (anonymous sales count in firings only)."""


class RuleDifference(msgspec.Struct):
    """One rule under the simulated version and under the active one."""

    rule: str
    version: Counts
    active: Counts
    changed: bool
    """It fires for other sales under the simulated version than under the active one."""


class Outcome(msgspec.Struct):
    """What one version's rules do with one sale, and why (the dry-run explainer)."""

    fired: list[str]
    effects: list[Effect]
    explanation: list[RuleTrace]
    text: str


class Sample(msgspec.Struct):
    """A sale whose outcome differs between the two versions."""

    transactionId: str
    occurredAt: datetime
    locationId: str
    amount: Decimal | None
    version: Outcome
    active: Outcome


class Simulation(msgspec.Struct, kw_only=True):
    """The replay of stored sales through a version and through the active one."""

    version: int
    activeVersion: int
    from_: datetime = msgspec.field(name="from")
    to: datetime
    sales: int
    """Sales replayed."""
    truncated: bool
    """More sales were in the window than ``limit``: the latest ones were replayed."""
    skipped: int
    """Sales at locations the company no longer has (not replayed)."""
    differing: int
    """Sales whose effects differ between the two versions."""
    rules: list[RuleDifference]
    samples: list[Sample]
    """Up to 20 of the differing sales, oldest first."""


class SimulationAnswer(msgspec.Struct):
    """``POST .../marketing/versions/{version}/simulate`` → 200."""

    data: Simulation


class AuditEntry(msgspec.Struct):
    """One change of the company's marketing: when, by whom, through what, what, which version."""

    at: datetime
    actor: str
    source: Source
    action: Action
    version: int | None
    summary: str


class AuditPage(msgspec.Struct):
    """``GET .../audit``: newest first; ``next`` is the ``cursor`` of the next page (null: none)."""

    data: list[AuditEntry]
    next: str | None
