"""One deployment's batch API: OpenAI's files and batches endpoints (OpenAI, Azure OpenAI), or
Anthropic's Message Batches (`messages/batches`), under the provider's URL, called with the
provider's credential. Answers are the provider's JSON objects; a non-2xx answer is an error on the
error tree (providers/link.py)."""

from __future__ import annotations

import os
from typing import Any

import orjson

from turnout.config.settings import ProviderSettings, Timeouts
from turnout.domain.errors import UpstreamProtocolError
from turnout.providers.anthropic.adapter import AnthropicAdapter
from turnout.providers.base import Adapter
from turnout.providers.http.connection import UpstreamResponse
from turnout.providers.link import ProviderLink
from turnout.providers.openai_compatible.adapter import OpenAICompatibleAdapter

BATCH_KINDS = frozenset({"openai", "azure"})  # the kinds whose provider has OpenAI's batch API
TRANSFER_TIMEOUTS = Timeouts(connect=10.0, first_byte=120.0, idle=60.0, total=900.0)
CALL_TIMEOUTS = Timeouts(connect=5.0, first_byte=30.0, idle=30.0, total=60.0)
MAX_OBJECT_BYTES = 1024 * 1024  # a file or batch object (a list of them: LIST_BYTES)
MAX_LIST_BYTES = 16 * 1024 * 1024


class BatchUpstream:
    def __init__(self, settings: ProviderSettings, link: ProviderLink, wire: str = "openai") -> None:
        self.settings = settings
        self.link = link
        self.wire = wire  # openai | anthropic
        self.provider = settings.name
        self.azure = settings.kind.azure_paths
        # the provider's own headers (its credential, configured ones) without the JSON defaults
        self._headers = [(n, v) for n, v in link.headers if n not in ("content-type", "accept")]

    @classmethod
    def of(cls, adapter: Adapter, wire: str = "openai") -> BatchUpstream | None:
        """The batch API of a deployment's provider in `wire`'s format (None: it has none turnout
        uses)."""
        if wire == "anthropic":
            if isinstance(adapter, AnthropicAdapter) and adapter.settings.kind.name == "anthropic":
                return cls(adapter.settings, adapter.link, "anthropic")
            return None
        if not isinstance(adapter, OpenAICompatibleAdapter) or adapter.settings.kind.name not in BATCH_KINDS:
            return None
        return cls(adapter.settings, adapter.link)

    @property
    def line_prefix(self) -> str:
        """How a batch line's `url` starts for this provider (Azure's name no `/v1`)."""
        return "" if self.azure else "/v1"

    def url(self, path: str) -> str:
        s = self.settings
        if self.azure and s.api_version == "v1":
            return f"{s.base_url}/openai/v1/{path}"
        if self.azure:
            return f"{s.base_url}/openai/{path}?api-version={s.api_version}"
        return f"{s.base_url}/{path}"

    async def _send(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        content_type: str | None = None,
        *,
        transfer: bool = False,
    ) -> UpstreamResponse:
        headers = [*self._headers, ("accept", "application/json")]
        if content_type is not None:
            headers.append(("content-type", content_type))
        endpoint = self.link.endpoint(method, self.url(path), headers)
        return await self.link.send(endpoint, body, TRANSFER_TIMEOUTS if transfer else CALL_TIMEOUTS)

    async def _json(self, response: UpstreamResponse, limit: int = MAX_OBJECT_BYTES) -> dict[str, Any]:
        data = await response.read(limit)
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            raise UpstreamProtocolError(f"The provider '{self.provider}' did not answer with a JSON object.")
        return doc

    async def upload(self, filename: str, data: bytes, purpose: str = "batch") -> dict[str, Any]:
        boundary = "turnout-" + os.urandom(12).hex()
        safe = filename.replace("\\", "_").replace('"', "_").replace("\r", "_").replace("\n", "_")
        head = f"--{boundary}\r\nContent-Disposition: form-data; "
        body = b"".join(
            [
                f'{head}name="purpose"\r\n\r\n{purpose}\r\n'.encode(),
                f'{head}name="file"; filename="{safe}"\r\n'.encode(),
                b"Content-Type: application/jsonl\r\n\r\n",
                data,
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
        response = await self._send(
            "POST", "files", body, f"multipart/form-data; boundary={boundary}", transfer=True
        )
        return await self._json(response)

    async def get(self, path: str) -> dict[str, Any]:
        return await self._json(await self._send("GET", path))

    async def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        payload = b"" if body is None else orjson.dumps(body)
        return await self._json(await self._send("POST", path, payload, "application/json"))

    async def delete(self, path: str) -> dict[str, Any]:
        return await self._json(await self._send("DELETE", path))

    async def content(self, file_id: str) -> UpstreamResponse:
        """A file's content as it arrives (the caller reads and releases it)."""
        return await self.get_stream(f"files/{file_id}/content")

    async def get_stream(self, path: str) -> UpstreamResponse:
        """A GET's answer as it arrives (a file's content, a message batch's results)."""
        return await self._send("GET", path, transfer=True)
