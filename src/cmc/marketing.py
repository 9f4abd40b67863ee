"""POS Rules at work on a sale: evaluate the company's rules, then make what fired real.

Runs inside the sale's database transaction (the tender use case calls ``react``), so the rule
firings, the short link, the queued messages and the CFS event commit with the sale or not at all,
and a replayed transaction (answered from the stored response) never creates a second link or message.

    Sale ──facts_of──► rules.Facts ──RuleSet.evaluate──► Evaluation
         ──react──► short link + QR URLs, CFS template URL, outbox rows, CFS event ──► Reaction

Each table is written through its owner (``firings``, ``links``, ``outbox.queue``, ``cfs_feed``).

A rule with a holdout (``holdoutPercent``) that holds this customer out (``cmc.holdout``) is
recorded as a firing with variant ``holdout`` and its messages as suppressed (reason ``holdout``);
it shows nothing, sends nothing, and the other rules run as if it had not fired.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from cmc import cfs_feed, firings, holdout, links, profiles, rules, screen_state, screens
from cmc.outbox import queue
from cmc.placeholders import fill
from cmc.quiet_hours import MAX_DELAY, next_allowed
from cmc.registry.setup import MessageTemplate
from cmc.sale import Reaction, Sale, sales_person_name
from cmc.store.driver import Tx
from cmc_client import wire


async def evaluate(tx: Tx, sale: Sale, *, explain: bool = False) -> rules.Evaluation:
    """What the rules say about ``sale`` (reads only: per-customer limits count earlier firings).

    The rules are pure and ask for a customer's usage of a limited rule only when its conditions
    hold; the counts they asked for are read, and the rules run again with them, until they ask
    for nothing new (at most once per limited rule of the location). An anonymous sale's or a new
    customer's usage is 0 without asking.
    """
    if not sale.pos.settings.get("isPosRulesEnabled", True):
        reason = rules.RuleTrace("*", "failed", "settings", "isPosRulesEnabled is false")
        return rules.Evaluation(explanation=[reason] if explain else None)
    ruleset = sale.company.setup.rules
    if not ruleset.for_location(sale.location.id) and not explain:
        return rules.Evaluation()
    facts = facts_of(sale)
    bucket = _buckets(sale, provisional=explain)
    profile = sale.profile
    if profile is None or profile.is_new:
        # Nothing to count: no customer, or a profile this sale creates (its id is new, so no
        # earlier firing names it). A new customer's sale is one round trip shorter.
        return ruleset.evaluate(facts, usage=lambda rule: 0, bucket=bucket, explain=explain)
    counts: dict[str, int] = {}
    asked: list[str] = []

    def usage(rule: str) -> int:
        if rule not in counts:
            asked.append(rule)
        return counts.get(rule, 0)

    while True:
        asked.clear()
        evaluation = ruleset.evaluate(facts, usage=usage, bucket=bucket, explain=explain)
        if not asked:
            return evaluation
        windows = {rule.name: rule.limit.per for rule in ruleset.for_location(sale.location.id) if rule.limit}
        for rule in asked:
            counts[rule] = await firings.usage(
                tx,
                pos_system_id=sale.pos.id,
                company_id=sale.company.id,
                profile_id=profile.id,
                rule=rule,
                since=sale.now - windows[rule],
            )


def _buckets(sale: Sale, *, provisional: bool) -> Callable[[str], int | None]:
    """The customer's holdout bucket per rule; unknown for a dry run's new customer (no real id yet)."""
    profile = sale.profile
    if profile is None or (provisional and profile.is_new):
        return lambda rule: None
    salt, profile_id = sale.company.holdout_salt, profile.id
    return lambda rule: holdout.bucket(salt, rule, profile_id)


async def react(tx: Tx, sale: Sale, *, base_url: str) -> Reaction:
    """Evaluate and realize; the sale's transaction commits what this writes."""
    evaluation = await evaluate(tx, sale)
    if not evaluation.fired and not evaluation.held_out:
        await _cfs_event(tx, sale, None, None)
        return Reaction()
    held_out = evaluation.held_out
    await firings.record(tx, sale, [f.rule for f in evaluation.fired], held_out=[f.rule for f in held_out])
    link = await _short_link(tx, sale, evaluation.qr_widget, base_url)
    withheld = [rules.Effect(f.rule, "notify", target) for f in held_out for target in f.actions.notify]
    message_ids = await _messages(tx, sale, evaluation.notifications, link, base_url, withheld=withheld)
    first_message = next((m for m in message_ids.values() if m), None)
    qr = None
    if link is not None:
        qr = _widget(sale, link, first_message)
    await _cfs_event(tx, sale, link, evaluation.cfs_template)
    template = _cfs_template(sale, evaluation.cfs_template, base_url)
    return Reaction(
        qr_widget=qr,
        cfs_template=template,
        notification_message_id=first_message,
        effects=_effects(sale, evaluation, message_ids, has_template=template is not None),
    )


def facts_of(sale: Sale) -> rules.Facts:
    """What the sale offers to the rules; time of day and weekday at the location."""
    request, profile = sale.request, sale.profile
    customer = None
    if profile is not None:
        customer = rules.CustomerFacts(
            is_new=profile.is_new,
            visit_count=profile.visit_count,
            has_email=profile.person.email is not None,
            has_phone=profile.person.phone is not None,
            has_loyalty_card=profile.has_card,
            lifetime_spend=profile.lifetime_spend,
            birth_date=date.fromisoformat(profile.person.birth_date) if profile.person.birth_date else None,
        )
    return rules.Facts(
        location_id=sale.location.id,
        terminal_id=request.terminalId,
        transaction_type=request.transactionType or "Undefined",
        amount=request.transactionAmount,
        local_time=sale.occurred_at.astimezone(sale.location.timezone),
        now=sale.now,
        is_reversal=sale.is_reversal,
        products=tuple(
            rules.ProductLine(p.productId, p.productCategory, p.manufacturer, p.quantity or Decimal(0))
            for p in request.products or ()
        ),
        customer=customer,
    )


@dataclass(frozen=True)
class _Link:
    code: str
    widget_id: int
    title: str
    urls: links.ShortLinkUrls


async def _short_link(tx: Tx, sale: Sale, effect: rules.Effect | None, base_url: str) -> _Link | None:
    if effect is None:
        return None
    widget = sale.company.setup.widgets[int(effect.target)]
    code = await links.create(tx, sale, widget, rule=effect.rule)
    return _Link(
        code=code, widget_id=widget.id, title=widget.title, urls=links.short_link_urls(base_url, code)
    )


def _widget(sale: Sale, link: _Link, message_id: str | None) -> wire.QrCodeWidget:
    return wire.QrCodeWidget(
        widgetId=link.widget_id,
        **link.urls,
        qrCode=wire.QrCodeLinks(
            htmlLinkUrl=link.urls["qrCodeHtmlLinkUrl"], previewHtmlLinkUrl=link.urls["qrCodePreviewLinkUrl"]
        ),
        notificationMessageId=message_id,
        profile=profiles.to_wire(sale.profile, sales_person=sales_person_name(sale.request.salesPerson)),
        sessionId=sale.request.sessionId,
    )


async def _messages(
    tx: Tx,
    sale: Sale,
    effects: list[rules.Effect],
    link: _Link | None,
    base_url: str,
    *,
    withheld: list[rules.Effect],
) -> dict[tuple[str, str], str | None]:
    """Queue one message per template (the first rule asking for it); None where none could go.

    A customer without the template's contact, or who opted out of that channel, gets no message.
    ``withheld``: the notify effects of rules holding this customer out; each template that no
    treatment rule sends is recorded as suppressed (reason ``holdout``): what the treatment would
    have got. So is an SMS quiet hours would push too far (``quiet-hours``); neither has an id in
    the answer.
    """
    profile = sale.profile
    contacts = {"email": profile.person.email, "sms": profile.person.phone} if profile else {}
    first: dict[str, rules.Effect] = {}
    for effect in (*effects, *withheld):
        first.setdefault(effect.target, effect)
    templates = sale.company.setup.message_templates
    messages = [
        _message(sale, effect, template, recipient, link, held_out=effect in withheld)
        for target, effect in first.items()
        if (recipient := contacts.get((template := templates[target]).channel))
    ]
    # The outbox leaves out a recipient who opted out (no row, no id), in the same statement.
    ids = await queue.enqueue(tx, sale, messages, base_url=base_url)
    queued = {m.template_id: mid for m, mid in zip(messages, ids, strict=True) if m.suppressed is None}
    return {
        (effect.rule, effect.target): queued.get(effect.target) if first[effect.target] is effect else None
        for effect in effects
    }


def _message(
    sale: Sale,
    effect: rules.Effect,
    template: MessageTemplate,
    recipient: str,
    link: _Link | None,
    *,
    held_out: bool,
) -> queue.NewMessage:
    values = _values(sale, link)
    due = sale.now
    if template.channel == "sms":
        due = next_allowed(sale.now, sale.location.timezone, sale.location.quiet_hours)
    subject = fill(template.subject, values) if template.subject else None
    suppressed = "holdout" if held_out else "quiet-hours" if due - sale.now > MAX_DELAY else None
    body = fill(template.body, values)
    return queue.NewMessage(
        effect.rule, template.id, template.channel, recipient, subject, body, due, suppressed
    )


def _values(sale: Sale, link: _Link | None) -> dict[str, str]:
    profile = sale.profile
    return {
        "firstName": (profile.person.first_name if profile else None) or "",
        "lastName": (profile.person.last_name if profile else None) or "",
        "companyName": sale.company.name,
        "locationName": sale.location.name,
        "shortLinkUrl": link.urls["shortLinkUrl"] if link else "",
        "amount": str(sale.request.transactionAmount or ""),
    }


async def _cfs_event(tx: Tx, sale: Sale, link: _Link | None, template: rules.Effect | None) -> None:
    """Tell the terminal's screen about the sale (its QR, or a short thank-you); no screen, no event."""
    terminal = sale.request.terminalId
    if sale.is_reversal or terminal not in sale.location.cfs_terminals:
        return
    payload = screen_state.sale_payload(
        first_name=sale.profile.person.first_name if sale.profile else None,
        code=link.code if link else None,
        title=link.title if link else None,
        template_id=int(template.target) if template else None,
    )
    screen = screens.Screen(sale.pos.id, sale.location.id, terminal)
    # A QR must show at once; a thank-you alone may wait for the next poll (no NOTIFY round trip).
    await cfs_feed.publish(tx, screen, payload, now=sale.now, wake=link is not None)


def _cfs_template(sale: Sale, chosen: rules.Effect | None, base_url: str) -> wire.CfsTemplate | None:
    """The chosen template on the terminal's screen URL; None when nothing chose one or there is no screen."""
    token = sale.location.screen_tokens.get(sale.request.terminalId)
    if chosen is None or token is None:
        return None
    url = screens.page_url(base_url, token, template_id=chosen.target)
    return wire.CfsTemplate(accountTemplateId=int(chosen.target), cfsCarouselUrl=url)


def _effects(
    sale: Sale,
    evaluation: rules.Evaluation,
    message_ids: dict[tuple[str, str], str | None],
    *,
    has_template: bool,
) -> list[wire.Effect]:
    """Every effect, naming its rule: the message it queued, and whether the response carries it."""
    effects = []
    for e in evaluation.effects:
        shown, reason = e.shown, e.reason
        if shown and e.kind == "cfsTemplate" and not has_template:
            shown, reason = False, f"terminal {sale.request.terminalId!r} has no customer-facing screen"
        message_id = message_ids.get((e.rule, e.target)) if e.kind == "notify" else None
        effects.append(
            wire.Effect(
                rule=e.rule, kind=e.kind, target=e.target, messageId=message_id, shown=shown, reason=reason
            )
        )
    return effects
