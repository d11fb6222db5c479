"""Validate what turnout emits against the published OpenAI and Anthropic specs (tests/fixtures/specs)."""

from __future__ import annotations

import functools
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import yaml
from openapi_schema_validator import OAS31Validator

# The published specs are vendored in the repository (their sources and licences in its README); set
# TURNOUT_SPECS_DIR to validate against another copy.
VENDORED = Path(__file__).resolve().parents[1] / "fixtures" / "specs"
SPECS = Path(os.environ.get("TURNOUT_SPECS_DIR") or VENDORED)
OPENAI_SPEC = SPECS / "openai-openapi.yaml"
if not OPENAI_SPEC.is_file():
    raise RuntimeError(f"OpenAI's OpenAPI spec is not at {OPENAI_SPEC}; set TURNOUT_SPECS_DIR to its folder")


@functools.cache
def openai_components() -> dict[str, Any]:
    """The spec's components (parsed once per machine: the YAML is 3 MB)."""
    cache = Path(tempfile.gettempdir()) / f"turnout-openai-spec-v2-{OPENAI_SPEC.stat().st_mtime_ns}.pickle"
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    spec = yaml.load(OPENAI_SPEC.read_text(), Loader=yaml.CSafeLoader)
    components = {"components": _nullable_to_31(spec["components"])}
    cache.write_bytes(pickle.dumps(components))
    return components


def _nullable_to_31(node: Any) -> Any:
    """The spec is OpenAPI 3.1 but keeps some 3.0 `nullable: true`; honour them as 3.1 would say it."""
    if isinstance(node, list):
        return [_nullable_to_31(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {k: _nullable_to_31(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") is True:
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


@functools.cache
def _validator(schema_name: str) -> OAS31Validator:
    schema = {"$ref": f"#/components/schemas/{schema_name}", **openai_components()}
    return OAS31Validator(schema)


def validate_openai(schema_name: str, document: Any) -> None:
    """Raise if `document` is not a valid `schema_name` (e.g. CreateChatCompletionResponse)."""
    errors = sorted(_validator(schema_name).iter_errors(document), key=lambda e: list(e.path))
    if errors:
        details = "\n".join(
            f"  at {'/'.join(map(str, e.path)) or '(root)'}: {e.message[:300]}" for e in errors[:5]
        )
        raise AssertionError(f"not a valid {schema_name}:\n{details}")


def is_valid_openai(schema_name: str, document: Any) -> bool:
    return _validator(schema_name).is_valid(document)


ANTHROPIC_SPEC = SPECS / "anthropic-openapi.json"


@functools.cache
def _anthropic_validator(schema_name: str) -> OAS31Validator:
    spec = json.loads(ANTHROPIC_SPEC.read_text())
    return OAS31Validator({"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]})


def validate_anthropic(schema_name: str, document: Any) -> None:
    """Raise if `document` is not a valid `schema_name` of Anthropic's spec (e.g. Message)."""
    errors = sorted(_anthropic_validator(schema_name).iter_errors(document), key=lambda e: list(e.path))
    if errors:
        details = "\n".join(
            f"  at {'/'.join(map(str, e.path)) or '(root)'}: {e.message[:300]}" for e in errors[:5]
        )
        raise AssertionError(f"not a valid Anthropic {schema_name}:\n{details}")
