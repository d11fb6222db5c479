"""The one policy for request parameters a provider lacks: refused with a 400 naming them, or
dropped when the provider is configured with `unsupported_params: drop`. A parameter set to a value
the provider behaves as anyway (`n: 1`), or one that only labels the request, is dropped silently."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from turnout.config.provider_kinds import ANY_VALUE
from turnout.config.settings import ProviderSettings
from turnout.domain.errors import UnsupportedFeature


def rename(body: dict[str, Any], renames: Mapping[str, object]) -> None:
    """Give parameters the names the provider uses for them (in place)."""
    for old, new in renames.items():
        if old in body:
            value = body.pop(old)
            body.setdefault(str(new), value)


def apply_parameter_policy(
    body: dict[str, Any], provider: ProviderSettings, policy: Literal["reject", "drop"] | None = None
) -> None:
    """Rename what the provider names differently, then drop or refuse what it lacks (in place),
    as `policy` says (a model's own), else as the provider is configured."""
    kind = provider.kind
    drop = (policy or provider.unsupported_params) == "drop"
    rename(body, kind.renamed_params)
    for name, harmless in kind.unsupported_params.items():
        if name not in body:
            continue
        value = body[name]
        if value is None or ANY_VALUE in harmless or value in harmless or drop:
            del body[name]
            continue
        raise UnsupportedFeature(
            f"The provider '{provider.name}' ({kind.title}) does not support '{name}'"
            f"{'' if not harmless else f' other than {harmless[0]!r}'}. Remove it from the request, "
            f"or configure unsupported_params: drop for this model or providers.{provider.name}.",
            param=name,
        )
