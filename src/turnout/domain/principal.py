"""Who is calling: the identity a key resolves to."""

from __future__ import annotations

from typing import Literal

import msgspec

from turnout.domain.rate_limits import RateLimits

Role = Literal["owner", "admin", "member", "viewer"]
Priority = Literal["critical", "standard", "batch"]  # overload sheds batch first (limits/priority.py)

MASTER_PERSON = "master"
"""The person behind the master key (break-glass): one person, whoever holds it."""


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str
    name: str
    role: Role
    kind: Literal["master", "virtual"] = "virtual"
    allowed_models: tuple[str, ...] | None = None  # None: every model
    team_id: str | None = None
    user_id: str | None = None
    expires_at: float | None = None  # unix seconds; a rotated-out key keeps working until then
    max_budget_micros: int | None = None
    # the person the key acts for: its user, or for a key without one the person whose key issued
    # it (MASTER_PERSON for the master key and what it issued without a user)
    person: str | None = None
    priority: Priority | None = None  # the key's metadata.priority (None: server.overload's default)
    limits: RateLimits | None = None  # the key's own rate limits
    # a key without a user: the user who issued it (not the master key), whose budgets, rate limits
    # and spend its use counts to (`spender`)
    issuer_user: str | None = None
    # a rotated-out key (working out its grace): the key that replaced it, whose stored key budgets
    # (moved to it by the rotation) cover this one too
    replaced_by: str | None = None

    @property
    def spender(self) -> str | None:
        """The user whose budgets, rate limits and spend this key's use counts to: its user, else
        the user who issued it."""
        return self.user_id or self.issuer_user

    @property
    def is_admin(self) -> bool:
        return self.kind == "master" or self.role in ("owner", "admin")

    @property
    def read_only(self) -> bool:
        """A viewer's key: it reads what an admin of its scope reads and changes nothing (the
        admin API and the console refuse its every change before any service sees it)."""
        return self.kind != "master" and self.role == "viewer"

    def may_use(self, model: str) -> bool:
        allowed = self.allowed_models
        if allowed is None:
            return True
        for pattern in allowed:
            if pattern == model or (pattern.endswith("*") and model.startswith(pattern[:-1])):
                return True
        return False
