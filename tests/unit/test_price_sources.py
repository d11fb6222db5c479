"""Every figure of the shipped price table against the source quoted beside it: the table says
where each price comes from (the page, the day its stored copy was read, the figures as the page
gives them), and a figure that is not in its quote fails here. Entries whose provider's page was not
available to check say `source: unverified` (listed in the report, counted here)."""

from __future__ import annotations

import re
from decimal import Decimal
from importlib import resources
from typing import Any

import yaml

RATES = ("input", "output", "cached_input", "cache_write", "cache_write_1h", "search_units")
FREE = ("free", "免费")  # a source's word for a price of zero (OpenAI's moderation models)
FIGURE = re.compile(r"\$(\d+(?:\.\d+)?)")


def table() -> dict[str, Any]:
    text = resources.files("turnout.config").joinpath("prices.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)  # type: ignore[no-any-return]


def figures(entry: dict[str, Any], unverified: set[str]) -> dict[str, Decimal]:
    """The entry's prices by where they sit (long_context.input, service_tiers.batch.output...)."""
    found = {k: Decimal(entry[k]) for k in RATES if k in entry and k not in unverified}
    if "long_context" in entry and "long_context" not in unverified:
        step = entry["long_context"]
        found |= {f"long_context.{k}": Decimal(step[k]) for k in RATES if k in step}
    for tier, rates in (entry.get("service_tiers") or {}).items():
        found |= {f"service_tiers.{tier}.{k}": Decimal(rates[k]) for k in RATES if k in rates}
    for unit in ("per_audio_minute", "per_1m_characters"):  # images and audio, priced per unit
        if unit in entry and unit not in unverified:
            found[unit] = Decimal(entry[unit])
    for kind, price in (entry.get("per_image") or {}).items():
        found[f"per_image.{kind}"] = Decimal(price)
    return found


def test_every_sourced_figure_is_in_its_source() -> None:
    checked = unsourced = 0
    for namespace, models in table()["models"].items():
        for name, entry in models.items():
            versions = entry if isinstance(entry, list) else [entry]
            for version in versions:
                source = version.get("source")
                if namespace == "fake":
                    continue
                if source == "unverified":
                    unsourced += 1
                    continue
                assert isinstance(source, list) and source, f"{namespace}.{name}: no source"
                quoted: set[Decimal] = set()
                for cited in source:
                    assert cited["url"].startswith("https://"), f"{namespace}.{name}: {cited}"
                    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", cited["seen"]), f"{namespace}.{name}: {cited}"
                    quoted |= {Decimal(f).normalize() for f in FIGURE.findall(cited["says"])}
                    if any(word in cited["says"].lower() for word in FREE):
                        quoted.add(Decimal(0))
                for where, value in figures(version, set(version.get("unverified") or ())).items():
                    assert value.normalize() in quoted, (
                        f"{namespace}.{name}.{where}: {value} is not in its source"
                    )
                    checked += 1
    assert checked >= 100  # Anthropic's whole section (batch, long prompts), Gemini 2.5 Pro, OpenAI's sourced
    assert unsourced == 45  # see the table's comment: their providers' pages were not available to check


def test_a_figure_that_differs_from_its_source_is_caught() -> None:
    entry = table()["models"]["anthropic"]["claude-opus-4-5"]
    wrong = {**entry, "output": "26.00"}
    quoted = {Decimal(f).normalize() for c in entry["source"] for f in FIGURE.findall(c["says"])}
    assert Decimal(wrong["output"]).normalize() not in quoted
    assert all(v.normalize() in quoted for v in figures(entry, set()).values())
