"""A batch's creation, alike for OpenAI's batches and Anthropic's message batches: admitted like a
request (admitting.py), sent to its deployment and recorded, its reservation kept until it is
accounted, or given back if the provider or the record fails."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from turnout.batches.accounting import BatchAccountant
from turnout.batches.admitting import admit
from turnout.batches.placement import Places, answered_id
from turnout.batches.store import BatchRecord, Owner, Placement
from turnout.batches.upstream import BatchUpstream
from turnout.domain.pricing import Micros
from turnout.domain.principal import Principal
from turnout.limits.admission import Admission
from turnout.routing.catalog import Route, Target
from turnout.spend.budgets import Budgets


@dataclass(frozen=True)
class Creation:
    """One batch to create: through which alias, where it lands, the most it can cost and what the
    provider is sent."""

    route: Route
    place: Placement
    amount: Micros
    path: str  # the provider's create endpoint, under its URL
    body: dict[str, Any]
    status_field: str  # where the provider's answer names the batch's state
    first_status: str  # that state when the answer does not name it


class BatchEndpoints:
    """What both batch APIs' services hold, how both create a batch and find one of the caller's."""

    api: str  # the API its batches are recorded under (BatchRecord.api)
    wire: str  # the format of the providers' batch API it calls (Places.first)

    def __init__(
        self, places: Places, admission: Admission, budgets: Budgets, accountant: BatchAccountant
    ) -> None:
        self.places = places
        self.store = places.store
        self.admission = admission
        self.budgets = budgets
        self.accountant = accountant

    async def created(self, principal: Principal, upstream: BatchUpstream, creation: Creation) -> BatchRecord:
        """The batch created on `upstream` and recorded; the rate-limit ticket is settled once the
        provider has answered."""
        ticket, reservation = await admit(
            self.admission, self.budgets, principal, creation.route, creation.amount
        )
        try:
            answer = await upstream.post(creation.path, creation.body)
            record = BatchRecord(
                answered_id(answer, upstream),
                self.api,
                creation.place,
                Owner(principal.key_id, principal.team_id, principal.user_id),
                time.time(),
                creation.amount,
                str(answer.get(creation.status_field) or creation.first_status)[:32],
                answer,
                None,
            )
            await self.store.add_batch(record)
        except BaseException:
            self.budgets.release(reservation)
            raise
        finally:
            ticket.settle(0)
        self.accountant.reservations[record.id] = reservation
        return record

    async def _call(self, principal: Principal, batch_id: str) -> tuple[BatchRecord, BatchUpstream, Target]:
        """A batch of this API the caller may see, and the deployment it lives on."""
        record = await self.places.batch(principal, batch_id, self.api)
        upstream, target = self.places.target(record.place, self.wire)
        return record, upstream, target
