"""The stream a client receives: one upstream's chunks, its deployment leased until the end, and
continued on another deployment if the upstream fails after the first byte — but never once the
client has left: an abandoned stream stops its upstream and nothing is started for nobody. What
each attempt produced is read from its accumulator (folded by the attempt's stream as it read each
chunk, nothing read again here): for the ledger when the provider reports no usage, and for a
continuation.

The relay does not know the router: a continuation is asked of `continue_elsewhere`, a closure
the router hands it. While it relays, it is in the router's `InFlight`, so that a shutdown whose
grace runs out can `cut` it: its upstream stops, nothing continues it, its attempt is recorded as
the shutdown's doing (503 `gateway_shutdown`, not a client that left) and the client gets that
error as the stream's last event.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec

from turnout.domain.accumulator import RESUME_COPY_CAP, StreamAccumulator
from turnout.domain.chat import counted_usage
from turnout.domain.completions import Chunk
from turnout.domain.errors import CLIENT_CLOSED, NoUpstreamAvailable, TurnoutError, UpstreamError
from turnout.domain.rate_limits import RateLimited
from turnout.domain.tokens import count_tokens
from turnout.domain.usage import Usage
from turnout.routing.deployments import DeploymentState
from turnout.routing.first_chunk import PeekedStream
from turnout.routing.in_flight import InFlight
from turnout.routing.resume import Partial, Rewriter, partial_of
from turnout.routing.values import AttemptRecord, Call, Served

log = logging.getLogger("turnout.routing")

__all__ = ["RESUME_COPY_CAP", "Continuation", "RelayStream"]  # the cap: see domain.accumulator

# (what the client was sent, the deployment that failed, attempts used) → the continuation
Continuation = Callable[[Partial, DeploymentState | None, int], Awaitable[tuple[PeekedStream, Served]]]


class RelayStream:
    """`first` is the first batch of chunks; iterate `rest` for the others. `served` names the
    deployment the stream started on (and counts every attempt, continuations included)."""

    def __init__(
        self,
        call: Call,
        peeked: PeekedStream,
        served: Served,
        tally: list[AttemptRecord],
        continue_elsewhere: Continuation,
        clock: Callable[[], float],
        in_flight: InFlight | None = None,
    ) -> None:
        self._call = call
        self._continue_elsewhere = continue_elsewhere
        self._clock = clock
        self._tally = tally
        self._stream = peeked
        self._first_answer = peeked.answer  # the attempt the client's first chunks came from
        self._serving = served  # whose deployment is in flight now
        self.served = served
        self.first = peeked.first
        # a native stream (the upstream's own events) cannot be continued in another format
        self.native = peeked.native
        policy = call.route.policy
        self.resumable = policy.stream_resume and not (call.chat.n or 1) > 1 and not self.native
        self.abandoned = False  # the client left: nothing more is sent or started
        self.cut_short: TurnoutError | None = None  # turnout ended it (its shutdown): why
        self._before: Partial | None = None  # what the client had been sent when it was continued
        self._given = 0  # tokens of answer a continuation was given in its prompt
        self._rewriter: Rewriter | None = None
        self.resumed: list[dict[str, object]] = []
        self.rest: AsyncIterator[list[Chunk]] = self._relay()
        self._on_end: Callable[[RelayStream], None] | None = None
        self._in_flight = in_flight
        if in_flight is not None:
            in_flight.add(self)

    def accounted_by(self, on_end: Callable[[RelayStream], None]) -> None:
        """Have `on_end` called once the upstream side is over — before `rest` finishes, so before
        the edge can tell the client the answer is complete (the ledger's entries come first)."""
        self._on_end = on_end

    def _over(self) -> None:
        if self._in_flight is not None:
            self._in_flight.discard(self)
        if self._on_end is not None:
            on_end, self._on_end = self._on_end, None
            on_end(self)

    @property
    def usage(self) -> Usage | None:
        return self._stream.answer.usage

    @property
    def answer(self) -> StreamAccumulator:
        """What the current attempt produced, as folded chunk by chunk (read once it has ended)."""
        return self._stream.answer

    @property
    def last_attempt(self) -> AttemptRecord | None:
        """The record of the attempt relayed last (the one a continuation made, if any): how the
        stream ended for the client."""
        return self._serving.record

    def sent(self) -> Partial:
        """What the client was sent of the first choice's text, continuations included."""
        return partial_of(self._stream.answer, self._before, self._rewriter)

    @property
    def first_output_at(self) -> float | None:
        """When the client's first token of output arrived (the monotonic clock), if one did."""
        at = self._first_answer.first_output_at
        return self._stream.answer.first_output_at if at is None else at

    async def abandon(self) -> None:
        """The client went away: stop the upstream now, and never continue the stream."""
        self.abandoned = True
        await self._stream.aclose()
        self._end(499, CLIENT_CLOSED)

    async def cut(self, error: TurnoutError) -> None:
        """turnout ends the stream (its shutdown's grace ran out): the upstream stops now, nothing
        continues the stream, and `error` is its last event. What the upstream had already sent is
        still relayed first; a stream it completed is recorded as answered."""
        if self.abandoned or self.cut_short is not None:
            return
        self.cut_short = error
        await self._stream.aclose()

    async def aclose(self) -> None:
        await self._stream.aclose()
        if self._in_flight is not None:
            self._in_flight.discard(self)
        cut = self.cut_short
        if cut is None:
            self._end(499, CLIENT_CLOSED)
        else:
            self._end(cut.status, cut.reason)

    def _end(self, status: int, reason: str | None = None) -> None:
        """The current attempt is over: its lease given back (with the tokens it used, toward its
        deployment's tpm), its record closed with its usage, reported or counted."""
        served = self._serving
        record = served.record
        usage = self._stream.answer.usage
        if usage is not None and status != 200 and record is not None and not record.done:
            usage = self._at_least_produced(usage)
        if served.verdict_pending and served.state is not None:
            served.verdict_pending = False
            if status == 200:
                served.state.succeeded()
            else:  # no verdict (the client left, the shutdown cut it): a half-open probe slot back
                served.state.breaker.release_probe()
        if served.lease is not None:
            served.lease.release(usage.total_tokens if usage else 0)
            served.lease = None
        if record is None or record.done:
            return
        record.ended(status, usage, reason)
        if usage is None:
            record.estimate = self._estimate()

    def _at_least_produced(self, usage: Usage) -> Usage:
        """A failed attempt's reported usage, with at least the output it produced before it
        ended: a provider that reports usage as it goes (Gemini) had not counted the last of it,
        and a cut answer is billed for everything it produced."""
        answer = self._stream.answer
        if answer.finished:
            return usage
        produced = count_tokens(answer.produced()) + answer.spilled_tokens
        if produced <= usage.output_tokens:
            return usage
        return msgspec.structs.replace(usage, output_tokens=produced, estimated=True)

    def _estimate(self) -> Callable[[], Usage]:
        """turnout's count of the current attempt: the prompt (and, for a continuation, what it
        was given to continue) and what the attempt produced (counted when it outgrew the cap)."""
        answer = self._stream.answer
        produced = answer.produced()
        spilled = answer.spilled_tokens
        given = self._given
        request = self._call.chat

        def estimate() -> Usage:
            counted = counted_usage(request, produced)
            return Usage(
                input_tokens=counted.input_tokens + given,
                output_tokens=counted.output_tokens + spilled,
                estimated=True,
            )

        return estimate

    async def _relay(self) -> AsyncIterator[list[Chunk]]:
        while True:
            rewriter = self._rewriter
            try:
                if rewriter is None:
                    async for batch in self._stream.rest:
                        yield batch
                else:
                    async for batch in self._stream.rest:
                        batch = rewriter.batch(batch)
                        if batch:
                            yield batch
            except TurnoutError as error:
                if self.abandoned:
                    self._over()
                    return
                cut = self.cut_short
                if cut is not None:
                    self._end(cut.status, cut.reason)
                    self._over()
                    raise cut from None
                try:
                    first = await self._continue(error)
                except BaseException:
                    self._over()
                    raise
                if first:
                    yield first
                continue
            if not self.abandoned:
                self._end(200)
            self._over()
            return

    async def _continue(self, error: TurnoutError) -> list[Chunk]:
        """Fail over mid-stream: returns the continuation's first batch (rewritten); raises when the
        stream cannot be continued."""
        served = self._serving
        failed_state = served.state
        await self._stream.aclose()
        if isinstance(error, UpstreamError) and failed_state is not None:
            served.verdict_pending = False  # judged here: a failure
            failed_state.failed(self._clock(), error.message, error.retry_after)
        self._end(error.status, error.reason)
        partial = partial_of(self._stream.answer, self._before, self._rewriter)
        if not self._resumable_after(error, partial):
            raise error
        log.warning(
            "stream of %s broke on %s after %d characters (%s); continuing it elsewhere",
            self._call.route.requested,
            served.target.label,
            len(partial.text),
            error.message,
        )
        try:
            peeked, continued = await self._continue_elsewhere(partial, failed_state, self.served.attempts)
        except (NoUpstreamAvailable, RateLimited):  # nowhere to continue: the break stands
            raise error from None
        if self.abandoned or self.cut_short is not None:  # while the continuation was sought
            self.served.attempts += continued.attempts
            self._stream, self._serving = peeked, continued
            await self.aclose()
            raise self.cut_short or error
        self.resumed.append(
            {
                "from": served.target.label,
                "to": continued.target.label,
                "after_characters": len(partial.text),
                "cause": error.message,
            }
        )
        echoed = partial.text if continued.target.capabilities.continuation == "prefix" else ""
        self._rewriter = Rewriter(partial, echoed, {"resumed": self.resumed})
        self._before = partial
        self._given = count_tokens((partial.text,))
        self._stream = peeked
        self._serving = continued
        self.served.attempts += continued.attempts
        return self._rewriter.batch(peeked.first)

    def _resumable_after(self, error: TurnoutError, partial: Partial) -> bool:
        if not self.resumable or not isinstance(error, UpstreamError):
            return False
        if partial.finished:  # the answer was complete but its end (usage, [DONE]) was lost
            return False
        if self.served.attempts >= self._call.route.policy.attempts:
            log.warning("stream of %s broke; no attempts left to continue it", self._call.route.requested)
            return False
        if partial.obstacle is not None:
            log.warning(
                "stream of %s broke and cannot be continued (%s in progress)",
                self._call.route.requested,
                partial.obstacle,
            )
            return False
        return True
