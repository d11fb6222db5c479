"""Secret references (`env:NAME`, `file:PATH`) and the `Secret` value that never shows itself."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

REFERENCE_HINT = "write it as a reference, e.g. env:OPENAI_API_KEY or file:/run/secrets/openai"


class Secret:
    """A resolved secret. `repr`/`str` never reveal it; `reveal()` is the one way out."""

    __slots__ = ("_source", "_value")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self._source = source

    def reveal(self) -> str:
        return self._value

    @property
    def source(self) -> str:
        """Where it came from (`env:NAME`), safe to print."""
        return self._source

    def __repr__(self) -> str:
        return f"Secret({self._source})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._source)


class SecretError(ValueError):
    """A reference that is malformed or cannot be resolved."""


def is_reference(value: str) -> bool:
    return value.startswith(("env:", "file:"))


def resolve(reference: str, environ: Mapping[str, str] | None = None) -> Secret:
    """Resolve `env:NAME` or `file:PATH`. Literal values are refused: secrets never live in config."""
    env = os.environ if environ is None else environ
    if reference.startswith("env:"):
        name = reference[4:]
        if not name:
            raise SecretError("empty environment variable name in 'env:'")
        value = env.get(name)
        if value is None or value == "":
            raise SecretError(f"environment variable {name} is not set")
        return Secret(value, reference)
    if reference.startswith("file:"):
        path = Path(reference[5:]).expanduser()
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise SecretError(f"cannot read secret file {path}: {error.strerror}") from None
        if not value:
            raise SecretError(f"secret file {path} is empty")
        return Secret(value, reference)
    raise SecretError(f"secrets must not be written into the configuration; {REFERENCE_HINT}")
