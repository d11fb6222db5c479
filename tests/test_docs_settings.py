"""The configuration reference keeps up with the schema: every `storage` key a config may set has
a row in docs/configuration.md's `storage` table, and every row there is a key; every key of
every section, every provider type, every environment variable turnout reads and every command
of the CLI (with its options, in docs/cli.md) is documented."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import click
import msgspec

from turnout.cli.main import main as cli_main
from turnout.config.schema import SECTIONS, ModelConfig, ProviderConfig, StorageConfig
from turnout.providers.bedrock.config_section import AwsConfig
from turnout.providers.gemini.vertex_section import VertexConfig
from turnout.providers.registry import KINDS

ROOT = Path(__file__).resolve().parent.parent


def test_every_storage_key_is_documented_and_nothing_else_is() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    section = text[text.index("## `storage`") :]
    table = section[section.index("|---") :]
    table = table[: table.index("\n\n")]
    documented = {m.group(1) for m in re.finditer(r"^\| `([a-z_]+)` \|", table, re.MULTILINE)}
    assert documented == set(StorageConfig.__struct_fields__)


def test_the_scaling_guide_is_linked_from_the_reference() -> None:
    assert (ROOT / "docs" / "scaling.md").is_file()
    assert "(scaling.md)" in (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- the whole schema

DOCS = ("docs/configuration.md", "docs/routing.md", "docs/scaling.md", "README.md")
_ENV_LOOKUP = re.compile(r"""environ(?:\.get\(|\[)\s*["']([A-Z][A-Z0-9_]+)["']""")
_ENV_CONSTANT = re.compile(r"""^[A-Z_]*ENV[A-Z_]* = ["']([A-Z][A-Z0-9_]+)["']""", re.MULTILINE)
# Variables of the platform rather than of turnout: where data goes by default, proxies (documented
# as the standard variables they are, by their family names).
_PLATFORM = {"XDG_DATA_HOME", "HOME"}


def _documented() -> str:
    return "\n".join((ROOT / name).read_text(encoding="utf-8") for name in DOCS)


def _struct_fields(struct: type, prefix: str, seen: set[type]) -> list[str]:
    if struct in seen:
        return []
    seen.add(struct)
    found = []
    for field in msgspec.structs.fields(struct):
        found.append(f"{prefix}.{field.encode_name}")
        for inner in _structs_in(field.type):
            found += _struct_fields(inner, f"{prefix}.{field.encode_name}", seen)
    return found


def _structs_in(typ: object) -> list[type]:
    if isinstance(typ, type) and issubclass(typ, msgspec.Struct):
        return [typ]
    return [s for arg in typing.get_args(typ) for s in _structs_in(arg)]


def _every_setting() -> list[str]:
    seen: set[type] = set()
    paths = []
    for name, section in SECTIONS.items():
        paths += _struct_fields(section, name, seen) if isinstance(section, type) else []
    paths += _struct_fields(ProviderConfig, "providers.<name>", seen)
    paths += _struct_fields(ModelConfig, "models.<alias>", seen)
    paths += _struct_fields(AwsConfig, "providers.<name>.aws", seen)
    paths += _struct_fields(VertexConfig, "providers.<name>.vertex", seen)
    return paths


def _names_setting(text: str, key: str) -> bool:
    """`key` is named in prose (in backticks) or written in an example (`key:`, `{key: ...}`)."""
    named = rf"`(?:[\w<>*-]+\.)*{re.escape(key)}(?:\.[\w<>*-]+)*`"
    written = rf"(^|[\s{{,]){re.escape(key)}:"
    return re.search(named, text) is not None or re.search(written, text, re.MULTILINE) is not None


def test_every_setting_of_the_schema_is_documented() -> None:
    text = _documented()
    missing = [path for path in _every_setting() if not _names_setting(text, path.rsplit(".", 1)[1])]
    assert missing == [], f"settings missing from {', '.join(DOCS)}: {missing}"


def test_every_provider_type_is_documented() -> None:
    text = _documented()
    missing = [name for name, kind in KINDS.items() if kind.wire != "fake" and f"`{name}`" not in text]
    assert missing == []


def test_every_environment_variable_turnout_reads_is_documented() -> None:
    read: set[str] = set()
    for source in (ROOT / "src" / "turnout").rglob("*.py"):
        code = source.read_text(encoding="utf-8")
        read |= set(_ENV_LOOKUP.findall(code)) | set(_ENV_CONSTANT.findall(code))
    for kind in KINDS.values():
        read |= {v for v in (kind.api_key_env, kind.base_url_env) if v and kind.wire != "fake"}
    text = _documented()
    missing = sorted(name for name in read - _PLATFORM if name not in text)
    assert missing == [], f"environment variables missing from {', '.join(DOCS)}: {missing}"


# --------------------------------------------------------------------------- the command line

_COMMON_OPTIONS = {"url", "key", "json", "config", "config_path"}  # described once, atop docs/cli.md


def _commands(command: click.Command, path: list[str]) -> list[tuple[str, click.Command]]:
    if isinstance(command, click.Group):
        return [found for name, sub in command.commands.items() for found in _commands(sub, [*path, name])]
    return [(" ".join(path), command)]


def test_every_cli_command_and_option_is_documented_and_nothing_else_is() -> None:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"^## `(turnout [^`]+)`\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL))
    commands = dict(_commands(cli_main, ["turnout"]))
    assert sorted(sections) == sorted(commands)
    undocumented = [
        f"{name} {option.opts[0]}"
        for name, command in commands.items()
        for option in command.params
        if isinstance(option, click.Option)
        and option.name not in _COMMON_OPTIONS
        and f"`{option.opts[0]}`" not in sections[name]
    ]
    assert undocumented == []
