"""The accumulator folds whatever an upstream's chunks say without letting them size its memory."""

from __future__ import annotations

import resource

import msgspec

from turnout.domain.accumulator import StreamAccumulator
from turnout.domain.completions import ChatCompletionChunk


def _chunk(choices: list[dict[str, object]]) -> ChatCompletionChunk:
    body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": choices}
    return msgspec.json.decode(msgspec.json.encode(body), type=ChatCompletionChunk)


def test_each_choice_keeps_its_own_text() -> None:
    acc = StreamAccumulator()
    acc.fold(_chunk([{"index": 0, "delta": {"content": "Hel"}}, {"index": 1, "delta": {"content": "Bon"}}]))
    acc.fold(_chunk([{"index": 1, "delta": {"content": "jour"}}, {"index": 0, "delta": {"content": "lo"}}]))
    assert (acc.text(0), acc.text(1), acc.text(7)) == ("Hello", "Bonjour", "")
    assert acc.obstacle == "several choices"
    assert sorted(acc.produced()) == sorted(["Hel", "lo", "Bon", "jour"])


def test_a_hostile_choice_index_costs_one_entry_not_a_list_that_long() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    acc = StreamAccumulator()
    for index in (10**12, -(10**12), -1, 2**62):
        acc.fold(_chunk([{"index": index, "delta": {"content": f"<{index}>"}}]))
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 64 * 1024  # a list up to index 10**12 would not fit in the machine at all
    assert acc.text(10**12) == f"<{10**12}>"
    assert acc.text(-1) == "<-1>"
    assert acc.text(0) == ""
