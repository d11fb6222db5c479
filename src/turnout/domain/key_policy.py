"""Who may do what: issuing and managing keys (never more rights, models, budget or lifetime than
the issuer has), granting roles, and which team's things a caller may see. Pure; the services
apply it.

A key's scope is its team: a key with a team is that team's (a team admin manages only it); a key
without one is organisation-wide. The master key is the first owner.

People, not keys, hold authority. Every key has a lineage: the person it acts for (its user, or for
a key without a user the person whose key issued it) and the people who could use it (that person,
and everyone who could use the key that issued it: whoever issues a key sees it in full). The master
key is one person, break-glass; a key it issues for a user is handed over to that user.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from turnout.domain.errors import PermissionDenied
from turnout.domain.principal import MASTER_PERSON, Principal, Role

ROLE_RANK: dict[Role, int] = {"viewer": 0, "member": 1, "admin": 2, "owner": 3}
ADMIN_ROLES: tuple[Role, ...] = ("owner", "admin")
READER_ROLES: tuple[Role, ...] = ("owner", "admin", "viewer")  # read what an admin of their scope reads

BudgetLevel = Literal["organisation", "team"]


@dataclass(frozen=True, slots=True)
class Lineage:
    """Who a key acts for (`person`) and every person who could use it (`controllers`)."""

    person: str
    controllers: frozenset[str]


MASTER_LINEAGE = Lineage(MASTER_PERSON, frozenset({MASTER_PERSON}))


def lineage_of_new_key(issuer: Lineage, user_id: str | None) -> Lineage:
    """The lineage of a key issued by a key of `issuer`'s lineage, for `user_id` (or for nobody:
    it then acts for the issuer's person). Everyone who could use the issuing key could have
    issued this one, so they can use it too; a key the break-glass master issues for a user is
    that user's alone."""
    person = user_id or issuer.person
    if user_id is not None and issuer.person == MASTER_PERSON:
        return Lineage(person, frozenset({user_id}))
    return Lineage(person, issuer.controllers | {person})


def lineage_of_rotated_key(old: Lineage, rotator: Lineage) -> Lineage:
    """The lineage of the key that replaces one of lineage `old`, issued by a key of `rotator`'s:
    it acts for the old key's person, and whoever rotated it saw it in full, so could use it too
    (the break-glass master hands it over, as it hands over the keys it issues for people)."""
    if rotator.person == MASTER_PERSON:
        return old
    return Lineage(old.person, old.controllers | rotator.controllers)


def one_person(a: Lineage, b: Lineage) -> bool:
    """Could one person act through both keys (the same person, or one who could use the other's
    key)? Two such keys are never two people for the two-person rule."""
    return a.person == b.person or a.person in b.controllers or b.person in a.controllers


def lowest(roles: Iterable[Role | None]) -> Role | None:
    """The lowest of these roles (None, no role at all, is lowest); "owner" when there are none."""
    lowest_role: Role | None = "owner"
    for role in roles:
        if role is None:
            return None
        if lowest_role is not None and ROLE_RANK[role] < ROLE_RANK[lowest_role]:
            lowest_role = role
    return lowest_role


def higher(a: Role | None, b: Role | None) -> Role | None:
    if a is None or b is None:
        return a or b
    return a if ROLE_RANK[a] >= ROLE_RANK[b] else b


@dataclass(frozen=True, slots=True)
class KeySpec:
    """What a new key is to be."""

    name: str
    role: Role = "member"
    team_id: str | None = None
    user_id: str | None = None
    allowed_models: tuple[str, ...] | None = None  # None: every model the issuer may use
    expires_at: float | None = None
    max_budget_micros: int | None = None


def _covers(issuer: Principal, pattern: str) -> bool:
    """Does the issuer's model list admit everything `pattern` admits?"""
    if issuer.allowed_models is None:
        return True
    if not pattern.endswith("*"):
        return issuer.may_use(pattern)
    prefix = pattern[:-1]
    return any(own.endswith("*") and prefix.startswith(own[:-1]) for own in issuer.allowed_models)


def check_issue(issuer: Principal, spec: KeySpec) -> KeySpec:
    """The spec as it may be issued by `issuer` (its team, models, expiry and budget filled in
    from the issuer's where the issuer is bounded), or PermissionDenied naming what exceeds."""
    if issuer.kind == "master":
        return spec
    if not issuer.is_admin:
        raise PermissionDenied("Only owners and admins may issue keys.")
    if ROLE_RANK[spec.role] > ROLE_RANK[issuer.role]:
        raise PermissionDenied(f"A key with role '{issuer.role}' cannot issue a key with role '{spec.role}'.")
    team = spec.team_id
    if issuer.team_id is not None:
        if team not in (None, issuer.team_id):
            raise PermissionDenied("A team admin may issue keys for their own team only.", param="team_id")
        team = issuer.team_id
    models = spec.allowed_models
    if issuer.allowed_models is not None:
        models = issuer.allowed_models if models is None else models
        wider = [m for m in models if not _covers(issuer, m)]
        if wider:
            raise PermissionDenied(
                f"The issuing key may not use '{wider[0]}', so it cannot give it to another key.",
                param="models",
            )
    expires = spec.expires_at
    if issuer.expires_at is not None:
        if expires is not None and expires > issuer.expires_at:
            raise PermissionDenied("A key cannot outlive the key that issues it.", param="expires_at")
        expires = issuer.expires_at if expires is None else expires
    budget = spec.max_budget_micros
    if issuer.max_budget_micros is not None:
        if budget is not None and budget > issuer.max_budget_micros:
            raise PermissionDenied("A key's budget cannot exceed its issuer's.", param="max_budget")
        budget = issuer.max_budget_micros if budget is None else budget
    return KeySpec(spec.name, spec.role, team, spec.user_id, models, expires, budget)


def may_manage(issuer: Principal, team_id: str | None) -> bool:
    """May `issuer` see, revoke or rotate a key of `team_id`?"""
    if issuer.kind == "master":
        return True
    return issuer.is_admin and (issuer.team_id is None or issuer.team_id == team_id)


def reads_as_admin(principal: Principal) -> bool:
    """Does `principal` read what an admin of its scope reads (an owner, an admin, or a viewer,
    who reads as much and changes nothing)?"""
    return principal.kind == "master" or principal.role in READER_ROLES


def may_oversee(reader: Principal, team_id: str | None) -> bool:
    """May `reader` see (not change) what an admin of `team_id` manages — its keys, its audit
    events and pending actions, its request log? `may_manage` and a viewer of that scope."""
    if reader.kind == "master":
        return True
    return reads_as_admin(reader) and (reader.team_id is None or reader.team_id == team_id)


def organisation_reader(principal: Principal) -> bool:
    """An owner, admin or viewer of the whole organisation (the master key is its first owner)."""
    return principal.kind == "master" or (reads_as_admin(principal) and principal.team_id is None)


def require_organisation_reader(principal: Principal, what: str) -> None:
    if not organisation_reader(principal):
        raise PermissionDenied(f"Only organisation-wide owners, admins and viewers may {what}.")


def outranks(role: Role, ceiling: Role) -> bool:
    return ROLE_RANK[role] > ROLE_RANK[ceiling]


def in_team(principal: Principal) -> bool:
    """Is `principal` one team's (its scope that team) rather than organisation-wide?"""
    return principal.team_id is not None and principal.kind != "master"


def organisation_admin(principal: Principal) -> bool:
    """An owner or admin of the whole organisation (the master key is its first owner)."""
    return principal.kind == "master" or (principal.is_admin and principal.team_id is None)


def require_organisation_admin(principal: Principal, what: str) -> None:
    if not organisation_admin(principal):
        raise PermissionDenied(f"Only organisation-wide owners and admins may {what}.")


def require_organisation_owner(principal: Principal, what: str) -> None:
    """The master key, or an organisation-wide owner's key (not a team's owner)."""
    if principal.kind != "master" and (principal.team_id is not None or principal.role != "owner"):
        raise PermissionDenied(f"Only the master key and organisation-wide owners may {what}.")


def may_read(viewer: Principal, team_id: str | None) -> bool:
    """May `viewer` read (not change) things of `team_id` — teams, members, budgets, spend?"""
    if organisation_reader(viewer):
        return True
    return viewer.team_id is not None and viewer.team_id == team_id


def check_grant(actor: Principal, role: Role, team_id: str | None) -> None:
    """May `actor` give `role` to someone in `team_id` (None: organisation-wide)? PermissionDenied
    if not: only admins grant, within their scope, and never a role above their own."""
    if actor.kind == "master":
        return
    if not actor.is_admin:
        raise PermissionDenied("Only owners and admins may grant roles.")
    if team_id is None and actor.team_id is not None:
        raise PermissionDenied("A team admin cannot grant organisation-wide roles.", param="role")
    if not may_manage(actor, team_id):
        raise PermissionDenied("A team admin may manage their own team only.", param="team_id")
    if outranks(role, actor.role):
        raise PermissionDenied(
            f"A key with role '{actor.role}' cannot grant the role '{role}'.", param="role"
        )


def check_act_on(actor: Principal, role: Role, what: str = "change") -> None:
    """Nobody acts on a key whose role is above their own."""
    if actor.kind != "master" and outranks(role, actor.role):
        raise PermissionDenied(f"A key with role '{actor.role}' cannot {what} a key with role '{role}'.")


def budget_level(actor: Principal) -> BudgetLevel:
    """The level a budget set by `actor` is set at: the organisation's, or a team's."""
    return "organisation" if organisation_admin(actor) else "team"


def check_budget_level(actor: Principal, level: str | None, what: str) -> None:
    """A budget set at the organisation's level is changed or removed from that level only."""
    if level == "organisation" and budget_level(actor) != "organisation":
        raise PermissionDenied(
            f"This budget was set by the organisation; only organisation-wide owners and admins "
            f"may {what} it.",
            code="budget_set_above",
        )
