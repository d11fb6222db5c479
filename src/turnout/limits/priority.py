"""Priority classes: under overload `batch` requests are shed first, then `standard`; `critical`
ones keep the headroom the others may not use. A key's class is its metadata's `priority`, else its
team's `priority`, else the configured default.

Classes are part of authority: nobody gives a key or a team a class above their own (the master
key and the organisation's admins may give any)."""

from __future__ import annotations

from typing import Any, Final, get_args

from turnout.domain.errors import InvalidRequest, PermissionDenied
from turnout.domain.principal import Principal, Priority

PRIORITIES: Final[tuple[Priority, ...]] = get_args(Priority)  # highest first
RANK: Final[dict[str, int]] = {name: rank for rank, name in enumerate(PRIORITIES)}
METADATA_FIELD: Final = "priority"


def checked_metadata(metadata: dict[str, Any] | None) -> None:
    """Refuse key metadata whose `priority` is not a class (400 naming it), so that no key holds a
    priority that would not be enforced."""
    if metadata is None or METADATA_FIELD not in metadata:
        return
    value = metadata[METADATA_FIELD]
    if not isinstance(value, str) or value not in RANK:
        shown = value if isinstance(value, str) and len(value) <= 40 else type(value).__name__
        raise InvalidRequest(
            f"'metadata.priority' must be one of {', '.join(PRIORITIES)} (got {shown!r}).",
            param="metadata.priority",
            code="invalid_priority",
        )


def priority_of(metadata: dict[str, Any] | None) -> Priority | None:
    """The class a key's stored metadata gives it (None: the default)."""
    if not metadata:
        return None
    value = metadata.get(METADATA_FIELD)
    return PRIORITIES[RANK[value]] if isinstance(value, str) and value in RANK else None


def class_of(key: Priority | None, team: Priority | None) -> Priority | None:
    """A caller's class: its key's own, else its team's (None: the default)."""
    return key if key is not None else team


def grantable(issuer: Principal, own_team: Priority | None, default: Priority) -> Priority:
    """The highest class `issuer` may give a key or a team: any for the master key and the
    organisation's owners and admins; for anyone else their own (their key's, else their team's,
    `own_team`, else the default)."""
    if issuer.kind == "master" or (issuer.team_id is None and issuer.is_admin):
        return PRIORITIES[0]
    return class_of(issuer.priority, own_team) or default


def check_grantable(asked: Priority, ceiling: Priority, what: str, param: str) -> None:
    """PermissionDenied (naming `param`) when `asked` is above `ceiling`."""
    if RANK[asked] < RANK[ceiling]:
        raise PermissionDenied(
            f"A key of class '{ceiling}' cannot give {what} the class '{asked}' (only '{ceiling}' or "
            "lower; an organisation admin may give any).",
            param=param,
        )
