"""Build one adapter per configured provider (and start the fake upstreams they need)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from turnout.config.settings import ProviderSettings
from turnout.providers.anthropic.adapter import AnthropicAdapter
from turnout.providers.base import Adapter
from turnout.providers.cohere.adapter import CohereAdapter
from turnout.providers.fake.server import FakeUpstream
from turnout.providers.gemini.adapter import GeminiAdapter
from turnout.providers.gemini.vertex import VertexAdapter
from turnout.providers.http.client import HttpClient
from turnout.providers.openai_compatible.adapter import OpenAICompatibleAdapter


class ProviderRegistry:
    def __init__(self, adapters: dict[str, Adapter], fakes: dict[str, FakeUpstream]) -> None:
        self.adapters = adapters
        self.fakes = fakes

    @classmethod
    async def start(cls, providers: Mapping[str, ProviderSettings], client: HttpClient) -> ProviderRegistry:
        adapters: dict[str, Adapter] = {}
        fakes: dict[str, FakeUpstream] = {}
        try:
            for name, settings in providers.items():
                if settings.kind.wire == "fake":
                    assert settings.fake is not None
                    fake = FakeUpstream(settings.fake, name)
                    port = await fake.start()
                    fakes[name] = fake
                    settings = dataclasses.replace(settings, base_url=f"http://127.0.0.1:{port}/v1")
                if settings.kind.wire == "anthropic":
                    adapters[name] = AnthropicAdapter(settings, client)
                elif settings.kind.wire == "gemini":
                    vertex = settings.kind.name == "vertex"
                    adapters[name] = (VertexAdapter if vertex else GeminiAdapter)(settings, client)
                elif settings.kind.wire == "cohere":
                    adapters[name] = CohereAdapter(settings, client)
                elif settings.kind.wire == "bedrock":
                    # imported only when configured: it loads botocore (SigV4, event streams)
                    from turnout.providers.bedrock.adapter import BedrockAdapter

                    adapters[name] = BedrockAdapter(settings, client)
                else:
                    adapters[name] = OpenAICompatibleAdapter(settings, client)
        except BaseException:
            for fake in fakes.values():
                await fake.stop()
            raise
        return cls(adapters, fakes)

    def __getitem__(self, name: str) -> Adapter:
        return self.adapters[name]

    async def aclose(self) -> None:
        for adapter in self.adapters.values():
            await adapter.aclose()
        for fake in self.fakes.values():
            await fake.stop()
