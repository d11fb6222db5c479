"""Reranking through the Bedrock Agent Runtime's `Rerank` (`POST /rerank` on
`bedrock-agent-runtime.{region}.amazonaws.com`, signed like every Bedrock request):

    {"queries": [{"type": "TEXT", "textQuery": {"text"}}],
     "sources": [{"type": "INLINE", "inlineDocumentSource": {"type": "TEXT", "textDocument": {"text"}}}],
     "rerankingConfiguration": {"type": "BEDROCK_RERANKING_MODEL", "bedrockRerankingConfiguration":
         {"numberOfResults", "modelConfiguration": {"modelArn"}}}}

answered `{"results": [{"index", "relevanceScore"}], "nextToken"}`. The model is named by its ARN
(a model id is made one: `arn:aws:bedrock:{region}::foundation-model/{id}`). Bedrock prices a
query of up to 100 document chunks (Amazon Bedrock User Guide, "Pricing and search units") and
reports no count in the answer, so turnout counts one search unit per 100 documents.

Pure: the adapter sends the body built here and reads the answer with this decoder.
"""

from __future__ import annotations

import msgspec
import orjson

from turnout.domain.errors import UnsupportedFeature
from turnout.domain.rerank import RerankRequest


class _Result(msgspec.Struct, frozen=True, rename="camel"):
    index: int
    relevance_score: float


class RerankAnswer(msgspec.Struct, frozen=True, rename="camel"):
    results: list[_Result]
    next_token: str | None = None

    def ranking(self) -> list[tuple[int, float]]:
        return [(r.index, r.relevance_score) for r in self.results]


rerank_decoder = msgspec.json.Decoder(RerankAnswer)


def model_arn(model: str, region: str | None, provider: str) -> str:
    if model.startswith("arn:"):
        return model
    if region is None:
        raise UnsupportedFeature(
            f"The provider '{provider}' (Amazon Bedrock) needs 'aws.region' to rerank with '{model}' "
            "(or the model's ARN as its name).",
            param="model",
        )
    return f"arn:aws:bedrock:{region}::foundation-model/{model}"


def rerank_body(request: RerankRequest, arn: str) -> bytes:
    sources = [
        {"type": "INLINE", "inlineDocumentSource": {"type": "TEXT", "textDocument": {"text": text}}}
        for text in request.texts()
    ]
    body = {
        "queries": [{"type": "TEXT", "textQuery": {"text": request.query}}],
        "sources": sources,
        "rerankingConfiguration": {
            "type": "BEDROCK_RERANKING_MODEL",
            "bedrockRerankingConfiguration": {
                "numberOfResults": request.wanted,
                "modelConfiguration": {"modelArn": arn},
            },
        },
    }
    return orjson.dumps(body)


def agent_runtime_url(base_url: str) -> str:
    """The Agent Runtime's `/rerank` beside the Bedrock Runtime `base_url` (its host renamed; a
    base URL of another form, such as a local endpoint, serves it itself)."""
    return base_url.replace("://bedrock-runtime.", "://bedrock-agent-runtime.", 1) + "/rerank"
