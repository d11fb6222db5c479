"""The adapter for Amazon Bedrock's Converse API: OpenAI-shaped calls in,
`POST {base}/model/{modelId}/converse` (or `/converse-stream`) out, for any model Bedrock serves
through Converse (Claude, Llama, Mistral, Nova, Titan ...); embeddings through InvokeModel,
`POST {base}/model/{modelId}/invoke`, for Titan and Cohere Embed models (embeddings.py); and
reranking through the Agent Runtime's `Rerank` (rerank.py).

The model id is one URL path segment, percent-encoded (ARNs and inference-profile ids hold ':' and
'/'). Each request is signed with SigV4 (service `bedrock`), the signature covering its body, so
its headers are computed per request; with a Bedrock API key the `Authorization: Bearer` header is
static instead. The model list comes from Bedrock's control plane (`ListFoundationModels`).
"""

from __future__ import annotations

import uuid
from urllib.parse import quote

import msgspec
import orjson

from turnout.config.settings import ProviderSettings, Timeouts
from turnout.domain.rerank import refuse_document_limit
from turnout.domain.usage import Usage
from turnout.providers.base import (
    ChatCall,
    ChatResult,
    EmbeddingCall,
    EmbeddingResult,
    RerankCall,
    RerankResult,
)
from turnout.providers.bedrock import embeddings, translate
from turnout.providers.bedrock import rerank as ranking
from turnout.providers.bedrock.errors import parse_error_body
from turnout.providers.bedrock.signing import SigV4Signer
from turnout.providers.bedrock.stream import BedrockStream
from turnout.providers.bedrock.wire import response_decoder
from turnout.providers.capabilities import capabilities_for
from turnout.providers.embeddings import in_order
from turnout.providers.http.client import Endpoint, HttpClient
from turnout.providers.http.connection import UpstreamResponse
from turnout.providers.link import LIST_TIMEOUTS, MAX_CACHED_ENDPOINTS, ProviderLink, request_headers
from turnout.providers.parameters import apply_parameter_policy
from turnout.providers.request_json import request_json
from turnout.providers.rerank import ranked_result

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
RERANK_RESPONSE_BYTES = 16 * 1024 * 1024  # scores, never documents
EVENT_STREAM = b"application/vnd.amazon.eventstream"
PARALLEL_INVOKES = 8  # concurrent InvokeModel calls for one embeddings request (Titan: one text each)


class _ModelSummary(msgspec.Struct, frozen=True, rename="camel"):
    model_id: str


class _ModelList(msgspec.Struct, frozen=True, rename="camel"):
    model_summaries: list[_ModelSummary] = []


_models_decoder = msgspec.json.Decoder(_ModelList)


class BedrockAdapter:
    limits_document_tokens = False  # (Reranks: the Agent Runtime's Rerank has no such limit)

    def __init__(self, settings: ProviderSettings, client: HttpClient) -> None:
        self.name = settings.name
        self.settings = settings
        self.capabilities = capabilities_for(settings)
        self.link = ProviderLink(settings, client, parse_error_body, request_headers(settings))
        self._signer: SigV4Signer | None = None
        aws = settings.aws
        if settings.api_key is None:  # no Bedrock API key: SigV4 (the loader made sure of the keys)
            assert aws is not None
            assert aws.access_key_id is not None
            assert aws.secret_access_key is not None
            assert aws.region is not None
            self._signer = SigV4Signer(
                access_key_id=aws.access_key_id.reveal(),
                secret_access_key=aws.secret_access_key.reveal(),
                session_token=aws.session_token.reveal() if aws.session_token else None,
                region=aws.region,
            )
        self._endpoints: dict[tuple[str, str], tuple[Endpoint, str]] = {}
        base = settings.base_url
        control = base.replace("://bedrock-runtime.", "://bedrock.", 1)  # the control plane's host
        models_url = f"{control}/foundation-models?byOutputModality=TEXT"
        self._models = (self.link.endpoint("GET", models_url), models_url)
        rerank_url = ranking.agent_runtime_url(base)
        self._rerank = (self.link.endpoint("POST", rerank_url), rerank_url)

    def _endpoint(self, model: str, action: str) -> tuple[Endpoint, str]:
        key = (model, action)
        found = self._endpoints.get(key)
        if found is None:
            if len(self._endpoints) >= MAX_CACHED_ENDPOINTS:
                self._endpoints.clear()
            url = f"{self.settings.base_url}/model/{quote(model, safe='')}/{action}"
            found = self._endpoints[key] = (self.link.endpoint("POST", url), url)
        return found

    async def _send(
        self, endpoint: tuple[Endpoint, str], body: bytes, timeouts: Timeouts, method: str = "POST"
    ) -> UpstreamResponse:
        prepared, url = endpoint
        signed = b"" if self._signer is None else self._signer.headers(url, body, method=method)
        return await self.link.send(prepared, body, timeouts, extra_headers=signed)

    def _body(self, call: ChatCall) -> tuple[bytes, translate.JsonMode | None]:
        apply_parameter_policy(
            dict(call.body), self.settings, call.unsupported_params
        )  # refuses what Converse lacks
        body, json_mode = translate.request_body(call.request)
        return request_json(body), json_mode

    async def complete(self, call: ChatCall) -> ChatResult:
        body, json_mode = self._body(call)
        response = await self._send(self._endpoint(call.model, "converse"), body, call.timeouts)
        chat_id = _chat_id(response)
        data = await self.link.answer(response, MAX_RESPONSE_BYTES)
        answer = self.link.decode(
            response_decoder, data, "answered with something that is not a Converse response"
        )
        out = translate.completion(answer, json_mode, model=call.model, chat_id=chat_id)
        usage = answer.usage.canonical() if answer.usage else None
        return ChatResult(usage, completion=out)

    async def stream(self, call: ChatCall) -> BedrockStream:
        body, json_mode = self._body(call)
        response = await self._send(self._endpoint(call.model, "converse-stream"), body, call.timeouts)
        return BedrockStream(
            self.link.event_stream(response, EVENT_STREAM),
            provider=self.name,
            model=call.model,
            chat_id=_chat_id(response),
            json_mode=json_mode,
            include_usage=call.client_wants_usage,
        )

    async def embed(self, call: EmbeddingCall) -> EmbeddingResult:
        family, invocations = embeddings.plan(call.request, call.model, self.name)
        endpoint = self._endpoint(call.model, "invoke")

        async def invoke(invocation: embeddings.Invocation) -> embeddings.Answer:
            response = await self._send(endpoint, invocation.body, call.timeouts)
            data = await response.read(MAX_RESPONSE_BYTES)
            count = response.header(embeddings.INPUT_TOKEN_COUNT)
            return embeddings.read_answer(family, invocation, data, count, self.name)

        answers = await in_order(invocations, invoke, PARALLEL_INVOKES)
        out, usage = embeddings.response(
            answers, model=call.model, as_base64=call.request.encoding_format == "base64"
        )
        return EmbeddingResult(body=orjson.dumps(out), usage=usage)

    async def rerank(self, call: RerankCall) -> RerankResult:
        refuse_document_limit(call.request, self.name)
        region = None if self.settings.aws is None else self.settings.aws.region
        arn = ranking.model_arn(call.model, region, self.name)
        body = ranking.rerank_body(call.request, arn)
        response = await self._send(self._rerank, body, call.timeouts)
        data = await response.read(RERANK_RESPONSE_BYTES)
        answer = self.link.decode(ranking.rerank_decoder, data, "sent a malformed ranking")
        usage = Usage(search_units=call.request.search_units, estimated=True)  # (Bedrock reports none)
        request_id = response.header(b"x-amzn-requestid")
        answer_id = request_id.decode("latin-1") if request_id else call.request_id
        return ranked_result(call, self.name, answer.ranking(), answer_id=answer_id, usage=usage)

    async def list_models(self) -> list[str]:
        response = await self._send(self._models, b"", LIST_TIMEOUTS, method="GET")
        data = await response.read(8 * 1024 * 1024)
        models = self.link.decode(_models_decoder, data, "sent a malformed model list").model_summaries
        return [m.model_id for m in models]

    async def aclose(self) -> None:
        self._endpoints.clear()


def _chat_id(response: UpstreamResponse) -> str:
    """Converse answers carry no id; Bedrock's request id (`x-amzn-requestid`) serves as one."""
    request_id = response.header(b"x-amzn-requestid")
    return f"chatcmpl-{request_id.decode('latin-1') if request_id else uuid.uuid4().hex}"
