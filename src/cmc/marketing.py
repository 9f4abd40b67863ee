"""POS Rules at work on a sale: evaluate the company's rules, then make what fired real.

Runs inside the sale's database transaction (``transactions.record`` calls it), so the rule firings,
the short link, the queued messages and the CFS event commit with the sale or not at all, and a
replayed transaction (answered from the stored response) never creates a second link or message.

    Sale ──facts_of──► rules.Facts ──RuleSet.evaluate──► Evaluation
         ──realize──► short link + QR URLs, CFS template URL, outbox rows, CFS event ──► Reaction
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select

from cmc import links, profiles, rules
from cmc.campaign import Campaign, MessageTemplate
from cmc.ids import new_id
from cmc.outbox import optouts, quiet
from cmc.placeholders import fill
from cmc.store import notifications, tables
from cmc.store.prepared import Prepared
from cmc.store.types import UtcDateTime
from cmc.transactions import Reaction, Sale, sales_person_name
from cmc_client import wire

_f = tables.rule_firings
_USAGE = Prepared(
    select(func.count()).where(
        _f.c.pos_system_id == bindparam("pos"),
        _f.c.company_id == bindparam("company"),
        _f.c.profile_id == bindparam("profile"),
        _f.c.rule == bindparam("rule"),
        _f.c.fired_at >= bindparam("since", type_=UtcDateTime),
    )
)
_INSERT_FIRINGS = Prepared(insert(_f), keys=[c.name for c in _f.columns if c.name != "id"])
_INSERT_LINK = Prepared(insert(tables.short_links), keys=[c.name for c in tables.short_links.columns])
_INSERT_MESSAGE = Prepared(insert(tables.messages), keys=[c.name for c in tables.messages.columns])
_e = tables.cfs_events
_INSERT_EVENT = Prepared(insert(_e), keys=[c.name for c in _e.columns if c.name != "id"])


@dataclass(frozen=True)
class Marketing:
    """The ``transactions.Marketing`` hook: rules → widget, template, messages, live CFS event."""

    base_url: str

    def __call__(self, conn: Connection, sale: Sale) -> Reaction:
        """Evaluate and realize; the sale's transaction commits what this writes."""
        evaluation = self.evaluate(conn, sale)
        if not evaluation.fired:
            return Reaction()
        return _Realize(conn, sale, self.base_url).run(evaluation)

    def evaluate(self, conn: Connection, sale: Sale, *, explain: bool = False) -> rules.Evaluation:
        """What the rules say about ``sale`` (reads only: limits count earlier firings)."""
        if not sale.pos.settings.get("isPosRulesEnabled", True):
            reason = rules.RuleTrace("*", "failed", "settings", "isPosRulesEnabled is false")
            return rules.Evaluation(explanation=[reason] if explain else None)
        ruleset = sale.company.campaign.rules
        return ruleset.evaluate(facts_of(sale), usage=_usage(conn, sale), explain=explain)


def facts_of(sale: Sale) -> rules.Facts:
    """What the sale offers to the rules; time of day and weekday at the location."""
    tx, profile = sale.request, sale.profile
    customer = None
    if profile is not None:
        customer = rules.CustomerFacts(
            is_new=profile.is_new,
            visit_count=profile.visit_count,
            has_email=profile.email is not None,
            has_phone=profile.phone is not None,
            has_loyalty_card=profile.has_card,
            lifetime_spend=profile.lifetime_spend,
            birth_date=date.fromisoformat(profile.birth_date) if profile.birth_date else None,
        )
    return rules.Facts(
        location_id=sale.location.id,
        terminal_id=tx.terminalId,
        transaction_type=tx.transactionType or "Undefined",
        amount=tx.transactionAmount,
        local_time=sale.occurred_at.astimezone(sale.location.timezone),
        now=sale.now,
        is_reversal=sale.is_reversal,
        products=tuple(
            rules.ProductLine(p.productId, p.productCategory, p.manufacturer, p.quantity or Decimal(0))
            for p in tx.products or ()
        ),
        customer=customer,
    )


def _usage(conn: Connection, sale: Sale) -> Callable[[str], int]:
    """How often this customer got a rule within its limit window (asked only for limited rules)."""
    windows = {
        rule.name: rule.limit.per
        for rule in sale.company.campaign.rules.for_location(sale.location.id)
        if rule.limit is not None
    }

    def usage(rule_name: str) -> int:
        if sale.profile is None:
            return 0
        params = {
            "pos": sale.pos.id,
            "company": sale.company.id,
            "profile": sale.profile.id,
            "rule": rule_name,
            "since": sale.now - windows[rule_name],
        }
        row = _USAGE.first(conn, params)
        return int(row[0]) if row else 0

    return usage


class _Realize:
    """Turns one evaluation into rows and the response's marketing fields."""

    def __init__(self, conn: Connection, sale: Sale, base_url: str) -> None:
        self.conn = conn
        self.sale = sale
        self.base_url = base_url
        self.campaign: Campaign = sale.company.campaign
        self.scope = {"pos_system_id": sale.pos.id, "company_id": sale.company.id}

    def run(self, evaluation: rules.Evaluation) -> Reaction:
        sale = self.sale
        _INSERT_FIRINGS.execute_many(
            self.conn,
            [
                {**self.scope, "rule": fired.rule, "profile_id": sale.profile.id if sale.profile else None,
                 "transaction_id": sale.id, "fired_at": sale.now}
                for fired in evaluation.fired
            ],
        )  # fmt: skip
        link = self._short_link(evaluation.qr_widget)
        message_ids = self._messages(evaluation.notifications, link)
        first_message = next((m for m in message_ids.values() if m), None)
        qr = None
        if link is not None:
            qr = self._widget(link, first_message)
            self._cfs_event(link, evaluation.cfs_template)
        template = None
        if (chosen := evaluation.cfs_template) is not None:
            template = wire.CfsTemplate(
                accountTemplateId=int(chosen.target),
                cfsCarouselUrl=links.cfs_carousel_url(
                    self.base_url, sale.pos.id, sale.request.terminalId, template_id=chosen.target
                ),
            )
        effects = [
            wire.Effect(
                rule=e.rule,
                kind=e.kind,
                target=e.target,
                messageId=message_ids.get((e.rule, e.target)) if e.kind == "notify" else None,
            )
            for e in evaluation.effects
        ]
        return Reaction(
            qr_widget=qr, cfs_template=template, notification_message_id=first_message, effects=effects
        )

    def _short_link(self, effect: rules.Effect | None) -> _Link | None:
        if effect is None:
            return None
        widget = self.campaign.widgets[int(effect.target)]
        code = links.new_code()
        _INSERT_LINK.execute(
            self.conn,
            {
                **self.scope,
                "code": code,
                "location_id": self.sale.location.id,
                "terminal_id": self.sale.request.terminalId,
                "transaction_id": self.sale.id,
                "widget_id": widget.id,
                "title": widget.title,
                "target_url": widget.landingUrl.replace("{code}", code),
                "scans": 0,
                "created_at": self.sale.now,
                "last_scan_at": None,
            },
        )
        return _Link(
            code=code,
            widget_id=widget.id,
            title=widget.title,
            urls=links.short_link_urls(self.base_url, code),
        )

    def _widget(self, link: _Link, message_id: str | None) -> wire.QrCodeWidget:
        sale = self.sale
        return wire.QrCodeWidget(
            widgetId=link.widget_id,
            **link.urls,
            qrCode=wire.QrCodeLinks(
                htmlLinkUrl=link.urls["qrCodeHtmlLinkUrl"],
                previewHtmlLinkUrl=link.urls["qrCodePreviewLinkUrl"],
            ),
            notificationMessageId=message_id,
            profile=profiles.to_wire(sale.profile, sales_person=sales_person_name(sale.request.salesPerson)),
            sessionId=sale.request.sessionId,
        )

    def _messages(self, effects: list[rules.Effect], link: _Link | None) -> dict[tuple[str, str], str | None]:
        """Queue one message per template (the first rule asking for it); None where none could go.

        A customer without the template's contact, or who opted out of that channel, gets no message.
        """
        profile = self.sale.profile
        contacts = {"email": profile.email, "sms": profile.phone} if profile else {}
        first: dict[str, rules.Effect] = {}
        for effect in effects:
            first.setdefault(effect.target, effect)
        wanted = {
            target: (effect, template, recipient)
            for target, effect in first.items()
            if (recipient := contacts.get((template := self.campaign.message_templates[target]).channel))
        }
        opted_out = optouts.opted_out(
            self.conn, **self.scope, recipients=[recipient for _, _, recipient in wanted.values()]
        )
        rows = [
            self._message_row(effect, template, recipient, link)
            for effect, template, recipient in wanted.values()
            if (template.channel, recipient) not in opted_out
        ]
        if rows:
            _INSERT_MESSAGE.execute_many(self.conn, rows)
        queued = {row["template_id"]: row["id"] for row in rows}
        return {
            (effect.rule, effect.target): queued.get(effect.target)
            if first[effect.target] is effect
            else None
            for effect in effects
        }

    def _message_row(
        self, effect: rules.Effect, template: MessageTemplate, recipient: str, link: _Link | None
    ) -> dict[str, Any]:
        sale = self.sale
        # Time-ordered prefix, random tail (96 bits): unguessable, and new tokens land at the end of
        # their unique index instead of on a random page of it.
        token = new_id().replace("-", "") + secrets.token_urlsafe(12)
        values = self._values(link)
        body = fill(template.body, values) + f"\n\nNo more messages: {self.base_url}/u/{token}"
        due = sale.now
        if template.channel == "sms":
            window = quiet.parse_window(sale.location.quiet_hours)
            due = quiet.next_allowed(sale.now, sale.location.timezone, window)
        return {
            **self.scope,
            "id": new_id(),
            "location_id": sale.location.id,
            "transaction_id": sale.id,
            "rule": effect.rule,
            "template_id": template.id,
            "channel": template.channel,
            "recipient": recipient,
            "subject": fill(template.subject, values) if template.subject else None,
            "body": body,
            "optout_token": token,
            "status": "queued",
            "attempts": 0,
            "next_attempt_at": due,
            "lease_until": None,
            "last_error": None,
            "created_at": sale.now,
            "sent_at": None,
        }

    def _values(self, link: _Link | None) -> dict[str, str]:
        sale, profile = self.sale, self.sale.profile
        return {
            "firstName": (profile.first_name if profile else None) or "",
            "lastName": (profile.last_name if profile else None) or "",
            "companyName": sale.company.name,
            "locationName": sale.location.name,
            "shortLinkUrl": link.urls["shortLinkUrl"] if link else "",
            "amount": str(sale.request.transactionAmount or ""),
        }

    def _cfs_event(self, link: _Link, template: rules.Effect | None) -> None:
        sale = self.sale
        payload: dict[str, Any] = {
            "type": "qr",
            "transactionId": sale.id,
            "title": link.title,
            **link.urls,
            "qrSvgUrl": links.qr_svg_url(self.base_url, link.code),
            "firstName": sale.profile.first_name if sale.profile else None,
            "templateId": int(template.target) if template else None,
        }
        notifications.notify(self.conn, notifications.CFS_CHANNEL)
        _INSERT_EVENT.execute(
            self.conn,
            {"pos_system_id": sale.pos.id, "terminal_id": sale.request.terminalId, "payload": payload,
             "created_at": sale.now},
        )  # fmt: skip


@dataclass(frozen=True)
class _Link:
    code: str
    widget_id: int
    title: str
    urls: links.ShortLinkUrls
