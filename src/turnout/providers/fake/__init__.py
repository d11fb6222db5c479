"""The `fake` provider: a real local upstream (HTTP on loopback) scripted by the model name. It
answers in OpenAI's format, so its providers are served by the OpenAI-format adapter pointed at
the local server (named, not imported: wire formats never import each other)."""

from __future__ import annotations

from turnout.config.provider_kinds import ProviderKind
from turnout.config.settings import ProviderSettings
from turnout.providers.fake.config_section import FAKE_SECTION
from turnout.providers.fake.server import FakeUpstream
from turnout.providers.spec import LocalUpstream, ProviderSpec


def _local_upstream(settings: ProviderSettings) -> LocalUpstream:
    assert settings.fake is not None  # the `fake:` section always fills it for this kind
    return FakeUpstream(settings.fake, settings.name)


PROVIDER = ProviderSpec(
    wire="fake",
    kinds=(
        ProviderKind(
            "fake",
            "turnout's fake upstream",
            "fake",
            key_required=False,
            auth="none",
            continuation="prefix",
            price_namespace="fake",
            media_apis=True,  # images and audio, for the models that declare them (`supports:`)
        ),
    ),
    adapter="openai",
    sections=(FAKE_SECTION,),
    local_upstream=_local_upstream,
)
