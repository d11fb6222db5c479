"""Prices and cost: the shipped table read exactly, models found by the names providers use, and
costs in integer micro-dollars computed by hand for every usage shape."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from importlib import resources

import pytest
import yaml

from turnout.config.prices import model_price, parse_table, shipped_prices
from turnout.domain.pricing import ModelPrice, decimal_price, format_usd
from turnout.domain.usage import Usage
from turnout.providers.registry import KINDS

M = 1_000_000


def test_the_table_is_complete_and_exact() -> None:
    table = shipped_prices()
    assert table.effective == "2025-11-24"
    for namespace in ("openai", "azure", "anthropic", "gemini", "cohere", "mistral", "deepseek", "bedrock"):
        assert len(table.sections[namespace]) >= 2, namespace
    raw = yaml.safe_load(resources.files("turnout.config").joinpath("prices.yaml").read_text())
    for namespace, models in raw["models"].items():
        for name, versions in models.items():
            entry = versions[-1] if isinstance(versions, list) else versions  # the newest version
            if "input" not in entry and "search_units" not in entry:  # priced per unit only (images, audio)
                units = [
                    entry.get("per_audio_minute"),
                    entry.get("per_1m_characters"),
                    entry.get("per_image"),
                ]
                assert any(units), f"{namespace}.{name}: no price"
                continue
            price = table.sections[namespace][name]
            if "search_units" in entry:  # a reranker: priced per 1,000 search units
                assert isinstance(entry["search_units"], str), f"{namespace}.{name}: write prices as strings"
                units = Decimal(entry["search_units"])
                assert price.cost(Usage(search_units=3)) == int(units * 3 * 1000)
                continue
            assert isinstance(entry["input"], str), f"{namespace}.{name}: write prices as strings"
            assert price.input == Decimal(entry["input"])
            # tokens of each kind cost the listed price, in micro-dollars, exactly (below every
            # long-context threshold: a million tokens of prompt is above Claude's and Gemini's)
            n = 100_000
            if "output" in entry:
                assert price.cost(Usage(output_tokens=n)) == int(Decimal(entry["output"]) * n)
            assert price.cost(Usage(input_tokens=n)) == int(Decimal(entry["input"]) * n)


# (kind, model as the provider spells it, the table entry it must be priced as)
LOOKUPS = [
    ("openai", "gpt-4o", ("openai", "gpt-4o")),
    ("openai", "gpt-4o-2024-08-06", ("openai", "gpt-4o")),
    ("openai", "gpt-4o-mini-2024-07-18", ("openai", "gpt-4o-mini")),
    ("azure", "gpt-4.1-mini", ("azure", "gpt-4.1-mini")),
    ("anthropic", "claude-sonnet-4-5-20250929", ("anthropic", "claude-sonnet-4-5")),
    ("anthropic", "claude-3-5-haiku-latest", ("anthropic", "claude-3-5-haiku")),
    ("gemini", "models/gemini-2.5-pro", ("gemini", "gemini-2.5-pro")),
    ("gemini", "gemini-2.0-flash-001", ("gemini", "gemini-2.0-flash")),
    ("vertex", "gemini-2.5-flash", ("gemini", "gemini-2.5-flash")),
    ("mistral", "mistral-medium-2508", ("mistral", "mistral-medium-latest")),
    ("mistral", "mistral-large-2411", ("mistral", "mistral-large-2411")),  # its alias moved on
    (
        "bedrock",
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ("bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0"),
    ),
    ("bedrock", "amazon.nova-lite-v1:0", ("bedrock", "amazon.nova-lite-v1:0")),
    ("deepseek", "deepseek-reasoner", ("deepseek", "deepseek-reasoner")),
    ("cohere", "embed-v4.0", ("cohere", "embed-v4.0")),
    ("fake", "anything", ("fake", "*")),
]


@pytest.mark.parametrize(("kind", "model", "entry"), LOOKUPS)
def test_models_are_found_by_the_names_providers_use(kind: str, model: str, entry: tuple[str, str]) -> None:
    table = shipped_prices()
    assert table.lookup(KINDS[kind].price_namespace, model) is table.sections[entry[0]][entry[1]]


@pytest.mark.parametrize(
    ("kind", "model"),
    [
        ("openai", "gpt-9-ultra"),
        ("anthropic", "claude-unknown"),
        ("groq", "llama-3.1-8b-instant"),
        ("vllm", "x"),
    ],
)
def test_unknown_models_have_no_price(kind: str, model: str) -> None:
    namespace = KINDS[kind].price_namespace
    assert shipped_prices().lookup(namespace, model) is None
    assert namespace is not None or shipped_prices().lookup(namespace, "gpt-4o") is None


# Hand-computed: (price entry, usage, micro-dollars)
COSTS = [
    # gpt-4o: 1,000 prompt tokens of which 400 cached, 500 out: 600*2.50 + 400*1.25 + 500*10.00
    (
        ("openai", "gpt-4o"),
        Usage(input_tokens=1000, cached_input_tokens=400, output_tokens=500),
        1500 + 500 + 5000,
    ),
    # gpt-4o-mini, one token each way: 0.15 + 0.60 = 0.75 µ$, rounded half up to 1
    (("openai", "gpt-4o-mini"), Usage(input_tokens=1, output_tokens=1), 1),
    # o3 with reasoning (counted in output): 2,000 in at 2.00, 3,000 out at 8.00
    (("openai", "o3"), Usage(input_tokens=2000, output_tokens=3000, reasoning_tokens=2500), 4000 + 24000),
    # claude-sonnet-4-5: 10,000 prompt = 1,000 uncached + 4,000 cache reads + 5,000 cache writes
    (
        ("anthropic", "claude-sonnet-4-5"),
        Usage(input_tokens=10_000, cached_input_tokens=4000, cache_write_tokens=5000, output_tokens=2000),
        1000 * 3 + 4000 * Decimal("0.30") + 5000 * Decimal("3.75") + 2000 * 15,
    ),
    # claude-opus-4-1: 1M in, 1M out = $90
    (("anthropic", "claude-opus-4-1"), Usage(input_tokens=M, output_tokens=M), 90 * M),
    # gemini-2.5-flash: 100k prompt (20k cached at 0.03), 10k out at 2.50
    (
        ("gemini", "gemini-2.5-flash"),
        Usage(input_tokens=100_000, cached_input_tokens=20_000, output_tokens=10_000),
        80_000 * Decimal("0.30") + 20_000 * Decimal("0.03") + 25_000,
    ),
    # cohere command-r7b: 3 in at 0.0375 + 3 out at 0.15 = 0.5625 → 1
    (("cohere", "command-r7b-12-2024"), Usage(input_tokens=3, output_tokens=3), 1),
    # deepseek-chat: cache hits at 0.028
    (("deepseek", "deepseek-chat"), Usage(input_tokens=1000, cached_input_tokens=1000, output_tokens=0), 28),
    # an embeddings model: input only
    (("openai", "text-embedding-3-small"), Usage(input_tokens=50_000), 1000),
    # bedrock nova-micro: cache reads priced apart, 0.00875
    (("bedrock", "amazon.nova-micro-v1:0"), Usage(input_tokens=400, cached_input_tokens=400), Decimal("3.5")),
    # no price for cache writes: billed as input (Cohere has none)
    (
        ("cohere", "command-a-03-2025"),
        Usage(input_tokens=100, cache_write_tokens=100, output_tokens=10),
        250 + 100,
    ),
    # the fake provider is free
    (("fake", "*"), Usage(input_tokens=M, output_tokens=M), 0),
]


@pytest.mark.parametrize(("entry", "usage", "expected"), COSTS)
def test_costs_by_hand(entry: tuple[str, str], usage: Usage, expected: int | Decimal) -> None:
    price = shipped_prices().sections[entry[0]][entry[1]]
    expected_micros = int(Decimal(expected).quantize(Decimal(1), rounding="ROUND_HALF_UP"))
    assert price.cost(usage) == expected_micros
    assert isinstance(price.cost(usage), int)


def test_rounding_is_half_up_and_never_float() -> None:
    half = ModelPrice(input=Decimal("0.5"))
    assert half.cost(Usage(input_tokens=1)) == 1
    assert ModelPrice(input=Decimal("0.49")).cost(Usage(input_tokens=1)) == 0
    assert decimal_price(2.5) == Decimal("2.5") and decimal_price("0.1") == Decimal("0.1")
    assert decimal_price(0.1) == Decimal("0.1")  # a written 0.1, not the float's binary expansion
    for bad in ("-1", "nan", "Infinity", "cheap", True, None):
        with pytest.raises(ValueError, match="price"):
            decimal_price(bad)
    assert format_usd(1_234_567) == "1.234567" and format_usd(5) == "0.000005"


def test_a_broken_table_names_the_entry() -> None:
    with pytest.raises(ValueError, match=r"models\.openai\.gpt-x: needs at least an 'input' price"):
        parse_table({"effective": "x", "models": {"openai": {"gpt-x": {"output": "1"}}}}, "t")
    with pytest.raises(ValueError, match=r"models\.openai\.gpt-x: unknown capability 'telepathy'"):
        parse_table({"models": {"openai": {"gpt-x": {"input": "1", "capabilities": ["telepathy"]}}}}, "t")
    with pytest.raises(ValueError, match=r"models\.openai\.gpt-x: a price must be zero or more"):
        parse_table({"models": {"openai": {"gpt-x": {"input": "-2"}}}}, "t")


# ----------------------------------------------------------------------------- the shapes of a price


def test_a_price_change_applies_from_its_date() -> None:
    price = model_price(
        [
            {"since": "2026-01-01", "input": "2.00", "output": "8.00"},
            {"since": "2025-01-01", "input": "3.00", "output": "9.00"},
        ],
        "p",
    )
    usage = Usage(input_tokens=M, output_tokens=M)
    before = dt.datetime(2025, 12, 31, 23, 59, 59, tzinfo=dt.UTC).timestamp()
    after = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
    assert price.cost(usage, at=before) == 12 * M and price.at(before).version == "2025-01-01"
    assert price.cost(usage, at=after) == 10 * M and price.at(after).version == "2026-01-01"
    early = dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp()
    assert price.at(early).version == "2025-01-01"  # before the oldest: the oldest known


def test_long_prompts_service_tiers_and_hour_long_cache_writes_are_priced() -> None:
    price = shipped_prices().lookup("anthropic", "claude-sonnet-4-5")
    assert price is not None
    short = Usage(input_tokens=200_000, output_tokens=1_000)
    assert price.cost(short) == 200_000 * 3 + 1_000 * 15  # at the threshold: standard rates
    long = Usage(input_tokens=200_001, cached_input_tokens=100_000, output_tokens=1_000)
    # every token above it at $6 in, $22.50 out, cache reads at a tenth of the input: $0.60
    assert price.cost(long) == round(100_001 * 6 + 100_000 * Decimal("0.6") + 1_000 * Decimal("22.5"))
    writes = Usage(input_tokens=3_000, cache_write_tokens=3_000, cache_write_1h_tokens=1_000)
    assert price.cost(writes) == round(2_000 * Decimal("3.75") + 1_000 * 6)  # 5 minutes, an hour
    haiku = shipped_prices().lookup("anthropic", "claude-3-haiku")
    assert haiku is not None
    batch = Usage(input_tokens=M, output_tokens=M, service_tier="batch")
    assert haiku.cost(batch) == round(M * Decimal("0.125") + M * Decimal("0.625"))
    assert haiku.cost(Usage(input_tokens=M, service_tier="priority")) == M // 4  # not priced: standard
    gemini = shipped_prices().lookup("gemini", "gemini-2.5-pro")
    assert gemini is not None and gemini.cost(Usage(input_tokens=300_000)) == 300_000 * Decimal("2.5")


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        (
            [{"input": "1"}, {"since": "2026-01-01", "input": "2"}],
            "p[0]: each of several versions needs 'since'",
        ),
        ([{"since": "2026-01-01", "input": "1"}, {"since": "2026-01-01", "input": "2"}], "same 'since'"),
        ({"since": "2026-13-01", "input": "1"}, "p.since: not a date"),
        ({"input": "1", "service_tiers": {"turbo": {"input": "2"}}}, "unknown tier 'turbo'"),
        ({"input": "1", "long_context": {"input": "2"}}, "p.long_context: needs 'above'"),
        ({"input": "1", "long_context": {"above": 0, "input": "2"}}, "'above' must be a positive number"),
        ({"input": "1", "service_tiers": {"flex": {"input": "x"}}}, "p.service_tiers.flex: not a price"),
    ],
)
def test_a_malformed_price_is_refused_naming_where(entry: object, error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        model_price(entry, "p", table=False)


def test_deepseek_s_price_history_applies_to_the_hour() -> None:
    """DeepSeek's page: from 16:00 UTC on 5 September 2025 a new price list; from 29 September
    V3.2's. A request is billed at the list in force when it arrived."""
    price = shipped_prices().lookup("deepseek", "deepseek-chat")
    assert price is not None
    million = Usage(input_tokens=M, cached_input_tokens=M // 2, output_tokens=M)

    def at(when: str) -> int:
        return price.cost(million, at=dt.datetime.fromisoformat(when).replace(tzinfo=dt.UTC).timestamp())

    assert at("2025-09-05T15:59:59") == round(
        M // 2 * Decimal("0.27") + M // 2 * Decimal("0.07") + M * Decimal("1.10")
    )
    assert at("2025-09-05T16:00:00") == round(
        M // 2 * Decimal("0.56") + M // 2 * Decimal("0.07") + M * Decimal("1.68")
    )
    assert at("2025-09-29T00:00:00") == round(
        M // 2 * Decimal("0.28") + M // 2 * Decimal("0.028") + M * Decimal("0.42")
    )


def test_images_audio_and_characters_are_priced_per_unit_exactly() -> None:
    table = shipped_prices()
    dalle = table.lookup("openai", "dall-e-3")
    assert dalle is not None and "image_generation" in dalle.capabilities
    assert dalle.cost(Usage(images=2, image_kind="hd 1024x1792")) == 240_000  # 2 x $0.12
    assert dalle.cost(Usage(images=1, image_kind="standard 1024x1024")) == 40_000
    assert dalle.cost(Usage(images=1, image_kind="ultra 4096x4096")) == 120_000  # unlisted: the dearest
    small = table.lookup("openai", "dall-e-2")
    assert (
        small is not None and small.cost(Usage(images=3, image_kind="standard 256x256")) == 48_000
    )  # by size
    whisper = table.lookup("openai", "whisper-1")
    assert whisper is not None and whisper.cost(Usage(audio_seconds=61)) == 6_100  # $0.006 a minute
    assert whisper.cost(Usage(audio_seconds=1)) == 100
    tts = table.lookup("openai", "tts-1-hd")
    assert tts is not None and tts.cost(Usage(characters=1_000)) == 30_000  # $30 per 1M characters
    tokens = table.lookup("openai", "gpt-4o-transcribe")
    assert tokens is not None and tokens.cost(Usage(input_tokens=1_000, output_tokens=100)) == 3_500


def test_a_unit_price_is_checked_like_any_other() -> None:
    with pytest.raises(ValueError, match="per_image: must map"):
        model_price({"per_image": ["0.04"]}, "models.x.price", table=False)
    with pytest.raises(ValueError, match="a price must be zero or more"):
        model_price({"per_audio_minute": "-1"}, "models.x.price", table=False)
    with pytest.raises(ValueError, match="needs at least an 'input' price"):
        model_price({"output": "1"}, "models.x.price", table=False)
    price = model_price({"per_1m_characters": "15"}, "models.x.price", table=False)
    assert price.input == 0 and price.cost(Usage(characters=11)) == 165


def test_search_units_are_priced_per_thousand_beside_tokens() -> None:
    price = model_price({"input": "0.10", "search_units": "2.00"}, "test", table=False)
    assert price.cost(Usage(search_units=1)) == 2000  # $2.00 / 1,000 searches: $0.002 each
    assert price.cost(Usage(input_tokens=1000, search_units=2)) == 100 + 4000
    assert model_price({"search_units": "1.00"}, "test", table=False).cost(Usage(search_units=5)) == 5000
    with pytest.raises(ValueError, match="search_units"):
        model_price({"output": "1.00"}, "test", table=False)
