"""A configuration's faults are all named in one round, whatever hides behind what: an unknown
section, several typos in one block, a misspelt choice (with the choice probably meant), and values
YAML reads as something other than the string that was written (dates, octal-looking numbers,
yes/no), each with the hint to quote it. Driven through `turnout config check`, as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from turnout.config.loader import ConfigError
from turnout.providers.config_loader import build_settings

TURNOUT = str(Path(sys.executable).with_name("turnout"))
ENV = {"AZURE_KEY": "azure-key-for-tests", "OPENAI_KEY": "openai-key-for-tests"}

# Five faults, written the way they are met in practice; before, each hid the next.
TYPOS = """\
providrs:
  x: 1
providers:
  azure:
    type: azure
    base_url: https://east.openai.azure.com
    api_key: env:AZURE_KEY
    api_version: 2024-10-21
    timeouts: {conect: 5s, frist_byte: 30s}
models:
  gpt:
    strategy: weigthed
    targets:
      - {provider: azure, model: gpt-4o}
spend:
  enabled: no
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        build_settings(yaml.safe_load(text), ENV, source="turnout.yaml")
    return caught.value.problems


def test_every_fault_of_a_file_is_named_in_one_round(tmp_path: Path) -> None:
    path = tmp_path / "turnout.yaml"
    path.write_text(TYPOS)
    run = subprocess.run(
        [TURNOUT, "config", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **ENV},
        check=False,
    )
    assert run.returncode != 0
    shown = run.stdout + run.stderr
    assert "has 6 problem(s)" in shown, shown
    for line in (
        "providrs: unknown key (did you mean 'providers'?)",
        "providers.azure.api_version: expected string | null, got date",
        "providers.azure.timeouts.conect: unknown key (did you mean 'connect'?)",
        "providers.azure.timeouts.frist_byte: unknown key (did you mean 'first_byte'?)",
        "models.gpt.strategy: unknown choice 'weigthed'; did you mean 'weighted'?",
        "spend.enabled: unknown key (known keys: unknown_prices)",
    ):
        assert line in shown, (line, shown)


def test_an_unknown_section_does_not_hide_the_faults_of_the_others() -> None:
    problems = _problems("sevrer: {port: 1}\nserver: {port: many}\n")
    assert problems == [
        "sevrer: unknown key (did you mean 'server'?)",
        "server.port: expected int, got str",
    ]


def test_several_faults_in_one_target_are_all_named() -> None:
    text = """\
providers: {openai: {type: openai, api_key: env:OPENAI_KEY}}
models:
  gpt:
    targets:
      - {provider: openai, modle: gpt-4o, wieght: 2, priority: first}
"""
    assert sorted(_problems(text)) == [
        "models.gpt.targets[0].model: required",
        "models.gpt.targets[0].modle: unknown key (did you mean 'model'?)",
        "models.gpt.targets[0].priority: expected int | null, got str",
        "models.gpt.targets[0].wieght: unknown key (did you mean 'weight'?)",
    ]


def test_a_misspelt_choice_gets_the_choice_meant_and_the_list() -> None:
    (problem,) = _problems("routing: {strategy: lowest_latncy}\n")
    assert problem == (
        "routing.strategy: unknown choice 'lowest_latncy'; did you mean 'lowest_latency'? "
        "(one of: priority, weighted, least_busy, lowest_latency, lowest_cost)"
    )


def test_a_choice_nothing_resembles_gets_the_list_alone() -> None:
    (problem,) = _problems("spend: {unknown_prices: whatever}\n")
    assert problem == "spend.unknown_prices: unknown choice 'whatever' (one of: reject, record)"


@pytest.mark.parametrize(
    ("written", "hint"),
    [
        ("2024-10-21", 'YAML reads an unquoted 2024-10-21 as a date: write it in quotes, "2024-10-21"'),
        ("2024-10-21T10:00:00", "as a timestamp: write it in quotes"),
        ("010", "YAML read a number, 8: a leading 0 makes it octal"),
        ("0x1F", "YAML read a number, 31"),
        ("no", "YAML reads unquoted yes/no/on/off/true/false as booleans"),
        ("2024.10", "YAML read a number, 2024.1: quote the value"),
    ],
)
def test_a_value_yaml_read_as_another_type_where_a_string_is_meant_gets_a_hint_to_quote_it(
    written: str, hint: str
) -> None:
    text = (
        "providers:\n  azure:\n    type: azure\n    base_url: https://east.openai.azure.com\n"
        f"    api_key: env:AZURE_KEY\n    api_version: {written}\n"
    )
    (problem,) = _problems(text)
    assert problem.startswith("providers.azure.api_version: expected string | null, got "), problem
    assert hint in problem, problem
    quoted = text.replace(f"api_version: {written}", f'api_version: "{written}"')
    settings = build_settings(yaml.safe_load(quoted), ENV, source="turnout.yaml")
    assert settings.providers["azure"].api_version == written


def test_a_number_or_switch_where_numbers_are_meant_gets_no_quoting_hint() -> None:
    (problem,) = _problems("server: {max_request_bytes: false}\n")
    assert problem == "server.max_request_bytes: expected int | string, got bool"
