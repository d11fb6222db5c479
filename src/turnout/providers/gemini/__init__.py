"""Google's Gemini API (`generateContent`, `streamGenerateContent`, `batchEmbedContents`), behind
OpenAI's chat and embeddings formats, from the Developer API (kind `gemini`) or from Vertex AI
(kind `vertex`: `vertex.py`, its `vertex:` block in `vertex_section.py`)."""

from __future__ import annotations

import dataclasses

from turnout.config.provider_kinds import ANY_VALUE, ProviderKind, translated
from turnout.config.settings import ProviderSettings
from turnout.providers.base import Adapter
from turnout.providers.gemini.adapter import GeminiAdapter
from turnout.providers.gemini.errors import parse_error_body
from turnout.providers.gemini.vertex import VertexAdapter
from turnout.providers.gemini.vertex_section import VERTEX_SECTION
from turnout.providers.http.client import HttpClient
from turnout.providers.spec import ProviderSpec

GEMINI = ProviderKind(
    "gemini",
    "Google Gemini",
    "gemini",
    default_base_url="https://generativelanguage.googleapis.com/v1beta",
    base_url_env="GEMINI_BASE_URL",
    api_key_env="GEMINI_API_KEY",
    auth="x-goog-api-key",
    unsupported_params=translated(
        parallel_tool_calls=(True,), user=(ANY_VALUE,), safety_identifier=(ANY_VALUE,)
    ),
    embeddings_base64=False,
    price_namespace="gemini",
)

# Vertex AI serves Gemini over the same wire format, with the same gaps, from Google Cloud: its URL
# comes from the `vertex:` block (project, location), its credentials from a service account (an
# OAuth2 access token per request), or an express-mode API key sent as `x-goog-api-key`.
VERTEX = dataclasses.replace(
    GEMINI,
    name="vertex",
    title="Google Vertex AI",
    default_base_url=None,
    base_url_env=None,
    api_key_env=None,
    key_required=False,
)


def _adapter(settings: ProviderSettings, client: HttpClient) -> Adapter:
    if settings.kind.name == "vertex":
        return VertexAdapter(settings, client)
    return GeminiAdapter(settings, client)


PROVIDER = ProviderSpec(
    wire="gemini",
    kinds=(GEMINI, VERTEX),
    adapter=_adapter,
    sections=(VERTEX_SECTION,),
    parse_error=parse_error_body,
)
