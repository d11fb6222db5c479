"""The wire formats turnout speaks (`PROVIDERS`: one record per folder, one line each), and the
adapters built from them for the configured providers (with the local upstreams they need)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

from turnout.config.provider_kinds import ProviderKind, kinds_by_name
from turnout.config.settings import ProviderSettings
from turnout.providers import anthropic, bedrock, cohere, fake, gemini, openai_compatible
from turnout.providers.base import Adapter
from turnout.providers.http.client import HttpClient
from turnout.providers.link import ProviderLink
from turnout.providers.passage import Passage
from turnout.providers.spec import AdapterFactory, LocalUpstream, ProviderSpec

PROVIDERS: tuple[ProviderSpec, ...] = (
    openai_compatible.PROVIDER,
    anthropic.PROVIDER,
    gemini.PROVIDER,
    cohere.PROVIDER,
    bedrock.PROVIDER,
    fake.PROVIDER,
)

# Every kind a config may name (`type:`), from the records that serve it.
KINDS: Mapping[str, ProviderKind] = kinds_by_name(k for spec in PROVIDERS for k in spec.kinds)
_BY_WIRE: Mapping[str, ProviderSpec] = MappingProxyType({spec.wire: spec for spec in PROVIDERS})


def spec_of(kind: ProviderKind) -> ProviderSpec:
    """The record of the wire format `kind` speaks."""
    return _BY_WIRE[kind.wire]


def _factory(spec: ProviderSpec) -> AdapterFactory:
    adapter = spec.adapter
    while isinstance(adapter, str):  # served by another wire format's adapter
        adapter = _BY_WIRE[adapter].adapter
    return adapter


class ProviderRegistry:
    def __init__(
        self,
        adapters: dict[str, Adapter],
        fakes: dict[str, LocalUpstream],
        passages: dict[str, Passage] | None = None,
    ) -> None:
        self.adapters = adapters
        self.fakes = fakes  # the upstreams turnout runs itself, by provider name
        self.passages = passages or {}  # the providers with a pass-through, by name

    @classmethod
    async def start(cls, providers: Mapping[str, ProviderSettings], client: HttpClient) -> ProviderRegistry:
        adapters: dict[str, Adapter] = {}
        fakes: dict[str, LocalUpstream] = {}
        passages: dict[str, Passage] = {}
        try:
            for name, settings in providers.items():
                spec = spec_of(settings.kind)
                if spec.local_upstream is not None:
                    local = spec.local_upstream(settings)
                    port = await local.start()
                    fakes[name] = local
                    settings = dataclasses.replace(settings, base_url=f"http://127.0.0.1:{port}/v1")
                adapters[name] = adapter = _factory(spec)(settings, client)
                link = getattr(adapter, "link", None)
                if settings.passthrough and isinstance(link, ProviderLink):
                    passages[name] = Passage(settings, link, client)
        except BaseException:
            for local in fakes.values():
                await local.stop()
            raise
        return cls(adapters, fakes, passages)

    def __getitem__(self, name: str) -> Adapter:
        return self.adapters[name]

    async def aclose(self) -> None:
        for adapter in self.adapters.values():
            await adapter.aclose()
        for local in self.fakes.values():
            await local.stop()
