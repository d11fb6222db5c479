"""Zero-config start: providers from the standard environment variables, as a config document.

Each configured provider `p` gets a wildcard alias `p/*` (so `groq/llama-3.1-8b-instant` reaches
Groq's `llama-3.1-8b-instant`). Unprefixed names (`gpt-4o`) go to OpenAI when it is configured, or
to the only provider when there is just one, so an OpenAI SDK needs nothing but a new base URL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from turnout.config.provider_kinds import ProviderKind

_NOT_FROM_ENVIRONMENT = ("openai_compatible", "fake")


def config_from_environment(environ: Mapping[str, str], kinds: Iterable[ProviderKind]) -> dict[str, Any]:
    """A config document for the `kinds` (every kind turnout has) whose variables are set."""
    providers: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        if kind.name in _NOT_FROM_ENVIRONMENT:
            continue
        has_key = bool(kind.api_key_env and environ.get(kind.api_key_env))
        has_url = bool(kind.base_url_env and environ.get(kind.base_url_env))
        if kind.azure_paths:
            configured = has_key and has_url
        elif kind.default_base_url is None or not kind.key_required:
            configured = has_url  # self-hosted servers: the URL says where they are
        else:
            configured = has_key
        if not configured:
            continue
        entry: dict[str, Any] = {"type": kind.name}
        if has_key:
            entry["api_key"] = f"env:{kind.api_key_env}"
        if kind.azure_paths and environ.get("OPENAI_API_VERSION"):
            entry["api_version"] = environ["OPENAI_API_VERSION"]
        providers[kind.name] = entry
    models: dict[str, dict[str, Any]] = {f"{name}/*": {"provider": name, "model": "*"} for name in providers}
    default = "openai" if "openai" in providers else next(iter(providers)) if len(providers) == 1 else None
    if default is not None:
        models["*"] = {"provider": default, "model": "*"}
    return {"providers": providers, "models": models}
