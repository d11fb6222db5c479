"""The kinds of provider a config may name, and what each one's deployment looks like.

A kind is a deployment of a wire format: Azure, Groq or Ollama all speak OpenAI's format from
their own URL, with their own authentication and their own documented gaps. Adding an
OpenAI-compatible service is one entry here, not a new adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal

WireFormat = Literal["openai", "anthropic", "gemini", "cohere", "bedrock", "fake"]
AuthStyle = Literal["bearer", "api-key", "x-api-key", "x-goog-api-key", "none"]

ANY_VALUE = "<any value>"  # in a parameter's harmless values: it only labels the request; drop it always


def _map(**items: object) -> Mapping[str, object]:
    return MappingProxyType(items)


def _unsupported(**items: tuple[object, ...]) -> Mapping[str, tuple[object, ...]]:
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


def _translated(**extra: tuple[object, ...]) -> Mapping[str, tuple[object, ...]]:
    """A translated wire format's gaps: the common ones and its own (`extra`)."""
    return MappingProxyType({**_TRANSLATED_GAPS, **extra})


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


AZURE_DEFAULT_API_VERSION = "2024-10-21"  # the latest GA dated version; "v1" selects Azure's v1 API

# Sources for each kind's gaps: the providers' API references and official SDKs (see
# docs/providers.md). Parameters a service silently ignores are renamed where it has an equivalent,
# so that nothing the client asked for is lost without an error.

_KINDS = (
    ProviderKind(
        "openai",
        "OpenAI",
        "openai",
        default_base_url="https://api.openai.com/v1",
        base_url_env="OPENAI_BASE_URL",
        api_key_env="OPENAI_API_KEY",
    ),
    ProviderKind(
        "azure",
        "Azure OpenAI",
        "openai",
        base_url_env="AZURE_OPENAI_ENDPOINT",
        api_key_env="AZURE_OPENAI_API_KEY",
        auth="api-key",
        azure_paths=True,
    ),
    ProviderKind(
        "anthropic",
        "Anthropic",
        "anthropic",
        default_base_url="https://api.anthropic.com/v1",
        base_url_env="ANTHROPIC_BASE_URL",
        api_key_env="ANTHROPIC_API_KEY",
        auth="x-api-key",
        # What the Messages API has no equivalent for; labels and cache hints are dropped harmlessly.
        unsupported_params=_translated(presence_penalty=(), frequency_penalty=(), seed=()),
        embeddings=False,
        continuation="prefix",  # a final assistant turn is a prefill Anthropic continues
    ),
    ProviderKind(
        "gemini",
        "Google Gemini",
        "gemini",
        default_base_url="https://generativelanguage.googleapis.com/v1beta",
        base_url_env="GEMINI_BASE_URL",
        api_key_env="GEMINI_API_KEY",
        auth="x-goog-api-key",
        unsupported_params=_translated(
            parallel_tool_calls=(True,), user=(ANY_VALUE,), safety_identifier=(ANY_VALUE,)
        ),
        embeddings_base64=False,
    ),
    ProviderKind(
        "cohere",
        "Cohere",
        "cohere",
        default_base_url="https://api.cohere.com/v2",
        base_url_env="CO_API_URL",
        api_key_env="CO_API_KEY",
        unsupported_params=_translated(
            parallel_tool_calls=(True,), user=(ANY_VALUE,), safety_identifier=(ANY_VALUE,)
        ),
        embeddings_base64=False,
    ),
    ProviderKind(
        "bedrock",
        "Amazon Bedrock",
        "bedrock",
        # The region fills it in (aws.region, else AWS_REGION / AWS_DEFAULT_REGION).
        default_base_url="https://bedrock-runtime.{region}.amazonaws.com",
        base_url_env="AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
        api_key_env="AWS_BEARER_TOKEN_BEDROCK",  # a Bedrock API key; else SigV4 with access keys
        key_required=False,
        # What the Converse API (botocore's bedrock-runtime model) has no field for; labels and
        # cache hints are dropped harmlessly. Parallel tool calls cannot be switched off there.
        unsupported_params=_translated(
            presence_penalty=(),
            frequency_penalty=(),
            seed=(),
            parallel_tool_calls=(True,),
            user=(ANY_VALUE,),
            safety_identifier=(ANY_VALUE,),
        ),
        # Embeddings through InvokeModel (Titan, Cohere Embed), base64 encoded by turnout.
        embeddings_base64=False,
    ),
    ProviderKind(
        "mistral",
        "Mistral",
        "openai",
        default_base_url="https://api.mistral.ai/v1",
        api_key_env="MISTRAL_API_KEY",
        renamed_params=_map(seed="random_seed", max_completion_tokens="max_tokens"),
        renamed_embedding_params=_map(dimensions="output_dimension"),
        unsupported_params=_unsupported(
            logprobs=(False,),
            top_logprobs=(),
            logit_bias=(),
            user=(ANY_VALUE,),
            safety_identifier=(ANY_VALUE,),
            store=(False,),
            service_tier=("auto", "default"),
            modalities=(["text"],),
        ),
        stream_usage=False,
        continuation="prefix",
    ),
    ProviderKind(
        "deepseek",
        "DeepSeek",
        "openai",
        default_base_url="https://api.deepseek.com/v1",
        api_key_env="DEEPSEEK_API_KEY",
        renamed_params=_map(max_completion_tokens="max_tokens"),
        unsupported_params=_unsupported(n=(1,), logit_bias=()),
        embeddings=False,
        json_schema=False,
    ),
    ProviderKind(
        "groq",
        "Groq",
        "openai",
        default_base_url="https://api.groq.com/openai/v1",
        api_key_env="GROQ_API_KEY",
        unsupported_params=_unsupported(
            logprobs=(False,),
            top_logprobs=(),
            logit_bias=(),
            n=(1,),
            metadata=(),
            store=(False,),
        ),
        embeddings_base64=True,
    ),
    ProviderKind(
        "together",
        "Together AI",
        "openai",
        default_base_url="https://api.together.ai/v1",
        api_key_env="TOGETHER_API_KEY",
        renamed_params=_map(max_completion_tokens="max_tokens"),
        # Together's `logprobs` is a count, not OpenAI's boolean: refuse rather than misread it.
        unsupported_params=_unsupported(
            logprobs=(False,),
            top_logprobs=(),
            user=(ANY_VALUE,),
            parallel_tool_calls=(True,),
        ),
        stream_usage=False,
        embeddings_base64=False,
    ),
    ProviderKind(
        "openrouter",
        "OpenRouter",
        "openai",
        default_base_url="https://openrouter.ai/api/v1",
        api_key_env="OPENROUTER_API_KEY",
    ),
    ProviderKind(
        "vllm",
        "vLLM",
        "openai",
        base_url_env="VLLM_BASE_URL",
        api_key_env="VLLM_API_KEY",
        key_required=False,
        continuation="continue_final_message",
    ),
    ProviderKind(
        "ollama",
        "Ollama",
        "openai",
        default_base_url="http://127.0.0.1:11434/v1",
        base_url_env="OLLAMA_BASE_URL",
        key_required=False,
        auth="none",
        # Ollama ignores max_completion_tokens silently; its max_tokens does the same job.
        renamed_params=_map(max_completion_tokens="max_tokens"),
        unsupported_params=_unsupported(tool_choice=("auto",), logit_bias=(), user=(ANY_VALUE,), n=(1,)),
    ),
    ProviderKind(
        "llamacpp",
        "llama.cpp server",
        "openai",
        default_base_url="http://127.0.0.1:8080/v1",
        base_url_env="LLAMACPP_BASE_URL",
        api_key_env="LLAMACPP_API_KEY",
        key_required=False,
        embeddings_base64=False,
    ),
    ProviderKind(
        "openai_compatible",
        "any OpenAI-compatible server",
        "openai",
        key_required=False,
    ),
    ProviderKind(
        "fake", "turnout's fake upstream", "fake", key_required=False, auth="none", continuation="prefix"
    ),
)

# Vertex AI serves Gemini over the same wire format, with the same gaps, from Google Cloud: its URL
# comes from the `vertex:` block (project, location), its credentials from a service account (an
# OAuth2 access token per request), or an express-mode API key sent as `x-goog-api-key`.
_VERTEX = replace(
    next(k for k in _KINDS if k.name == "gemini"),
    name="vertex",
    title="Google Vertex AI",
    default_base_url=None,
    base_url_env=None,
    api_key_env=None,
    key_required=False,
)

PROVIDER_KINDS: Mapping[str, ProviderKind] = MappingProxyType({k.name: k for k in (*_KINDS, _VERTEX)})
