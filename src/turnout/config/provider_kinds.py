"""What a kind of provider is: a deployment of a wire format, and what that deployment looks like.

A kind is a deployment of a wire format: Azure, Groq or Ollama all speak OpenAI's format from
their own URL, with their own authentication and their own documented gaps. The kinds themselves
are declared by the provider folder of their wire format (`turnout.providers.<wire>`); adding an
OpenAI-compatible service is one entry there, not a new adapter. This module holds only the type,
so that settings (which every adapter reads) can name it without importing the providers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

WireFormat = Literal["openai", "anthropic", "gemini", "cohere", "bedrock", "fake"]
AuthStyle = Literal["bearer", "api-key", "x-api-key", "x-goog-api-key", "none"]

ANY_VALUE = "<any value>"  # in a parameter's harmless values: it only labels the request; drop it always


def renamed(**items: object) -> Mapping[str, object]:
    return MappingProxyType(items)


def unsupported(**items: tuple[object, ...]) -> Mapping[str, tuple[object, ...]]:
    return MappingProxyType(items)


# What no translated wire format (Anthropic, Gemini, Cohere, Bedrock) has a field for: OpenAI's own
# features, refused unless harmless (`n: 1`); labels and cache hints dropped harmlessly.
_TRANSLATED_GAPS: dict[str, tuple[object, ...]] = {
    "n": (1,),
    "logprobs": (False,),
    "top_logprobs": (),
    "logit_bias": (),
    "store": (False,),
    "service_tier": ("auto", "default"),
    "reasoning_effort": (),
    "verbosity": (),
    "modalities": (["text"],),
    "audio": (),
    "prediction": (),
    "web_search_options": (),
    "functions": (),
    "function_call": (),
    "metadata": (ANY_VALUE,),
    "prompt_cache_key": (ANY_VALUE,),
    "prompt_cache_retention": (ANY_VALUE,),
}


def translated(**extra: tuple[object, ...]) -> Mapping[str, tuple[object, ...]]:
    """A translated wire format's gaps: the common ones and its own (`extra`)."""
    return MappingProxyType({**_TRANSLATED_GAPS, **extra})


def kinds_by_name(kinds: Iterable[ProviderKind]) -> Mapping[str, ProviderKind]:
    """`kinds` by name; a name declared twice is a programming error, found at import."""
    by_name: dict[str, ProviderKind] = {}
    for kind in kinds:
        if kind.name in by_name:
            raise ValueError(f"provider kind '{kind.name}' is declared twice")
        by_name[kind.name] = kind
    return MappingProxyType(by_name)


@dataclass(frozen=True, slots=True)
class ProviderKind:
    name: str
    title: str
    wire: WireFormat
    default_base_url: str | None = None
    base_url_env: str | None = None
    api_key_env: str | None = None
    key_required: bool = True
    auth: AuthStyle = "bearer"
    azure_paths: bool = False
    # Request parameters the service documents it does not accept (each with the values that are
    # harmless to drop, e.g. n=1), and ones it names differently.
    unsupported_params: Mapping[str, tuple[object, ...]] = field(default_factory=lambda: MappingProxyType({}))
    renamed_params: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    renamed_embedding_params: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    # Whether `stream_options.include_usage` may be sent (usage is still read when it comes anyway).
    stream_usage: bool = True
    embeddings: bool = True
    embeddings_base64: bool = True
    json_schema: bool = True
    # How to ask for the continuation of a partial answer (stream resumption): Mistral's
    # `prefix: true`, vLLM's `continue_final_message`, or an instruction message for everyone else.
    continuation: Literal["prefix", "continue_final_message", "instruction"] = "instruction"
    # Its section of the price table turnout ships (config/prices.yaml); None: priced by
    # configuration only (Groq, Together, vLLM ...).
    price_namespace: str | None = None
    # The inbound wire format a deployment of this kind can take whole (Anthropic's /v1/messages
    # to an Anthropic deployment), if any.
    native_inbound: str | None = None
    # Whether it serves OpenAI's legacy `POST /completions` (a prompt, not messages): a client's
    # /v1/completions request is then passed on whole, rather than translated to chat.
    legacy_completions: bool = False
    # Whether it serves OpenAI's image generation, transcription and speech endpoints (for the
    # models that declare them): `POST /images/generations`, `/audio/transcriptions`,
    # `/audio/speech`.
    media_apis: bool = False


AZURE_DEFAULT_API_VERSION = "2024-10-21"  # the latest GA dated version; "v1" selects Azure's v1 API
