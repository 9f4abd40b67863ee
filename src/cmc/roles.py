"""Merchant roles and what each may do on the merchant API (pure).

``viewer`` reads; ``editor`` also creates drafts and simulates them, and retries dead messages;
``publisher`` also activates.
Creating and activating are separate rights, as in Talon.One: whoever may change what is live may
also prepare the change, not the other way round.
"""

from __future__ import annotations

from typing import Literal, get_args

Role = Literal["viewer", "editor", "publisher"]
Right = Literal["read", "draft", "simulate", "activate", "retry"]

ROLES: tuple[Role, ...] = get_args(Role)
RIGHTS: dict[Role, frozenset[Right]] = {
    "viewer": frozenset({"read"}),
    "editor": frozenset({"read", "draft", "simulate", "retry"}),
    "publisher": frozenset({"read", "draft", "simulate", "activate", "retry"}),
}


def may(role: Role, right: Right) -> bool:
    """Whether ``role`` has ``right``."""
    return right in RIGHTS[role]
