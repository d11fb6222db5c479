"""Request-body fields that would choose the upstream's address, credentials or headers: refused
with a 400 naming the field, on every inbound API.

turnout alone decides where a request goes and with which credentials; a client never does. Other
gateways read such fields from the body (LiteLLM's `api_base`, `api_key`, `aws_*`, `vertex_*`,
`extra_headers`, `user_config`...), which let a caller send the operator's provider key to a host
of its choosing or reach internal addresses (server-side request forgery). turnout does not read
them, but it forwards unknown fields to OpenAI-compatible upstreams, and such an upstream may itself
be one of those gateways: so they are refused at the edge, in any case, and the families `aws_*`,
`vertex_*` and `azure_*` whole. Only top-level keys are looked at (where SDKs put `extra_body`); the
fields providers document for their own models (`top_k`, `safe_prompt`, `reasoning_effort`,
OpenRouter's `provider`...) are not in this list and pass."""

from __future__ import annotations

from typing import Any

from turnout.domain.errors import InvalidRequest

STEERING_FIELDS = frozenset(
    {
        # where the request goes
        "api_base",
        "base_url",
        "api_url",
        "endpoint_url",
        "api_version",
        "api_type",
        "custom_llm_provider",
        "azure_endpoint",
        "azure_deployment",
        "aws_region_name",
        "aws_bedrock_runtime_endpoint",
        "aws_sts_endpoint",
        "vertex_project",
        "vertex_location",
        "vertex_ai_project",
        "vertex_ai_location",
        "proxy",
        "proxies",
        # with which credentials
        "api_key",
        "organization",
        "azure_ad_token",
        "azure_ad_token_provider",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "aws_profile_name",
        "aws_role_name",
        "aws_session_name",
        "aws_web_identity_token",
        "vertex_credentials",
        "vertex_ai_credentials",
        "tenant_id",
        "client_id",
        "client_secret",
        # with which headers
        "headers",
        "extra_headers",
        # a whole deployment's settings (LiteLLM's per-request model list)
        "user_config",
        "litellm_params",
    }
)
# whole families of a cloud's settings, whatever follows
STEERING_PREFIXES = ("aws_", "vertex_", "azure_")

# Names found not to steer (most bodies repeat a handful): a body made of them only is passed by
# one set test. Bounded, as clients choose the names.
_SAFE: set[str] = set()
SAFE_NAMES_KEPT = 4096


def steers(name: str) -> bool:
    """Would a top-level field of this name steer the upstream (any case)?"""
    lowered = name.lower()
    return lowered in STEERING_FIELDS or lowered.startswith(STEERING_PREFIXES)


def refuse_steering_fields(body: Any) -> None:
    """400 if the body's top level holds a field that would steer the upstream (one set test when
    every name is one seen before)."""
    if type(body) is dict and not _SAFE.issuperset(body):
        _check_names(body)


def _check_names(body: dict[str, Any]) -> None:
    for field in body:
        if field in _SAFE:
            continue
        if not steers(field):
            if len(_SAFE) < SAFE_NAMES_KEPT:
                _SAFE.add(field)
            continue
        raise InvalidRequest(
            f"'{field}' cannot be set in a request: turnout chooses the upstream, its address and its "
            "credentials.",
            param=field,
            code="forbidden_parameter",
        )
