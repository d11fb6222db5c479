"""The price table turnout ships (prices.yaml, read once): the default of every deployment's
`price:`, which is why it lives with the configuration. A deployment's model is found in it by the
price namespace of its provider's kind (`ProviderKind.price_namespace`, declared by the provider's
own folder), then by the model's name as the provider
spells it, then without a cross-region prefix (Bedrock's `us.`), a date or version suffix
(`-2024-08-06`, `-20250929`, `-001`), or a `models/` prefix."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from turnout.domain.pricing import CAPABILITIES, ModelPrice, decimal_price

_REGION_PREFIX = re.compile(r"^(?:us|eu|apac|au|jp|ca|us-gov|global)\.")
_SUFFIXES = (
    re.compile(r"-\d{4}-\d{2}-\d{2}$"),  # gpt-4o-2024-08-06
    re.compile(r"-\d{8}$"),  # claude-sonnet-4-5-20250929
    re.compile(r"-(?:latest|\d{3})$"),  # claude-3-5-haiku-latest, gemini-2.0-flash-001
)
_MISTRAL_VERSION = re.compile(r"-\d{4}$")  # mistral-large-2411 is mistral-large-latest


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
            str(name): model_price(entry, f"{source}: models.{namespace}.{name}")
            for name, entry in models.items()
        }
    return PriceTable(str(doc.get("effective", "")), sections)


def model_price(entry: Any, where: str) -> ModelPrice:
    if not isinstance(entry, dict) or "input" not in entry:
        raise ValueError(f"{where}: needs at least an 'input' price")
    unknown = set(entry) - {
        "input",
        "output",
        "cached_input",
        "cache_write",
        "context_window",
        "max_output_tokens",
        "capabilities",
    }
    if unknown:
        raise ValueError(f"{where}: unknown field '{sorted(unknown)[0]}'")
    try:
        optional = {
            k: decimal_price(entry[k]) for k in ("cached_input", "cache_write") if entry.get(k) is not None
        }
        capabilities = frozenset(entry.get("capabilities") or ())
        if not capabilities <= CAPABILITIES:
            raise ValueError(f"unknown capability '{sorted(capabilities - CAPABILITIES)[0]}'")
        return ModelPrice(
            input=decimal_price(entry["input"]),
            output=decimal_price(entry.get("output", 0)),
            context_window=entry.get("context_window"),
            max_output_tokens=_tokens(entry.get("max_output_tokens"), "max_output_tokens"),
            capabilities=capabilities,
            **optional,
        )
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


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
