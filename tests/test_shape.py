"""The tooling that keeps the code's shape stays switched on: ruff refuses a function above
complexity 15, and import-linter's layers contract places every top-level package of turnout (a new
package cannot slip in outside it) while another contract refuses import cycles inside any package.
These read the configuration; `ruff check` and `lint-imports` do the checking itself."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "turnout"
MAX_COMPLEXITY = 15

# Files whose functions above 15 are tolerated. Empty since issue 12's reshaping: a file added
# here is a cap switched off.
COMPLEXITY_TOLERATED_WHILE_RESHAPED: set[str] = set()


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _top_level_modules() -> set[str]:
    """What `import turnout.<name>` can name: each subpackage and each module beside __init__.py."""
    names = set()
    for entry in PACKAGE.iterdir():
        if entry.is_dir() and (entry / "__init__.py").is_file():
            names.add(entry.name)
        elif entry.suffix == ".py" and entry.name != "__init__.py":
            names.add(entry.stem)
    return names


def _layer_names(layer: str) -> set[str]:
    """`a | b` (independent siblings) or `a : b`; `(a)` marks an optional layer."""
    return {name.strip().strip("()") for name in re.split(r"[|:]", layer)}


def _complexity_codes_in(codes: list[str]) -> set[str]:
    return {code for code in codes if code in ("ALL", "C", "C9", "C90", "C901")}


def test_ruff_selects_the_complexity_rule_and_caps_it_at_15() -> None:
    lint = _pyproject()["tool"]["ruff"]["lint"]
    assert _complexity_codes_in(lint["select"] + lint.get("extend-select", []))
    assert not _complexity_codes_in(lint.get("ignore", []) + lint.get("extend-ignore", []))
    assert lint.get("mccabe", {}).get("max-complexity", 10) <= MAX_COMPLEXITY


def test_no_new_file_is_excused_from_the_complexity_cap() -> None:
    per_file = _pyproject()["tool"]["ruff"]["lint"].get("per-file-ignores", {})
    excused = {pattern for pattern, codes in per_file.items() if _complexity_codes_in(codes)}
    assert excused <= COMPLEXITY_TOLERATED_WHILE_RESHAPED


def test_the_layers_contract_places_every_top_level_package() -> None:
    contracts = _pyproject()["tool"]["importlinter"]["contracts"]
    layered = [c for c in contracts if c["type"] == "layers" and c.get("containers") == ["turnout"]]
    assert len(layered) == 1, "one layers contract over the whole of turnout"
    contract = layered[0]
    named = [name for layer in contract["layers"] for name in _layer_names(layer)]
    assert len(named) == len(set(named)), "a package sits in one layer"
    assert set(named) == _top_level_modules()
    assert contract.get("exhaustive") is True  # lint-imports itself refuses an unplaced package


def test_no_package_may_hold_an_import_cycle() -> None:
    contracts = _pyproject()["tool"]["importlinter"]["contracts"]
    acyclic = [c for c in contracts if c["type"] == "acyclic_siblings"]
    assert any(c["ancestors"] == ["turnout"] and c.get("depth", 10) >= 10 for c in acyclic)
