"""OpenAI's wire format: OpenAI itself and every service that speaks it (Azure, vLLM, Groq, ...)."""

from __future__ import annotations

from turnout.providers.openai_compatible.adapter import OpenAICompatibleAdapter
from turnout.providers.openai_compatible.config_section import API_VERSION_SECTION
from turnout.providers.openai_compatible.errors import parse_error_body
from turnout.providers.openai_compatible.kinds import OPENAI_KINDS
from turnout.providers.spec import ProviderSpec

PROVIDER = ProviderSpec(
    wire="openai",
    kinds=OPENAI_KINDS,
    adapter=OpenAICompatibleAdapter,
    sections=(API_VERSION_SECTION,),
    parse_error=parse_error_body,
)
