"""Anthropic's Messages API (`POST /v1/messages`), behind OpenAI's chat format; a request that
came in on /v1/messages is passed on whole (`native_inbound`)."""

from __future__ import annotations

from turnout.config.provider_kinds import ProviderKind, translated
from turnout.providers.anthropic.adapter import AnthropicAdapter
from turnout.providers.anthropic.errors import parse_error_body
from turnout.providers.spec import ProviderSpec

PROVIDER = ProviderSpec(
    wire="anthropic",
    kinds=(
        ProviderKind(
            "anthropic",
            "Anthropic",
            "anthropic",
            default_base_url="https://api.anthropic.com/v1",
            base_url_env="ANTHROPIC_BASE_URL",
            api_key_env="ANTHROPIC_API_KEY",
            auth="x-api-key",
            # What the Messages API has no equivalent for; labels and cache hints are dropped harmlessly.
            unsupported_params=translated(presence_penalty=(), frequency_penalty=(), seed=()),
            embeddings=False,
            continuation="prefix",  # a final assistant turn is a prefill Anthropic continues
            price_namespace="anthropic",
            native_inbound="anthropic",  # /v1/messages is passed on whole
        ),
    ),
    adapter=AnthropicAdapter,
    parse_error=parse_error_body,
)
