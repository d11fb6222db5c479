"""The most a request can use on each deployment of its alias, for its reservation: at first the
cheap bound (its prompt at a token a UTF-8 byte: domain/prompt_bounds.py), and, when that does not
fit in what a budget has left, the exact count where the deployment's tokenizer is bundled
(OpenAI's o200k_base models, with OpenAI's documented framing), counted once per request.

Counting is on the refusal path only: a prompt of 100,000 characters takes about 0.5 ms (see
docs/architecture.md); one longer than `EXACT_CHARACTERS` is counted in a worker thread (the
tokenizer releases the GIL), so the event loop never waits on it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from turnout.domain.chat import ChatRequest
from turnout.domain.pricing import Micros
from turnout.domain.prompt_bounds import byte_bound, o200k_bound, output_bound, prompt_length
from turnout.domain.tokens import EXACT_CHARACTERS
from turnout.domain.usage import Usage
from turnout.routing.catalog import Route, Target

O200K = "o200k_base"

PriceOfUsage = Callable[[Target, Usage], Micros | None]  # a deployment's price of a usage


class RequestBound:
    """A request's usage at its most, per deployment."""

    __slots__ = ("_cheap", "_counted", "_output", "_searches", "request", "route", "service_tier", "units")

    def __init__(
        self,
        route: Route,
        request: ChatRequest | None,
        cheap: int | None = None,
        searches: int = 0,
        units: Usage | None = None,
    ) -> None:
        self.route = route
        self.request = request
        self._searches = searches  # a rerank request's search units (priced per search, not per token)
        self.units = units  # an image or audio request's units at most (priced per unit)
        self.service_tier = None if request is None else request.service_tier
        # the prompt's byte bound (given when the rate limits' admission already computed it)
        self._cheap = byte_bound(request) if cheap is None else cheap
        self._output = output_bound(request)
        self._counted: int | None = None  # the prompt by o200k_base, once counted

    @property
    def countable(self) -> bool:
        """Whether counting exactly could lower the bound (not yet counted, and a deployment of
        the alias has a bundled tokenizer)."""
        if self.request is None or self._counted is not None:
            return False
        for target in self.route.targets:  # noqa: SIM110 (no generator: on every accounted request)
            if target.tokenizer == O200K:
                return True
        return False

    async def count(self) -> bool:
        """Count the prompt exactly (once); True when that lowered the bound."""
        if not self.countable:
            return False
        assert self.request is not None
        if prompt_length(self.request) > EXACT_CHARACTERS:
            self._counted = await asyncio.to_thread(o200k_bound, self.request)
        else:
            self._counted = o200k_bound(self.request)
        return self._counted < self._cheap

    def usage(self, target: Target) -> Usage:
        """The most `target` can bill for the request."""
        if self.units is not None:
            return self.units
        prompt = self._cheap
        if self._counted is not None and target.tokenizer == O200K:
            prompt = min(prompt, self._counted)
        return Usage(
            input_tokens=prompt,
            output_tokens=self._output,
            search_units=self._searches,
            service_tier=self.service_tier,
        )

    def most(self, price: PriceOfUsage) -> Micros:
        """The dearest of the alias's priced deployments (0 where none is priced)."""
        most = 0  # (a loop, not a generator: on every accounted request's path; costs are >= 0)
        for target in self.route.targets:
            cost = price(target, self.usage(target))
            if cost is not None and cost > most:
                most = cost
        return most

    def least(self, price: PriceOfUsage) -> Micros:
        """What the request costs at least even if its prompt were free: no count can go below."""
        floor = Usage(output_tokens=self._output, search_units=self._searches, service_tier=self.service_tier)
        return max((c for t in self.route.targets if (c := price(t, floor)) is not None), default=0)


def list_price(target: Target, usage: Usage) -> Micros | None:
    """A deployment's price of `usage` now, at its service tier (the one the request asks for) and
    above a long-context threshold where the prompt may be (None: the deployment has no price)."""
    return None if target.price is None else target.price.cost(usage, at=time.time())
