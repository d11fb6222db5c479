"""The ASGI application: dispatch by path and method, and turn every failure into an API error.

No request, however malformed, gets a traceback: turnout's own errors render as OpenAI errors,
anything unexpected as a bare 500 (details go to the log, never to the client).
"""

from __future__ import annotations

import logging
import time

from turnout.app import Services
from turnout.domain.errors import InternalError, MethodNotAllowed, RouteNotFound, TurnoutError
from turnout.server.admin import AdminKeys
from turnout.server.exchange import ClientGone, Exchange, Receive, Scope, Send
from turnout.server.routes import Endpoints, Handler

log = logging.getLogger("turnout.server")
access_log = logging.getLogger("turnout.access")

MODEL_PREFIXES = ("/v1/models/", "/models/")
RESPONSE_PREFIXES = ("/v1/responses/", "/responses/")
ADMIN_KEY_PREFIX = "/admin/keys/"


def create_app(services: Services) -> GatewayApp:
    return GatewayApp(services)


class GatewayApp:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.max_body = services.settings.server.max_request_bytes
        self.access_log = services.settings.server.access_log
        e = Endpoints(services)
        self.admin_keys = AdminKeys(services.key_service, services.keys)
        self.endpoints = e
        routes: dict[str, dict[str, Handler]] = {
            "/v1/chat/completions": {"POST": e.chat_completions},
            "/v1/embeddings": {"POST": e.embeddings},
            "/v1/messages": {"POST": e.messages},
            "/v1/responses": {"POST": e.responses},
            "/v1/models": {"GET": e.list_models},
            "/admin/keys": {"GET": self.admin_keys.list, "POST": self.admin_keys.create},
            "/health/live": {"GET": e.live, "HEAD": e.live},
            "/health/ready": {"GET": e.ready, "HEAD": e.ready},
        }
        # Clients configured with a base URL without /v1 reach the same endpoints.
        for path in ("/v1/chat/completions", "/v1/embeddings", "/v1/models", "/v1/messages", "/v1/responses"):
            routes[path[3:]] = routes[path]
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await _lifespan(receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        x = Exchange(scope, receive, send, self.max_body)
        started = time.perf_counter() if self.access_log else 0.0
        status = 200
        try:
            await self.dispatch(scope["path"], scope["method"], x)
        except TurnoutError as error:
            status = error.status
            await x.error(error)
        except ClientGone:
            status = 499
        except Exception:
            status = 500
            log.exception("request %s failed", x.request_id)
            await x.error(InternalError(f"turnout failed to handle the request (request id {x.request_id})."))
        if self.access_log:
            access_log.info(
                "%s %s %d %.1fms %s",
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000,
                x.request_id,
            )

    async def dispatch(self, path: str, method: str, x: Exchange) -> None:
        methods = self.routes.get(path)
        if methods is None and len(path) > 1 and path.endswith("/"):
            methods = self.routes.get(path.rstrip("/"))
        if methods is not None:
            handler = methods.get(method)
            if handler is None:
                raise MethodNotAllowed(f"{method} is not allowed on {path}.", allowed=tuple(methods))
            await handler(x)
            return
        for prefix in MODEL_PREFIXES:
            if path.startswith(prefix):
                if method != "GET":
                    raise MethodNotAllowed(f"{method} is not allowed on {path}.", allowed=("GET",))
                raw = x.scope.get("raw_path") or path.encode()
                model_id = bytes(raw).split(b"?", 1)[0].decode("latin-1")[len(prefix) :]
                await self.endpoints.retrieve_model(x, model_id)
                return
        if path.startswith(ADMIN_KEY_PREFIX):
            await self.admin_key(path[len(ADMIN_KEY_PREFIX) :], method, x)
            return
        for prefix in RESPONSE_PREFIXES:
            if path.startswith(prefix):
                await self.stored_response(path[len(prefix) :], method, x)
                return
        raise RouteNotFound(f"Unknown request URL: {method} {path}.")

    async def admin_key(self, rest: str, method: str, x: Exchange) -> None:
        """/admin/keys/{id} (GET), /admin/keys/{id}/revoke and /rotate (POST)."""
        key_id, _, action = rest.partition("/")
        if not key_id or action not in ("", "revoke", "rotate"):
            raise RouteNotFound(f"Unknown request URL: {method} /admin/keys/{rest}.")
        allowed = ("GET",) if action == "" else ("POST",)
        if method not in allowed:
            raise MethodNotAllowed(f"{method} is not allowed here.", allowed=allowed)
        await self.admin_keys.one(x, key_id, action)

    async def stored_response(self, rest: str, method: str, x: Exchange) -> None:
        """/v1/responses/{id} (GET, DELETE) and /v1/responses/{id}/input_items (GET)."""
        stored = self.endpoints.stored_responses
        response_id, _, sub = rest.partition("/")
        if not response_id or sub not in ("", "input_items"):
            raise RouteNotFound(f"Unknown request URL: {method} /v1/responses/{rest}.")
        allowed = ("GET", "DELETE") if sub == "" else ("GET",)
        if method not in allowed:
            raise MethodNotAllowed(f"{method} is not allowed here.", allowed=allowed)
        if sub == "input_items":
            await stored.input_items(x, response_id)
        elif method == "GET":
            await stored.retrieve(x, response_id)
        else:
            await stored.delete(x, response_id)


async def _lifespan(receive: Receive, send: Send) -> None:
    """Services are started before the server (see server/runner.py); lifespan only acknowledges."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
