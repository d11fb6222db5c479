"""Frozen, resolved settings: what the rest of turnout is built from. Secrets are `Secret`s."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from turnout.config.provider_kinds import ProviderKind
from turnout.config.secrets import Secret


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds allowed for each phase of an upstream call."""

    connect: float = 5.0
    first_byte: float = 120.0
    idle: float = 60.0
    total: float = 600.0


@dataclass(frozen=True, slots=True)
class FakeSettings:
    latency: float = 0.0
    chunks: int = 8
    chunk_gap: float = 0.0
    port: int | None = None
    models: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """An HTTP proxy to reach a provider through (CONNECT for https:// providers)."""

    host: str
    port: int
    authorization: Secret | None = None  # the Proxy-Authorization header's value

    @property
    def display(self) -> str:
        return f"http://{self.host}:{self.port}" + (" (with credentials)" if self.authorization else "")


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    name: str
    kind: ProviderKind
    base_url: str
    api_key: Secret | None
    api_version: str | None
    headers: tuple[tuple[str, str | Secret], ...]
    timeouts: Timeouts
    unsupported_params: Literal["reject", "drop"]
    stream_usage: bool
    embeddings_base64: bool
    fake: FakeSettings | None = None
    proxy: ProxySettings | None = None
    tls_ca_file: Path | None = None


@dataclass(frozen=True, slots=True)
class TargetSettings:
    provider: str
    model: str
    timeouts: Timeouts


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """A public alias. A wildcard alias (`groq/*`) matches any name with its prefix; `*` in a
    target's model stands for the part of the requested name the wildcard matched."""

    alias: str
    targets: tuple[TargetSettings, ...]

    @property
    def is_wildcard(self) -> bool:
        return self.alias.endswith("*")


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 4000
    max_request_bytes: int = 32 * 1024 * 1024
    shutdown_grace: float = 30.0
    drain_delay: float = 0.0
    access_log: bool = False


@dataclass(frozen=True, slots=True)
class AuthSettings:
    master_key: Secret | None = None
    key_hash_secret: Secret | None = None


@dataclass(frozen=True, slots=True)
class StorageSettings:
    data_dir: Path
    database_url: str = field(repr=False)  # may carry a password resolved from a secret reference


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings
    auth: AuthSettings
    storage: StorageSettings
    providers: Mapping[str, ProviderSettings]
    models: Mapping[str, ModelSettings]
    source: str
    warnings: tuple[str, ...] = ()
