"""Gemini API wire types: what turnout reads from Gemini (and from Vertex AI's embeddings
`:predict`), decoded with msgspec (camelCase on the wire). Requests are built as plain dicts in
translate.py."""

from __future__ import annotations

from typing import Any

import msgspec

from turnout.domain.usage import TokenCount, Usage


class UsageMetadata(msgspec.Struct, frozen=True, rename="camel"):
    prompt_token_count: TokenCount | None = None
    candidates_token_count: TokenCount | None = None
    total_token_count: TokenCount | None = None
    cached_content_token_count: TokenCount | None = None
    thoughts_token_count: TokenCount | None = None

    def canonical(self) -> Usage:
        """OpenAI counts reasoning in the completion; Gemini counts thoughts apart."""
        thoughts = self.thoughts_token_count or 0
        return Usage(
            input_tokens=self.prompt_token_count or 0,
            output_tokens=(self.candidates_token_count or 0) + thoughts,
            cached_input_tokens=self.cached_content_token_count or 0,
            reasoning_tokens=thoughts,
        )


class FunctionCall(msgspec.Struct, frozen=True, rename="camel"):
    name: str
    args: dict[str, Any] | None = None
    id: str | None = None


class Part(msgspec.Struct, frozen=True, rename="camel"):
    text: str | None = None
    thought: bool | None = None
    function_call: FunctionCall | None = None


class Content(msgspec.Struct, frozen=True, rename="camel"):
    parts: list[Part] = []
    role: str | None = None


class Candidate(msgspec.Struct, frozen=True, rename="camel"):
    content: Content | None = None
    finish_reason: str | None = None
    index: int = 0


class PromptFeedback(msgspec.Struct, frozen=True, rename="camel"):
    block_reason: str | None = None


class GenerateContentResponse(msgspec.Struct, frozen=True, rename="camel"):
    candidates: list[Candidate] = []
    usage_metadata: UsageMetadata | None = None
    prompt_feedback: PromptFeedback | None = None
    model_version: str | None = None
    response_id: str | None = None
    error: ErrorDetail | None = None  # only in a stream that fails mid-answer


class ErrorDetail(msgspec.Struct, frozen=True, rename="camel"):
    code: int | None = None
    message: str | None = None
    status: str | None = None
    details: Any = None  # google.rpc detail objects (`RetryInfo` says how long to wait); any shape


class ErrorBody(msgspec.Struct, frozen=True, rename="camel"):
    error: ErrorDetail | None = None


class Embedding(msgspec.Struct, frozen=True, rename="camel"):
    values: list[float]


class BatchEmbedResponse(msgspec.Struct, frozen=True, rename="camel"):
    embeddings: list[Embedding]


class EmbeddingStatistics(msgspec.Struct, frozen=True):
    """Vertex AI's `:predict` writes `token_count`; its REST reference says `tokenCount`."""

    token_count: TokenCount | None = None
    token_count_camel: TokenCount | None = msgspec.field(default=None, name="tokenCount")

    @property
    def tokens(self) -> int | None:
        return self.token_count if self.token_count is not None else self.token_count_camel


class PredictedEmbedding(msgspec.Struct, frozen=True):
    values: list[float]
    statistics: EmbeddingStatistics | None = None


class Prediction(msgspec.Struct, frozen=True):
    embeddings: PredictedEmbedding


class PredictResponse(msgspec.Struct, frozen=True):
    """Vertex AI's text-embedding `:predict` answer: one prediction per instance, in order."""

    predictions: list[Prediction]


class ModelEntry(msgspec.Struct, frozen=True, rename="camel"):
    name: str
    supported_generation_methods: list[str] = []


class ModelList(msgspec.Struct, frozen=True, rename="camel"):
    models: list[ModelEntry] = []


response_decoder = msgspec.json.Decoder(GenerateContentResponse)
error_decoder = msgspec.json.Decoder(ErrorBody)
embed_decoder = msgspec.json.Decoder(BatchEmbedResponse)
models_decoder = msgspec.json.Decoder(ModelList)
predict_decoder = msgspec.json.Decoder(PredictResponse)
