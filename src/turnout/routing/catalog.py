"""The public model catalog: a requested name → its alias and concrete upstream targets.

Exact aliases win; then the wildcard alias with the longest prefix (`groq/*`); then `*`.
Resolutions are cached, so a request pays one dict lookup.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from turnout.config.settings import ModelSettings, TargetSettings, Timeouts
from turnout.domain.chat import ChatRequest
from turnout.domain.errors import TurnoutError
from turnout.domain.pricing import ModelPrice
from turnout.providers.base import Adapter, Capabilities, ChatCall, NativeRequest
from turnout.providers.capabilities import with_declared
from turnout.providers.passage import Passage
from turnout.providers.registry import ProviderRegistry

log = logging.getLogger("turnout.catalog")

MAX_CACHED_ROUTES = 4096
PASSTHROUGH_PREFIX = "passthrough/"  # a key that may use `passthrough/<provider>` may use its pass-through
UPSTREAM_LIST_TTL = 300.0
FAILED_LIST_RETRY = 15.0  # a provider that could not list its models is asked again this soon


@dataclass(frozen=True, slots=True)
class Target:
    """One deployment a request can go to."""

    provider: str
    model: str
    timeouts: Timeouts
    adapter: Adapter
    name: str = ""  # the deployment's name: x-turnout-deployment, steering, health detail
    weight: float = 1.0
    priority: int = 0
    tags: frozenset[str] = frozenset()
    rpm: int | None = None
    tpm: int | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None  # the most tokens one answer may hold (None: unbounded)
    price: ModelPrice | None = None  # None: unknown (its spend is recorded as such)
    tokenizer: str | None = None  # the tokenizer its prompts are counted with exactly, if turnout has it
    # what this deployment's model can carry: its provider's, with the model's own declarations
    capabilities: Capabilities = field(default_factory=Capabilities)
    unsupported_params: Literal["reject", "drop"] | None = None

    def call(
        self,
        request: ChatRequest,
        body: dict[str, Any],
        wants_usage: bool,
        native: NativeRequest | None = None,
    ) -> ChatCall:
        """The chat call this deployment makes for a request."""
        return ChatCall(
            request, body, self.model, self.timeouts, wants_usage, native, self.unsupported_params
        )

    @property
    def label(self) -> str:
        return self.name or f"{self.provider}/{self.model}"

    @property
    def cost(self) -> Decimal | None:
        """A blended price for ordering by cost (input counts 3:1, as chat prompts outweigh answers)."""
        return None if self.price is None else self.price.blended


@dataclass(frozen=True, slots=True)
class Route:
    alias: str
    requested: str
    targets: tuple[Target, ...]
    policy: ModelSettings
    # the longest answer one of its deployments can give (None: one has no known limit)
    output_ceiling: int | None = field(init=False)
    # whether one of its deployments serves chat (not all are rerankers or moderation models)
    serves_chat: bool = field(init=False)

    def __post_init__(self) -> None:
        limits = [t.max_output_tokens for t in self.targets]
        ceiling = None if not limits or None in limits else max(x for x in limits if x is not None)
        object.__setattr__(self, "output_ceiling", ceiling)
        object.__setattr__(self, "serves_chat", any(t.capabilities.chat for t in self.targets))


PriceOf = Callable[[str, str], ModelPrice | None]  # (provider, model) → its price, if known
TokenizerOf = Callable[[str, str], str | None]  # (provider, model) → its exact tokenizer, if any


class Catalog:
    def __init__(
        self,
        models: Mapping[str, ModelSettings],
        registry: ProviderRegistry,
        price_of: PriceOf | None = None,
        tokenizer_of: TokenizerOf | None = None,
    ) -> None:
        self._models = models
        self._registry = registry
        self._price_of = price_of  # prices the models a wildcard reaches (the rest are priced at load)
        self._tokenizer_of = tokenizer_of
        self._exact = {alias: m for alias, m in models.items() if not m.is_wildcard}
        self._wildcards = sorted(
            (m for m in models.values() if m.is_wildcard), key=lambda m: len(m.alias), reverse=True
        )
        self._cache: dict[str, Route | None] = {}
        self._upstream_lists: dict[str, tuple[float, list[str]]] = {}

    def configured_deployments(self) -> frozenset[tuple[str, str]]:
        """(provider, model) of every deployment the configuration names: all but the ones a
        wildcard target (`model: "*"`) makes of the names clients send."""
        return frozenset(
            (t.provider, t.model) for m in self._models.values() for t in m.targets if "*" not in t.model
        )

    def resolve(self, name: str) -> Route | None:
        try:
            return self._cache[name]
        except KeyError:
            pass
        route = self._resolve(name)
        if len(self._cache) >= MAX_CACHED_ROUTES:
            self._cache.clear()
        self._cache[name] = route
        return route

    def _resolve(self, name: str) -> Route | None:
        model = self._exact.get(name)
        if model is not None:
            return self._route(model, name, "")
        for model in self._wildcards:
            prefix = model.alias[:-1]
            if name.startswith(prefix) and len(name) > len(prefix):
                return self._route(model, name, name[len(prefix) :])
        return None

    def _route(self, model: ModelSettings, requested: str, matched: str) -> Route:
        targets = tuple(self._target(t, matched) for t in model.targets)
        return Route(alias=model.alias, requested=requested, targets=targets, policy=model)

    def target(self, t: TargetSettings) -> Target:
        """The deployment a configured target (one without a wildcard) makes: a mirror's candidate."""
        return self._target(t, "")

    def _target(self, t: TargetSettings, matched: str) -> Target:
        model = t.model.replace("*", matched)
        name = t.name.replace("*", matched) if t.name else f"{t.provider}/{model}"
        adapter = self._registry[t.provider]
        looked_up = None if "*" not in t.model else self._wildcard_price(t.provider, model)
        price = t.price if t.price is not None or "*" not in t.model else looked_up
        return Target(
            provider=t.provider,
            model=model,
            timeouts=t.timeouts,
            adapter=adapter,
            name=name,
            weight=t.weight,
            priority=t.priority,
            tags=t.tags,
            rpm=t.rpm,
            tpm=t.tpm,
            context_window=t.context_window,
            max_output_tokens=t.max_output_tokens
            if t.max_output_tokens is not None or looked_up is None
            else looked_up.max_output_tokens,
            price=price,
            tokenizer=None if self._tokenizer_of is None else self._tokenizer_of(t.provider, model),
            capabilities=with_declared(adapter.capabilities, t.supports, _listed(looked_up)),
            unsupported_params=t.unsupported_params,
        )

    # ------------------------------------------------------------------ pass-through

    def passage(self, provider: str) -> Passage | None:
        """The provider's pass-through, if it has one (`passthrough:` in its configuration)."""
        return self._registry.passages.get(provider)

    def passthrough_route(self, passage: Passage) -> Route:
        """What a pass-through request is accounted under: `passthrough/<provider>`, no deployment
        chosen ahead (its answer says which model served it)."""
        alias = f"{PASSTHROUGH_PREFIX}{passage.provider}"
        return Route(alias=alias, requested=alias, targets=(), policy=ModelSettings(alias=alias, targets=()))

    def passthrough_target(self, passage: Passage, model: str | None) -> Target:
        """The deployment a pass-through answer came from: the provider and the model it reported
        (priced from the price table where it is known; unpriced otherwise)."""
        adapter = self._registry[passage.provider]
        named = model or ""
        return Target(
            provider=passage.provider,
            model=named,
            timeouts=passage.timeouts,
            adapter=adapter,
            name=f"{passage.provider}/{named}" if named else passage.provider,
            price=self._wildcard_price(passage.provider, named) if named else None,
            capabilities=adapter.capabilities,
        )

    def _wildcard_price(self, provider: str, model: str) -> ModelPrice | None:
        return None if self._price_of is None else self._price_of(provider, model)

    # ------------------------------------------------------------------ listing

    async def list_names(self) -> list[str]:
        """Every name a client can ask for: exact aliases, and the upstream models behind wildcards
        (fetched from the providers, cached for five minutes, skipped when a provider is down)."""
        names = list(self._exact)
        for model in sorted(self._wildcards, key=lambda m: m.alias):
            prefix = model.alias[:-1]
            for target in model.targets:
                if target.model != "*":
                    continue
                for upstream in await self._upstream_models(target.provider):
                    names.append(prefix + upstream)
        return list(dict.fromkeys(names))

    async def _upstream_models(self, provider: str) -> list[str]:
        cached = self._upstream_lists.get(provider)
        now = time.monotonic()
        if cached is not None and now - cached[0] < UPSTREAM_LIST_TTL:
            return cached[1]
        try:
            names = await self._registry[provider].list_models()
        except TurnoutError as error:
            log.warning("cannot list the models of provider %s: %s", provider, error.message)
            names = cached[1] if cached else []
            now -= UPSTREAM_LIST_TTL - FAILED_LIST_RETRY  # keep what we had, but ask again soon
        self._upstream_lists[provider] = (now, names)
        return names


def _listed(price: ModelPrice | None) -> frozenset[str]:
    """What the price table lists a wildcard's model as able to do (image, audio models)."""
    return frozenset() if price is None else price.capabilities
