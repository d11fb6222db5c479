"""What the repository itself promises: its licence file says what pyproject.toml declares."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LICENCE_TITLES = {"Apache-2.0": ("Apache License", "Version 2.0, January 2004")}


def test_the_licence_file_is_the_declared_licence() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    text = (ROOT / "LICENSE").read_text()
    assert declared in LICENCE_TITLES, f"no known text for {declared}"
    for line in LICENCE_TITLES[declared]:
        assert line in text
    assert "END OF TERMS AND CONDITIONS" in text  # the whole licence, not its name
