"""The price table turnout ships (prices.yaml, read once): the default of every deployment's
`price:`, which is why it lives with the configuration. A deployment's model is found in it by the
price namespace of its provider's kind (`ProviderKind.price_namespace`, declared by the provider's
own folder), then by the model's name as the provider
spells it, then without a cross-region prefix (Bedrock's `us.`), a date or version suffix
(`-2024-08-06`, `-20250929`, `-001`), or a `models/` prefix."""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from turnout.domain.pricing import (
    CAPABILITIES,
    MEDIA_CAPABILITIES,
    SERVICE_TIERS,
    LongContext,
    ModelPrice,
    UnitPrices,
    decimal_price,
    since_timestamp,
)

_REGION_PREFIX = re.compile(r"^(?:us|eu|apac|au|jp|ca|us-gov|global)\.")
_SUFFIXES = (
    re.compile(r"-\d{4}-\d{2}-\d{2}$"),  # gpt-4o-2024-08-06
    re.compile(r"-\d{8}$"),  # claude-sonnet-4-5-20250929
    re.compile(r"-(?:latest|\d{3})$"),  # claude-3-5-haiku-latest, gemini-2.0-flash-001
)
_MISTRAL_VERSION = re.compile(r"-\d{4}$")  # mistral-medium-2508 is mistral-medium-latest


@dataclass(frozen=True, slots=True)
class PriceTable:
    effective: str
    sections: Mapping[str, Mapping[str, ModelPrice]]

    def lookup(self, namespace: str | None, model: str) -> ModelPrice | None:
        """The price of `model` in the `namespace` of its provider's kind, if the table knows it
        (a kind without a namespace is priced by configuration only)."""
        section = self.sections.get(namespace) if namespace else None
        if not section:
            return None
        for name in _candidates(model):
            price = section.get(name)
            if price is not None:
                return price
        return section.get("*")

    def __len__(self) -> int:
        return sum(len(s) for s in self.sections.values())


def _candidates(model: str) -> list[str]:
    names = [model]
    base = _REGION_PREFIX.sub("", model.removeprefix("models/"))
    names.append(base)
    for suffix in _SUFFIXES:
        base = suffix.sub("", base)
        names.append(base)
    if _MISTRAL_VERSION.search(base):
        names.append(_MISTRAL_VERSION.sub("-latest", base))
    return list(dict.fromkeys(names))


def parse_table(doc: Any, source: str) -> PriceTable:
    """A price table from its YAML document; ValueError naming the entry for anything wrong."""
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
        raise ValueError(f"{source}: needs 'effective' and 'models'")
    sections: dict[str, dict[str, ModelPrice]] = {}
    for namespace, models in doc["models"].items():
        if not isinstance(models, dict):
            raise ValueError(f"{source}: models.{namespace} must map model names to prices")
        sections[namespace] = {
            str(name): model_price(
                entry, f"{source}: models.{namespace}.{name}", str(doc.get("effective", ""))
            )
            for name, entry in models.items()
        }
    return PriceTable(str(doc.get("effective", "")), sections)


RATES = ("input", "output", "cached_input", "cache_write", "cache_write_1h")
UNITS = ("per_image", "per_audio_minute", "per_1m_characters")
META = ("context_window", "max_output_tokens", "capabilities")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}:\d{2}Z)?$")


def model_price(entry: Any, where: str, effective: str = "", *, table: bool = True) -> ModelPrice:
    """A model's price from its entry: one version (a mapping) or dated versions (a list of
    mappings, each with `since`), each with its rates, an optional `long_context` step
    (`above` N prompt tokens) and `service_tiers` (flex, priority, batch; each with its rates and
    its own long-context step). The table's entries also carry the model's limits and
    capabilities and their `source`. ValueError naming the entry for anything wrong."""
    if isinstance(entry, list):
        if not entry:
            raise ValueError(f"{where}: a list of price versions needs at least one")
        versions = [_version(v, f"{where}[{i}]", None, table) for i, v in enumerate(entry)]
        dates = [since_timestamp(v.since) for v in versions]
        if len(set(dates)) != len(dates):
            raise ValueError(f"{where}: two versions have the same 'since' date")
        versions.sort(key=lambda v: since_timestamp(v.since))
        newest = versions[-1]
        return dataclasses.replace(newest, earlier=tuple(reversed(versions[:-1])))
    return _version(entry, where, effective, table)


def _version(entry: Any, where: str, effective: str | None, table: bool) -> ModelPrice:
    if not isinstance(entry, dict) or not _priced(entry):
        raise ValueError(
            f"{where}: needs at least an 'input' price (a reranker's: 'search_units'; an image or audio "
            "model's: 'per_image', 'per_audio_minute' or 'per_1m_characters')"
        )
    known = {
        *RATES,
        *UNITS,
        "search_units",
        "long_context",
        "service_tiers",
        "since",
        *(META if table else ()),
        *(("source", "unverified") if table else ()),
    }
    _only(entry, known, where)
    since = entry["since"] if entry.get("since") is not None else effective
    if since is None:
        raise ValueError(f"{where}: each of several versions needs 'since' (YYYY-MM-DD)")
    since = str(since)
    if since and not _valid_date(since):
        raise ValueError(f"{where}.since: not a date (YYYY-MM-DD, or YYYY-MM-DDTHH:MM:SSZ): {since!r}")
    tiers = entry.get("service_tiers") or {}
    if not isinstance(tiers, dict):
        raise ValueError(f"{where}.service_tiers: must map tier names (flex, priority, batch) to prices")
    unknown = set(tiers) - SERVICE_TIERS
    if unknown:
        known_tiers = ", ".join(sorted(SERVICE_TIERS))
        raise ValueError(f"{where}.service_tiers: unknown tier '{sorted(unknown)[0]}' (known: {known_tiers})")
    try:
        capabilities = frozenset(entry.get("capabilities") or ())
        if not capabilities <= CAPABILITIES | MEDIA_CAPABILITIES:
            unknown_capability = sorted(capabilities - CAPABILITIES - MEDIA_CAPABILITIES)[0]
            raise ValueError(f"unknown capability '{unknown_capability}'")
        base = _tier(entry, where, set())  # its fields were checked above
        searches = entry.get("search_units")
        return dataclasses.replace(
            base,
            search_units=None if searches is None else decimal_price(searches),
            service_tiers=tuple(
                (name, _tier(tier, f"{where}.service_tiers.{name}", {*RATES, "long_context"}))
                for name, tier in sorted(tiers.items())
            ),
            since=since,
            context_window=entry.get("context_window"),
            max_output_tokens=_tokens(entry.get("max_output_tokens"), "max_output_tokens"),
            capabilities=capabilities,
            units=_units(entry),
            unverified=_unverified(entry) if table else frozenset(),
        )
    except ValueError as error:
        message = str(error)
        raise ValueError(message if message.startswith(where) else f"{where}: {message}") from None


def _unverified(entry: dict[str, Any]) -> frozenset[str]:
    """The figures of a table entry that no provider page backs: all of them for `source:
    unverified`, else those its `unverified` list names."""
    figures = {k for k in (*RATES, *UNITS, "search_units", "long_context", "service_tiers") if k in entry}
    if entry.get("source") == "unverified":
        return frozenset(figures)
    return frozenset(figures & set(entry.get("unverified") or ()))


def _priced(entry: dict[str, Any]) -> bool:
    return entry.get("input") is not None or entry.get("search_units") is not None or _has_units(entry)


def _tier(entry: Any, where: str, known: set[str]) -> ModelPrice:
    """Rates, and a long-context step if any."""
    if not isinstance(entry, dict) or (not _priced(entry) if not known else "input" not in entry):
        raise ValueError(f"{where}: needs at least an 'input' price")
    if known:
        _only(entry, known, where)
    rates = _rates(entry, where)
    step = entry.get("long_context")
    if step is None:
        return ModelPrice(**rates)
    if not isinstance(step, dict) or "above" not in step or step.get("input") is None:
        raise ValueError(f"{where}.long_context: needs 'above' (prompt tokens) and an 'input' price")
    _only(step, {*RATES, "above"}, f"{where}.long_context")
    above = _tokens(step["above"], "above")
    assert above is not None
    long = _rates(step, f"{where}.long_context")
    for cache in ("cached_input", "cache_write", "cache_write_1h"):
        if cache not in long and cache in rates and rates["input"]:
            # the cache keeps its ratio to the input price (as Anthropic and Google price it)
            long[cache] = rates[cache] * long["input"] / rates["input"]
    return ModelPrice(**rates, long_context=LongContext(above, ModelPrice(**long)))


def _rates(entry: dict[str, Any], where: str) -> dict[str, Any]:
    try:
        rates: dict[str, Any] = {
            "input": decimal_price(0 if entry.get("input") is None else entry["input"]),
            "output": decimal_price(entry.get("output", 0)),
        }
        for k in ("cached_input", "cache_write", "cache_write_1h"):
            if entry.get(k) is not None:
                rates[k] = decimal_price(entry[k])
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    return rates


def _has_units(entry: dict[str, Any]) -> bool:
    return any(entry.get(name) is not None for name in UNITS)


def _units(entry: dict[str, Any]) -> UnitPrices | None:
    """The per-unit prices of an entry: `per_image` (a mapping of "quality size", or size, to USD
    per image), `per_audio_minute` (USD), `per_1m_characters` (USD); None when it has none."""
    if not _has_units(entry):
        return None
    images = entry.get("per_image") or {}
    if not isinstance(images, dict):
        raise ValueError('per_image: must map an image\'s quality and size ("hd 1024x1792") or size to USD')
    per_image = tuple(sorted((str(kind), decimal_price(price)) for kind, price in images.items()))
    minute, characters = entry.get("per_audio_minute"), entry.get("per_1m_characters")
    return UnitPrices(
        per_image=per_image,
        per_audio_minute=None if minute is None else decimal_price(minute),
        per_1m_characters=None if characters is None else decimal_price(characters),
    )


def _only(entry: dict[str, Any], known: set[str], where: str) -> None:
    unknown = set(entry) - known
    if unknown:
        raise ValueError(f"{where}: unknown field '{sorted(unknown)[0]}'")


def _valid_date(text: str) -> bool:
    if not _DATE.match(text):
        return False
    try:
        since_timestamp(text)
    except ValueError:
        return False
    return True


def _tokens(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if type(value) is not int or value < 1:
        raise ValueError(f"'{name}' must be a positive number of tokens")
    return value


@functools.cache
def shipped_prices() -> PriceTable:
    """The table in the package (read and checked once per process)."""
    text = resources.files("turnout.config").joinpath("prices.yaml").read_text(encoding="utf-8")
    return parse_table(yaml.safe_load(text), "prices.yaml")
