"""Reading back what a stream sent (from its attempt's accumulator), building the continuation
request, rewriting its chunks."""

from __future__ import annotations

import orjson

from turnout.domain.accumulator import StreamAccumulator
from turnout.domain.completions import Chunk, chunk_decoder, chunk_json
from turnout.routing.resume import CONTINUE_INSTRUCTION, Partial, Rewriter, continuation_body, partial_of


def read_partial(chunks: list[bytes], answer: StreamAccumulator | None = None) -> StreamAccumulator:
    """The chunks folded, as the stream that read them folds them (each decoded once)."""
    answer = StreamAccumulator() if answer is None else answer
    for raw in chunks:
        answer.fold(chunk_decoder.decode(raw))
    return answer


def passed(rewriter: Rewriter, chunks: list[bytes]) -> list[bytes]:
    """What the client gets of a continuation's chunks."""
    return [chunk_json(c) for c in rewriter.batch([Chunk(chunk_decoder.decode(raw), raw) for raw in chunks])]


def chunk(
    content: str | None = None, *, role: str | None = None, finish: str | None = None, **delta: object
) -> bytes:
    d: dict[str, object] = dict(delta)
    if role:
        d["role"] = role
    if content is not None:
        d["content"] = content
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 7,
        "model": "m-1",
        "choices": [{"index": 0, "delta": d, "finish_reason": finish}],
    }
    return orjson.dumps(body)


def test_the_partial_answer_is_read_back_and_can_be_folded_in_pieces() -> None:
    chunks = [chunk("", role="assistant"), chunk("Hel"), chunk("lo, "), chunk("wor")]
    whole = partial_of(read_partial(chunks))
    assert (whole.text, whole.id, whole.created, whole.model) == ("Hello, wor", "chatcmpl-1", 7, "m-1")
    folded = partial_of(read_partial(chunks[2:], read_partial(chunks[:2])))
    assert folded.text == whole.text and not folded.finished and folded.obstacle is None


def test_tool_calls_and_several_choices_cannot_be_continued() -> None:
    call = chunk(tool_calls=[{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{"}}])
    assert read_partial([call]).obstacle == "tool calls"
    second = orjson.loads(chunk("x"))
    second["choices"][0]["index"] = 1
    assert read_partial([orjson.dumps(second)]).obstacle == "several choices"


def test_each_continuation_style_asks_in_its_providers_way() -> None:
    body = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}], "stream": True, "n": 1}
    prefix = continuation_body(body, "Hello, wor", "prefix")
    assert prefix["messages"][-1] == {"role": "assistant", "content": "Hello, wor", "prefix": True}
    vllm = continuation_body(body, "Hello, wor", "continue_final_message")
    assert vllm["messages"][-1] == {"role": "assistant", "content": "Hello, wor"}
    assert vllm["continue_final_message"] is True and vllm["add_generation_prompt"] is False
    told = continuation_body(body, "Hello, wor", "instruction")
    assert told["messages"][-2:] == [
        {"role": "assistant", "content": "Hello, wor"},
        {"role": "user", "content": CONTINUE_INSTRUCTION},
    ]
    assert body["messages"] == [{"role": "user", "content": "Hi"}]  # the original is untouched
    assert continuation_body(body, "", "instruction")["messages"] == body["messages"]


def test_the_continuation_is_rewritten_as_more_of_the_same_stream() -> None:
    original = Partial("Hello, wor", id="chatcmpl-1", created=7, model="m-1")
    rewriter = Rewriter(original, echoed="Hello, wor", mark={"resumed": [{"to": "b"}]})
    other = {"id": "chatcmpl-9", "created": 99, "model": "m-2"}

    def theirs(content: str | None, role: str | None = None, finish: str | None = None) -> bytes:
        return orjson.dumps({**orjson.loads(chunk(content, role=role, finish=finish)), **other})

    out = passed(rewriter, [theirs("", role="assistant"), theirs("Hello"), theirs(", wo"), theirs("rld!")])
    out += passed(rewriter, [theirs(None, finish="stop")])
    chunks = [orjson.loads(c) for c in out]
    assert {(c["id"], c["created"], c["model"]) for c in chunks} == {("chatcmpl-1", 7, "m-1")}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "ld!"
    assert all("role" not in c["choices"][0]["delta"] for c in chunks)
    assert chunks[-1]["x_turnout"] == {"resumed": [{"to": "b"}]}


def test_a_continuation_that_does_not_echo_is_passed_on_whole() -> None:
    rewriter = Rewriter(Partial("Hello, wor", id="x"), echoed="Hello, wor", mark={})
    out = passed(rewriter, [chunk("ld"), chunk("!", finish="stop")])
    assert "".join(orjson.loads(c)["choices"][0]["delta"].get("content", "") for c in out) == "ld!"
