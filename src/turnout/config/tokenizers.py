"""Which deployments are counted with OpenAI's o200k_base tokenizer (bundled: domain/tokens.py):
OpenAI's own models on o200k_base, by the model-name prefixes tiktoken maps to it (its
`model.py`: gpt-4o, chatgpt-4o, gpt-4.1, gpt-4.5, gpt-5, o1, o3, o4-mini), at OpenAI and Azure
OpenAI. Every other deployment's prompt is bounded at a token a byte (domain/prompt_bounds.py)."""

from __future__ import annotations

O200K = "o200k_base"
OPENAI_NAMESPACES = frozenset({"openai", "azure"})
_O200K_PREFIXES = ("gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4-mini")


def tokenizer_of(namespace: str | None, model: str) -> str | None:
    """The tokenizer a deployment's prompt is counted with exactly, if turnout has it."""
    if namespace not in OPENAI_NAMESPACES:
        return None
    name = model.removeprefix("openai/")
    return O200K if name.startswith(_O200K_PREFIXES) else None
