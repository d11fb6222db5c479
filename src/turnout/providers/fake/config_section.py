"""The `fake:` block of a `type: fake` provider: the defaults of its scripted answers (each
request's model name can override them). Its upstream runs inside turnout, on loopback."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from turnout.config.provider_kinds import ProviderKind
from turnout.config.provider_sections import ProviderSection, SectionInput, SectionResult
from turnout.config.settings import FakeSettings
from turnout.config.units import parse_delay

DurationValue = str | float


class FakeConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Defaults of a `type: fake` provider; each request's model name can override them."""

    latency: DurationValue | None = None
    chunks: int = 8
    chunk_gap: DurationValue | None = None
    port: int | None = None
    models: list[str] | None = None


def read_fake_section(given: SectionInput) -> SectionResult | None:
    path = f"{given.path}.fake"
    cfg = FakeConfig()
    if given.cfg.fake is not None:
        converted = given.convert(given.cfg.fake, FakeConfig, path)
        if converted is None:
            return None
        cfg = converted
    if cfg.chunks < 1:
        given.problem(f"{path}.chunks", f"must be at least 1, got {cfg.chunks}")
    fake = FakeSettings(
        latency=_delay(cfg.latency, f"{path}.latency", given.problem),
        chunks=max(1, cfg.chunks),
        chunk_gap=_delay(cfg.chunk_gap, f"{path}.chunk_gap", given.problem),
        port=cfg.port,
        models=tuple(cfg.models or ()),
    )
    # the adapter is pointed at the local server once it listens (ProviderSpec.local_upstream)
    return SectionResult(
        base_url=given.base_url or "http://127.0.0.1",
        api_key=given.cfg.api_key,
        settings={"fake": fake},
        proxied=False,
    )


def _delay(value: DurationValue | None, path: str, problem: Callable[[str, str], None]) -> float:
    if value is None:
        return 0.0
    try:
        return parse_delay(value)
    except ValueError as error:
        problem(path, str(error))
        return 0.0


def _is_fake(kind: ProviderKind) -> bool:
    return kind.wire == "fake"


FAKE_SECTION = ProviderSection(
    key="fake",
    refusal="only fake providers take this section",
    applies=_is_fake,
    read=read_fake_section,
)
