"""Configuration: every problem names its dotted path and carries a hint, all problems are reported
at once, secrets never show themselves, and with no file at all the standard environment
variables configure the providers. `turnout config check` is driven as a user would drive it."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from turnout.config.loader import ConfigError
from turnout.config.settings import Settings
from turnout.providers.config_loader import build_settings, load_settings

from support.gateway import MASTER_KEY, Gateway
from support.upstream import Upstream

TURNOUT = str(Path(sys.executable).with_name("turnout"))

# A value no test writes anywhere but into the environment or a secret file: wherever it shows up
# in output, a secret has leaked.
SECRET = "sk-live-9f3Qz-NEVER-PRINT-ME-77ab1c"
DB_PASSWORD = "pg-pass-Xy7-NEVER-PRINT-ME"
ENV = {"OPENAI_KEY": SECRET, "AZURE_KEY": SECRET + "-azure", "MASTER": SECRET + "-master"}
OPENAI = {"type": "openai", "api_key": "env:OPENAI_KEY"}
AZURE = {"type": "azure", "base_url": "https://east.openai.azure.com", "api_key": "env:AZURE_KEY"}
KNOWN_TYPES = [
    "anthropic",
    "azure",
    "bedrock",
    "cohere",
    "deepseek",
    "fake",
    "gemini",
    "groq",
    "llamacpp",
    "mistral",
    "ollama",
    "openai",
    "openai_compatible",
    "openrouter",
    "together",
    "vertex",
    "vllm",
]


def _lenient(doc: object) -> object:
    """`doc`, serving unpriced models (these tests are not about prices; test_spend_ledger is)."""
    return {"spend": {"unknown_prices": "record"}, **doc} if isinstance(doc, dict) else doc


def _problems(doc: object, environ: Mapping[str, str] = ENV) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        build_settings(_lenient(doc), environ, source="turnout.yaml")
    error = caught.value
    assert error.render().count("\n  - ") == len(error.problems)
    return error.problems


def _only_problem(doc: object, environ: Mapping[str, str] = ENV) -> str:
    problems = _problems(doc, environ)
    assert len(problems) == 1, problems
    return problems[0]


def _settings(doc: object, environ: Mapping[str, str] = ENV) -> Settings:
    return build_settings(_lenient(doc), environ, source="turnout.yaml")


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "turnout.yaml"
    path.write_text(text)
    return path


def _with_provider(**fields: Any) -> dict[str, Any]:
    return {"providers": {"openai": {**OPENAI, **fields}}}


# --------------------------------------------------------------------------- unknown keys


@pytest.mark.parametrize(
    ("doc", "path", "hint"),
    [
        ({"providrs": {}}, "providrs", "did you mean 'providers'?"),
        ({"server": {"prot": 4000}}, "server.prot", "did you mean 'port'?"),
        ({"auth": {"master": "env:MASTER"}}, "auth.master", "did you mean 'master_key'?"),
        ({"storage": {"databse_url": "sqlite:///x"}}, "storage.databse_url", "did you mean 'database_url'?"),
        (_with_provider(api_kye="env:OPENAI_KEY"), "providers.openai.api_kye", "did you mean 'api_key'?"),
        (
            _with_provider(timeouts={"conect": "1s"}),
            "providers.openai.timeouts.conect",
            "did you mean 'connect'?",
        ),
        (
            {
                "providers": {"openai": OPENAI},
                "models": {"gpt-4o": {"targets": [{"provider": "openai", "model": "gpt-4o", "modle": "x"}]}},
            },
            "models.gpt-4o.targets[0].modle",
            "did you mean 'model'?",
        ),
        (
            {"server": {"zzz": 1}},
            "server.zzz",
            "known keys: host, port, max_request_bytes, shutdown_grace, drain_delay, access_log, "
            "trusted_proxies, forwarded_header, limits, overload",
        ),
    ],
)
def test_an_unknown_key_is_named_with_a_suggestion(doc: dict[str, Any], path: str, hint: str) -> None:
    assert _only_problem(doc) == f"{path}: unknown key ({hint})"


def test_an_unknown_provider_type_lists_the_known_ones() -> None:
    problem = _only_problem({"providers": {"main": {"type": "opneai", "api_key": "env:OPENAI_KEY"}}})
    assert problem.startswith("providers.main.type: unknown provider type 'opneai'; did you mean 'openai'?")
    listed = re.search(r"\(known: (.*)\)$", problem)
    assert listed is not None
    assert listed.group(1).split(", ") == KNOWN_TYPES


@pytest.mark.parametrize(
    ("models", "path", "hint"),
    [
        (
            {
                "gpt-4o": {
                    "targets": [{"provider": "openai", "model": "a"}, {"provider": "azur", "model": "b"}]
                }
            },
            "models.gpt-4o.targets[1].provider",
            "unknown provider 'azur'; did you mean 'azure'? (known: azure, openai)",
        ),
        (
            {"gpt-4o": {"provider": "opnai", "model": "gpt-4o"}},
            "models.gpt-4o.provider",
            "unknown provider 'opnai'; did you mean 'openai'? (known: azure, openai)",
        ),
        (
            {"gpt-4o": {"provider": "anthropic", "model": "claude"}},
            "models.gpt-4o.provider",
            "unknown provider 'anthropic' (known: azure, openai)",
        ),
    ],
)
def test_a_target_naming_an_unknown_provider_gets_a_close_match(
    models: dict[str, Any], path: str, hint: str
) -> None:
    assert (
        _only_problem({"providers": {"openai": OPENAI, "azure": AZURE}, "models": models})
        == f"{path}: {hint}"
    )


def test_with_no_providers_a_target_is_told_so() -> None:
    problem = _only_problem({"models": {"gpt-4o": {"provider": "openai", "model": "gpt-4o"}}})
    assert problem == "models.gpt-4o.provider: unknown provider 'openai' (known: none are configured)"


def test_a_broken_provider_is_reported_once_not_again_by_its_models() -> None:
    doc = {
        "providers": {"openai": {**OPENAI, "type": "opneai"}},
        "models": {"gpt-4o": {"provider": "openai", "model": "gpt-4o"}},
    }
    assert [p.split(":")[0] for p in _problems(doc)] == ["providers.openai.type"]


@pytest.mark.parametrize(
    ("models", "path", "hint"),
    [
        ({"gpt": {"provider": "openai"}}, "models.gpt", "missing 'model' (or give a list of 'targets')"),
        ({"gpt": {"model": "x"}}, "models.gpt", "missing 'provider' (or give a list of 'targets')"),
        ({"gpt": {"targets": []}}, "models.gpt.targets", "needs at least one target"),
        ({"gpt": {"targets": [{"provider": "openai"}]}}, "models.gpt.targets[0].model", "required"),
        (
            {"gpt": {"targets": [{"provider": "openai", "model": "x"}], "provider": "openai", "model": "y"}},
            "models.gpt",
            "give either 'targets' or 'provider' + 'model', not both",
        ),
        ({"gpt": "openai/gpt-4o"}, "models.gpt", "expected object, got str"),
    ],
)
def test_a_malformed_model_entry_names_itself(models: dict[str, Any], path: str, hint: str) -> None:
    assert _only_problem({"providers": {"openai": OPENAI}, "models": models}) == f"{path}: {hint}"


@pytest.mark.parametrize(
    ("text", "section"),
    [
        (
            "providers:\n  openai: {type: openai, api_key: env:OPENAI_KEY}\n"
            "models:\n  2024: {provider: openai, model: x}\n",
            "models",
        ),
        ("providers:\n  on: {type: openai, api_key: env:OPENAI_KEY}\n", "providers"),
        ("server:\n  ~: 1\n", "server"),
    ],
    ids=["number-alias", "boolean-provider", "null-server-key"],
)
def test_a_key_that_is_not_a_string_is_named_by_its_section(tmp_path: Path, text: str, section: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_file(tmp_path, text), ENV)
    [problem] = caught.value.problems
    assert problem.startswith(section), problem
    assert "`" not in problem  # not msgspec's own wording


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        (_with_provider(api_key=SECRET), "providers.openai.api_key"),
        ({"auth": {"master_key": SECRET}}, "auth.master_key"),
        ({"auth": {"key_hash_secret": SECRET}}, "auth.key_hash_secret"),
        (
            _with_provider(headers={"Authorization": f"Bearer {SECRET}"}),
            "providers.openai.headers.Authorization",
        ),
        (_with_provider(headers={"api-key": SECRET}), "providers.openai.headers.api-key"),
        (_with_provider(headers={"X-Api-Key": SECRET}), "providers.openai.headers.X-Api-Key"),
        (
            {"storage": {"database_url": f"postgresql+asyncpg://app:{SECRET}@db.internal/turnout"}},
            "storage.database_url",
        ),
    ],
)
def test_a_literal_secret_is_refused_without_being_repeated(doc: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_settings(doc, ENV, source="turnout.yaml")
    [problem] = caught.value.problems
    assert problem.startswith(f"{path}: ")
    assert "env:" in problem  # the hint: how to write it as a reference
    assert SECRET not in str(caught.value)
    assert SECRET not in caught.value.render()


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_a_secret_reference_to_a_missing_variable_names_it(value: str | None) -> None:
    environ = {} if value is None else {"OPENAI_KEY": value}
    problem = _only_problem(_with_provider(), environ)
    assert problem == "providers.openai.api_key: environment variable OPENAI_KEY is not set"


def test_secret_files_are_read_and_a_missing_one_is_named(tmp_path: Path) -> None:
    (tmp_path / "openai").write_text(SECRET + "\n")
    settings = _settings(_with_provider(api_key=f"file:{tmp_path / 'openai'}"))
    key = settings.providers["openai"].api_key
    assert key is not None
    assert key.reveal() == SECRET
    assert key.source == f"file:{tmp_path / 'openai'}"

    problem = _only_problem(_with_provider(api_key=f"file:{tmp_path / 'absent'}"))
    assert problem.startswith(f"providers.openai.api_key: cannot read secret file {tmp_path / 'absent'}")
    (tmp_path / "empty").write_text("\n")
    assert _only_problem(_with_provider(api_key=f"file:{tmp_path / 'empty'}")).endswith("is empty")


def _full_config(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "hash").write_text(SECRET + "-hash")
    return {
        "auth": {"master_key": "env:MASTER", "key_hash_secret": f"file:{tmp_path / 'hash'}"},
        "storage": {"data_dir": str(tmp_path / "data")},
        "providers": {
            "openai": {
                **OPENAI,
                "headers": {"OpenAI-Organization": "org-1", "X-Gateway-Token": "env:MASTER"},
            },
            "azure": {**AZURE, "api_version": "2024-06-01"},
        },
        "models": {
            "gpt-4o": {
                "targets": [
                    {"provider": "openai", "model": "gpt-4o-2024-08-06"},
                    {"provider": "azure", "model": "gpt4o-east", "price": {"input": "2.50", "output": "10"}},
                ]
            },
            "openai/*": {"provider": "openai", "model": "*"},
        },
    }


def test_secrets_never_appear_in_the_settings_repr(tmp_path: Path) -> None:
    settings = _settings(_full_config(tmp_path))
    text = repr(settings)
    assert "sk-live" not in text
    assert "env:OPENAI_KEY" in text  # where each secret comes from is shown instead
    assert "env:MASTER" in text
    assert settings.auth.master_key is not None
    assert settings.auth.master_key.reveal() == SECRET + "-master"
    assert str(settings.providers["azure"].api_key) == "Secret(env:AZURE_KEY)"


def test_a_database_password_from_a_reference_stays_hidden() -> None:
    environ = {"DATABASE_URL": f"postgresql+asyncpg://app:{DB_PASSWORD}@db.internal/turnout"}
    settings = _settings({"storage": {"database_url": "env:DATABASE_URL"}}, environ)
    assert DB_PASSWORD not in repr(settings)
    assert DB_PASSWORD not in repr(settings.storage)


def test_a_malformed_base_url_is_not_repeated_with_its_credentials() -> None:
    doc = {
        "providers": {"local": {"type": "openai_compatible", "base_url": f"ftp://svc:{SECRET}@10.0.0.7/v1"}}
    }
    problem = _only_problem(doc)
    assert problem.startswith("providers.local.base_url: must be an http:// or https:// URL")
    assert SECRET not in problem


@pytest.mark.parametrize(
    "base_url", [f"https://svc:{SECRET}@10.0.0.7/v1", f"http://10.0.0.7/v1?api_key={SECRET}"]
)
def test_a_base_url_with_credentials_is_refused_without_repeating_them(base_url: str) -> None:
    problem = _only_problem({"providers": {"local": {"type": "openai_compatible", "base_url": base_url}}})
    assert problem.startswith("providers.local.base_url: must not hold credentials")
    assert SECRET not in problem


# --------------------------------------------------------------------------- units


DURATION_HINT = "expected a duration such as 5s, 250ms or 2m"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5 parsecs", f"{DURATION_HINT}, got '5 parsecs'"),
        ("1 day", f"{DURATION_HINT}, got '1 day'"),
        ("-1s", f"{DURATION_HINT}, got '-1s'"),
        (-1, "a duration cannot be negative, got -1"),
        (0, "a duration must be positive, got 0"),
        ("0ms", "a duration must be positive, got '0ms'"),
        (True, "expected number | string | null, got bool"),
        ([5], "expected number | string | null, got array"),
        (float("nan"), f"{DURATION_HINT}, got nan"),
    ],
)
def test_a_bad_duration_names_its_path(value: object, message: str) -> None:
    problem = _only_problem(_with_provider(timeouts={"connect": value}))
    assert problem.startswith(f"providers.openai.timeouts.connect: {message}")


def test_good_durations_are_understood() -> None:
    timeouts = {"connect": "250ms", "first_byte": "1.5s", "idle": "2m", "total": "1h"}
    t = _settings(_with_provider(timeouts=timeouts)).providers["openai"].timeouts
    assert (t.connect, t.first_byte, t.idle, t.total) == (0.25, 1.5, 120.0, 3600.0)


def test_a_phase_written_longer_than_total_is_refused() -> None:
    problem = _only_problem(_with_provider(timeouts={"connect": "10m", "total": "1m"}))
    assert problem.startswith("providers.openai.timeouts.connect: 600s")
    assert "total (60s)" in problem


def test_a_short_total_shortens_the_inherited_phases() -> None:
    doc = {"defaults": {"timeouts": {"first_byte": "90s"}}, **_with_provider(timeouts={"total": "30s"})}
    t = _settings(doc).providers["openai"].timeouts
    assert (t.connect, t.first_byte, t.idle, t.total) == (5.0, 30.0, 30.0, 30.0)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("lots", "expected a size such as 32MiB or 1048576, got 'lots'"),
        ("12XB", "expected a size such as 32MiB or 1048576, got '12XB'"),
        ("0", "a size must be positive, got '0'"),
        (0, "a size must be positive, got 0"),
        (-5, "a size must be positive, got -5"),
        (1.5, "expected int | string, got float"),
        (False, "expected int | string, got bool"),
    ],
)
def test_a_bad_size_names_its_path(value: object, message: str) -> None:
    assert _only_problem({"server": {"max_request_bytes": value}}) == f"server.max_request_bytes: {message}"


@pytest.mark.parametrize(("value", "size"), [("32MiB", 32 * 1024**2), ("512KB", 512_000), (1048576, 1048576)])
def test_good_sizes_are_understood(value: object, size: int) -> None:
    assert _settings({"server": {"max_request_bytes": value}}).server.max_request_bytes == size


# --------------------------------------------------------------------------- wildcards


@pytest.mark.parametrize(
    ("alias", "target_model", "path", "hint"),
    [
        (
            "gpt*4",
            "x",
            "models.gpt*4",
            "an alias has no spaces, and '*' only as its last character (e.g. groq/*)",
        ),
        (
            "*gpt",
            "x",
            "models.*gpt",
            "an alias has no spaces, and '*' only as its last character (e.g. groq/*)",
        ),
        ("my model", "x", "models.my model", "an alias has no spaces, and '*' only as its last character"),
        (
            "gpt-4o",
            "gpt-*",
            "models.gpt-4o.model",
            "'*' in a target's model needs a wildcard alias such as 'groq/*'",
        ),
    ],
)
def test_a_misplaced_star_is_explained(alias: str, target_model: str, path: str, hint: str) -> None:
    doc = {"providers": {"openai": OPENAI}, "models": {alias: {"provider": "openai", "model": target_model}}}
    assert _only_problem(doc).startswith(f"{path}: {hint}")


def test_two_stars_in_a_target_model_are_explained() -> None:
    doc = {"providers": {"openai": OPENAI}, "models": {"openai/*": {"provider": "openai", "model": "*-*"}}}
    problem = _only_problem(doc)
    assert problem.startswith("models.openai/*.model: ")
    assert "needs a wildcard alias" not in problem


def test_wildcards_used_as_documented_are_accepted() -> None:
    doc = {
        "providers": {"openai": OPENAI},
        "models": {
            "*": {"provider": "openai", "model": "*"},
            "ft/*": {"provider": "openai", "model": "ft:gpt-4o-mini:acme:*"},
        },
    }
    models = _settings(doc).models
    assert models["*"].is_wildcard
    assert models["ft/*"].targets[0].model == "ft:gpt-4o-mini:acme:*"


# --------------------------------------------------------------------------- the file itself


@pytest.mark.parametrize(
    ("text", "where", "key"),
    [
        ("server:\n  port: 4000\n  host: 0.0.0.0\n  port: 4001\n", "line 4, column 3", "port"),
        (
            "providers:\n  openai: {type: openai, api_key: env:OPENAI_KEY}\nmodels:\n"
            "  gpt-4o: {provider: openai, model: gpt-4o}\n  gpt-4o: {provider: openai, model: gpt-4o-mini}\n",
            "line 5, column 3",
            "gpt-4o",
        ),
        ("models: {}\nserver: {}\nmodels: {}\n", "line 3, column 1", "models"),
    ],
    ids=["server-port", "model-alias", "section"],
)
def test_a_duplicate_key_is_refused_with_its_line(tmp_path: Path, text: str, where: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_file(tmp_path, text), ENV)
    assert caught.value.problems == [f"{where}: invalid YAML (duplicate key '{key}')"]
    assert caught.value.source == str(tmp_path / "turnout.yaml")


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        (
            "server:\n  port: 4000\nmodels:\n  a: b: c\n",
            "line 4, column 7",
            "mapping values are not allowed here",
        ),
        ("server:\n\tport: 4000\n", "line 2, column 1", "found character '\\t' that cannot start any token"),
        (
            "providers:\n  p:\n    type: openai\n   api_key: env:X\n",
            "line 4, column 4",
            "expected <block end>",
        ),
        ('server:\n  host: "127.0.0.1\n', "line 3, column 1", "found unexpected end of stream"),
    ],
)
def test_invalid_yaml_is_reported_with_line_and_column(
    tmp_path: Path, text: str, where: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_file(tmp_path, text), ENV)
    [reported] = caught.value.problems
    assert reported.startswith(f"{where}: invalid YAML ({problem}")


@pytest.mark.parametrize("text", ["- providers\n- models\n", "just a string\n", "42\n"])
def test_a_top_level_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_file(tmp_path, text), ENV)
    assert caught.value.problems == [
        "the top level must be a mapping of sections (server, providers, models ...)"
    ]


def test_an_empty_file_is_valid_but_warns_that_nothing_is_routed(tmp_path: Path) -> None:
    settings = load_settings(_file(tmp_path, ""), {})
    assert settings.models == {}
    assert any("no models are configured" in w for w in settings.warnings)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "nowhere.yaml", ENV)
    assert caught.value.problems == ["cannot read the file: No such file or directory"]
    assert str(tmp_path / "nowhere.yaml") in caught.value.render()


def test_every_problem_is_reported_at_once() -> None:
    doc = {
        "server": {"max_request_bytes": "lots"},
        "auth": {"master_key": SECRET},
        "providers": {
            "openai": {**OPENAI, "timeouts": {"total": "forever"}},
            "groq": {"type": "grok", "api_key": "env:GROQ_KEY"},
            "azure": {"type": "azure", "api_key": "env:MISSING_AZURE_KEY"},
        },
        "models": {
            "gpt-4o": {
                "targets": [{"provider": "openai", "model": "gpt-4o"}, {"provider": "azur", "model": "x"}]
            },
            "bad alias": {"provider": "openai", "model": "x"},
        },
    }
    with pytest.raises(ConfigError) as caught:
        build_settings(doc, ENV, source="turnout.yaml")
    paths = [p.split(": ")[0] for p in caught.value.problems]
    assert sorted(paths) == sorted(
        [
            "server.max_request_bytes",
            "auth.master_key",
            "providers.openai.timeouts.total",
            "providers.groq.type",
            "providers.azure.base_url",
            "models.gpt-4o.targets[1].provider",
            "models.bad alias",
        ]
    )
    assert caught.value.render().startswith("configuration turnout.yaml has 7 problem(s):\n  - ")
    assert SECRET not in caught.value.render()


def test_a_typo_in_a_section_does_not_hide_the_other_problems() -> None:
    doc = {
        "server": {"prot": 4000},
        "auth": {"master": "env:MASTER"},
        "providers": {"groq": {"type": "grok", "api_key": "env:GROQ_KEY"}},
    }
    paths = [p.split(": ")[0] for p in _problems(doc)]
    assert paths == ["server.prot", "auth.master", "providers.groq.type"]


# --------------------------------------------------------------------------- every failure has a path

NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=8)
SCALAR = (
    st.none()
    | st.booleans()
    | st.integers(-5, 70000)
    | st.floats(-10, 1e6)
    | st.sampled_from(
        [
            "",
            "5s",
            "250ms",
            "-1s",
            "soon",
            "32MiB",
            "lots",
            "openai",
            "azure",
            "fake",
            "*",
            "env:OPENAI_KEY",
            "env:NOT_SET",
            "http://127.0.0.1:9/v1",
            "ftp://x",
            "gpt-4o",
            "x*y",
        ]
    )
)
VALUE = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3),
    max_leaves=6,
)


def _entry(fields: list[str], secret_fields: tuple[str, ...] = ()) -> st.SearchStrategy[dict[str, Any]]:
    values = {f: (VALUE | st.just(SECRET)) if f in secret_fields else VALUE for f in fields}
    return st.fixed_dictionaries({}, optional={**values, "zz": VALUE})


PROVIDER = _entry(
    ["type", "base_url", "api_key", "api_version", "headers", "timeouts", "stream_usage", "fake"],
    ("api_key",),
) | st.builds(
    lambda kind, key: {"type": kind, "api_key": key},
    st.sampled_from([*KNOWN_TYPES, "opneai"]),
    st.sampled_from(["env:OPENAI_KEY", "env:NOT_SET", SECRET]),
)
MODEL = _entry(["provider", "model", "targets", "timeouts"]) | st.builds(
    lambda p, m: {"provider": p, "model": m},
    NAMES | st.just("openai"),
    st.sampled_from(["*", "x", "a*", "*-*"]),
)
DOCUMENT = st.fixed_dictionaries(
    {},
    optional={
        "server": _entry(
            ["host", "port", "max_request_bytes", "shutdown_grace", "drain_delay", "access_log"]
        ),
        "auth": _entry(["master_key", "key_hash_secret"], ("master_key", "key_hash_secret")),
        "defaults": st.fixed_dictionaries({}, optional={"timeouts": VALUE}),
        "providers": st.dictionaries(NAMES | st.just("openai"), PROVIDER | VALUE, max_size=3),
        "models": st.dictionaries(
            NAMES | st.sampled_from(["*", "openai/*", "a b"]), MODEL | VALUE, max_size=3
        ),
        "zz": VALUE,
    },
)


@settings(derandomize=True, database=None, max_examples=300, deadline=None)
@given(doc=DOCUMENT)
def test_every_problem_names_a_path_and_no_secret(doc: dict[str, Any]) -> None:
    try:
        build_settings(doc, ENV, source="turnout.yaml")
    except ConfigError as error:
        problems, rendered = error.problems, error.render()
    else:
        return
    assert problems
    for problem in problems:
        path, _, message = problem.partition(": ")
        assert message, problem
        assert re.split(r"[.\[]", path)[0] in doc, problem  # the path starts at a section written
    assert SECRET not in rendered


# --------------------------------------------------------------------------- zero-config from the environment

ZERO_CONFIG = [
    ({"OPENAI_API_KEY": SECRET}, "openai", "https://api.openai.com/v1"),
    (
        {"OPENAI_API_KEY": SECRET, "OPENAI_BASE_URL": "http://10.1.2.3:8000/v1/"},
        "openai",
        "http://10.1.2.3:8000/v1",
    ),
    (
        {"AZURE_OPENAI_API_KEY": SECRET, "AZURE_OPENAI_ENDPOINT": "https://east.openai.azure.com"},
        "azure",
        "https://east.openai.azure.com",
    ),
    ({"ANTHROPIC_API_KEY": SECRET}, "anthropic", "https://api.anthropic.com/v1"),
    ({"CO_API_KEY": SECRET}, "cohere", "https://api.cohere.com/v2"),
    ({"GEMINI_API_KEY": SECRET}, "gemini", "https://generativelanguage.googleapis.com/v1beta"),
    ({"MISTRAL_API_KEY": SECRET}, "mistral", "https://api.mistral.ai/v1"),
    ({"DEEPSEEK_API_KEY": SECRET}, "deepseek", "https://api.deepseek.com/v1"),
    ({"GROQ_API_KEY": SECRET}, "groq", "https://api.groq.com/openai/v1"),
    ({"TOGETHER_API_KEY": SECRET}, "together", "https://api.together.ai/v1"),
    ({"OPENROUTER_API_KEY": SECRET}, "openrouter", "https://openrouter.ai/api/v1"),
    ({"OLLAMA_BASE_URL": "http://gpu-box:11434/v1"}, "ollama", "http://gpu-box:11434/v1"),
    ({"VLLM_BASE_URL": "http://vllm.internal:8000/v1"}, "vllm", "http://vllm.internal:8000/v1"),
    ({"LLAMACPP_BASE_URL": "http://127.0.0.1:8081/v1"}, "llamacpp", "http://127.0.0.1:8081/v1"),
]


@pytest.mark.parametrize(
    ("environ", "provider", "base_url"), ZERO_CONFIG, ids=["+".join(z[0]) for z in ZERO_CONFIG]
)
def test_each_standard_variable_configures_its_provider(
    environ: dict[str, str], provider: str, base_url: str
) -> None:
    settings = load_settings(None, environ)
    assert settings.source == "environment"
    assert list(settings.providers) == [provider]
    p = settings.providers[provider]
    assert p.kind.name == provider
    assert p.base_url == base_url
    key_variable = next((k for k in environ if k.endswith("_API_KEY")), None)
    if key_variable is None:
        assert p.api_key is None
    else:
        assert p.api_key is not None
        assert p.api_key.source == f"env:{key_variable}"
        assert p.api_key.reveal() == SECRET
    assert set(settings.models) == {f"{provider}/*", "*"}  # the only provider also takes every name
    for alias in (f"{provider}/*", "*"):
        [target] = settings.models[alias].targets
        assert (target.provider, target.model) == (provider, "*")
    assert SECRET not in repr(settings)


def test_azure_takes_its_api_version_from_the_environment() -> None:
    environ = {"AZURE_OPENAI_API_KEY": SECRET, "AZURE_OPENAI_ENDPOINT": "https://east.openai.azure.com"}
    assert load_settings(None, environ).providers["azure"].api_version == "2024-10-21"
    environ["OPENAI_API_VERSION"] = "2025-01-01-preview"
    assert load_settings(None, environ).providers["azure"].api_version == "2025-01-01-preview"


@pytest.mark.parametrize(
    "environ",
    [
        {"AZURE_OPENAI_API_KEY": SECRET},
        {"AZURE_OPENAI_ENDPOINT": "https://east.openai.azure.com"},
        {"AZURE_OPENAI_ENDPOINT": "https://east.openai.azure.com", "OPENAI_API_VERSION": "2024-10-21"},
        {},
    ],
    ids=["azure-key-only", "azure-endpoint-only", "azure-endpoint-and-version", "nothing"],
)
def test_an_incomplete_environment_configures_nothing(environ: dict[str, str]) -> None:
    settings = load_settings(None, environ)
    assert settings.providers == {}
    assert settings.models == {}
    assert any("no models are configured" in w for w in settings.warnings)


def test_star_goes_to_openai_when_it_is_configured() -> None:
    environ = {"GROQ_API_KEY": "g", "OPENAI_API_KEY": "o", "OLLAMA_BASE_URL": "http://127.0.0.1:11434/v1"}
    settings = load_settings(None, environ)
    assert set(settings.providers) == {"openai", "groq", "ollama"}
    assert set(settings.models) == {"openai/*", "groq/*", "ollama/*", "*"}
    assert settings.models["*"].targets[0].provider == "openai"


def test_without_openai_star_needs_a_single_provider() -> None:
    settings = load_settings(None, {"GROQ_API_KEY": "g", "MISTRAL_API_KEY": "m"})
    assert set(settings.models) == {"groq/*", "mistral/*"}  # no guess between the two


def test_a_gateway_configured_only_by_the_environment_answers(upstream: Upstream, tmp_path: Path) -> None:
    environ = {
        "OPENAI_API_KEY": SECRET,
        "OPENAI_BASE_URL": upstream.base_url,
        "TURNOUT_MASTER_KEY": MASTER_KEY,
        "TURNOUT_DATA_DIR": str(tmp_path / "data"),
    }
    gateway = Gateway(load_settings(None, environ)).start()
    try:
        with openai.OpenAI(
            base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20
        ) as client:
            completion = client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "Hello!"}]
            )
            assert completion.choices[0].message.content == "Hello! How can I assist you today?"
            sent = upstream.requests[-1]
            assert sent.path == "/v1/chat/completions"
            assert sent.json["model"] == "gpt-4o"
            assert sent.headers["authorization"] == f"Bearer {SECRET}"

            client.chat.completions.create(
                model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
            )
            assert upstream.requests[-1].json["model"] == "gpt-4o-mini"
    finally:
        gateway.stop()


# --------------------------------------------------------------------------- `turnout config check`


def _turnout(*args: str, home: Path, **environ: str) -> subprocess.CompletedProcess[str]:
    """Run the installed `turnout` with nothing in its environment but what the test gives it."""
    env = {"HOME": str(home), "LC_ALL": "C.UTF-8", **environ}
    return subprocess.run([TURNOUT, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def _routing_table(stdout: str) -> dict[str, list[str]]:
    """Each alias's deployments (`name = provider/model`, or just `provider/model`), in order."""
    table = stdout.split("models (alias: strategy, deployments in order, fallback chains):\n", 1)[1]
    aliases: dict[str, list[str]] = {}
    for line in table.split("\n\n")[0].splitlines():
        alias = re.fullmatch(r"  (\S+)  strategy=.+", line)
        target = re.fullmatch(r"    - (\S+(?: = \S+)?)(?:  .+)?", line)
        if alias:
            current = aliases.setdefault(alias.group(1), [])
        elif target:
            current.append(target.group(1))
        else:
            assert re.fullmatch(r"    (fallbacks|context window|content policy) -> .+", line), line
    return aliases


def test_config_check_prints_the_routing_table(tmp_path: Path) -> None:
    path = _file(tmp_path, yaml.safe_dump(_full_config(tmp_path)))
    result = _turnout("config", "check", "--config", str(path), home=tmp_path, **ENV)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith(f"configuration: {path} (valid)\n")
    assert _routing_table(result.stdout) == {
        "gpt-4o": ["openai/gpt-4o-2024-08-06", "azure/gpt4o-east"],
        "openai/*": ["openai/*"],
    }
    assert "OpenAI at https://api.openai.com/v1 (env:OPENAI_KEY)" in result.stdout
    assert (
        "Azure OpenAI at https://east.openai.azure.com (env:AZURE_KEY, api-version 2024-06-01)"
        in result.stdout
    )
    assert "master key:    env:MASTER" in result.stdout
    assert "sk-live" not in result.stdout


def test_config_check_reports_every_problem_and_exits_2(tmp_path: Path) -> None:
    text = (
        "server:\n  max_request_bytes: lots\n"
        f"auth:\n  master_key: {SECRET}\n"
        "providers:\n  openai: {type: opneai, api_key: env:OPENAI_KEY}\n"
        "models:\n  gpt-4o: {provider: opnai, model: gpt-4o}\n"
    )
    path = _file(tmp_path, text)
    result = _turnout("config", "check", "--config", str(path), home=tmp_path, **ENV)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == f"configuration {path} has 4 problem(s):"
    assert [line.split(": ")[0] for line in lines[1:]] == [
        "  - server.max_request_bytes",
        "  - auth.master_key",
        "  - providers.openai.type",
        "  - models.gpt-4o.provider",
    ]
    assert "got 'lots'" in lines[1]
    assert "env:" in lines[2]
    assert f"(known: {', '.join(KNOWN_TYPES)})" in lines[3]
    assert "unknown provider 'opnai'; did you mean 'openai'?" in lines[4]
    assert SECRET not in result.stderr


def test_config_check_without_a_file_shows_the_environment_routing(tmp_path: Path) -> None:
    result = _turnout("config", "check", home=tmp_path, OPENAI_API_KEY=SECRET, GROQ_API_KEY=SECRET + "-groq")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("configuration: environment (valid)\n")
    assert _routing_table(result.stdout) == {
        "*": ["openai/*"],
        "groq/*": ["groq/*"],
        "openai/*": ["openai/*"],
    }
    assert "(env:OPENAI_API_KEY)" in result.stdout
    assert "(env:GROQ_API_KEY)" in result.stdout
    assert SECRET not in result.stdout + result.stderr


def test_config_check_reads_turnout_config_and_hides_the_database_password(tmp_path: Path) -> None:
    doc = {"providers": {"openai": OPENAI}, "storage": {"database_url": "env:DATABASE_URL"}}
    path = _file(tmp_path, yaml.safe_dump(doc))
    result = _turnout(
        "config",
        "check",
        home=tmp_path,
        TURNOUT_CONFIG=str(path),
        DATABASE_URL=f"postgresql+asyncpg://app:{DB_PASSWORD}@db.internal/turnout",
        **ENV,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"configuration: {path} (valid)\n")
    assert "database:      postgresql+asyncpg://app:***@db.internal/turnout" in result.stdout
    assert DB_PASSWORD not in result.stdout


def test_config_check_names_a_missing_file(tmp_path: Path) -> None:
    result = _turnout("config", "check", "--config", str(tmp_path / "nowhere.yaml"), home=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"configuration {tmp_path / 'nowhere.yaml'} has 1 problem(s):",
        "  - cannot read the file: No such file or directory",
    ]


def _priced(price: object) -> dict[str, Any]:
    return {
        "providers": {"openai": OPENAI},
        "models": {"m": {"provider": "openai", "model": "x", "price": price}},
    }


def test_a_configured_price_takes_the_table_s_shapes() -> None:
    settings = _settings(
        _priced(
            [
                {
                    "since": "2026-01-01",
                    "input": "2",
                    "output": "8",
                    "service_tiers": {"flex": {"input": "1"}},
                },
                {
                    "since": "2025-01-01",
                    "input": "3",
                    "cache_write_1h": "6",
                    "long_context": {"above": 1000, "input": "6", "output": "9"},
                },
            ]
        )
    )
    price = settings.models["m"].targets[0].price
    assert price is not None and price.version == "2026-01-01"
    assert dict(price.service_tiers)["flex"].input == 1
    earlier = price.earlier[0]
    assert earlier.version == "2025-01-01" and earlier.cache_write_1h == 6
    assert earlier.long_context is not None and earlier.long_context.above == 1000


@pytest.mark.parametrize(
    ("price", "problem"),
    [
        (
            [{"input": "1"}, {"since": "2026-01-01", "input": "2"}],
            "models.m.price[0]: each of several versions needs 'since' (YYYY-MM-DD)",
        ),
        (
            {"input": "1", "service_tiers": {"turbo": {"input": "2"}}},
            "models.m.price.service_tiers: unknown tier",
        ),
        (
            {"input": "1", "long_context": {"input": "2"}},
            "models.m.price.long_context.above: required",
        ),
        ({"input": "1", "since": "yesterday"}, "models.m.price.since: not a date"),
    ],
)
def test_a_malformed_configured_price_is_named_by_its_path(price: object, problem: str) -> None:
    assert problem in _only_problem(_priced(price))
