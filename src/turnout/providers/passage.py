"""A provider's pass-through: `/passthrough/<provider>/<path>` sent to `<base_url>/<path>` with the
provider's credential, for the provider APIs turnout does not model (files, batches, fine-tuning,
vector stores ...), and only the path prefixes the configuration allows (`passthrough:`).

Never a way to reach an arbitrary URL: the host is the provider's, the path must start with an
allowed prefix and is checked as sent (no dot segments, no encoded `/`, `.` or `\\`), and what the
client's headers may carry is an allow-list (never its own credentials, hop-by-hop headers or a
host). What the answer reports of its usage (`usage`, `usageMetadata`) is read back, when it is a
JSON answer, for the ledger.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgspec

from turnout.config.settings import ProviderSettings
from turnout.domain.malformed import DECODE_ERRORS
from turnout.domain.usage import OpenAIUsage, TokenCount, Usage
from turnout.providers.anthropic.wire import AnthropicUsage
from turnout.providers.cohere.wire import CohereUsage
from turnout.providers.gemini.wire import UsageMetadata
from turnout.providers.http.client import HttpClient
from turnout.providers.http.connection import UpstreamResponse
from turnout.providers.link import ProviderLink

# Client headers a pass-through request carries on (lower-case); everything else is dropped.
PASSED_REQUEST_HEADERS = frozenset(
    {
        b"content-type",
        b"accept",
        b"openai-beta",
        b"anthropic-version",
        b"anthropic-beta",
        b"idempotency-key",
    }
)
# Upstream answer headers never passed back: hop-by-hop, framing (the body is passed decoded, and
# framed again), cookies, and what turnout sets itself.
DROPPED_ANSWER_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"content-encoding",
        b"set-cookie",
        b"server",
        b"date",
        b"x-request-id",
        b"alt-svc",
    }
)
# A path as sent: segments of unreserved and sub-delimiting characters, percent-escapes allowed
# but for the ones that would change the path's structure (`/`, `.`, `\`) once decoded upstream.
_SENT_PATH = re.compile(r"^(/[A-Za-z0-9_.~:@!$&'()*+,;=%-]*)+$")
_STRUCTURAL_ESCAPE = re.compile(r"%(2[eEfF]|5[cC]|00)")
_QUERY = re.compile(r"^[\x21-\x7e]*$")
USAGE_BODY_LIMIT = 16 * 1024 * 1024  # JSON answers up to this size are read for their usage


class _Details(msgspec.Struct, frozen=True):
    cached_tokens: TokenCount | None = None
    reasoning_tokens: TokenCount | None = None


class _ResponsesUsage(msgspec.Struct, frozen=True):
    """The usage of OpenAI's Responses API (input/output, not prompt/completion)."""

    input_tokens: TokenCount | None = None
    output_tokens: TokenCount | None = None
    input_tokens_details: _Details | None = None
    output_tokens_details: _Details | None = None


class _OpenAIAnswer(msgspec.Struct, frozen=True):
    model: str | None = None
    usage: OpenAIUsage | None = None


class _ResponsesAnswer(msgspec.Struct, frozen=True):
    model: str | None = None
    usage: _ResponsesUsage | None = None


class _AnthropicAnswer(msgspec.Struct, frozen=True):
    model: str | None = None
    usage: AnthropicUsage | None = None


class _GeminiAnswer(msgspec.Struct, frozen=True, rename="camel"):
    model_version: str | None = None
    usage_metadata: UsageMetadata | None = None


class _CohereAnswer(msgspec.Struct, frozen=True):
    model: str | None = None
    usage: CohereUsage | None = None


@dataclass(frozen=True)
class Reported:
    """What a pass-through answer says of itself: the model that served it and its usage."""

    model: str | None = None
    usage: Usage | None = None


NOTHING_REPORTED = Reported()


class Passage:
    """One provider's pass-through."""

    def __init__(self, settings: ProviderSettings, link: ProviderLink, client: HttpClient) -> None:
        self.client = client
        self.provider = settings.name
        self.wire = settings.kind.wire
        self.base_url = settings.base_url
        self.prefixes = settings.passthrough
        self.timeouts = settings.timeouts
        self.link = link
        # the provider's own headers (its credential, configured ones), without the JSON defaults
        self._headers = [(n, v) for n, v in link.headers if n not in ("content-type", "accept")]

    def allows(self, path: str) -> bool:
        """Is `path` (as sent, percent-escapes kept) one this pass-through may reach?"""
        if not _SENT_PATH.match(path) or _STRUCTURAL_ESCAPE.search(path) or "//" in path:
            return False
        if any(segment in (".", "..") for segment in path.split("/")):
            return False
        return any(path == p or path.startswith((p + "/", p + ":")) for p in self.prefixes)

    @staticmethod
    def query_allowed(query: str) -> bool:
        return bool(_QUERY.match(query))

    async def send(
        self, method: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes
    ) -> UpstreamResponse:
        """The upstream's answer, whatever its status (the caller passes it on and releases it)."""
        url = self.base_url + path + (("&" if "?" in self.base_url else "?") + query if query else "")
        endpoint = self.link.endpoint(method, url, [*self._headers, *headers])
        return await self.client.send(endpoint, body, self.timeouts)

    def reported(self, body: bytes) -> Reported:
        """The model and usage a JSON answer reports in this provider's wire format (nothing when
        it reports none or is not JSON)."""
        try:
            if self.wire == "anthropic":
                anthropic = msgspec.json.decode(body, type=_AnthropicAnswer)
                return Reported(anthropic.model, anthropic.usage.canonical() if anthropic.usage else None)
            if self.wire == "gemini":
                gemini = msgspec.json.decode(body, type=_GeminiAnswer)
                usage = gemini.usage_metadata.canonical() if gemini.usage_metadata else None
                return Reported(gemini.model_version, usage)
            if self.wire == "cohere":
                cohere = msgspec.json.decode(body, type=_CohereAnswer)
                return Reported(cohere.model, cohere.usage.canonical() if cohere.usage else None)
            openai = msgspec.json.decode(body, type=_OpenAIAnswer)
            if openai.usage is not None and openai.usage.prompt_tokens is not None:
                return Reported(openai.model, openai.usage.canonical())
            responses = msgspec.json.decode(body, type=_ResponsesAnswer)
            return Reported(responses.model, _responses_usage(responses.usage))
        except DECODE_ERRORS:
            return NOTHING_REPORTED


def _responses_usage(usage: _ResponsesUsage | None) -> Usage | None:
    if usage is None or usage.input_tokens is None:
        return None
    cached = usage.input_tokens_details.cached_tokens if usage.input_tokens_details else None
    reasoning = usage.output_tokens_details.reasoning_tokens if usage.output_tokens_details else None
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens or 0,
        cached_input_tokens=cached or 0,
        reasoning_tokens=reasoning or 0,
    )
