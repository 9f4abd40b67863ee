"""Holdout assignment (pure): stable per customer and rule, near the configured share, salted per company."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from cmc import holdout, rules

SECRET = bytes(range(32))
SALT = holdout.company_salt(SECRET, "pax", "comp5")
CUSTOMERS = [str(uuid.UUID(int=n * 7919 + 12345)) for n in range(10_000)]


def held_out(rule: str, percent: int, salt: bytes = SALT) -> set[str]:
    return {pid for pid in CUSTOMERS if holdout.variant_of(salt, rule, pid, percent) == "holdout"}


def test_assignment_is_stable() -> None:
    first = [holdout.bucket(SALT, "mid-basket coupon", pid) for pid in CUSTOMERS[:500]]
    again = [holdout.bucket(SALT, "mid-basket coupon", pid) for pid in CUSTOMERS[:500]]
    assert first == again
    assert all(0 <= b < holdout.BUCKETS for b in first)
    # Pinned: changing the hash would move every customer of every running holdout to another arm.
    assert holdout.bucket(SALT, "mid-basket coupon", CUSTOMERS[0]) == 9455
    assert holdout.company_salt(SECRET, "pax", "comp5") == SALT


@pytest.mark.parametrize("percent", [1, 10, 25, 50])
def test_the_share_held_out_is_near_the_configured_one(percent: int) -> None:
    expected = len(CUSTOMERS) * percent / 100
    sd = (len(CUSTOMERS) * percent / 100 * (1 - percent / 100)) ** 0.5
    assert abs(len(held_out("mid-basket coupon", percent)) - expected) < 4 * sd  # 4 sd: 1 in 15,000


def test_no_holdout_holds_out_nobody_and_a_larger_share_keeps_the_smaller_one() -> None:
    assert held_out("mid-basket coupon", 0) == set()
    # Growing the holdout moves customers from treatment to holdout, never back.
    assert held_out("mid-basket coupon", 10) <= held_out("mid-basket coupon", 20)


def test_rules_and_companies_draw_independently() -> None:
    a, b = held_out("mid-basket coupon", 50), held_out("edibles fan", 50)
    assert abs(len(a & b) - len(CUSTOMERS) / 4) < 4 * (len(CUSTOMERS) * 0.25 * 0.75) ** 0.5
    other_company = holdout.company_salt(SECRET, "pax", "comp6")
    assert other_company != SALT
    c = held_out("mid-basket coupon", 50, other_company)
    assert abs(len(a & c) - len(CUSTOMERS) / 4) < 4 * (len(CUSTOMERS) * 0.25 * 0.75) ** 0.5
    # Another service secret, other salts: nobody can predict the arms without it.
    assert holdout.company_salt(bytes(32), "pax", "comp5") != SALT


# --------------------------------------------------------------------------- holdoutPercent in a rule


def parse(**rule: object) -> list[rules.Rule]:
    spec = {"name": "r", "then": {"qrWidget": 1}, **rule}
    return rules.parse_rules(
        [spec], locations={"loc5"}, widgets={1}, cfs_templates=set(), message_templates=set()
    )


def test_holdout_percent_is_0_to_50_and_round_trips() -> None:
    [rule] = parse(holdoutPercent=10)
    assert rule.holdout_percent == 10
    assert rules.rule_to_data(rule)["holdoutPercent"] == 10
    assert parse(**rules.rule_to_data(rule)) == [rule]
    [plain] = parse()
    assert plain.holdout_percent == 0 and "holdoutPercent" not in rules.rule_to_data(plain)
    for bad, message in ((51, "must be at most 50"), (-1, "must be at least 0"), (12.5, "must be an integer"),
                         ("10%", "must be an integer"), (True, "must be an integer")):  # fmt: skip
        with pytest.raises(rules.RuleError) as refused:
            parse(holdoutPercent=bad)
        assert refused.value.field == "rules[0].holdoutPercent"
        assert message in refused.value.message


def facts(customer: bool = True) -> rules.Facts:
    now = datetime(2026, 6, 15, 19, 0, tzinfo=UTC)
    person = rules.CustomerFacts(False, 3, True, True, False, Decimal(100), None) if customer else None
    return rules.Facts("loc5", "term5", "Sale", Decimal(20), now, now, False, (), person)


def test_a_held_out_rule_shows_nothing_and_stops_nothing() -> None:
    ruleset = rules.compile_rules(
        [
            rules.Rule(
                "held",
                rules.Actions(qr_widget=1, notify=("sms",)),
                priority=10,
                stop=True,
                holdout_percent=50,
            ),
            rules.Rule("next", rules.Actions(qr_widget=2), priority=5),
        ],
        company_locations={"loc5"},
    )
    held = ruleset.evaluate(facts(), bucket=lambda rule: 4999, explain=True)
    assert [f.rule for f in held.held_out] == ["held"] and [f.rule for f in held.fired] == ["next"]
    assert [(e.rule, e.kind, e.target) for e in held.effects] == [("next", "qrWidget", "2")]
    assert held.explanation is not None and held.explanation[0].outcome == "held-out"
    treated = ruleset.evaluate(facts(), bucket=lambda rule: 5000)
    assert [f.rule for f in treated.fired] == ["held"] and treated.held_out == []  # its stop ends the run
    anonymous = ruleset.evaluate(facts(customer=False), bucket=lambda rule: 0)
    assert [f.rule for f in anonymous.fired] == ["held"]
