"""`turnout keys import --from-litellm FILE`: re-issue LiteLLM's virtual keys as turnout keys.

LiteLLM stores a key only as its SHA-256 hash, and turnout's keys are HMACs of keys of its own
shape, so no LiteLLM key can keep working: each is issued anew through the admin API with what it
carried (name, models, expiry, budget, rate limits, metadata), and the new keys are printed once
for their owners. A plaintext key in the export is never read or printed.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

EVERY_MODEL = ("all-proxy-models", "*")  # LiteLLM's spellings of "no restriction"
LIMITS = {"rpm_limit": "rpm", "tpm_limit": "tpm", "max_parallel_requests": "parallel"}


class ExportError(Exception):
    """The file is not a LiteLLM key export."""


@dataclass
class Planned:
    """One LiteLLM key: the admin API body that re-issues it, or why it is skipped."""

    source: str  # how LiteLLM named it (alias, else its abbreviated key name)
    body: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)


def read_export(path: Path) -> list[dict[str, Any]]:
    """The keys of a LiteLLM export: a JSON list of key objects, or the answer of LiteLLM's
    `GET /key/list?return_full_object=true` (`{"keys": [...]}`)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ExportError(f"{path}: cannot read it as JSON ({error})") from None
    keys = data.get("keys") if isinstance(data, dict) else data
    if not isinstance(keys, list):
        raise ExportError(f"{path}: expected a JSON list of keys, or an object with a 'keys' list")
    for i, entry in enumerate(keys):
        if isinstance(entry, str):
            raise ExportError(
                f"{path}: entry {i} is only a key hash; export the keys with LiteLLM's "
                "GET /key/list?return_full_object=true (or the LiteLLM_VerificationToken rows)"
            )
        if not isinstance(entry, dict):
            raise ExportError(f"{path}: entry {i} is not a key object")
    return keys


def plan(entry: dict[str, Any], now: dt.datetime) -> Planned:
    token = str(entry.get("token") or "")
    source = str(entry.get("key_alias") or entry.get("key_name") or f"token {token[:12]}")
    out = Planned(source, {"name": source[:200]})
    if entry.get("blocked"):
        out.skipped = "blocked in LiteLLM"
        return out
    _expiry(entry.get("expires"), now, out)
    if out.skipped:
        return out
    _models(entry.get("models"), out)
    _budget(entry, out)
    limits = {ours: entry[theirs] for theirs, ours in LIMITS.items() if isinstance(entry.get(theirs), int)}
    if limits:
        out.body["limits"] = limits
    metadata = entry.get("metadata")
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            metadata = None
    out.body["metadata"] = {**(metadata if isinstance(metadata, dict) else {}), "litellm_key": source}
    for name in ("team_id", "user_id"):
        if entry.get(name):
            out.notes.append(f"{name} {entry[name]!r} not carried (turnout's teams and users are its own)")
    return out


def _expiry(expires: object, now: dt.datetime, out: Planned) -> None:
    if not expires:
        return
    try:
        when = dt.datetime.fromisoformat(str(expires).replace("Z", "+00:00"))
    except ValueError:
        out.skipped = f"its expiry {expires!r} is not a date"
        return
    when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    left = int((when - now).total_seconds())
    if left <= 0:
        out.skipped = f"expired {when.isoformat()}"
    else:
        out.body["expires_in"] = f"{left}s"


def _models(models: object, out: Planned) -> None:
    if not isinstance(models, list) or not models or any(m in EVERY_MODEL for m in models):
        return  # every model
    if "all-team-models" in models:
        out.notes.append("'all-team-models' not carried: the key may use every model")
        return
    out.body["models"] = [str(m) for m in models]


def _budget(entry: dict[str, Any], out: Planned) -> None:
    budget = entry.get("max_budget")
    if budget is None:
        return
    try:
        amount = Decimal(str(budget))
    except InvalidOperation:
        out.notes.append(f"max_budget {budget!r} is not a number; not carried")
        return
    out.body["max_budget"] = str(amount)
    if entry.get("budget_duration"):
        out.notes.append(
            f"budget_duration {entry['budget_duration']!r} not carried: the key's budget is for its "
            "lifetime; add a periodic budget with `turnout budgets set`"
        )
    if entry.get("spend"):
        out.notes.append(f"LiteLLM spend so far ({entry['spend']} USD) is not counted against it")
