"""Rule evaluation cost: 1,000 rules over 100 locations (10 each), 10,000 transactions.

Prints p50/p99/max of ``RuleSet.evaluate`` (explain=False) and of building the ``Facts``, in
microseconds. The issue's target: p99 of one evaluation well under 1 ms.

Run: ``.venv/bin/python bench/rules_bench.py [--seed N]``
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from cmc.rules import CustomerFacts, Facts, ProductLine, compile_rules, parse_rules

LOCATIONS = [f"loc{i}" for i in range(100)]
CATEGORIES = ["Edibles", "Flower", "Drinks", "Gear", "Vapes"]
MAKERS = ["Acme", "Bliss", "Leafy", "Zen"]
TYPES = ["Sale", "Undefined", "sale", "Refund"]


def condition(rng: random.Random) -> dict[str, object]:
    lo = rng.randint(0, 80)
    kinds = [
        {"amount": {"between": [lo, lo + rng.randint(5, 100)]}},
        {"amount": {"gte": lo}},
        {"transactionType": {"in": ["Sale", "Undefined"]}},
        {"products": {"any": {"productCategory": rng.choice(CATEGORIES), "minQuantity": rng.randint(1, 3)}}},
        {"products": {"all": {"manufacturer": rng.sample(MAKERS, 2)}}},
        {"basketQuantity": {"gte": rng.randint(1, 6)}},
        {"customer": {"new": rng.random() < 0.5}},
        {"customer": {"visits": {"gte": rng.randint(1, 10)}, "hasEmail": True}},
        {"customer": {"birthdayWithinDays": 7}},
        {"dayOfWeek": {"in": rng.sample(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], 4)}},
        {"timeOfDay": {"between": rng.choice([["09:00", "17:00"], ["22:00", "02:00"], ["11:30", "14:00"]])}},
        {"not": {"terminal": {"in": ["t9"]}}},
    ]
    return rng.choice(kinds)


def rules(rng: random.Random) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for loc in LOCATIONS:
        for n in range(10):
            when = {"all": [condition(rng) for _ in range(rng.randint(1, 4))]}
            if rng.random() < 0.3:
                when = {"any": [when, condition(rng)]}
            rule: dict[str, object] = {
                "name": f"{loc}-rule{n}",
                "priority": rng.randint(0, 20),
                "locations": [loc],
                "when": when,
                "then": {"qrWidget": rng.randint(1, 5), "notify": ["thanks-sms"]},
                "stop": rng.random() < 0.1,
            }
            if rng.random() < 0.3:
                rule["limit"] = {"perCustomer": 1, "per": "7d"}
            if rng.random() < 0.2:
                rule["validUntil"] = "2030-12-31"
            out.append(rule)
    return out


def facts(rng: random.Random, tz: ZoneInfo) -> Facts:
    now = datetime(2024, 6, 1, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 60 * 24 * 30))
    lines = tuple(
        ProductLine(
            f"p{rng.randint(1, 500)}", rng.choice(CATEGORIES), rng.choice(MAKERS), Decimal(rng.randint(1, 3))
        )
        for _ in range(rng.randint(1, 6))
    )
    customer = None
    if rng.random() < 0.7:
        visits = rng.randint(1, 20)
        customer = CustomerFacts(
            is_new=visits == 1,
            visit_count=visits,
            has_email=rng.random() < 0.6,
            lifetime_spend=Decimal(visits * 37),
            birth_date=datetime(1990, rng.randint(1, 12), rng.randint(1, 28)).date(),
        )
    return Facts(
        location_id=rng.choice(LOCATIONS),
        terminal_id=f"t{rng.randint(1, 9)}",
        transaction_type=rng.choice(TYPES),
        amount=Decimal(rng.randint(100, 15000)) / 100,
        local_time=now.astimezone(tz),
        now=now,
        products=lines,
        customer=customer,
    )


def percentiles(samples: list[int]) -> str:
    cuts = statistics.quantiles(samples, n=100)
    return (
        f"p50 {cuts[49] / 1000:7.1f} µs   p99 {cuts[98] / 1000:7.1f} µs   max {max(samples) / 1000:7.1f} µs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--transactions", type=int, default=10_000)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    raw = rules(rng)
    started = time.perf_counter()
    parsed = parse_rules(
        raw, locations=LOCATIONS, widgets=range(1, 6), cfs_templates=(), message_templates=["thanks-sms"]
    )
    ruleset = compile_rules(parsed, company_locations=LOCATIONS)
    print(f"parse + compile {len(parsed)} rules: {(time.perf_counter() - started) * 1000:.1f} ms")

    tz = ZoneInfo("America/Denver")
    build: list[int] = []
    evaluate: list[int] = []
    fired = 0
    usage = lambda name: 0  # noqa: E731 -- the DB lookup is the caller's cost, not the engine's
    for _ in range(args.transactions):
        t0 = time.perf_counter_ns()
        f = facts(rng, tz)
        t1 = time.perf_counter_ns()
        result = ruleset.evaluate(f, usage=usage)
        t2 = time.perf_counter_ns()
        build.append(t1 - t0)
        evaluate.append(t2 - t1)
        fired += len(result.fired)
    print(f"evaluate (explain=False): {percentiles(evaluate)}")
    print(f"build Facts (incl. random data): {percentiles(build)}")
    print(f"{args.transactions} transactions, {fired / args.transactions:.2f} rules fired on average")


if __name__ == "__main__":
    main()
