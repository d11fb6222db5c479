"""A fake provider batch API in OpenAI's documented wire format (`/v1/files`, `/v1/batches`) and
Anthropic's (`/v1/messages/batches`): a real HTTP server on 127.0.0.1 (aiohttp, in its own thread)
that keeps uploaded files and batches, and runs a batch when a test says so (`finish`,
`finish_messages`), answering each request with a chat completion (or message) whose usage is
fixed (PROMPT_TOKENS, COMPLETION_TOKENS)."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

PROMPT_TOKENS = 10
COMPLETION_TOKENS = 20


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class BatchUpstream:
    key: str
    port: int = 0
    requests: list[Seen] = field(default_factory=list)
    files: dict[str, tuple[dict[str, Any], bytes]] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    message_batches: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = field(default_factory=dict)
    failed_creations: int = 0  # how many of the next batch creations (either API) answer 500

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._downloads: asyncio.Event | None = None  # set: downloads wait for it
        self.download_held = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> BatchUpstream:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(self._start())
            ready.set()
            loop.run_forever()
            assert self._runner is not None
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="test-batch-upstream", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    async def _start(self) -> None:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    # ------------------------------------------------------------------ what a test drives

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):06d}"

    def finish(self, batch_id: str, status: str = "completed") -> None:
        """Run the batch: one answer per input line (usage fixed), then `status`."""
        with self._lock:
            batch = self.batches[batch_id]
            _, data = self.files[batch["input_file_id"]]
            out = []
            for line in data.decode().splitlines():
                if not line.strip():
                    continue
                request = json.loads(line)
                body = {
                    "id": "chatcmpl-" + request["custom_id"],
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": request["body"]["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "done"},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": PROMPT_TOKENS,
                        "completion_tokens": COMPLETION_TOKENS,
                        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
                    },
                }
                answer = {"status_code": 200, "request_id": "req_x", "body": body}
                out.append(
                    json.dumps(
                        {
                            "id": "batch_req_1",
                            "custom_id": request["custom_id"],
                            "response": answer,
                            "error": None,
                        }
                    )
                )
            content = ("\n".join(out) + "\n").encode()
            output_id = self._new_id("file")
            self.files[output_id] = (
                self._file_object(output_id, "batch_output.jsonl", content, "batch_output"),
                content,
            )
            batch.update(
                status=status,
                output_file_id=output_id,
                completed_at=int(time.time()),
                request_counts={"total": len(out), "completed": len(out), "failed": 0},
            )

    def hold_downloads(self) -> None:
        """Keep every file content or results download waiting (from now) until released;
        `download_held` is set once one is waiting."""
        assert self._loop is not None
        ready = threading.Event()

        def hold() -> None:
            self._downloads = asyncio.Event()
            ready.set()

        self._loop.call_soon_threadsafe(hold)
        ready.wait(10)

    def release_downloads(self) -> None:
        assert self._loop is not None

        def release() -> None:
            if self._downloads is not None:
                self._downloads.set()
                self._downloads = None

        self._loop.call_soon_threadsafe(release)

    def finish_messages(self, batch_id: str) -> None:
        """End an Anthropic message batch: every request succeeded (usage fixed)."""
        with self._lock:
            batch, requests = self.message_batches[batch_id]
            batch.update(
                processing_status="ended",
                ended_at="2026-12-06T12:00:00Z",
                results_url=f"http://127.0.0.1:{self.port}/v1/messages/batches/{batch_id}/results",
                request_counts={
                    "processing": 0,
                    "succeeded": len(requests),
                    "errored": 0,
                    "canceled": 0,
                    "expired": 0,
                },
            )

    def _results(self, batch_id: str) -> bytes:
        _, requests = self.message_batches[batch_id]
        lines = []
        for request in requests:
            message = {
                "id": "msg_" + request["custom_id"],
                "type": "message",
                "role": "assistant",
                "model": request["params"]["model"],
                "content": [{"type": "text", "text": "done"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS},
            }
            result = {"type": "succeeded", "message": message}
            lines.append(json.dumps({"custom_id": request["custom_id"], "result": result}))
        return ("\n".join(lines) + "\n").encode()

    def _message_batch(self, parts: list[str], method: str, body: bytes) -> web.StreamResponse:
        if len(parts) == 2 and method == "POST":
            requests = json.loads(body)["requests"]
            batch_id = self._new_id("msgbatch")
            batch = {
                "id": batch_id,
                "type": "message_batch",
                "processing_status": "in_progress",
                "request_counts": {
                    "processing": len(requests),
                    "succeeded": 0,
                    "errored": 0,
                    "canceled": 0,
                    "expired": 0,
                },
                "ended_at": None,
                "created_at": "2026-12-06T11:00:00Z",
                "expires_at": "2026-12-07T11:00:00Z",
                "archived_at": None,
                "cancel_initiated_at": None,
                "results_url": None,
            }
            self.message_batches[batch_id] = (batch, requests)
            return web.json_response(batch)
        found = self.message_batches.get(parts[2]) if len(parts) >= 3 else None
        if found is None:
            return _anthropic_error(404, "not_found_error", "message batch not found")
        batch = found[0]
        if len(parts) == 4 and parts[3] == "results" and method == "GET":
            return web.Response(body=self._results(parts[2]), content_type="application/binary")
        if len(parts) == 4 and parts[3] == "cancel" and method == "POST":
            batch.update(processing_status="canceling", cancel_initiated_at="2026-12-06T11:30:00Z")
        if method == "DELETE":
            del self.message_batches[parts[2]]
            return web.json_response({"id": parts[2], "type": "message_batch_deleted"})
        return web.json_response(batch)

    # ------------------------------------------------------------------ the API

    @staticmethod
    def _file_object(file_id: str, filename: str, content: bytes, purpose: str) -> dict[str, Any]:
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }

    @staticmethod
    def _error(status: int, message: str) -> web.Response:
        body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
        return web.json_response(body, status=status)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            Seen(request.method, request.path, request.query_string, dict(request.headers), body)
        )
        bearer = request.headers.get("Authorization") == f"Bearer {self.key}"
        keyed = self.key in (
            request.headers.get("api-key"),
            request.headers.get("x-api-key"),
        )  # Azure's, Anthropic's
        if not bearer and not keyed:
            return self._error(401, "Incorrect API key provided.")
        parts = request.path.strip("/").split("/")[1:]  # without the leading "v1" (Azure: "openai")
        if parts[-1:] in (["content"], ["results"]) and self._downloads is not None:
            self.download_held.set()
            await self._downloads.wait()  # held until `release_downloads`
        with self._lock:
            return await self._route(request, parts, body)

    async def _route(self, request: web.Request, parts: list[str], body: bytes) -> web.StreamResponse:
        method = request.method
        if method == "POST" and parts in (["batches"], ["messages", "batches"]) and self.failed_creations:
            self.failed_creations -= 1
            return self._error(500, "The server had an error while processing your request.")
        if parts[:2] == ["messages", "batches"]:
            return self._message_batch(parts, method, body)
        if parts == ["files"] and method == "POST":
            form = await _form(request, body)
            upload = form["file"]
            file_id = self._new_id("file")
            obj = self._file_object(file_id, upload[0], upload[1], form["purpose"][1].decode())
            self.files[file_id] = (obj, upload[1])
            return web.json_response(obj)
        if len(parts) >= 2 and parts[0] == "files":
            found = self.files.get(parts[1])
            if found is None:
                return self._error(404, f"No such File object: {parts[1]}")
            if len(parts) == 3 and parts[2] == "content" and method == "GET":
                return web.Response(body=found[1], content_type="application/octet-stream")
            if method == "DELETE":
                del self.files[parts[1]]
                return web.json_response({"id": parts[1], "object": "file", "deleted": True})
            return web.json_response(found[0])
        if parts == ["batches"] and method == "POST":
            asked = json.loads(body)
            if asked["input_file_id"] not in self.files:
                return self._error(400, "No such input file.")
            batch_id = self._new_id("batch")
            self.batches[batch_id] = {
                "id": batch_id,
                "object": "batch",
                "endpoint": asked["endpoint"],
                "errors": None,
                "input_file_id": asked["input_file_id"],
                "completion_window": asked["completion_window"],
                "status": "validating",
                "output_file_id": None,
                "error_file_id": None,
                "created_at": int(time.time()),
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "metadata": asked.get("metadata"),
            }
            return web.json_response(self.batches[batch_id])
        if len(parts) >= 2 and parts[0] == "batches":
            batch = self.batches.get(parts[1])
            if batch is None:
                return self._error(404, f"No such Batch object: {parts[1]}")
            if len(parts) == 3 and parts[2] == "cancel" and method == "POST":
                batch.update(status="cancelled", cancelled_at=int(time.time()))
            return web.json_response(batch)
        return self._error(404, f"Unknown request URL: {method} {request.path}")


async def _form(request: web.Request, body: bytes) -> dict[str, tuple[str, bytes]]:
    """The multipart form's fields: name -> (filename, bytes) (a plain reading of RFC 7578)."""
    boundary = request.headers["Content-Type"].split("boundary=", 1)[1].strip('"').encode()
    out: dict[str, tuple[str, bytes]] = {}
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk[2:].partition(b"\r\n\r\n")
        disposition = next(
            h for h in head.decode().split("\r\n") if h.lower().startswith("content-disposition")
        )
        params = dict(p.strip().split("=", 1) for p in disposition.split(";")[1:] if "=" in p)
        name = params["name"].strip('"')
        out[name] = (params.get("filename", "").strip('"'), data[:-2])  # (its CRLF before the boundary)
    return out


def _anthropic_error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"type": "error", "error": {"type": kind, "message": message}}, status=status)
