"""The configuration reference keeps up with the schema: every `storage` key a config may set has
a row in docs/configuration.md's `storage` table, and every row there is a key."""

from __future__ import annotations

import re
from pathlib import Path

from turnout.config.schema import OverloadConfig, StorageConfig

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


def test_every_overload_key_is_documented_and_nothing_else_is() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    section = text[text.index("### `server.overload`") :]
    table = section[section.index("|---") :]
    table = table[: table.index("\n\n")]
    documented = {m.group(1) for m in re.finditer(r"^\| `([a-z_]+)` \|", table, re.MULTILINE)}
    assert documented == set(OverloadConfig.__struct_fields__)
