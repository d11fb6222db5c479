"""Amazon Bedrock's Converse API (`/model/{modelId}/converse` and `/converse-stream`), behind
OpenAI's chat format. Its adapter imports botocore (SigV4, event-stream decoding), so this package's
record imports it only when a Bedrock provider is built; the record itself, its kind and its `aws:`
block load without it."""

from __future__ import annotations

from turnout.config.provider_kinds import ANY_VALUE, ProviderKind, translated
from turnout.config.settings import ProviderSettings
from turnout.providers.base import Adapter
from turnout.providers.bedrock.config_section import AWS_SECTION
from turnout.providers.bedrock.errors import parse_error_body
from turnout.providers.http.client import HttpClient
from turnout.providers.spec import ProviderSpec


def _adapter(settings: ProviderSettings, client: HttpClient) -> Adapter:
    # imported only when configured: it loads botocore (SigV4, event streams)
    from turnout.providers.bedrock.adapter import BedrockAdapter

    return BedrockAdapter(settings, client)


PROVIDER = ProviderSpec(
    wire="bedrock",
    kinds=(
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
            unsupported_params=translated(
                presence_penalty=(),
                frequency_penalty=(),
                seed=(),
                parallel_tool_calls=(True,),
                user=(ANY_VALUE,),
                safety_identifier=(ANY_VALUE,),
            ),
            # Embeddings through InvokeModel (Titan, Cohere Embed), base64 encoded by turnout.
            embeddings_base64=False,
            price_namespace="bedrock",
        ),
    ),
    adapter=_adapter,
    sections=(AWS_SECTION,),
    parse_error=parse_error_body,
)
