"""The record each wire format's folder exports about itself (`PROVIDER`): everything turnout knows
about a wire format outside its folder is read from here, and nowhere else.

Adding a wire format is its folder (adapter, translation, its record) and one line in
`providers/registry.py`. The config loader reads a record's kinds and sections through
`turnout.config.provider_sections.DescribesConfig` (config sits below providers); the price table
is read by each kind's `price_namespace`; `Capabilities.native_wire` by its `native_inbound`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from turnout.config.provider_kinds import ProviderKind, WireFormat
from turnout.config.provider_sections import ProviderSection
from turnout.config.settings import ProviderSettings
from turnout.providers.base import Adapter
from turnout.providers.http.client import HttpClient
from turnout.providers.upstream_errors import UpstreamErrorBody


class LocalUpstream(Protocol):
    """An upstream turnout runs itself on loopback (the fake provider's server)."""

    async def start(self) -> int:
        """Start serving; the port it listens on."""
        ...

    async def stop(self) -> None: ...


AdapterFactory = Callable[[ProviderSettings, HttpClient], Adapter]


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One wire format, described once."""

    wire: WireFormat
    # The kinds of provider a config may name that speak this wire format (each its own URL,
    # authentication, documented gaps, price namespace and native inbound format).
    kinds: tuple[ProviderKind, ...]
    # Builds a provider's adapter from its settings. A factory, so that a wire format with heavy
    # dependencies (Bedrock: botocore) imports them only when one of its providers is configured;
    # or the wire format whose adapter serves it (the fake answers in OpenAI's format), named
    # because wire formats never import each other.
    adapter: AdapterFactory | WireFormat
    # The blocks of a provider's entry only this wire format's kinds take, and their checks.
    sections: tuple[ProviderSection, ...] = ()
    # How an upstream error body of this wire format reads (message, type, code); the one place
    # the error boundary starts from for this format.
    parse_error: Callable[[bytes], UpstreamErrorBody] | None = None
    # For a provider whose upstream turnout runs itself (fake): start it before building the
    # adapter, which is then pointed at it.
    local_upstream: Callable[[ProviderSettings], LocalUpstream] | None = None

    def __post_init__(self) -> None:
        strays = [k.name for k in self.kinds if k.wire != self.wire]
        if strays:
            raise ValueError(f"kinds {strays} do not speak the {self.wire} wire format")
