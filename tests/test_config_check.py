"""Fallback chains that cannot carry their primary's traffic are named, by config path, in
`turnout config check` and at start-up; `config check` prints the whole routing table."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from turnout.app import Services
from turnout.cli.config_check import describe
from turnout.cli.main import main
from turnout.config.loader import ConfigError
from turnout.config.settings import ProviderSettings, Settings
from turnout.providers.base import Capabilities
from turnout.providers.capabilities import capabilities_for
from turnout.providers.config_loader import build_settings
from turnout.providers.http.client import HttpClient
from turnout.providers.openai_compatible.adapter import OpenAICompatibleAdapter
from turnout.providers.registry import KINDS as PROVIDER_KINDS
from turnout.routing.chain_check import chain_warnings

from support.gateway import settings_for

ENV = {"KEY": "sk-test-not-a-real-key"}
PROVIDERS = {
    "openai": {"type": "openai", "api_key": "env:KEY"},
    "deepseek": {"type": "deepseek", "api_key": "env:KEY"},  # no json_schema, no embeddings
    "local": {"type": "vllm", "base_url": "http://10.0.0.5:8000/v1"},
}


LENIENT = {"spend": {"unknown_prices": "record"}}  # these tests are about routing, not prices


def _settings(models: dict[str, Any], **sections: Any) -> Settings:
    return build_settings(
        {"providers": PROVIDERS, "models": models, **LENIENT, **sections}, ENV, source="test"
    )


def _warnings(models: dict[str, Any], **sections: Any) -> list[str]:
    return chain_warnings(_settings(models, **sections), capabilities_for)


def _one(models: dict[str, Any], **sections: Any) -> str:
    warnings = _warnings(models, **sections)
    assert len(warnings) == 1, warnings
    return warnings[0]


GPT4O = {"provider": "openai", "model": "gpt-4o"}
DEEPSEEK = {"provider": "deepseek", "model": "deepseek-chat"}
LLAMA = {"provider": "local", "model": "llama-3.1-8b"}


# --------------------------------------------------------------------------- features


def test_a_fallback_lacking_a_feature_the_primary_accepts_is_named_by_its_path() -> None:
    warning = _one(
        {
            "gpt-4o": {**GPT4O, "fallbacks": ["local-llama", "deepseek-chat"]},
            "local-llama": LLAMA,
            "deepseek-chat": DEEPSEEK,
        }
    )
    assert warning == (
        "models.gpt-4o.fallbacks[1]: 'deepseek-chat' cannot serve structured outputs "
        "(response_format json_schema) that 'gpt-4o' accepts; such requests will skip it"
    )


@pytest.mark.parametrize("chain", ["fallbacks", "content_policy_fallbacks"])
def test_every_chain_is_checked_for_features(chain: str) -> None:
    warning = _one({"gpt-4o": {**GPT4O, chain: ["deepseek-chat"]}, "deepseek-chat": DEEPSEEK})
    assert warning.startswith(f"models.gpt-4o.{chain}[0]: 'deepseek-chat' cannot serve structured outputs")


def test_a_feature_counts_when_any_target_has_it_and_is_missing_only_when_no_fallback_target_has_it() -> None:
    models = {
        "mixed": {"targets": [DEEPSEEK, LLAMA], "fallbacks": ["ds", "half"]},
        "ds": DEEPSEEK,
        "half": {"targets": [DEEPSEEK, GPT4O]},
    }
    assert _warnings(models) == [
        "models.mixed.fallbacks[0]: 'ds' cannot serve structured outputs (response_format json_schema) "
        "that 'mixed' accepts; such requests will skip it"
    ]
    # A primary that cannot do it either has nothing to lose.
    assert _warnings({"ds2": {**DEEPSEEK, "fallbacks": ["ds"]}, "ds": DEEPSEEK}) == []


def test_a_reranker_chain_needs_rerankers_and_a_chat_chain_chat_models() -> None:
    reranker = {"provider": "openai", "model": "rr", "supports": {"rerank": True}}
    assert _warnings(
        {
            "rerank": {**reranker, "fallbacks": ["gpt-4o", "rerank-2"]},
            "rerank-2": reranker,
            "gpt-4o": {**GPT4O, "fallbacks": ["rerank-2"]},
        }
    ) == [
        "models.rerank.fallbacks[0]: 'gpt-4o' cannot rerank documents as 'rerank' does; "
        "such requests will skip it",
        "models.gpt-4o.fallbacks[0]: 'rerank-2' serves only rerank, moderation, image or audio requests; "
        "chat requests will skip it",
    ]


def test_every_missing_feature_is_named_with_the_capabilities_given() -> None:
    def capabilities(provider: ProviderSettings) -> Capabilities:
        caps = capabilities_for(provider)
        if provider.name == "local":
            return dataclasses.replace(caps, tools=False, images=False, streaming=False)
        return caps

    settings = _settings({"gpt-4o": {**GPT4O, "fallbacks": ["llama"]}, "llama": LLAMA})
    assert chain_warnings(settings, capabilities_for) == []
    assert chain_warnings(settings, capabilities) == [
        "models.gpt-4o.fallbacks[0]: 'llama' cannot serve tools, images or streaming that 'gpt-4o' "
        "accepts; such requests will skip it"
    ]


def test_embeddings_are_checked_for_an_embeddings_alias_only() -> None:
    models = {
        "embed": {"provider": "openai", "model": "text-embedding-3-small", "fallbacks": ["deepseek-chat"]},
        "chat": {**GPT4O, "fallbacks": ["deepseek-chat"]},
        "deepseek-chat": DEEPSEEK,
    }
    warnings = _warnings(models)
    assert warnings == [
        "models.embed.fallbacks[0]: 'deepseek-chat' cannot serve embeddings that 'embed' accepts; "
        "an embeddings request falling back to it will fail there",
        "models.chat.fallbacks[0]: 'deepseek-chat' cannot serve structured outputs "
        "(response_format json_schema) that 'chat' accepts; such requests will skip it",
    ]


def test_image_and_audio_models_are_named_as_fallbacks_for_what_they_cannot_do() -> None:
    warnings = _warnings(
        {
            "gpt-4o": {**GPT4O, "fallbacks": ["say"]},
            "say": {"provider": "openai", "model": "tts-1", "fallbacks": ["gpt-4o", "say-hd"]},
            "say-hd": {"provider": "openai", "model": "tts-1-hd"},
        }
    )
    only = "serves only rerank, moderation, image or audio requests"
    assert warnings == [
        f"models.gpt-4o.fallbacks[0]: 'say' {only}; chat requests will skip it",
        "models.say.fallbacks[0]: 'gpt-4o' cannot make speech as 'say' does; such requests will skip it",
    ]


def test_image_and_audio_prices_are_shown_per_unit() -> None:
    models = {
        "draw": {"provider": "openai", "model": "dall-e-3"},
        "listen": {"provider": "openai", "model": "whisper-1"},
        "say": {"provider": "openai", "model": "tts-1"},
    }
    text = describe(_settings(models))
    assert "    - openai/dall-e-3  price=0.04-0.12/image" in text
    assert "    - openai/whisper-1  price=0.006/minute" in text
    assert "    - openai/tts-1  price=15.00/1M characters" in text


def test_a_wildcard_fallback_is_judged_by_the_longest_prefix_alias_serving_it() -> None:
    models = {
        "gpt-4o": {**GPT4O, "fallbacks": ["cheap/ds/deepseek-chat", "cheap/llama-3"]},
        "cheap/*": {"provider": "local", "model": "*"},
        "cheap/ds/*": {"provider": "deepseek", "model": "*"},
    }
    assert _warnings(models) == [
        "models.gpt-4o.fallbacks[0]: 'cheap/ds/deepseek-chat' (served by 'cheap/ds/*') cannot serve "
        "structured outputs (response_format json_schema) that 'gpt-4o' accepts; such requests will "
        "skip it"
    ]


def test_a_fallback_no_alias_can_serve_is_refused() -> None:
    # a wildcard alias needs at least one character after its prefix, as the catalog does
    models = {"gpt-4o": {**GPT4O, "fallbacks": ["cheap/"]}, "cheap/*": {"provider": "local", "model": "*"}}
    with pytest.raises(ConfigError) as caught:
        _warnings(models)
    assert any(
        p.startswith("models.gpt-4o.fallbacks[0]: unknown model alias 'cheap/'")
        for p in caught.value.problems
    )


# --------------------------------------------------------------------------- context windows


def _windowed(primary: int | None, fallback: int | None) -> dict[str, Any]:
    return {
        "gpt-4o": {
            "targets": [{**GPT4O, "context_window": primary}, {**GPT4O, "name": "second"}],
            "context_window_fallbacks": ["big"],
        },
        "big": {"provider": "openai", "model": "gpt-4.1", "context_window": fallback},
    }


@pytest.mark.parametrize("fallback", [128000, 64000])
def test_a_context_window_fallback_no_larger_than_its_primary_is_named(fallback: int) -> None:
    assert _one(_windowed(128000, fallback)) == (
        f"models.gpt-4o.context_window_fallbacks[0]: 'big' has a context window of {fallback} tokens, "
        "no larger than the 128000 of 'gpt-4o'; a request too long for 'gpt-4o' will not fit there either"
    )


def test_a_larger_context_window_fallback_is_clean() -> None:
    assert _warnings(_windowed(128000, 1000000)) == []


@pytest.mark.parametrize(
    ("primary", "fallback", "unknown"),
    [(None, 1000000, "'gpt-4o'"), (128000, None, "'big'"), (None, None, "'gpt-4o' and 'big'")],
)
def test_an_unknown_context_window_is_named(primary: int | None, fallback: int | None, unknown: str) -> None:
    assert _one(_windowed(primary, fallback)) == (
        f"models.gpt-4o.context_window_fallbacks[0]: the context window of {unknown} is unknown "
        "(set 'context_window' on the targets), so turnout cannot tell whether 'big' can take a request "
        "too long for 'gpt-4o'"
    )


def test_the_window_is_judged_only_on_the_context_window_chain() -> None:
    models = _windowed(128000, 64000)
    models["gpt-4o"]["fallbacks"] = models["gpt-4o"].pop("context_window_fallbacks")
    assert _warnings(models) == []


# --------------------------------------------------------------------------- duplicates and attempts


def test_a_fallback_listed_twice_is_named_at_its_second_place() -> None:
    models = {
        "gpt-4o": {**GPT4O, "fallbacks": ["mini", "llama", "mini"], "content_policy_fallbacks": ["mini"]},
        "mini": {"provider": "openai", "model": "gpt-4o-mini"},
        "llama": LLAMA,
    }
    assert _one(models) == (
        "models.gpt-4o.fallbacks[2]: 'mini' is listed twice (first at fallbacks[0]); "
        "its deployments would be tried again"
    )


def test_attempts_that_cannot_reach_every_target_are_named() -> None:
    targets = [GPT4O, {**GPT4O, "name": "b"}, {**GPT4O, "name": "c"}]
    assert _one({"gpt-4o": {"targets": targets, "attempts": 2}}).startswith(
        "models.gpt-4o.attempts: 2 attempt(s) per request but 3 targets: a request to 'gpt-4o' never "
        "tries more than 2 of them"
    )
    assert _one({"gpt-4o": {"targets": targets}}, routing={"retries": {"attempts": 1}}).startswith(
        "models.gpt-4o.attempts: 1 attempt(s) per request but 3 targets"
    )
    assert _warnings({"gpt-4o": {"targets": targets}}) == []  # the default, 3


def test_a_clean_configuration_has_no_warning() -> None:
    models = {
        "gpt-4o": {
            "targets": [{**GPT4O, "context_window": 128000}, {**LLAMA, "context_window": 32000}],
            "fallbacks": ["llama", "cheap/llama-3"],
            "context_window_fallbacks": ["big"],
            "content_policy_fallbacks": ["llama"],
        },
        "big": {"provider": "openai", "model": "gpt-4.1", "context_window": 1000000},
        "llama": LLAMA,
        "cheap/*": {"provider": "local", "model": "*"},
        "deepseek-chat": {**DEEPSEEK, "fallbacks": ["llama"]},
    }
    assert _warnings(models) == []


def test_the_capabilities_checked_are_the_ones_the_adapter_runs_with() -> None:
    async def built() -> list[tuple[Capabilities, Capabilities]]:
        client = HttpClient()
        pairs = []
        for name in PROVIDER_KINDS:
            doc: dict[str, Any] = {"type": name, "base_url": "http://10.0.0.5:8000/v1", "api_key": "env:KEY"}
            if name == "fake":
                doc = {"type": "fake"}
            settings = build_settings({"providers": {"p": doc}}, ENV, source="test").providers["p"]
            pairs.append((OpenAICompatibleAdapter(settings, client).capabilities, capabilities_for(settings)))
        await client.aclose()
        return pairs

    pairs = asyncio.run(built())
    assert len(pairs) == len(PROVIDER_KINDS)
    assert all(adapter == checked for adapter, checked in pairs)
    assert any(not adapter.json_schema for adapter, _ in pairs)


# --------------------------------------------------------------------------- config check


def _routing_doc() -> dict[str, Any]:
    return {
        **LENIENT,
        "providers": PROVIDERS,
        "routing": {"retries": {"attempts": 2, "backoff_base": "250ms"}, "breaker": {"open_for": "5s"}},
        "models": {
            "gpt-4o": {
                "strategy": "weighted",
                "hedge_after": "1500ms",
                "stream_resume": False,
                "targets": [
                    {
                        **GPT4O,
                        "name": "openai-us",
                        "weight": 3,
                        "tags": ["us", "gdpr"],
                        "rpm": 10000,
                        "tpm": 2000000,
                        "context_window": 128000,
                    },
                    {**LLAMA, "priority": 5, "price": {"input": 0.1, "output": 0.2}},
                ],
                "fallbacks": ["deepseek-chat", "llama"],
                "context_window_fallbacks": ["big"],
                "content_policy_fallbacks": ["llama"],
            },
            "big": {
                "provider": "openai",
                "model": "gpt-4.1",
                "context_window": 1000000,
                "mirror": {
                    "to": {"provider": "deepseek", "model": "deepseek-chat"},
                    "share": 0.05,
                    "budget": {"limit": "20.00"},
                },
            },
            "llama": {**LLAMA, "attempts": 4},
            "deepseek-chat": DEEPSEEK,
        },
    }


def test_describe_prints_the_whole_routing_table() -> None:
    settings = build_settings(_routing_doc(), ENV, source="test")
    text = describe(settings)
    table = text.split("models (alias: strategy, deployments in order, fallback chains):\n")[1]
    assert table.split("\n\n")[0].splitlines() == [
        "  big  strategy=priority",
        # from the price table, whose figures for it no OpenAI page available here backed in full
        "    - openai/gpt-4.1  context_window=1000000 price=2.00/8.00 (unverified: cached_input,output)",
        "    mirror 5% -> deepseek/deepseek-chat  price=0.28/0.42  (budget 20.000000 USD daily, timeout 60s, "
        "16 at once)",
        "  deepseek-chat  strategy=priority",
        "    - deepseek/deepseek-chat  price=0.28/0.42",
        "  gpt-4o  strategy=weighted hedge_after=1.5s stream_resume=off",
        "    - openai-us = openai/gpt-4o  weight=3 tags=gdpr,us rpm=10000 tpm=2000000 context_window=128000 "
        "max_output_tokens=16384 price=2.50/10.00 (unverified: cached_input,input,output)",  # table's limit
        "    - local/llama-3.1-8b  priority=5 price=0.1/0.2",  # configured
        "    fallbacks -> deepseek-chat, llama",
        "    context window -> big",
        "    content policy -> llama",
        "  llama  strategy=priority attempts=4",
        "    - local/llama-3.1-8b  price=unknown",
    ]
    routing = text.split("\nrouting:\n")[1].split("\n\n")[0].splitlines()
    assert routing[0] == "  defaults:  strategy priority, stream resume on, hedging off, health checks off"
    assert routing[1].startswith(
        "  retries:   2 attempts per alias and request, backoff 250ms doubling up to 2s"
    )
    assert routing[2] == "  budget:    retries add at most 20% of requests + 1/s over 10s"
    assert routing[3].startswith("  breaker:   opens after 5 failures in a row or 50% errors over 30s")
    assert "open 5s doubling up to 120s" in routing[3]
    warnings = text.split("\nwarnings:\n")[1].splitlines()
    assert warnings == [
        "  - 2 deployment(s) are billed at shipped prices that no provider page available to turnout "
        "backed (openai/gpt-4.1, openai/gpt-4o): check them against your provider's price list and set "
        "`price:` where they differ (docs/spend.md)",
        "  - models.gpt-4o.fallbacks[0]: 'deepseek-chat' cannot serve structured outputs "
        "(response_format json_schema) that 'gpt-4o' accepts; such requests will skip it",
    ]


def test_describe_keeps_the_loader_warnings_with_the_chain_warnings() -> None:
    text = describe(build_settings({}, {}, source="test"))
    assert "\nwarnings:\n  - no models are configured" in text
    assert "models (alias: strategy, deployments in order, fallback chains):\n  (none)\n" in text


def test_config_check_prints_chain_warnings_and_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "turnout.yaml"
    path.write_text(yaml.safe_dump(_routing_doc()))
    result = CliRunner().invoke(main, ["config", "check", "--config", str(path)], env=ENV)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"configuration: {path} (valid)\n")
    assert "\n  - models.gpt-4o.fallbacks[0]: 'deepseek-chat' cannot serve structured" in result.output
    assert ENV["KEY"] not in result.output


def test_the_gateway_logs_chain_warnings_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_for(
        {k: v for k, v in _routing_doc().items() if k != "storage"}, tmp_path / "data", ENV
    )

    async def start_and_stop() -> None:
        services = await Services.start(settings)
        await services.aclose()

    with caplog.at_level(logging.WARNING):
        asyncio.run(start_and_stop())
    assert any(
        r.getMessage().startswith("models.gpt-4o.fallbacks[0]: 'deepseek-chat' cannot serve structured")
        for r in caplog.records
    )


def test_describe_shows_rerankers_and_moderation_models_with_their_prices() -> None:
    doc = {
        "routing": {"moderation_model": "moderation"},
        "providers": {
            "co": {"type": "cohere", "api_key": "env:CO_KEY"},
            "openai": {"type": "openai", "api_key": "env:OPENAI_KEY"},
        },
        "models": {
            "rerank": {"provider": "co", "model": "rerank-v3.5", "supports": {"rerank": True}},
            "moderation": {
                "provider": "openai",
                "model": "omni-moderation-latest",
                "supports": {"moderation": True},
            },
        },
    }
    text = describe(build_settings(doc, {**ENV, "CO_KEY": "k", "OPENAI_KEY": "k"}, source="test"))
    assert "    - co/rerank-v3.5  rerank price=2.00/1K searches" in text.splitlines()
    assert "    - openai/omni-moderation-latest  moderation price=0/0" in text.splitlines()
    assert "  moderation: 'moderation' answers a moderation naming no model" in text.splitlines()


def test_a_deployment_priced_by_its_own_config_is_not_marked_unverified() -> None:
    """The shipped gpt-4o figures are unverified (marked, and warned of at start); the operator's
    own price replaces them, mark and warning with it."""
    shipped = {"providers": {"openai": {"type": "openai", "api_key": "env:KEY"}}}
    shipped["models"] = {"gpt-4o": {"provider": "openai", "model": "gpt-4o"}}
    text = describe(build_settings(shipped, ENV, source="test"))
    assert "price=2.50/10.00 (unverified: cached_input,input,output)" in text
    assert "1 deployment(s) are billed at shipped prices that no provider page" in text
    own = {
        **shipped,
        "models": {
            "gpt-4o": {"provider": "openai", "model": "gpt-4o", "price": {"input": "2.5", "output": "10"}}
        },
    }
    text = describe(build_settings(own, ENV, source="test"))
    assert "price=2.5/10" in text
    assert "unverified" not in text
