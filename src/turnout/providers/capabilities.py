"""What a configured provider can carry, decided from its settings alone.

One function for both sides: the adapter takes its `capabilities` from here when it is built, and
`turnout config check` (and the start-up warnings) judge fallback chains with the same answer, so
what configuration promises and what routing does cannot drift apart.
"""

from __future__ import annotations

from turnout.config.settings import ProviderSettings
from turnout.providers.base import Capabilities


def capabilities_for(settings: ProviderSettings) -> Capabilities:
    """The capabilities of a provider of `settings` (every wire format speaks OpenAI's, so its
    kind's documented gaps are all there is to it)."""
    kind = settings.kind
    return Capabilities(
        embeddings=kind.embeddings,
        json_schema=kind.json_schema,
        continuation=kind.continuation,
        native_wire="anthropic" if kind.wire == "anthropic" else None,
    )
