"""What the config loader asks of each provider: the kinds it serves and the blocks of a provider's
entry that only it takes (`vertex:`, `aws:`, `fake:`, Azure's `api_version`).

Why the loader is handed these instead of importing them: `config/` sits below `providers/` (every
adapter reads `ProviderSettings`), so importing the provider list from here would be an import
circle. Each provider folder describes itself in one record (`turnout.providers.spec.ProviderSpec`),
which owns its sections and their checks; whoever loads a configuration passes those records in
(`turnout.providers.config_loader` does), and the loader sees them only through `DescribesConfig`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from turnout.config.provider_kinds import ProviderKind
from turnout.config.schema import ProviderConfig
from turnout.config.secrets import Secret


@dataclass(frozen=True, slots=True)
class SectionInput:
    """A provider's entry as written, and the loader's means to report and resolve."""

    cfg: ProviderConfig
    kind: ProviderKind
    base_url: str | None  # as written, else from the kind's environment variable or its default
    path: str  # `providers.<name>`
    environ: Mapping[str, str]
    problem: Callable[[str, str], None]
    secret: Callable[[str | None, str], Secret | None]
    # msgspec conversion of a raw block into its struct, reporting faults with their dotted path
    convert: Callable[[object, type[Any], str], Any]


@dataclass(frozen=True, slots=True)
class SectionResult:
    """What a section decides about its provider."""

    base_url: str | None
    api_key: str | None  # the reference of the key to resolve (a section may supply one)
    settings: Mapping[str, Any] = field(default_factory=dict)  # `ProviderSettings` fields it fills
    proxied: bool = True  # False: the upstream is local to turnout and never reached through a proxy


@dataclass(frozen=True, slots=True)
class ProviderSection:
    """One block of a provider's entry that only some kinds take."""

    key: str  # its field in `providers.<name>`
    refusal: str  # why another kind may not write it: "only Bedrock providers take this section"
    applies: Callable[[ProviderKind], bool]
    # None after reporting each fault (the provider is then left out)
    read: Callable[[SectionInput], SectionResult | None]


class DescribesConfig(Protocol):
    """The part of a provider's record the loader reads."""

    @property
    def kinds(self) -> tuple[ProviderKind, ...]: ...

    @property
    def sections(self) -> tuple[ProviderSection, ...]: ...
