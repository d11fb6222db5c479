"""The provider list, the provider folders and the docs agree: every wire-format folder under
`providers/` exports one record and is registered; every kind a config may name is documented (the
`type` list in docs/configuration.md and the README's provider table) and every documented kind
exists; every block a provider owns is documented as a key of `providers.<name>`."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from turnout.config.schema import ProviderConfig
from turnout.providers.registry import KINDS, PROVIDERS
from turnout.providers.spec import ProviderSpec

ROOT = Path(__file__).resolve().parent.parent
PROVIDERS_DIR = ROOT / "src" / "turnout" / "providers"
# Folders under providers/ that are shared by every wire format rather than being one.
SHARED_FOLDERS = {"http"}


def _folders() -> list[str]:
    return sorted(p.name for p in PROVIDERS_DIR.iterdir() if p.is_dir() and (p / "__init__.py").is_file())


def _first_column(text: str, heading: str) -> set[str]:
    """The `code` names in the first column of the first table under `heading` (its header row
    left out)."""
    rest = text[text.index(heading) + len(heading) :]
    table = rest[rest.index("|---") :]
    table = table[: table.index("\n\n")] if "\n\n" in table else table
    return set(re.findall(r"^\| `([a-z_]+)` \|", table, re.MULTILINE))


@pytest.mark.parametrize("folder", sorted(set(_folders()) - SHARED_FOLDERS))
def test_every_wire_format_folder_exports_its_record_and_is_registered(folder: str) -> None:
    module = importlib.import_module(f"turnout.providers.{folder}")
    record = getattr(module, "PROVIDER", None)
    assert isinstance(record, ProviderSpec), f"providers/{folder} exports no PROVIDER record"
    assert record in PROVIDERS, f"providers/{folder}'s record is missing from providers/registry.py"


def test_every_registered_record_has_its_own_folder() -> None:
    wire_folders = set(_folders()) - SHARED_FOLDERS
    assert len(PROVIDERS) == len(wire_folders)
    assert len({record.wire for record in PROVIDERS}) == len(PROVIDERS), "a wire format registered twice"
    for folder in SHARED_FOLDERS:
        assert not hasattr(importlib.import_module(f"turnout.providers.{folder}"), "PROVIDER")


def test_every_kind_is_in_the_configuration_reference_and_nothing_else_is() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| `type` | required |"))
    documented = set(re.findall(r"`([a-z_]+)`", row.split("|")[3]))
    assert documented == set(KINDS), (
        f"undocumented: {sorted(set(KINDS) - documented)}; documented but unknown: "
        f"{sorted(documented - set(KINDS))}"
    )


def test_every_kind_has_a_row_in_the_readme_provider_table_and_every_row_is_a_kind() -> None:
    rows = _first_column((ROOT / "README.md").read_text(encoding="utf-8"), "### Providers")
    assert rows == set(KINDS), (
        f"no row: {sorted(set(KINDS) - rows)}; a row for no kind: {sorted(rows - set(KINDS))}"
    )


def test_every_block_a_provider_owns_is_a_documented_provider_key() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    keys = _first_column(text, "## `providers.<name>`")
    owned = {section.key for record in PROVIDERS for section in record.sections}
    assert owned, "no provider owns a block: the test would prove nothing"
    assert owned <= keys, f"undocumented blocks: {sorted(owned - keys)}"
    # and each is a key the strict schema lets through (unknown keys are refused before any
    # provider sees its entry)
    assert owned <= set(ProviderConfig.__struct_fields__)
