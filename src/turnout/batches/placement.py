"""Where a batch API's objects go and whose they are: the alias a caller may use, the deployment of
it whose provider has the batch API, the deployment a recorded object lives on, and the recorded
objects a caller may see (its key's team's; anything else is "not found")."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from turnout.batches.store import BatchRecord, BatchStore, FileRecord, Placement
from turnout.batches.upstream import BatchUpstream
from turnout.domain.errors import (
    ModelNotFound,
    ResourceNotFound,
    ServiceUnavailable,
    UnsupportedFeature,
    UpstreamProtocolError,
)
from turnout.domain.principal import Principal
from turnout.domain.usage import Usage
from turnout.routing.catalog import Catalog, Route, Target

log = logging.getLogger("turnout.batches")

BATCH_TIER = "batch"
ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
PROVIDERS = {"openai": "OpenAI or Azure OpenAI", "anthropic": "Anthropic"}


def checked_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not ID.match(value):
        raise ResourceNotFound(f"No such {what}: {str(value)[:130]!r}.")
    return value


def answered_id(answer: dict[str, Any], upstream: BatchUpstream) -> str:
    value = answer.get("id")
    if not isinstance(value, str) or not ID.match(value):
        raise UpstreamProtocolError(f"The provider '{upstream.provider}' answered without a usable id.")
    return value


def listing(
    records: Sequence[BatchRecord | FileRecord], data: list[dict[str, Any]], more: bool
) -> dict[str, Any]:
    """A page of the caller's objects as the providers list them: `data`, and the page's first and
    last ids."""
    return {
        "data": data,
        "first_id": records[0].id if records else None,
        "last_id": records[-1].id if records else None,
        "has_more": more,
    }


_UNTIERED: set[str] = set()  # deployments warned of (once each) for a price without batch rates


def most(target: Target, input_tokens: int, output_tokens: int) -> int:
    """The most `input_tokens` and `output_tokens` can cost on `target` at its batch rates (0: no price)."""
    if target.price is None:
        return 0
    if (
        not any(name == BATCH_TIER for name, _ in target.price.service_tiers)
        and target.label not in _UNTIERED
    ):
        _UNTIERED.add(target.label)
        log.warning(
            "the price of deployment %s has no batch rates (service_tiers.batch): its batches are "
            "reserved and charged at its standard rates",
            target.label,
        )
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens, service_tier=BATCH_TIER)
    return target.price.cost(usage, at=time.time())


class Places:
    def __init__(self, store: BatchStore, catalog: Callable[[], Catalog]) -> None:
        self.store = store
        self.catalog = catalog

    def authorised(self, principal: Principal, model: str) -> Route:
        route = self.catalog().resolve(model)
        if route is None or (not principal.may_use(route.alias) and not principal.may_use(model)):
            raise ModelNotFound(
                f"The model '{model}' does not exist or you do not have access to it.", param="model"
            )
        return route

    @staticmethod
    def first(route: Route, model: str, wire: str) -> tuple[BatchUpstream, Target]:
        """The first deployment of the alias whose provider has `wire`'s batch API."""
        for target in route.targets:
            upstream = BatchUpstream.of(target.adapter, wire)
            if upstream is not None and "*" not in target.model:
                return upstream, target
        raise UnsupportedFeature(
            f"The model '{model}' has no deployment with a batch API ({PROVIDERS[wire]}).", param="model"
        )

    def target(self, place: Placement, wire: str) -> tuple[BatchUpstream, Target]:
        """The deployment an object recorded at `place` lives on, as configured now."""
        route = self.catalog().resolve(place.alias)
        for target in () if route is None else route.targets:
            upstream = BatchUpstream.of(target.adapter, wire)
            if target.label == place.deployment and upstream is not None:
                return upstream, target
        raise ServiceUnavailable(
            f"The deployment '{place.deployment}' that holds this object is no longer configured.",
            code="deployment_unavailable",
        )

    async def file(self, principal: Principal, file_id: str) -> FileRecord:
        record = await self.store.file(checked_id(file_id, "File object"))
        if record is None or not record.owner.admits(principal.key_id, principal.team_id):
            raise ResourceNotFound(f"No such File object: {file_id}.", param="file_id")
        return record

    async def batch(self, principal: Principal, batch_id: str, api: str) -> BatchRecord:
        """A batch the caller may see, made through `api` (batches | messages)."""
        record = await self.store.batch(checked_id(batch_id, "batch"))
        if (
            record is None
            or record.api != api
            or not record.owner.admits(principal.key_id, principal.team_id)
        ):
            raise ResourceNotFound(f"No such batch: {batch_id}.", param="batch_id")
        return record
