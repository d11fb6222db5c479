"""Human units in configuration: durations ("250ms", "5s", "2m"), sizes ("32MiB") and rates ("16KiB/s")."""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h|d)?\s*$")
_DURATION_FACTORS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
MAX_SECONDS = 100 * 365 * 86400.0  # a century: longer is a typo (and past what dates can hold)
_SIZE = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>B|KB|KiB|MB|MiB|GB|GiB)?\s*$", re.IGNORECASE)
_SIZE_FACTORS = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_duration(value: object) -> float:
    """Seconds (> 0) from a number (seconds) or a string such as "250ms", "5s", "2m", "1h"."""
    seconds = parse_delay(value)
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {_shown(value)}")
    return seconds


def parse_delay(value: object) -> float:
    """Like `parse_duration`, but zero is allowed (meaning: no delay). At most a century; not
    infinite, not NaN."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 5s or 250ms, got a boolean")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a duration such as 5s, 250ms or 2m, got {_shown(value)}")
    if isinstance(value, int | float):
        seconds = float(value) if abs(value) <= MAX_SECONDS else math.inf  # an int may not fit a float
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m["n"]) * _DURATION_FACTORS[m["unit"]]
    else:
        raise ValueError(f"expected a duration such as 5s, 250ms or 2m, got {_shown(value)}")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {_shown(value)}")
    if not seconds <= MAX_SECONDS:  # also catches a string of digits too long for a float (inf)
        raise ValueError(f"a duration must be at most 100 years (36500d), got {_shown(value)}")
    return seconds


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_size(value: object) -> int:
    """Bytes from an integer or a string such as "32MiB", "512KB"."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 32MiB, got a boolean")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        size = int(float(m["n"]) * _SIZE_FACTORS[(m["unit"] or "b").lower()])
    else:
        raise ValueError(f"expected a size such as 32MiB or 1048576, got {value!r}")
    if size <= 0:
        raise ValueError(f"a size must be positive, got {value!r}")
    return size


def parse_rate(value: object) -> int:
    """Bytes per second (0 allowed) from an integer or a size, per second if so written: "16KiB/s"."""
    if isinstance(value, str):
        value = value.strip().removesuffix("/s")
    if value in (0, "0") and not isinstance(value, bool):
        return 0
    try:
        return parse_size(value)
    except ValueError:
        raise ValueError(f"expected a rate such as 16KiB/s (bytes per second), got {value!r}") from None
