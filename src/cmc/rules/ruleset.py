"""Rule sets: compile a company's rules once, evaluate them per transaction, explain the outcome."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal, TypeAlias

import msgspec

from cmc.rules.data import _duration_text
from cmc.rules.facts import Facts
from cmc.rules.model import Actions, Rule, RuleError
from cmc.rules.predicates import Explainer, Pred, _compile

# --------------------------------------------------------------------------- rule sets

Outcome: TypeAlias = Literal[
    "fired", "failed", "limited", "not-valid-yet", "expired", "skipped-after-stop", "reversal", "held-out"
]
EffectKind: TypeAlias = Literal["qrWidget", "cfsTemplate", "notify"]


ONE_PER_SALE: dict[str, str] = {"qrWidget": "QR widget", "cfsTemplate": "CFS template"}
"""Effect kinds a sale carries one of: the first (highest priority) is shown, the others are not."""


class Effect(msgspec.Struct, frozen=True, omit_defaults=True):
    """One thing to do, named by the rule that asked for it; ``target`` is the widget/template id.

    ``shown`` is false (and ``reason`` says why) for a QR widget or CFS template that lost to the one
    of a rule that comes first.
    """

    rule: str
    kind: EffectKind
    target: str
    shown: bool = True
    reason: str | None = None


class FiredRule(msgspec.Struct, frozen=True):
    """A rule that fired, with its actions."""

    rule: str
    actions: Actions


class RuleTrace(msgspec.Struct, frozen=True):
    """Why one rule did or did not fire; ``path`` names the condition or field (``when.all[0].amount``)."""

    rule: str
    outcome: Outcome
    path: str | None = None
    detail: str = ""


class Evaluation(msgspec.Struct):
    """The result of one evaluation: fired rules and their effects, in priority order.

    ``held_out``: rules that would have fired but hold this customer out; they have no effects, and
    the rules after them are evaluated as if they had not fired (a holdout's ``stop`` stops nothing).
    """

    fired: list[FiredRule] = msgspec.field(default_factory=list)
    effects: list[Effect] = msgspec.field(default_factory=list)
    explanation: list[RuleTrace] | None = None
    held_out: list[FiredRule] = msgspec.field(default_factory=list)

    @property
    def qr_widget(self) -> Effect | None:
        """The QR widget of the highest-priority rule that produced one."""
        return next((e for e in self.effects if e.kind == "qrWidget" and e.shown), None)

    @property
    def cfs_template(self) -> Effect | None:
        """The CFS template of the highest-priority rule that produced one."""
        return next((e for e in self.effects if e.kind == "cfsTemplate" and e.shown), None)

    @property
    def notifications(self) -> list[Effect]:
        """Every ``notify`` effect, in priority order."""
        return [e for e in self.effects if e.kind == "notify"]


Window: TypeAlias = Callable[[Facts], "tuple[Outcome, str] | None"]


@dataclass(frozen=True, slots=True)
class _Compiled:
    name: str
    pred: Pred | None  # None: no `when`, always true
    explain: Explainer | None
    window: Window | None
    per_customer: int | None
    anonymous_fires: bool
    limit_text: str
    holdout: int
    """Buckets below this are held out (0: no holdout)."""
    holdout_percent: int
    stop: bool
    fired: FiredRule
    effects: tuple[Effect, ...]
    actions_text: str


ANONYMOUS_SKIPPED = "anonymous sale: a per-customer limit skips it (anonymous: skip, the default)"
ANONYMOUS_FIRED = "anonymous sale: fired without counting (limit anonymous: fire)"
BUCKETS = 10_000
"""Holdout buckets per rule (``cmc.holdout``): a customer's bucket is 0 <= b < BUCKETS."""


def _no_usage(rule: str) -> int:
    return 0


def _no_bucket(rule: str) -> int | None:
    return BUCKETS


class RuleSet:
    """A company's compiled rules, sorted by priority and indexed by location. Build with compile_rules."""

    def __init__(self, by_location: Mapping[str, tuple[_Compiled, ...]], rules: Mapping[str, Rule]) -> None:
        self._compiled = dict(by_location)
        self._rules = {loc: tuple(rules[c.name] for c in cs) for loc, cs in by_location.items()}

    def for_location(self, location_id: str) -> tuple[Rule, ...]:
        """The rules that apply at ``location_id``, highest priority first (empty if unknown)."""
        return self._rules.get(location_id, ())

    def evaluate(
        self,
        facts: Facts,
        *,
        usage: Callable[[str], int] = _no_usage,
        bucket: Callable[[str], int | None] = _no_bucket,
        explain: bool = False,
    ) -> Evaluation:
        """Run the location's rules against ``facts``.

        ``usage(rule_name)`` says how often this customer got that rule within its limit window; it is
        called only for a limited rule whose conditions hold. ``bucket(rule_name)`` is the customer's
        holdout bucket for a rule with a holdout that would fire (None: not known yet, a dry run's new
        customer); an anonymous sale is never held out. A reversal fires nothing.
        """
        compiled = self._compiled.get(facts.location_id, ())
        traces: list[RuleTrace] | None = [] if explain else None
        if facts.is_reversal:
            if traces is not None:
                traces += [
                    RuleTrace(c.name, "reversal", None, "reversals never trigger rules") for c in compiled
                ]
            return Evaluation(explanation=traces)
        fired: list[FiredRule] = []
        held_out: list[FiredRule] = []
        effects: list[Effect] = []
        for i, c in enumerate(compiled):
            if c.window is not None and (closed := c.window(facts)) is not None:
                if traces is not None:
                    traces.append(
                        RuleTrace(
                            c.name,
                            closed[0],
                            "validFrom" if closed[0] == "not-valid-yet" else "validUntil",
                            closed[1],
                        )
                    )
                continue
            if c.pred is not None and not c.pred(facts):
                if traces is not None and c.explain is not None:
                    path, text = c.explain(facts, "when") or ("when", "failed")
                    traces.append(RuleTrace(c.name, "failed", path, text))
                continue
            anonymous = c.per_customer is not None and facts.customer is None
            if anonymous and not c.anonymous_fires:
                if traces is not None:
                    traces.append(RuleTrace(c.name, "limited", "limit.anonymous", ANONYMOUS_SKIPPED))
                continue
            if c.per_customer is not None and not anonymous:
                used = usage(c.name)
                if used >= c.per_customer:
                    if traces is not None:
                        traces.append(
                            RuleTrace(c.name, "limited", "limit", f"already fired {used}x {c.limit_text}")
                        )
                    continue
            note = ""
            if c.holdout:
                drawn = bucket(c.name) if facts.customer is not None else None
                if drawn is not None and drawn < c.holdout:
                    held_out.append(c.fired)
                    if traces is not None:
                        traces.append(RuleTrace(c.name, "held-out", "holdoutPercent", _held_out(c, drawn)))
                    continue
                note = "; " + _treated(c, drawn, anonymous=facts.customer is None)
            fired.append(c.fired)
            effects += c.effects
            if traces is not None:
                if anonymous:
                    note += f"; {ANONYMOUS_FIRED}"
                traces.append(RuleTrace(c.name, "fired", None, c.actions_text + note))
            if c.stop:
                if traces is not None:
                    traces += [
                        RuleTrace(later.name, "skipped-after-stop", None, f"{c.name!r} fired with stop: true")
                        for later in compiled[i + 1 :]
                    ]
                break
        if len(fired) > 1:
            effects = _one_per_sale(effects)
        return Evaluation(fired=fired, effects=effects, explanation=traces, held_out=held_out)


def _held_out(c: _Compiled, drawn: int) -> str:
    return (
        f"in the {c.holdout_percent}% holdout (bucket {drawn} < {c.holdout} of {BUCKETS}):"
        " recorded, nothing shown or sent"
    )


def _treated(c: _Compiled, drawn: int | None, *, anonymous: bool) -> str:
    if anonymous:
        return f"holdout {c.holdout_percent}%: an anonymous sale is never held out"
    if drawn is None:
        return (
            f"holdout {c.holdout_percent}%: a new customer; the profile id the sale creates decides"
            f" ({c.holdout_percent}% are held out)"
        )
    return f"holdout {c.holdout_percent}%: treatment (bucket {drawn} >= {c.holdout} of {BUCKETS})"


def _one_per_sale(effects: list[Effect]) -> list[Effect]:
    """Mark every QR widget and CFS template after the first of its kind as not shown, saying why."""
    first: dict[str, Effect] = {}
    marked = []
    for effect in effects:
        if effect.kind in ONE_PER_SALE and (winner := first.setdefault(effect.kind, effect)) is not effect:
            reason = f"one {ONE_PER_SALE[effect.kind]} per sale: rule {winner.rule!r} comes first by priority"
            effect = msgspec.structs.replace(effect, shown=False, reason=reason)
        marked.append(effect)
    return marked


def compile_rules(rules: Sequence[Rule], *, company_locations: Collection[str]) -> RuleSet:
    """Compile each rule once, sort by priority (ties keep list order), index by location."""
    names: set[str] = set()
    compiled: list[tuple[Rule, _Compiled]] = []
    for i, rule in enumerate(rules):
        if rule.name in names:
            raise RuleError("duplicate rule name in this company", rule=rule.name, field=f"rules[{i}].name")
        names.add(rule.name)
        for loc in rule.locations or ():
            if loc not in company_locations:
                raise RuleError(f"unknown location {loc!r}", rule=rule.name, field=f"rules[{i}].locations")
        compiled.append((rule, _compile_rule(rule)))
    compiled.sort(key=lambda pair: -pair[0].priority)  # stable: ties keep list order
    by_location = {
        loc: tuple(c for rule, c in compiled if rule.locations is None or loc in rule.locations)
        for loc in company_locations
    }
    return RuleSet(by_location, {rule.name: rule for rule in rules})


def _compile_rule(rule: Rule) -> _Compiled:
    pred, explain = _compile(rule.when) if rule.when is not None else (None, None)
    then = rule.then
    effects = [Effect(rule.name, "qrWidget", str(then.qr_widget))] if then.qr_widget is not None else []
    if then.cfs_template is not None:
        effects.append(Effect(rule.name, "cfsTemplate", str(then.cfs_template)))
    effects += [Effect(rule.name, "notify", message) for message in then.notify]
    limit = rule.limit
    return _Compiled(
        name=rule.name,
        pred=pred,
        explain=explain,
        window=_window(rule.valid_from, rule.valid_until),
        per_customer=limit.per_customer if limit else None,
        anonymous_fires=limit is not None and limit.anonymous == "fire",
        limit_text=f"(limit {limit.per_customer} per {_duration_text(limit.per)})" if limit else "",
        holdout=rule.holdout_percent * BUCKETS // 100,
        holdout_percent=rule.holdout_percent,
        stop=rule.stop,
        fired=FiredRule(rule.name, then),
        effects=tuple(effects),
        actions_text=", ".join(f"{e.kind} {e.target}" for e in effects) + ("; stop" if rule.stop else ""),
    )


def _window(valid_from: date | None, valid_until: date | None) -> Window | None:
    if valid_from is None and valid_until is None:
        return None
    started = _moment_test(valid_from, after=True) if valid_from is not None else None
    ongoing = _moment_test(valid_until, after=False) if valid_until is not None else None
    early: tuple[Outcome, str] = (
        "not-valid-yet",
        f"valid from {valid_from.isoformat() if valid_from else ''}",
    )
    late: tuple[Outcome, str] = ("expired", f"valid until {valid_until.isoformat() if valid_until else ''}")

    def window(f: Facts) -> tuple[Outcome, str] | None:
        if started is not None and not started(f):
            return early
        if ongoing is not None and not ongoing(f):
            return late
        return None

    return window


def _moment_test(moment: date, *, after: bool) -> Pred:
    """Whether the facts' time is at/after (``after``) or at/before ``moment``."""
    if isinstance(moment, datetime) and moment.tzinfo is not None:
        return (lambda f: f.now >= moment) if after else (lambda f: f.now <= moment)
    if isinstance(moment, datetime):
        return (lambda f: f._wall >= moment) if after else (lambda f: f._wall <= moment)
    return (lambda f: f._date >= moment) if after else (lambda f: f._date <= moment)


def format_explanation(evaluation: Evaluation) -> str:
    """Human-readable text of an evaluation, for ``cmc rules test``."""
    lines = []
    for trace in evaluation.explanation or ():
        where = f"{trace.path}: " if trace.path else ""
        lines.append(f"{trace.outcome.upper():<18} {trace.rule}: {where}{trace.detail}")
    if evaluation.explanation == []:
        lines.append("no rules apply at this location")
    if evaluation.effects:
        lines.append("effects:")
        lines += [
            f"  {e.kind} {e.target}  (rule {e.rule!r})" + ("" if e.shown else f"  not shown: {e.reason}")
            for e in evaluation.effects
        ]
    else:
        lines.append("effects: none")
    return "\n".join(lines)
