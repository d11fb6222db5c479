"""Build the upstream request body from the client's: the one serialisation on the hot path.

The client's body is copied shallowly, its `model` set to the target's, usage asked for in
streams (so every stream can be accounted for), and the provider's documented gaps applied:
parameters it names differently are renamed, ones it lacks are refused with a 400 naming them
(or dropped, when the provider is configured with `unsupported_params: drop`). A parameter set
to the value the provider behaves as anyway (`n: 1`) is dropped silently.
"""

from __future__ import annotations

from typing import Any, Literal

from turnout.config.settings import ProviderSettings
from turnout.providers.parameters import apply_parameter_policy, rename
from turnout.providers.request_json import request_json


def chat_body(
    body: dict[str, Any],
    model: str,
    provider: ProviderSettings,
    *,
    stream: bool,
    policy: Literal["reject", "drop"] | None = None,
) -> bytes:
    out = dict(body)
    out["model"] = model
    if stream:
        options = out.get("stream_options")
        if provider.stream_usage:
            if not (isinstance(options, dict) and options.get("include_usage")):
                out["stream_options"] = (
                    {**options, "include_usage": True}
                    if isinstance(options, dict)
                    else {"include_usage": True}
                )
        elif options is not None:
            del out["stream_options"]
    apply_parameter_policy(out, provider, policy)
    return request_json(out)


def embeddings_body(
    body: dict[str, Any], model: str, provider: ProviderSettings, *, encoding_format: str | None
) -> bytes:
    out = dict(body)
    out["model"] = model
    if encoding_format is not None:
        out["encoding_format"] = encoding_format
    rename(out, provider.kind.renamed_embedding_params)
    return request_json(out)
