"""POS rules: parse a company's rule specs, compile them once, evaluate them for each transaction.

Pure: no I/O and no clock. The caller passes the time (``Facts.now``, ``Facts.local_time``) and, for
per-customer limits, a ``usage(rule_name)`` callable that counts earlier firings::

    registry data ──parse_rules──► [Rule] ──compile_rules──► RuleSet ──evaluate(Facts)──► Evaluation
                  ◄──rule_to_data──  (plain data, JSON-safe; parse_rules accepts it again)

Compiling turns each ``when`` tree into nested closures over prebuilt sets and bounds, so evaluation
walks no tree and looks up no keys; rules are sorted by priority and indexed by location once.
Each condition also gets an explaining twin, built at compile time and only called with
``explain=True``, which names the first condition that failed (``when.all[0].amount: 12.00 not
between 15 and 50``).

Semantics chosen where the spec is silent (all documented again on the condition classes):

- ``amount`` fails when the transaction carries no amount; ``customer`` conditions fail for an
  anonymous transaction; a limited rule skips an anonymous transaction unless its limit says
  ``anonymous: fire`` (then it fires, uncounted).
- One QR widget and one CFS template per sale: those of the first rule (by priority) that chose one;
  the others' effects say ``shown=False`` and why.
- ``products.any`` sums the quantity of every line that matches and compares it with ``minQuantity``
  (without ``minQuantity``: one matching line suffices); ``products.all`` needs a non-empty basket
  whose every line matches, and its total quantity at least ``minQuantity``.
- ``timeOfDay`` is half-open, ``[start, end)``, and wraps midnight when ``start > end``.
- ``birthdayWithinDays: N`` holds when the next birthday is 0..N days from the local date.
- ``validFrom``/``validUntil`` as a date compare with the local date (both inclusive); as a datetime
  with an offset they compare with ``now``, without one with the location's local wall-clock time.

Bounds, so that any document parses to rules or RuleErrors and what parses works (``parse``): a
limit's ``per`` is at most 3650 days; conditions nest at most 32 deep (``when`` is 1; real rules use
3 or 4); integers are within +-(2**53 - 1), what every JSON reader keeps exactly; a rule name is at
most 200 characters, without "/", control characters, or being "." or "..", so the lift's URL
(``.../rules/{name}/lift``) reaches it and a firing can store it.
"""

from cmc.rules.data import rule_to_data
from cmc.rules.facts import CustomerFacts, Facts, ProductLine
from cmc.rules.model import (
    Actions,
    AllOf,
    Amount,
    AnyOf,
    BasketQuantity,
    Condition,
    Customer,
    DayOfWeek,
    Limit,
    Location,
    Not,
    Products,
    Range,
    Rule,
    RuleError,
    Terminal,
    TimeOfDay,
    TransactionType,
)
from cmc.rules.parse import parse_rules
from cmc.rules.ruleset import (
    Effect,
    Evaluation,
    FiredRule,
    RuleSet,
    RuleTrace,
    compile_rules,
    format_explanation,
)

__all__ = [
    "Actions",
    "AllOf",
    "Amount",
    "AnyOf",
    "BasketQuantity",
    "Condition",
    "Customer",
    "CustomerFacts",
    "DayOfWeek",
    "Effect",
    "Evaluation",
    "Facts",
    "FiredRule",
    "Limit",
    "Location",
    "Not",
    "ProductLine",
    "Products",
    "Range",
    "Rule",
    "RuleError",
    "RuleSet",
    "RuleTrace",
    "Terminal",
    "TimeOfDay",
    "TransactionType",
    "compile_rules",
    "format_explanation",
    "parse_rules",
    "rule_to_data",
]
