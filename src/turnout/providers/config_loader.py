"""Loading a configuration with the providers turnout has: `turnout.config.loader` given
`PROVIDERS`. The loader sits below the providers (their adapters read its settings), so it cannot
import their records itself; this is where the two meet, for the CLI and the tests."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from turnout.config import loader
from turnout.config.settings import Settings
from turnout.providers.registry import PROVIDERS


def build_settings(data: object, environ: Mapping[str, str], *, source: str) -> Settings:
    """`data` (a parsed config document) checked and resolved; ConfigError naming every fault."""
    return loader.build_settings(data, environ, source=source, providers=PROVIDERS)


def load_settings(path: Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read `path` (or, without one, configure providers from the standard environment variables)."""
    return loader.load_settings(path, environ, providers=PROVIDERS)
