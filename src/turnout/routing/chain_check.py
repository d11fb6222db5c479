"""Fallback chains that cannot carry the traffic their primary accepts, found from configuration.

The router skips a deployment that lacks a feature a request needs, and a context-window fallback
helps only if it has room the primary lacks. A chain written without that in mind looks fine and
silently does nothing when it is needed; these checks say so at `config check` and at start-up,
each naming the dotted config path to change. Pure: settings in, sentences out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from turnout.config.settings import ModelSettings, ProviderSettings, Settings
from turnout.providers.base import Capabilities
from turnout.providers.capabilities import with_declared

CHAINS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")

EMBEDDING_MODEL_HINT = "embed"
"""Whether an alias serves chat or embeddings cannot be read from its providers (every
OpenAI-format provider but DeepSeek offers both), and checking both would warn about every chat
alias falling back to DeepSeek and every embeddings alias falling back to a chat model. So an alias
whose target models are named like embedding models (text-embedding-3-small, mistral-embed,
nomic-embed-text ...) is checked for embeddings only, any other for the chat features only."""


@dataclass(frozen=True, slots=True)
class _Feature:
    attribute: str  # the `Capabilities` field
    description: str  # as a sentence names it


CHAT_FEATURES = (
    _Feature("tools", "tools"),
    _Feature("json_schema", "structured outputs (response_format json_schema)"),
    _Feature("images", "images"),
    _Feature("streaming", "streaming"),
)
EMBEDDINGS = _Feature("embeddings", "embeddings")
TASKS = (
    _Feature("rerank", "rerank documents"),
    _Feature("moderation", "moderate content"),
    _Feature("image_generation", "generate images"),
    _Feature("transcription", "transcribe audio"),
    _Feature("speech", "make speech"),
)


def chain_warnings(settings: Settings, capabilities: Callable[[ProviderSettings], Capabilities]) -> list[str]:
    """A sentence for each fallback that cannot do what its chain is for, each fallback listed
    twice, and each alias whose `attempts` cannot reach all of its deployments."""
    models = settings.models
    caps = {name: capabilities(p) for name, p in settings.providers.items()}
    warnings: list[str] = []
    for alias, model in models.items():
        path = f"models.{alias}"
        if model.attempts < len(model.targets):
            warnings.append(
                f"{path}.attempts: {model.attempts} attempt(s) per request but {len(model.targets)} "
                f"targets: a request to '{alias}' never tries more than {model.attempts} of them "
                "before its fallbacks (raise it, or routing.retries.attempts for every alias)"
            )
        for chain in CHAINS:
            seen: dict[str, int] = {}
            for i, name in enumerate(getattr(model, chain)):
                where = f"{path}.{chain}[{i}]"
                if name in seen:
                    warnings.append(
                        f"{where}: '{name}' is listed twice (first at {chain}[{seen[name]}]); "
                        "its deployments would be tried again"
                    )
                    continue
                seen[name] = i
                fallback = resolve(models, name)
                if fallback is None:
                    warnings.append(f"{where}: '{name}' matches no model alias; it will be skipped")
                    continue
                shown = f"'{name}'" if fallback.alias == name else f"'{name}' (served by '{fallback.alias}')"
                warnings += _feature_gaps(where, model, fallback, shown, caps)
                if chain == "context_window_fallbacks":
                    warnings += _window_gap(where, model, fallback, shown)
    return warnings


def resolve(models: Mapping[str, ModelSettings], name: str) -> ModelSettings | None:
    """The alias serving `name`, as the catalog finds it: an exact alias, else the wildcard alias
    with the longest prefix that `name` extends."""
    exact = models.get(name)
    if exact is not None and not exact.is_wildcard:
        return exact
    best: ModelSettings | None = None
    for model in models.values():
        prefix = model.alias[:-1]
        if (
            model.is_wildcard
            and name.startswith(prefix)
            and len(name) > len(prefix)
            and (best is None or len(model.alias) > len(best.alias))
        ):
            best = model
    return best


def _feature_gaps(
    where: str,
    primary: ModelSettings,
    fallback: ModelSettings,
    shown: str,
    caps: Mapping[str, Capabilities],
) -> list[str]:
    primary_caps = [
        with_declared(caps[t.provider], t.supports) for t in primary.targets if t.provider in caps
    ]
    fallback_caps = [
        with_declared(caps[t.provider], t.supports) for t in fallback.targets if t.provider in caps
    ]

    def missing(feature: _Feature) -> bool:
        accepted = any(getattr(c, feature.attribute) for c in primary_caps)
        return accepted and not any(getattr(c, feature.attribute) for c in fallback_caps)

    for task in TASKS:  # a reranker's, moderation, image or audio model's chain: only its kind can help
        if any(getattr(c, task.attribute) for c in primary_caps):
            if not missing(task):
                return []
            return [
                f"{where}: {shown} cannot {task.description} as '{primary.alias}' does; "
                "such requests will skip it"
            ]
    if fallback_caps and not any(c.chat for c in fallback_caps):
        return [
            f"{where}: {shown} serves only rerank, moderation, image or audio requests; chat requests "
            "will skip it"
        ]

    if any(EMBEDDING_MODEL_HINT in t.model.lower() for t in primary.targets):
        if not missing(EMBEDDINGS):
            return []
        return [
            f"{where}: {shown} cannot serve embeddings that '{primary.alias}' accepts; "
            "an embeddings request falling back to it will fail there"
        ]
    gaps = [f.description for f in CHAT_FEATURES if missing(f)]
    if not gaps:
        return []
    return [
        f"{where}: {shown} cannot serve {_either(gaps)} that '{primary.alias}' accepts; "
        "such requests will skip it"
    ]


def _window_gap(where: str, primary: ModelSettings, fallback: ModelSettings, shown: str) -> list[str]:
    mine, theirs = _largest_window(primary), _largest_window(fallback)
    if mine is None or theirs is None:
        unknown = [a for a, w in ((f"'{primary.alias}'", mine), (shown, theirs)) if w is None]
        return [
            f"{where}: the context window of {' and '.join(unknown)} is unknown (set 'context_window' "
            f"on the targets), so turnout cannot tell whether {shown} can take a request too long "
            f"for '{primary.alias}'"
        ]
    if theirs <= mine:
        return [
            f"{where}: {shown} has a context window of {theirs} tokens, no larger than the {mine} of "
            f"'{primary.alias}'; a request too long for '{primary.alias}' will not fit there either"
        ]
    return []


def _largest_window(model: ModelSettings) -> int | None:
    return max((t.context_window for t in model.targets if t.context_window is not None), default=None)


def _either(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]
