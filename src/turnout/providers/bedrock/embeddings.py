"""Embeddings through Bedrock's InvokeModel (`POST {base}/model/{modelId}/invoke`), whose body is
the model's own format, picked by the model id (Amazon Bedrock User Guide, "Amazon Titan
Embeddings G1 - Text" and "Cohere Embed v3" / "Cohere Embed v4"):

- Titan Text Embeddings V2 (`amazon.titan-embed-text-v2:0`): `{"inputText", "dimensions",
  "normalize", "embeddingTypes"}`, one text a call; answers `{"embedding", "inputTextTokenCount",
  "embeddingsByType"}`. Titan G1 (`amazon.titan-embed-text-v1`) takes `inputText` only.
- Cohere Embed (`cohere.embed-english-v3`, `cohere.embed-multilingual-v3`, `cohere.embed-v4:0`):
  `{"texts", "input_type", "embedding_types", "truncate"}`, up to 96 texts a call (v4 also
  `output_dimension`); answers `{"embeddings": {"float": [...]}}` (`embeddings_by_type`) or
  `{"embeddings": [...]}` (`embeddings_floats`), the token count in the
  `X-Amzn-Bedrock-Input-Token-Count` response header only.

Pure: the adapter sends the bodies planned here and hands back what came.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import orjson

from turnout.domain.chat import estimated_text_tokens
from turnout.domain.embeddings import EmbeddingRequest
from turnout.domain.errors import InvalidRequest, UnsupportedFeature, UpstreamProtocolError
from turnout.domain.malformed import DECODE_ERRORS
from turnout.domain.usage import MAX_TOKENS, TokenCount, Usage
from turnout.providers.embeddings import embeddings_list, texts_of

Family = Literal["titan-v2", "titan-v1", "cohere-v3", "cohere-v4"]

# Longest prefix first: the first that matches decides.
PREFIXES: tuple[tuple[str, Family], ...] = (
    ("amazon.titan-embed-text-v2", "titan-v2"),
    ("amazon.titan-embed-text-v1", "titan-v1"),
    ("cohere.embed-v4", "cohere-v4"),
    ("cohere.embed-", "cohere-v3"),
)
DIMENSIONS: dict[Family, tuple[int, ...]] = {
    "titan-v2": (256, 512, 1024),
    "cohere-v4": (256, 512, 1024, 1536),
}
COHERE_TEXTS_PER_CALL = 96
INPUT_TOKEN_COUNT = b"x-amzn-bedrock-input-token-count"  # header names arrive lower-cased


@dataclass(frozen=True, slots=True)
class Invocation:
    """One InvokeModel call: the texts it embeds and its body."""

    texts: list[str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Answer:
    """One call's vectors, in its texts' order, and the tokens it used (estimated if not told)."""

    vectors: list[list[float]]
    tokens: int
    estimated: bool


def family_of(model: str) -> Family | None:
    """The body format of `model`: a model id, a foundation-model ARN (its last path segment) or a
    cross-region inference profile (a geography before the model id: `us.cohere.embed-v4:0`)."""
    name = model.rsplit("/", 1)[-1]
    for candidate in (name, name.partition(".")[2]):
        for prefix, family in PREFIXES:
            if candidate.startswith(prefix):
                return family
    return None


def plan(request: EmbeddingRequest, model: str, provider: str) -> tuple[Family, list[Invocation]]:
    """The calls embedding `request` takes, in input order; a 400 for what the model cannot do."""
    family = family_of(model)
    if family is None:
        raise UnsupportedFeature(
            f"The model '{model}' on the provider '{provider}' (Amazon Bedrock) is not an embedding "
            "model turnout can call: it embeds with Amazon Titan Text Embeddings "
            "(amazon.titan-embed-text-v2, -v1) and Cohere Embed (cohere.embed-*) models.",
            param="model",
        )
    dimensions = request.dimensions
    if dimensions is not None:
        allowed = DIMENSIONS.get(family)
        if allowed is None:
            raise UnsupportedFeature(
                f"The model '{model}' (Amazon Bedrock) has a fixed embedding size: "
                "'dimensions' cannot be set.",
                param="dimensions",
            )
        if dimensions not in allowed:
            raise InvalidRequest(
                f"The model '{model}' (Amazon Bedrock) embeds in {_choices(allowed)} dimensions, "
                f"not {dimensions}.",
                param="dimensions",
            )
    texts = texts_of(request, "Amazon Bedrock")
    if family.startswith("titan"):
        return family, [Invocation([t], orjson.dumps(_titan_body(family, t, dimensions))) for t in texts]
    size = COHERE_TEXTS_PER_CALL
    batches = [texts[i : i + size] for i in range(0, len(texts), size)]
    return family, [Invocation(b, orjson.dumps(_cohere_body(b, dimensions))) for b in batches]


def _choices(values: Sequence[int]) -> str:
    return ", ".join(str(v) for v in values[:-1]) + f" or {values[-1]}"


def _titan_body(family: Family, text: str, dimensions: int | None) -> dict[str, Any]:
    if family == "titan-v1":
        return {"inputText": text}
    body: dict[str, Any] = {"inputText": text, "normalize": True, "embeddingTypes": ["float"]}
    if dimensions is not None:
        body["dimensions"] = dimensions
    return body


def _cohere_body(texts: list[str], dimensions: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "texts": texts,
        "input_type": "search_document",
        "embedding_types": ["float"],
        "truncate": "NONE",  # an error rather than a silently shortened text, as OpenAI does
    }
    if dimensions is not None:
        body["output_dimension"] = dimensions
    return body


# --------------------------------------------------------------------------- answers


class _TitanByType(msgspec.Struct, frozen=True):
    floats: list[float] | None = msgspec.field(default=None, name="float")


class _TitanAnswer(msgspec.Struct, frozen=True, rename="camel"):
    embedding: list[float] | None = None
    input_text_token_count: TokenCount | None = None
    embeddings_by_type: _TitanByType | None = None


class _CohereByType(msgspec.Struct, frozen=True):
    floats: list[list[float]] | None = msgspec.field(default=None, name="float")


class _CohereAnswer(msgspec.Struct, frozen=True):
    # `embeddings_floats`: the vectors; `embeddings_by_type`: the vectors of each type asked for
    embeddings: list[list[float]] | _CohereByType
    id: str | None = None
    response_type: str | None = None


_titan_decoder = msgspec.json.Decoder(_TitanAnswer)
_cohere_decoder = msgspec.json.Decoder(_CohereAnswer)


def read_answer(
    family: Family, call: Invocation, data: bytes, token_header: bytes | None, provider: str
) -> Answer:
    """The vectors and token count of the answer `data` to `call` (`token_header`: the value of
    its `X-Amzn-Bedrock-Input-Token-Count` header, if any)."""
    vectors: list[list[float]] | None
    counted: int | None = None
    try:
        if family.startswith("titan"):
            titan = _titan_decoder.decode(data)
            vector = titan.embedding
            if vector is None and titan.embeddings_by_type is not None:
                vector = titan.embeddings_by_type.floats
            vectors = None if vector is None else [vector]
            counted = titan.input_text_token_count
        else:
            cohere = _cohere_decoder.decode(data)
            found = cohere.embeddings
            vectors = found.floats if isinstance(found, _CohereByType) else found
    except DECODE_ERRORS:
        vectors = None
    if vectors is None:
        raise UpstreamProtocolError(f"The provider '{provider}' sent malformed embeddings.")
    if len(vectors) != len(call.texts):
        raise UpstreamProtocolError(
            f"The provider '{provider}' sent {len(vectors)} embeddings for {len(call.texts)} inputs."
        )
    if counted is None and token_header is not None and token_header.strip().isdigit():
        counted = min(int(token_header), MAX_TOKENS)
    if counted is not None:
        return Answer(vectors, counted, estimated=False)
    return Answer(vectors, estimated_text_tokens(call.texts), estimated=True)


def response(answers: Sequence[Answer], *, model: str, as_base64: bool) -> tuple[dict[str, Any], Usage]:
    """OpenAI's embeddings list from the calls' answers (in input order), and its usage."""
    vectors = [v for answer in answers for v in answer.vectors]
    tokens = sum(a.tokens for a in answers)
    out = embeddings_list(vectors, model=model, tokens=tokens, as_base64=as_base64)
    return out, Usage(input_tokens=tokens, estimated=any(a.estimated for a in answers))
