"""Cohere's v2 API (`/v2/chat`, `/v2/embed`, `/v2/rerank`), behind OpenAI's chat and embeddings
formats and turnout's rerank."""

from __future__ import annotations

from turnout.config.provider_kinds import ANY_VALUE, ProviderKind, translated
from turnout.providers.cohere.adapter import CohereAdapter
from turnout.providers.cohere.errors import parse_error_body
from turnout.providers.spec import ProviderSpec

PROVIDER = ProviderSpec(
    wire="cohere",
    kinds=(
        ProviderKind(
            "cohere",
            "Cohere",
            "cohere",
            default_base_url="https://api.cohere.com/v2",
            base_url_env="CO_API_URL",
            api_key_env="CO_API_KEY",
            unsupported_params=translated(
                parallel_tool_calls=(True,), user=(ANY_VALUE,), safety_identifier=(ANY_VALUE,)
            ),
            embeddings_base64=False,
            price_namespace="cohere",
        ),
    ),
    adapter=CohereAdapter,
    parse_error=parse_error_body,
)
