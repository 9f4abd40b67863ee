"""Rules back to registry-shaped plain data; parse_rules accepts the result again."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from cmc.rules import model as m
from cmc.rules.parse import _UNITS

# --------------------------------------------------------------------------- back to plain data


def rule_to_data(rule: m.Rule) -> dict[str, object]:
    """The rule as registry-shaped plain data (JSON-safe: decimals as strings, dates as ISO strings)."""
    data: dict[str, object] = {"name": rule.name, "priority": rule.priority}
    if rule.locations is not None:
        data["locations"] = list(rule.locations)
    if rule.when is not None:
        data["when"] = _condition_to_data(rule.when)
    then: dict[str, object] = {}
    if rule.then.qr_widget is not None:
        then["qrWidget"] = rule.then.qr_widget
    if rule.then.cfs_template is not None:
        then["cfsTemplate"] = rule.then.cfs_template
    if rule.then.notify:
        then["notify"] = list(rule.then.notify)
    data["then"] = then
    if rule.limit is not None:
        limit = {"perCustomer": rule.limit.per_customer, "per": _duration_text(rule.limit.per)}
        data["limit"] = (
            limit if rule.limit.anonymous == "skip" else {**limit, "anonymous": rule.limit.anonymous}
        )
    if rule.stop:
        data["stop"] = True
    if rule.valid_from is not None:
        data["validFrom"] = rule.valid_from.isoformat()
    if rule.valid_until is not None:
        data["validUntil"] = rule.valid_until.isoformat()
    if rule.holdout_percent:
        data["holdoutPercent"] = rule.holdout_percent
    return data


def _condition_to_data(cond: m.Condition) -> dict[str, object]:
    match cond:
        case m.AllOf() | m.AnyOf():
            return {
                "all" if isinstance(cond, m.AllOf) else "any": [_condition_to_data(c) for c in cond.items]
            }
        case m.Not():
            return {"not": _condition_to_data(cond.item)}
        case m.Amount():
            return {"amount": _range_to_data(cond.range)}
        case m.BasketQuantity():
            return {"basketQuantity": _range_to_data(cond.range)}
        case m.TransactionType():
            return {"transactionType": {"in": list(cond.names)}}
        case m.Location() | m.Terminal():
            return {"location" if isinstance(cond, m.Location) else "terminal": {"in": list(cond.ids)}}
        case m.DayOfWeek():
            return {"dayOfWeek": {"in": [m.DAYS[d] for d in cond.days]}}
        case m.TimeOfDay():
            return {"timeOfDay": {"between": [f"{cond.start:%H:%M}", f"{cond.end:%H:%M}"]}}
        case m.Products():
            return {"products": {cond.mode: _matcher_to_data(cond)}}
        case m.Customer():
            return {"customer": _customer_to_data(cond)}


def _range_to_data(r: m.Range, *, integer: bool = False) -> dict[str, object]:
    def number(d: Decimal) -> object:
        return int(d) if integer else str(d)

    if r.gte is not None and r.lte is not None:
        return {"between": [number(r.gte), number(r.lte)]}
    return {"gte": number(r.gte)} if r.gte is not None else {"lte": number(r.lte or Decimal(0))}


def _matcher_to_data(p: m.Products) -> dict[str, object]:
    data: dict[str, object] = {}
    for key, values in (("productId", p.product_ids), ("productCategory", p.categories)):
        if values is not None:
            data[key] = list(values)
    if p.manufacturers is not None:
        data["manufacturer"] = list(p.manufacturers)
    if p.min_quantity is not None:
        data["minQuantity"] = str(p.min_quantity)
    return data


def _customer_to_data(c: m.Customer) -> dict[str, object]:
    data: dict[str, object] = {}
    flags = (("new", c.new), ("hasEmail", c.has_email), ("hasPhone", c.has_phone))
    for key, flag in (*flags, ("hasLoyaltyCard", c.has_loyalty_card)):
        if flag is not None:
            data[key] = flag
    if c.visits is not None:
        data["visits"] = _range_to_data(c.visits, integer=True)
    if c.lifetime_spend is not None:
        data["lifetimeSpend"] = _range_to_data(c.lifetime_spend)
    if c.birthday_within_days is not None:
        data["birthdayWithinDays"] = c.birthday_within_days
    return data


def _duration_text(per: timedelta) -> str:
    seconds = int(per.total_seconds())
    unit = next(u for u, size in _UNITS.items() if seconds % size == 0)
    return f"{seconds // _UNITS[unit]}{unit}"
