"""The configuration file's shape, exactly as written. Unknown keys are errors.

These structs are the first stage: they check what was written. `loader.py` is the second: it
resolves secrets, fills in defaults, cross-checks names and yields frozen `Settings`.
Providers and models are maps whose entries are checked one by one, so that every error can name
its entry (`models.gpt-4o.targets[1].provider`).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

DurationValue = str | float
SizeValue = str | int


class TimeoutsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    connect: DurationValue | None = None
    first_byte: DurationValue | None = None
    idle: DurationValue | None = None
    total: DurationValue | None = None


class FakeConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Defaults of a `type: fake` provider; each request's model name can override them."""

    latency: DurationValue | None = None
    chunks: int = 8
    chunk_gap: DurationValue | None = None
    port: int | None = None
    models: list[str] | None = None


class ProviderConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    type: str
    base_url: str | None = None
    api_key: str | None = None
    api_version: str | None = None
    headers: dict[str, str] | None = None
    timeouts: TimeoutsConfig | None = None
    unsupported_params: Literal["reject", "drop"] | None = None
    stream_usage: bool | None = None
    embeddings_base64: bool | None = None
    proxy: str | None = None
    tls_ca_file: str | None = None
    fake: FakeConfig | None = None


class TargetConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    provider: str
    model: str
    timeouts: TimeoutsConfig | None = None


class ModelConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A public model alias: a list of `targets`, or `provider` + `model` for just one."""

    targets: list[TargetConfig] | None = None
    provider: str | None = None
    model: str | None = None
    timeouts: TimeoutsConfig | None = None


class ServerConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    host: str = "127.0.0.1"
    port: int = 4000
    max_request_bytes: SizeValue = "32MiB"
    shutdown_grace: DurationValue = "30s"
    drain_delay: DurationValue = 0
    access_log: bool = False


class AuthConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    master_key: str | None = None
    key_hash_secret: str | None = None


class StorageConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    data_dir: str | None = None
    database_url: str | None = None


class DefaultsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    timeouts: TimeoutsConfig | None = None


class ConfigFile(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The top level: which sections exist. Each section is then checked on its own (`SECTIONS`),
    so a problem in one does not hide the problems in the others."""

    server: Any = None
    auth: Any = None
    storage: Any = None
    defaults: Any = None
    providers: Any = None
    models: Any = None


SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "auth": AuthConfig,
    "storage": StorageConfig,
    "defaults": DefaultsConfig,
    "providers": dict[str, Any],
    "models": dict[str, Any],
}
