"""The endpoints: each parses nothing itself and hands the exchange to the pipeline or a service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import unquote

import orjson

from turnout.app import Services
from turnout.domain.errors import ModelNotFound, TurnoutError
from turnout.limits.concurrency import ConcurrencyGate
from turnout.server.cohere_rerank import CohereRerankExchange
from turnout.server.completions import CompletionsExchange
from turnout.server.count_tokens import count_message_tokens
from turnout.server.exchange import Exchange
from turnout.server.media import MediaExchange
from turnout.server.messages import MessagesExchange
from turnout.server.responses import ResponsesExchange, StoredResponses

Handler = Callable[[Exchange], Awaitable[None]]

OWNED_BY = "turnout"


class Endpoints:
    def __init__(self, services: Services, gate: ConcurrencyGate | None = None) -> None:
        self.services = services
        self.gate = gate  # admission control (server.overload), shown to admins on /health/ready
        self.pipeline = services.pipeline
        self.stored_responses = StoredResponses(services.responses, services.keys)

    async def chat_completions(self, x: Exchange) -> None:
        await self.pipeline.chat_completion(x, x)

    async def messages(self, x: Exchange) -> None:
        inbound = MessagesExchange(x)
        await self.pipeline.chat_completion(inbound, inbound)

    async def count_tokens(self, x: Exchange) -> None:
        await count_message_tokens(self.pipeline, x)

    async def responses(self, x: Exchange) -> None:
        inbound = ResponsesExchange(x, self.services.responses, self.services.keys)
        await self.pipeline.chat_completion(inbound, inbound)

    async def completions(self, x: Exchange) -> None:
        inbound = CompletionsExchange(x)
        await self.pipeline.chat_completion(inbound, inbound)

    async def embeddings(self, x: Exchange) -> None:
        await self.pipeline.embeddings(x, x)

    async def rerank(self, x: Exchange) -> None:
        await self.pipeline.rerank(x, x)

    async def cohere_rerank(self, x: Exchange) -> None:
        inbound = CohereRerankExchange(x)
        await self.pipeline.rerank(inbound, inbound)

    async def moderations(self, x: Exchange) -> None:
        await self.pipeline.moderations(x, x)

    async def images(self, x: Exchange) -> None:
        inbound = MediaExchange(x, "images")
        await self.pipeline.media(inbound, inbound, "images")

    async def transcriptions(self, x: Exchange) -> None:
        inbound = MediaExchange(x, "transcriptions")
        await self.pipeline.media(inbound, inbound, "transcriptions")

    async def speech(self, x: Exchange) -> None:
        inbound = MediaExchange(x, "speech")
        await self.pipeline.media(inbound, inbound, "speech")

    def _model(self, name: str) -> dict[str, object]:
        return {"id": name, "object": "model", "created": int(self.services.started_at), "owned_by": OWNED_BY}

    async def list_models(self, x: Exchange) -> None:
        principal = await self.pipeline.resolve(x)
        names = await self.services.catalog.list_names()
        data = [self._model(n) for n in names if "*" not in n and self.pipeline.visible(principal, n)]
        await x.send_json(200, orjson.dumps({"object": "list", "data": data}))

    async def retrieve_model(self, x: Exchange, raw_id: str) -> None:
        principal = await self.pipeline.resolve(x)
        name = unquote(raw_id)
        if not name or "*" in name or not self.pipeline.visible(principal, name):
            raise ModelNotFound(
                f"The model '{name}' does not exist or you do not have access to it.", param="model"
            )
        await x.send_json(200, orjson.dumps(self._model(name)))

    async def live(self, x: Exchange) -> None:
        await x.send_json(200, b'{"status":"alive"}')

    def _admin(self, x: Exchange) -> bool:
        """Does the request carry the master key (or another admin's)? Never an error: anonymous
        callers simply get the summary."""
        try:
            if x.credential() is None:  # (a client refused for failed attempts is anonymous here)
                return False
            principal = self.pipeline.authenticate(x)
        except TurnoutError:
            return False
        return principal.kind == "master" or principal.role in ("owner", "admin")

    def deployment_states(self) -> list[dict[str, object]]:
        """Every deployment's live state: the configured ones (used or not) and any a wildcard alias
        has reached, each once, with the aliases that use it."""
        router = self.pipeline.router
        now = router.clock()
        aliases: dict[tuple[str, str], list[str]] = {}
        for alias, model in self.services.settings.models.items():
            for t in model.targets:
                if model.is_wildcard or "*" in t.model:
                    continue
                router.deployments.get(t.provider, t.model, t.name, t.rpm, t.tpm)
                aliases.setdefault((t.provider, t.model), []).append(alias)
        out = []
        for state in router.deployments.all():
            detail = state.describe(now)
            detail["aliases"] = aliases.get(state.key, [])
            out.append(detail)
        return out

    async def ready(self, x: Exchange) -> None:
        s = self.services
        detail: dict[str, object] = {"models": len(s.settings.models), "providers": len(s.settings.providers)}
        if self._admin(x):
            deployments = self.deployment_states()
            detail["deployments_total"] = len(deployments)
            detail["deployments_available"] = sum(1 for d in deployments if d["state"] == "closed")
            detail["deployments"] = deployments
            if self.gate is not None:
                detail["overload"] = self.gate.describe()
        detail["journal"] = s.spend.health()  # ok | degraded | unwritable (then requests are refused)
        if s.draining:
            await x.send_json(503, orjson.dumps({"status": "draining", **detail}))
            return
        ready = s.spend.journal.state != "unwritable"  # else every request is refused (503)
        database = "ok"
        try:
            await s.database.within(s.database.ping())
        except Exception:
            # Serving goes on without the database (keys, budgets and routes are in memory, spend
            # is journaled): a blip reaches every instance at once, and a 503 here would have the
            # load balancer take them all out. Degraded, still ready.
            database = "unreachable"
        status = "unavailable" if not ready else "ready" if database == "ok" else "degraded"
        body = {"status": status, "database": database, **detail, **self._sharing()}
        await x.send_json(200 if ready else 503, orjson.dumps(body))

    def _sharing(self) -> dict[str, object]:
        """How many instances share the database, and a warning while their budgets are not
        shared exactly (no Redis configured, or Redis away)."""
        s = self.services
        out: dict[str, object] = {"instances": s.instances.live}
        warning = s.instances.warning
        shared = s.budgets.shared
        if shared is not None:
            out["redis"] = "unreachable" if shared.down else "ok"
            if shared.down:
                warning = (
                    "Redis is unreachable: each instance enforces budgets on its own"
                    + (f", 1/{s.instances.live} of each" if s.instances.live > 1 else "")
                    + " until it answers"
                )
        if warning is not None:
            out["warnings"] = [warning]
        return out
