"""Images, transcription and speech through the official OpenAI SDK, against a real OpenAI-format
upstream on 127.0.0.1: what the client gets, what reached the provider (a transcription's file as
multipart, with the deployment's model; Azure's deployment URLs), what the ledger recorded (images,
seconds of audio, characters, and their cost at the provider's per-unit prices), and the refusals:
a model that does not do it, a budget that cannot cover it, a rate limit, and malformed or oversize
forms — none of which reaches the provider."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import email.parser
import email.policy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from support.databases import ledger_rows
from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, settings_for
from support.spec import validate_openai
from support.upstream import Recorded, Upstream

AUDIO = bytes(range(256)) * 64  # 16 KiB of "audio", every byte value in it
IMAGES = {
    "created": 1713833628,
    "data": [
        {"url": "https://images.example/fox-1.png", "revised_prompt": "A red fox in the snow"},
        {"url": "https://images.example/fox-2.png", "revised_prompt": "A red fox in the snow"},
    ],
}
VERBOSE = {
    "task": "transcribe",
    "language": "english",
    "duration": 61.4,
    "text": "The quick brown fox jumped over the lazy dog.",
    "segments": [],
}


def doc(upstream: Upstream, models: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """An OpenAI provider at `upstream` (priced from the shipped table) and an Azure one beside it."""
    return {
        "routing": {"retries": {"attempts": 1}},
        "providers": {
            "up": {"type": "openai", "base_url": upstream.base_url, "api_key": "env:UPSTREAM_KEY"},
            "az": {
                "type": "azure",
                "base_url": upstream.root_url,
                "api_key": "env:UPSTREAM_KEY",
                "api_version": "2024-10-21",
            },
        },
        "models": {
            "gpt-4o": {"provider": "up", "model": "gpt-4o"},
            "draw": {"provider": "up", "model": "dall-e-3"},
            "draw-tokens": {"provider": "up", "model": "gpt-image-1"},
            "listen": {"provider": "up", "model": "whisper-1"},
            "listen-4o": {"provider": "up", "model": "gpt-4o-transcribe"},
            "say": {"provider": "up", "model": "tts-1"},
            "az-listen": {
                "provider": "az",
                "model": "my-whisper",
                "supports": {"transcription": True, "chat": False},
                "price": {"per_audio_minute": "0.006"},
            },
            "az-say": {
                "provider": "az",
                "model": "my-tts",
                "supports": {"speech": True, "chat": False},
                "price": {"per_1m_characters": "15.00"},
            },
            **(models or {}),
        },
        **extra,
    }


@pytest.fixture
def gateway(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> Gateway:
    return start_gateway(doc(upstream), {"UPSTREAM_KEY": UPSTREAM_KEY})


def sdk(gateway: Gateway, key: str = MASTER_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=20)


def rows(gateway: Gateway, data: Path) -> list[dict[str, Any]]:
    assert gateway.loop is not None
    asyncio.run_coroutine_threadsafe(gateway.services.spend.flush(), gateway.loop).result(30)
    return ledger_rows(data)


def form_of(sent: Recorded) -> dict[str, Any]:
    """The multipart form the provider received, read with the standard library's MIME parser:
    text fields by name, the file as (filename, content type, bytes)."""
    head = f"Content-Type: {sent.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + sent.body)
    assert message.is_multipart()
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        payload = part.get_payload(decode=True)
        if filename is not None:
            fields[name] = (filename, part.get_content_type(), payload)
        else:
            fields[name] = payload.decode()
    return fields


# --------------------------------------------------------------------------- images


def test_images_come_back_as_generated_and_are_billed_per_image(
    gateway: Gateway, upstream: Upstream, tmp_path: Path
) -> None:
    upstream.reply_json(IMAGES)
    with sdk(gateway) as client:
        raw = client.images.with_raw_response.generate(
            model="draw", prompt="A red fox in the snow", n=2, size="1024x1792", quality="hd", style="vivid"
        )
    assert raw.status_code == 200 and raw.headers["x-turnout-deployment"] == "up/dall-e-3"
    validate_openai("ImagesResponse", json.loads(raw.content))
    images = raw.parse()
    assert [image.url for image in images.data or []] == [d["url"] for d in IMAGES["data"]]

    (sent,) = upstream.requests
    assert (sent.method, sent.path) == ("POST", "/v1/images/generations")
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert sent.json == {
        "model": "dall-e-3",
        "prompt": "A red fox in the snow",
        "n": 2,
        "size": "1024x1792",
        "quality": "hd",
        "style": "vivid",
    }
    (row,) = rows(gateway, tmp_path / "data0")
    assert (row["api"], row["alias"], row["model"], row["status"]) == ("images", "draw", "dall-e-3", 200)
    assert (row["images"], row["audio_seconds"], row["characters"]) == (2, 0, 0)
    assert row["cost_micros"] == 240_000  # 2 HD 1024x1792 images at $0.12


def test_a_token_priced_image_model_is_billed_by_the_tokens_its_answer_reports(
    gateway: Gateway, upstream: Upstream, tmp_path: Path
) -> None:
    usage = {
        "input_tokens": 50,
        "output_tokens": 4160,
        "total_tokens": 4210,
        "input_tokens_details": {"text_tokens": 50, "image_tokens": 0},
    }
    answer = {"created": 1, "data": [{"b64_json": "iVBORw0KGgo="}], "size": "1024x1024", "quality": "high"}
    upstream.reply_json({**answer, "usage": usage})
    with sdk(gateway) as client:
        raw = client.images.with_raw_response.generate(model="draw-tokens", prompt="a fox", quality="high")
    validate_openai("ImagesResponse", json.loads(raw.content))
    (row,) = rows(gateway, tmp_path / "data0")
    assert (row["images"], row["input_tokens"], row["output_tokens"]) == (1, 50, 4160)
    assert row["cost_micros"] == 166_650  # 50 x $5 + 4160 x $40 per 1M tokens


def test_a_chat_model_makes_no_images_and_an_image_model_no_chat(
    gateway: Gateway, upstream: Upstream
) -> None:
    with sdk(gateway) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            client.images.generate(model="gpt-4o", prompt="a fox")
        assert refused.value.code == "unsupported_feature"
        assert "does not offer image generation" in refused.value.message
        with pytest.raises(openai.BadRequestError) as chat:
            client.chat.completions.create(model="draw", messages=[{"role": "user", "content": "hi"}])
        assert chat.value.code == "unsupported_feature" and "not a chat model" in chat.value.message
    assert upstream.requests == []


def test_an_alias_mixing_models_sends_chat_and_speech_each_to_its_own(
    upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    mixed = {"targets": [{"provider": "up", "model": "tts-1"}, {"provider": "up", "model": "gpt-4o"}]}
    gateway = start_gateway(doc(upstream, models={"mixed": mixed}), {"UPSTREAM_KEY": UPSTREAM_KEY})
    with sdk(gateway) as client:
        client.chat.completions.create(model="mixed", messages=[{"role": "user", "content": "hi"}])
        upstream.reply_raw(b"ID3", content_type="audio/mpeg")
        client.audio.speech.create(model="mixed", voice="alloy", input="hi").read()
    chat, speech = upstream.requests
    assert (chat.path, chat.json["model"]) == ("/v1/chat/completions", "gpt-4o")
    assert (speech.path, speech.json["model"]) == ("/v1/audio/speech", "tts-1")


def test_declaring_audio_on_a_provider_without_those_endpoints_is_refused_at_load(tmp_path: Path) -> None:
    bad = {
        "providers": {"claude": {"type": "anthropic", "api_key": "env:UPSTREAM_KEY"}},
        "models": {"say": {"provider": "claude", "model": "c", "supports": {"speech": True}}},
    }
    with pytest.raises(Exception, match=r"models\.say\.supports\.speech: provider 'claude'") as refused:
        settings_for(bad, tmp_path, {"UPSTREAM_KEY": UPSTREAM_KEY})
    assert "does not serve OpenAI's image and audio endpoints" in str(refused.value)


# --------------------------------------------------------------------------- transcription


def test_a_transcription_forwards_the_file_as_multipart_and_bills_the_seconds_transcribed(
    gateway: Gateway, upstream: Upstream, tmp_path: Path
) -> None:
    upstream.reply_json(VERBOSE)
    with sdk(gateway) as client:
        raw = client.audio.transcriptions.with_raw_response.create(
            model="listen",
            file=("meeting.wav", AUDIO, "audio/wav"),
            response_format="verbose_json",
            language="en",
            timestamp_granularities=["word", "segment"],
        )
    assert raw.status_code == 200
    body = json.loads(raw.content)
    assert body == VERBOSE  # the provider's answer, as it came
    validate_openai("CreateTranscriptionResponseVerboseJson", body)

    (sent,) = upstream.requests
    assert (sent.method, sent.path) == ("POST", "/v1/audio/transcriptions")
    assert sent.headers["content-type"].startswith("multipart/form-data; boundary=turnout-")
    form = form_of(sent)
    assert form["file"] == ("meeting.wav", "audio/wav", AUDIO)  # every byte as the client sent it
    assert (form["model"], form["language"], form["response_format"]) == ("whisper-1", "en", "verbose_json")
    assert form["timestamp_granularities[]"] in ("word", "segment")

    (row,) = rows(gateway, tmp_path / "data0")
    assert (row["api"], row["alias"], row["audio_seconds"], row["estimated"]) == (
        "transcriptions",
        "listen",
        61,
        False,
    )
    assert row["cost_micros"] == 6100  # 61 s at $0.006 a minute


def test_text_is_asked_as_json_for_its_duration_and_answered_as_text(
    gateway: Gateway, upstream: Upstream, tmp_path: Path
) -> None:
    upstream.reply_json({"text": "Hello there.", "usage": {"type": "duration", "seconds": 3}})
    with sdk(gateway) as client:
        text = client.audio.transcriptions.create(
            model="listen", file=("a.mp3", AUDIO, "audio/mpeg"), response_format="text"
        )
    assert text.strip() == "Hello there."
    assert form_of(upstream.requests[0])["response_format"] == "json"
    (row,) = rows(gateway, tmp_path / "data0")
    assert (row["audio_seconds"], row["cost_micros"]) == (3, 300)


def test_a_token_priced_transcription_is_billed_by_the_tokens_it_reports(
    gateway: Gateway, upstream: Upstream, tmp_path: Path
) -> None:
    usage = {"type": "tokens", "input_tokens": 1200, "output_tokens": 150, "total_tokens": 1350}
    upstream.reply_json({"text": "Hello.", "usage": usage})
    with sdk(gateway) as client:
        result = client.audio.transcriptions.create(model="listen-4o", file=("a.mp3", AUDIO))
    assert result.text == "Hello."
    assert form_of(upstream.requests[0])["model"] == "gpt-4o-transcribe"
    (row,) = rows(gateway, tmp_path / "data0")
    assert (row["input_tokens"], row["output_tokens"], row["audio_seconds"]) == (1200, 150, 0)
    assert row["cost_micros"] == 4500  # 1200 x $2.50 + 150 x $10 per 1M tokens


def test_subtitles_are_passed_on_and_billed_to_their_last_cue_as_an_estimate(
    gateway: Gateway, upstream: Upstream, tmp_path: Path
) -> None:
    srt = b"1\n00:00:00,000 --> 00:00:04,500\nHello\n\n2\n00:00:04,500 --> 00:01:30,250\nthere\n"
    upstream.reply_raw(srt, content_type="text/plain")
    with sdk(gateway) as client:
        raw = client.audio.transcriptions.with_raw_response.create(
            model="listen", file=("a.mp3", AUDIO), response_format="srt"
        )
    assert raw.content == srt
    (row,) = rows(gateway, tmp_path / "data0")
    assert (row["audio_seconds"], row["estimated"], row["cost_micros"]) == (90, True, 9000)


def test_azure_deployments_are_addressed_by_their_deployment_urls(
    gateway: Gateway, upstream: Upstream, tmp_path: Path
) -> None:
    upstream.reply_json({"text": "hi", "usage": {"type": "duration", "seconds": 2}})
    upstream.reply_raw(b"ID3-audio", content_type="audio/mpeg")
    with sdk(gateway) as client:
        client.audio.transcriptions.create(model="az-listen", file=("a.wav", AUDIO))
        client.audio.speech.create(model="az-say", voice="alloy", input="Hi!").read()
    listen, say = upstream.requests
    assert listen.raw_path == "/openai/deployments/my-whisper/audio/transcriptions?api-version=2024-10-21"
    assert say.raw_path == "/openai/deployments/my-tts/audio/speech?api-version=2024-10-21"
    assert listen.headers["api-key"] == UPSTREAM_KEY and form_of(listen)["model"] == "my-whisper"
    assert [r["cost_micros"] for r in rows(gateway, tmp_path / "data0")] == [200, 45]


# --------------------------------------------------------------------------- speech


def test_speech_streams_the_providers_audio_through_and_is_billed_per_character(
    gateway: Gateway, upstream: Upstream, tmp_path: Path
) -> None:
    audio = b"ID3" + bytes(range(256)) * 400
    upstream.reply_raw(audio, content_type="audio/mpeg")
    with (
        sdk(gateway) as client,
        client.audio.speech.with_streaming_response.create(
            model="say", voice="alloy", input="Hello world", response_format="mp3", speed=1.25
        ) as response,
    ):
        assert response.headers["content-type"] == "audio/mpeg"
        received = b"".join(response.iter_bytes())
    assert received == audio
    (sent,) = upstream.requests
    assert sent.path == "/v1/audio/speech"
    assert sent.json == {
        "model": "tts-1",
        "voice": "alloy",
        "input": "Hello world",
        "response_format": "mp3",
        "speed": 1.25,
    }
    (row,) = rows(gateway, tmp_path / "data0")
    assert (row["api"], row["characters"], row["cost_micros"]) == ("speech", 11, 165)  # 11 at $15 / 1M


def test_speech_cut_off_by_the_provider_ends_the_clients_body_early_and_is_still_billed(
    gateway: Gateway, upstream: Upstream, tmp_path: Path
) -> None:
    pieces = [b"ID3" + bytes(4096), bytes(4096), bytes(4096)]
    upstream.reply_sse(pieces, cut_after=2, content_type="audio/mpeg")
    with (
        sdk(gateway) as client,
        client.audio.speech.with_streaming_response.create(
            model="say", voice="alloy", input="Hello"
        ) as response,
    ):
        assert response.status_code == 200  # (the audio had begun)
        with pytest.raises(httpx.HTTPError):
            b"".join(response.iter_bytes())
    (row,) = rows(gateway, tmp_path / "data0")
    assert row["status"] >= 500 and row["reason"]
    assert (row["characters"], row["cost_micros"]) == (5, 75)  # generated, so billed


def test_speech_input_over_openais_limit_is_refused_up_front(gateway: Gateway, upstream: Upstream) -> None:
    with sdk(gateway) as client, pytest.raises(openai.BadRequestError) as refused:
        client.audio.speech.create(model="say", voice="alloy", input="x" * 4097)
    assert refused.value.param == "input"
    assert upstream.requests == []


# --------------------------------------------------------------------------- budgets and limits


def admin(gateway: Gateway, method: str, path: str, **body: Any) -> Any:
    answer = httpx.request(
        method,
        gateway.root_url + path,
        headers={"authorization": f"Bearer {MASTER_KEY}"},
        json=body,
        timeout=20,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_budget_that_cannot_cover_the_images_refuses_them_before_the_provider_is_asked(
    gateway: Gateway, upstream: Upstream
) -> None:
    key = admin(gateway, "POST", "/admin/keys", name="k")
    admin(gateway, "POST", "/admin/budgets", scope="key", subject_id=key["id"], limit="0.10")
    with sdk(gateway, key["key"]) as client:
        upstream.reply_json({"created": 1, "data": [IMAGES["data"][0]]})
        client.images.generate(model="draw", prompt="a fox", quality="hd")  # $0.08 of $0.10
        with pytest.raises(openai.RateLimitError) as refused:
            client.images.generate(model="draw", prompt="a fox", quality="hd")
    assert refused.value.code == "insufficient_quota"
    assert "may cost up to 0.080000 USD" in refused.value.message
    assert len(upstream.requests) == 1


def test_a_rate_limit_refuses_the_next_request_naming_the_limit(gateway: Gateway, upstream: Upstream) -> None:
    key = admin(gateway, "POST", "/admin/keys", name="k", limits={"rpm": 1})
    upstream.reply_raw(b"ID3", content_type="audio/mpeg")
    with sdk(gateway, key["key"]) as client:
        client.audio.speech.create(model="say", voice="alloy", input="one").read()
        with pytest.raises(openai.RateLimitError) as refused:
            client.audio.speech.create(model="say", voice="alloy", input="two").read()
    assert refused.value.code == "rate_limit_exceeded" and "key rpm" in refused.value.message
    assert int(refused.value.response.headers["retry-after"]) >= 1
    assert len(upstream.requests) == 1


# --------------------------------------------------------------------------- malformed forms


@pytest.fixture
def small_gateway(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> Gateway:
    """A gateway taking bodies of at most 64 KiB."""
    return start_gateway(doc(upstream, server={"max_request_bytes": "64KiB"}), {"UPSTREAM_KEY": UPSTREAM_KEY})


def post_form(gateway: Gateway, body: bytes, content_type: str) -> httpx.Response:
    return httpx.post(
        gateway.base_url + "/audio/transcriptions",
        headers={"authorization": f"Bearer {MASTER_KEY}", "content-type": content_type},
        content=body,
        timeout=20,
    )


def part(name: str, value: bytes, boundary: str = "b0undary", filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"


GOOD = part("model", b"listen") + part("file", b"RIFF....", filename="a.wav")
FORM = "multipart/form-data; boundary=b0undary"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "what"),
    [
        (GOOD, "application/json", 415, "must be multipart/form-data"),
        (GOOD + b"--b0undary--\r\n", "multipart/form-data", 400, "boundary"),
        (GOOD + b"--b0undary--\r\n", "multipart/form-data; boundary=" + "x" * 71, 400, "boundary of 1-70"),
        (GOOD, FORM, 400, "ends before its closing boundary"),
        (b"this is not a form at all", FORM, 400, "malformed"),
        (part("model", b"listen") + b"--b0undary--\r\n", FORM, 400, "exactly one file"),
        (part("file", b"RIFF", filename="a.wav") + b"--b0undary--\r\n", FORM, 400, "'model'"),
        (GOOD + part("prompt", b"p" * 40_000) + b"--b0undary--\r\n", FORM, 400, "larger than 32768 bytes"),
        (GOOD + part("x", b"1") * 31 + b"--b0undary--\r\n", FORM, 400, "more than 32 parts"),
        (GOOD + part("stream", b"true") + b"--b0undary--\r\n", FORM, 400, "Streamed transcription"),
        (GOOD + part("api_base", b"http://10.0.0.1") + b"--b0undary--\r\n", FORM, 400, "turnout chooses"),
        (
            part("model", b"listen") + part("file", b"a" * 70_000, filename="a.wav") + b"--b0undary--\r\n",
            FORM,
            413,
            "larger than the limit",
        ),
    ],
    ids=[
        "not-a-form",
        "no-boundary",
        "boundary-too-long",
        "truncated",
        "garbage",
        "no-file",
        "no-model",
        "field-too-large",
        "too-many-parts",
        "stream",
        "steering-field",
        "over-the-size-limit",
    ],
)
def test_malformed_or_oversize_forms_get_a_clear_error_and_reach_no_provider(
    small_gateway: Gateway, upstream: Upstream, body: bytes, content_type: str, status: int, what: str
) -> None:
    answer = post_form(small_gateway, body, content_type)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert what in error["message"] and error["type"] == "invalid_request_error"
    assert upstream.requests == []


def test_a_well_formed_form_posted_by_hand_is_transcribed(small_gateway: Gateway, upstream: Upstream) -> None:
    upstream.reply_json({"text": "ok"})
    answer = post_form(small_gateway, GOOD + b"--b0undary--\r\n", FORM)
    assert answer.status_code == 200 and answer.json() == {"text": "ok"}
    assert form_of(upstream.requests[0])["file"] == ("a.wav", "application/octet-stream", b"RIFF....")


def test_the_fake_provider_answers_images_and_audio_for_demos(
    start_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    fake = {
        "providers": {"fake": {"type": "fake"}},
        "models": {
            "draw": {"provider": "fake", "model": "i", "supports": {"image_generation": True, "chat": False}},
            "listen": {
                "provider": "fake",
                "model": "t",
                "supports": {"transcription": True, "chat": False},
                "price": {"per_audio_minute": "0.006"},
            },
            "say": {"provider": "fake", "model": "s", "supports": {"speech": True, "chat": False}},
        },
    }
    gateway = start_gateway(fake)
    with sdk(gateway) as client:
        images = client.images.generate(model="draw", prompt="a fox", n=3)
        verbose = client.audio.transcriptions.create(
            model="listen", file=("a.wav", bytes(48_000)), response_format="verbose_json"
        )
        audio = client.audio.speech.create(model="say", voice="alloy", input="hi").read()
    assert len(images.data or []) == 3 and verbose.duration == 3.0 and audio.startswith(b"FAKEAUDIO")
    listen = next(r for r in rows(gateway, tmp_path / "data0") if r["api"] == "transcriptions")
    assert (listen["audio_seconds"], listen["cost_micros"]) == (3, 300)


def test_the_exit_report_moves_image_and_audio_requests_only_to_models_that_do_them(
    upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    models = {
        "listen": {
            "targets": [
                {"provider": "up", "model": "whisper-1"},
                {
                    "provider": "az",
                    "model": "cheap-whisper",
                    "supports": {"transcription": True, "chat": False},
                    "price": {"per_audio_minute": "0.003"},
                },
            ]
        },
        "talk": {
            "targets": [
                {"provider": "up", "model": "gpt-4o"},
                {"provider": "az", "model": "my-tts", "supports": {"speech": True, "chat": False}},
            ]
        },
    }
    gateway = start_gateway(doc(upstream, models=models), {"UPSTREAM_KEY": UPSTREAM_KEY})
    with sdk(gateway) as client:
        upstream.reply_json({"text": "hi", "usage": {"type": "duration", "seconds": 60}})
        client.audio.transcriptions.create(model="listen", file=("a.wav", AUDIO))
        client.chat.completions.create(model="talk", messages=[{"role": "user", "content": "hi"}])
        upstream.reply_raw(b"ID3", content_type="audio/mpeg")
        client.audio.speech.create(model="say", voice="alloy", input="hi").read()
    assert gateway.loop is not None
    asyncio.run_coroutine_threadsafe(gateway.services.spend.flush(), gateway.loop).result(30)
    answer = httpx.get(
        gateway.root_url + "/admin/exit-report",
        params={"since": "2000-01-01"},
        headers={"authorization": f"Bearer {MASTER_KEY}"},
        timeout=30,
    )
    (report,) = answer.json()["providers"]
    assert report["requests"] == 3
    movable = report["movable"]
    assert movable["requests"] == 1  # the minute of audio: to the other whisper
    assert (movable["cost_usd"], movable["cost_if_moved_usd"]) == ("0.006000", "0.003000")
    assert {s["reason"]: s["requests"] for s in report["stuck"]} == {
        "every alternative is a reranker, a moderation model, or an image or audio model": 1,
        "no alternative deployment on another provider": 1,
    }


def test_a_plan_priced_per_token_charges_images_and_audio_what_they_cost(
    gateway: Gateway, upstream: Upstream, tmp_path: Path
) -> None:
    plan = admin(gateway, "POST", "/admin/plans", name="tokens", prices={"input": "2000", "output": "2000"})
    marked = admin(gateway, "POST", "/admin/plans", name="marked", markup="1.5")
    keys = []
    for name, chosen in (("per-token", plan), ("marked-up", marked)):
        team = admin(gateway, "POST", "/admin/teams", name=name)["id"]
        admin(gateway, "POST", f"/admin/teams/{team}/billing", plan_id=chosen["id"])
        keys.append(admin(gateway, "POST", "/admin/keys", name=name, team_id=team)["key"])
    for key in keys:
        upstream.reply_raw(b"ID3", content_type="audio/mpeg")
        with sdk(gateway, key) as client:
            client.audio.speech.create(model="say", voice="alloy", input="Hello world").read()
    paid = [(r["cost_micros"], r["customer_price_micros"]) for r in rows(gateway, tmp_path / "data0")]
    assert paid == [(165, 165), (165, 248)]  # never free; a markup applies (165 x 1.5, rounded)


# --------------------------------------------------------------------------- spend totals


def test_media_units_are_in_the_spend_api_by_team_model_and_day_and_survive_a_restart(
    upstream: Upstream, start_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    """Two teams' images, transcriptions and speech: `GET /admin/spend` sums their images, seconds
    of audio and characters exactly per team, model and day, from the running totals; a restarted
    gateway reads the same, and so does `turnout spend report`."""
    config = doc(upstream, storage={"data_dir": str(tmp_path / "data")})
    gateway = start_gateway(config, {"UPSTREAM_KEY": UPSTREAM_KEY})
    red, blue = (
        admin(gateway, "POST", "/admin/teams", name="red")["id"],
        admin(gateway, "POST", "/admin/teams", name="blue")["id"],
    )
    red_key = admin(gateway, "POST", "/admin/keys", name="r", role="member", team_id=red)["key"]
    blue_key = admin(gateway, "POST", "/admin/keys", name="b", role="member", team_id=blue)["key"]
    with sdk(gateway, red_key) as client:
        upstream.reply_json(IMAGES)
        client.images.generate(model="draw", prompt="a fox", n=2, size="1024x1792", quality="hd")
        upstream.reply_json(VERBOSE)
        client.audio.transcriptions.create(
            model="listen", file=("a.wav", AUDIO), response_format="verbose_json"
        )
        upstream.reply_raw(b"ID3", content_type="audio/mpeg")
        client.audio.speech.create(model="say", voice="alloy", input="Hello world").read()
    with sdk(gateway, blue_key) as client:
        upstream.reply_json({"created": 1, "data": [IMAGES["data"][0]]})
        client.images.generate(model="draw", prompt="a fox", quality="hd")
        upstream.reply_raw(b"ID3", content_type="audio/mpeg")
        client.audio.speech.create(model="say", voice="alloy", input="Hi there").read()
    # whole days: read from the running totals alone (no edge summed from the ledger's rows)
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    span = (today - dt.timedelta(days=1), today + dt.timedelta(days=1))
    query = {
        "group_by": "team,model",
        "interval": "day",
        **dict(zip(("since", "until"), (repr(t.timestamp()) for t in span), strict=True)),
    }
    units = ("images", "audio_seconds", "characters", "cost_micros")
    want = {
        (red, "dall-e-3"): (2, 0, 0, 240_000),  # 2 HD 1024x1792 images at $0.12
        (red, "whisper-1"): (0, 61, 0, 6100),  # 61 s at $0.006 a minute
        (red, "tts-1"): (0, 0, 11, 165),  # 11 characters at $15 / 1M
        (blue, "dall-e-3"): (1, 0, 0, 80_000),  # 1 HD 1024x1024 image at $0.08
        (blue, "tts-1"): (0, 0, 8, 120),
    }

    def spend() -> tuple[dict[tuple[str, str], tuple[int, ...]], tuple[int, ...]]:
        answer = httpx.get(
            gateway.root_url + "/admin/spend",
            params=query,
            headers={"authorization": f"Bearer {MASTER_KEY}"},
            timeout=20,
        )
        assert answer.status_code == 200, answer.text
        report = answer.json()
        got = {(i["group"]["team"], i["group"]["model"]): tuple(i[u] for u in units) for i in report["data"]}
        return got, tuple(report["totals"][u] for u in units[:3])

    assert gateway.loop is not None
    asyncio.run_coroutine_threadsafe(gateway.services.spend.flush(), gateway.loop).result(30)
    assert spend() == (want, (3, 61, 19))
    gateway.stop()
    gateway = start_gateway(config, {"UPSTREAM_KEY": UPSTREAM_KEY})
    assert spend() == (want, (3, 61, 19))

    from click.testing import CliRunner

    from turnout.cli.main import main

    args = ["spend", "report", "--url", gateway.root_url, "--key", MASTER_KEY, "--by", "team"]
    result = CliRunner().invoke(main, [*args, "--format", "csv", "--since", "1d"])
    assert result.exit_code == 0, result.output
    lines = csv.DictReader(result.output.splitlines())
    assert {line["team"]: (line["images"], line["audio seconds"], line["characters"]) for line in lines} == {
        red: ("2", "61", "11"),
        blue: ("1", "0", "8"),
        "total": ("3", "61", "19"),
    }
