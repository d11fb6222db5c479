"""Token usage in one canonical shape, whatever the provider's wire format calls it."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

# More tokens than any answer holds: what a provider reports beyond it (or below 0) is not a count
# but a broken answer, refused when decoded before it can reach a price, a budget or the ledger's
# 64-bit columns.
MAX_TOKENS = 10**12
TokenCount = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS)]
TokenCountFloat = Annotated[float, msgspec.Meta(ge=0, le=MAX_TOKENS)]  # providers that count in floats


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """Tokens one request consumed, by kind. `estimated` marks counts turnout computed itself."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0  # of the cache writes, those kept an hour (Anthropic's)
    reasoning_tokens: int = 0
    search_units: int = 0  # a reranker's searches (one query with up to 100 documents each)
    estimated: bool = False
    service_tier: str | None = None  # the tier the provider says it served at, if it says
    # units priced per unit rather than per token (images, speech, transcription)
    images: int = 0  # images generated
    image_kind: str | None = None  # their quality and size ("hd 1024x1792"), as priced per image
    audio_seconds: int = 0  # seconds of audio transcribed (the provider's own count, rounded)
    characters: int = 0  # characters of text read aloud (speech)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def openai_usage(self) -> OpenAIUsage:
        """As OpenAI's `usage` object (for answers translated from another wire format)."""
        return OpenAIUsage(
            prompt_tokens=self.input_tokens,
            completion_tokens=self.output_tokens,
            total_tokens=self.input_tokens + self.output_tokens,
            prompt_tokens_details=_PromptDetails(cached_tokens=self.cached_input_tokens),
            completion_tokens_details=_CompletionDetails(reasoning_tokens=self.reasoning_tokens),
        )

    def openai(self) -> dict[str, Any]:
        """`openai_usage` as plain JSON values."""
        out: dict[str, Any] = msgspec.to_builtins(self.openai_usage())
        return out


class _PromptDetails(msgspec.Struct, frozen=True, omit_defaults=True):
    cached_tokens: TokenCount | None = None
    cache_write_tokens: TokenCount | None = None


class _CompletionDetails(msgspec.Struct, frozen=True, omit_defaults=True):
    reasoning_tokens: TokenCount | None = None


class OpenAIUsage(msgspec.Struct, frozen=True, omit_defaults=True):
    """The `usage` object of OpenAI's chat and embeddings responses (every field optional, as
    OpenAI-compatible servers fill them unevenly; only those set are written)."""

    prompt_tokens: TokenCount | None = None
    completion_tokens: TokenCount | None = None
    total_tokens: TokenCount | None = None
    prompt_tokens_details: _PromptDetails | None = None
    completion_tokens_details: _CompletionDetails | None = None

    def canonical(self, service_tier: str | None = None) -> Usage:
        prompt = self.prompt_tokens or 0
        completion = self.completion_tokens
        if completion is None:
            completion = max(0, (self.total_tokens or 0) - prompt)
        pd, cd = self.prompt_tokens_details, self.completion_tokens_details
        return Usage(
            input_tokens=prompt,
            output_tokens=completion,
            cached_input_tokens=(pd.cached_tokens or 0) if pd else 0,
            cache_write_tokens=(pd.cache_write_tokens or 0) if pd else 0,
            reasoning_tokens=(cd.reasoning_tokens or 0) if cd else 0,
            service_tier=service_tier,
        )
