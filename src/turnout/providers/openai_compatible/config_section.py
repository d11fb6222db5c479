"""Azure OpenAI's `api_version`: the only block of a provider's entry that an OpenAI-format kind
alone takes (Azure addresses deployments by path and dates its API by a query parameter)."""

from __future__ import annotations

from turnout.config.provider_kinds import ProviderKind
from turnout.config.provider_sections import ProviderSection, SectionInput, SectionResult

AZURE_DEFAULT_API_VERSION = "2024-10-21"  # the latest GA dated version; "v1" selects Azure's v1 API


def read_api_version(given: SectionInput) -> SectionResult:
    version = given.cfg.api_version or AZURE_DEFAULT_API_VERSION
    return SectionResult(
        base_url=given.base_url, api_key=given.cfg.api_key, settings={"api_version": version}
    )


def _has_azure_paths(kind: ProviderKind) -> bool:
    return kind.azure_paths


API_VERSION_SECTION = ProviderSection(
    key="api_version",
    refusal="only Azure providers take an api_version",
    applies=_has_azure_paths,
    read=read_api_version,
)
