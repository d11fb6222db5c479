"""Matching a request path against a route's pattern of segments (`{name}` marks a parameter),
for the admin API's routes and the console's alike."""

from __future__ import annotations

from urllib.parse import unquote


def path_segments(path: str) -> list[str]:
    """`/a/b/` → ["a", "b"]; the root → []."""
    stripped = path.strip("/")
    return stripped.split("/") if stripped else []


def match_segments(pattern: list[str], parts: list[str]) -> list[str] | None:
    """The parameters `parts` gives `pattern` (percent-decoded, none empty), or None when the path
    is not one of the pattern's."""
    if len(pattern) != len(parts):
        return None
    params = []
    for want, got in zip(pattern, parts, strict=True):
        if want.startswith("{"):
            if not got:
                return None
            params.append(unquote(got))
        elif want != got:
            return None
    return params
