"""Priority classes: under overload `batch` requests are shed first, then `standard`; `critical`
ones keep the headroom the others may not use. A key's class is its metadata's `priority`."""

from __future__ import annotations

from typing import Any, Final, get_args

from turnout.domain.errors import InvalidRequest
from turnout.domain.principal import Priority

PRIORITIES: Final[tuple[Priority, ...]] = get_args(Priority)  # highest first
RANK: Final[dict[str, int]] = {name: rank for rank, name in enumerate(PRIORITIES)}
METADATA_FIELD: Final = "priority"


def checked_metadata(metadata: dict[str, Any] | None) -> None:
    """Refuse key metadata whose `priority` is not a class (400 naming it), so that no key holds a
    priority that would not be enforced."""
    if metadata is None or METADATA_FIELD not in metadata:
        return
    value = metadata[METADATA_FIELD]
    if value not in RANK:
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
