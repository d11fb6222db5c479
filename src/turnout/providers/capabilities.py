"""What a configured provider can carry, decided from its settings alone.

One function for both sides: the adapter takes its `capabilities` from here when it is built, and
`turnout config check` (and the start-up warnings) judge fallback chains with the same answer, so
what configuration promises and what routing does cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from turnout.config.settings import ProviderSettings
from turnout.domain.pricing import MEDIA_CAPABILITIES
from turnout.providers.base import Capabilities


def capabilities_for(settings: ProviderSettings) -> Capabilities:
    """The capabilities of a provider of `settings` (every wire format speaks OpenAI's, so its
    kind's documented gaps are all there is to it)."""
    kind = settings.kind
    return Capabilities(
        embeddings=kind.embeddings,
        json_schema=kind.json_schema,
        continuation=kind.continuation,
        native_wire=_native_wire(settings),
        legacy_completions=kind.legacy_completions,
        media_apis=kind.media_apis,
    )


def _native_wire(settings: ProviderSettings) -> str | None:
    """The inbound format it takes whole: its kind's, but /v1/responses only as configured
    (`responses_api`, whose default is the kind's)."""
    if settings.responses_api:
        return "responses"
    native = settings.kind.native_inbound
    return None if native == "responses" else native


def with_declared(
    caps: Capabilities, supports: tuple[tuple[str, bool], ...], listed: frozenset[str] = frozenset()
) -> Capabilities:
    """`caps` with what a model declares for itself (`supports:` on its target) put over them, and,
    on a provider serving OpenAI's image and audio endpoints, what the price table `listed` for
    the model: an image or audio model (dall-e-3, whisper-1, tts-1) does that and no chat."""
    media = listed & MEDIA_CAPABILITIES if caps.media_apis else frozenset()
    if not supports and not media:
        return caps
    declared: dict[str, Any] = dict.fromkeys(media, True)
    if media:
        declared["chat"] = False
    declared.update(supports)  # the names are checked by the config's schema
    return dataclasses.replace(caps, **declared)
