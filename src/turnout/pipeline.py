"""The request lifecycle, in the order the product promises it:

    authenticate → authorise model → admit (limits) → reserve budget → route → respond → settle

Each step is one call to the service that owns it; the web edge supplies an `Inbound` (the
request) and a `Responder` (how to answer), so nothing here knows about HTTP frameworks.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from turnout.domain.chat import ChatRequest, parse_chat_request
from turnout.domain.embeddings import parse_embedding_request
from turnout.domain.errors import InvalidRequest, ModelNotFound, UnsupportedFeature
from turnout.domain.principal import Principal
from turnout.domain.usage import Usage
from turnout.keys.index import KeyIndex
from turnout.limits.admission import Admission
from turnout.providers.base import NativeRequest
from turnout.routing.capabilities import first_unmet, needs
from turnout.routing.catalog import Catalog, Route
from turnout.routing.relay import RelayStream
from turnout.routing.router import Router, Served, Steering
from turnout.spend.budgets import Budgets

_MODEL_NAME = re.compile(r"^[\x21-\x7e][\x20-\x7e]{0,255}$")


class Inbound(Protocol):
    def credential(self) -> str | None: ...

    def steering(self) -> Steering: ...

    async def json(self) -> Any: ...

    def native(self) -> NativeRequest | None:
        """The request in the client's own wire format, for deployments that speak it."""
        ...


class Responder(Protocol):
    async def answer(self, body: bytes, served: Served) -> None: ...

    async def answer_native(self, body: bytes, served: Served) -> None:
        """The upstream's own answer to the native request, passed on as it is."""
        ...

    async def stream(self, stream: RelayStream, served: Served) -> Usage | None: ...


class Pipeline:
    def __init__(
        self, keys: KeyIndex, catalog: Catalog, router: Router, admission: Admission, budgets: Budgets
    ) -> None:
        self.keys = keys
        self.catalog = catalog
        self.router = router
        self.admission = admission
        self.budgets = budgets

    async def chat_completion(self, inbound: Inbound, respond: Responder) -> None:
        principal = self.keys.authenticate(inbound.credential())
        body = await inbound.json()
        request = parse_chat_request(body)
        route = self.authorise(principal, request.model)
        native = inbound.native()
        check_capabilities(route, request, native)
        ticket = self.admission.admit(principal, route)
        reservation = self.budgets.reserve(principal, route)
        usage: Usage | None = None
        answered = False
        try:
            if request.stream:
                stream, served = await self.router.stream(
                    route,
                    request,
                    body,
                    wants_usage=request.wants_usage_in_stream,
                    steering=inbound.steering(),
                    native=native,
                )
                answered = True
                usage = await respond.stream(stream, served)
            else:
                result, served = await self.router.complete(
                    route, request, body, wants_usage=False, steering=inbound.steering(), native=native
                )
                answered = True
                if result.native is not None:
                    await respond.answer_native(result.native, served)
                else:
                    await respond.answer(result.body, served)
                usage = result.usage
        finally:
            ticket.release()
            self.budgets.settle(reservation, usage, answered=answered)

    async def embeddings(self, inbound: Inbound, respond: Responder) -> None:
        principal = self.keys.authenticate(inbound.credential())
        body = await inbound.json()
        request = parse_embedding_request(body)
        route = self.authorise(principal, request.model)
        if not any(t.capabilities.embeddings for t in route.targets):
            raise UnsupportedFeature(f"The model '{request.model}' does not offer embeddings.", param="model")
        ticket = self.admission.admit(principal, route)
        reservation = self.budgets.reserve(principal, route)
        usage: Usage | None = None
        answered = False
        try:
            result, served = await self.router.embed(route, request, body, inbound.steering())
            answered = True
            await respond.answer(result.body, served)
            usage = result.usage
        finally:
            ticket.release()
            self.budgets.settle(reservation, usage, answered=answered)

    def authenticate(self, inbound: Inbound) -> Principal:
        return self.keys.authenticate(inbound.credential())

    def authorise(self, principal: Principal, model: str) -> Route:
        """The route for `model`, if it exists and the caller may use it (404 either way, so a key
        cannot probe for models it is not allowed to see)."""
        if not _MODEL_NAME.match(model):
            raise InvalidRequest("'model' must be 1-256 printable characters.", param="model")
        route = self.catalog.resolve(model)
        if route is None or (not principal.may_use(route.alias) and not principal.may_use(model)):
            raise ModelNotFound(
                f"The model '{model}' does not exist or you do not have access to it.", param="model"
            )
        return route

    def visible(self, principal: Principal, name: str) -> bool:
        route = self.catalog.resolve(name)
        return route is not None and (principal.may_use(route.alias) or principal.may_use(name))


def check_capabilities(route: Route, request: ChatRequest, native: NativeRequest | None = None) -> None:
    """A request needing something no deployment of its model can do is refused up front, naming
    the feature (deployments that lack it are skipped by the router)."""
    if (
        native is not None
        and native.requires
        and not any(t.capabilities.native_wire == native.wire for t in route.targets)
    ):
        name = native.requires[0]
        raise UnsupportedFeature(
            f"The model '{request.model}' has no {native.wire.capitalize()}-format deployment, and only "
            f"those can carry '{name}'.",
            param=name.split(" ", 1)[0],
        )
    if any(t.capabilities.full_chat for t in route.targets):
        return
    wanted = needs(request)
    if not wanted:
        return
    unmet = [first_unmet(t.capabilities, wanted) for t in route.targets]
    missing = next((need for need in unmet if need is not None), None)
    if missing is not None and all(need is not None for need in unmet):
        raise UnsupportedFeature(
            f"The model '{request.model}' does not support {missing.feature}.", param=missing.param
        )
