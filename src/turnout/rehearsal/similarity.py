"""Answer similarity: the cosine of two texts' embeddings from a small static embedding model
shipped inside a package from PyPI (WordLlama's 256-dimension `l2_supercat`, in the `wordllama`
wheel). Its files are loaded from the installed package by path: nothing is ever downloaded."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

MODEL = "wordllama l2_supercat 256"
MAX_CHARACTERS = 20_000  # of each text embedded (the model averages token vectors: the start is enough)


class MissingModel(RuntimeError):
    pass


@functools.cache
def _model() -> Any:
    try:
        import wordllama
        from safetensors import safe_open
        from wordllama import WordLlama
        from wordllama.inference import WordLlamaInference
    except ImportError:
        raise MissingModel(
            "answer similarity needs the `wordllama` package: pip install 'turnout[rehearse]'"
        ) from None
    root = Path(wordllama.__file__).parent
    weights, tokenizer = (
        root / "weights" / "l2_supercat_256.safetensors",
        root / "tokenizers" / "l2_supercat_tokenizer_config.json",
    )
    if not weights.is_file() or not tokenizer.is_file():
        raise MissingModel(f"the installed wordllama package lacks its bundled model ({weights.name})")
    with safe_open(str(weights), framework="np", device="cpu") as file:
        embedding = file.get_tensor("embedding.weight")
    return WordLlamaInference(embedding, WordLlama.load_tokenizer(tokenizer))


def similarity(a: str, b: str) -> float:
    """Cosine similarity of the two texts' embeddings, -1 to 1 (1: the same text)."""
    if a == b:
        return 1.0
    return float(_model().similarity(a[:MAX_CHARACTERS], b[:MAX_CHARACTERS]))


def load() -> None:
    """Load the model now (a missing package is told before any request is replayed)."""
    _model()
