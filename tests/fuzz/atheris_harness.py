"""A coverage-guided fuzzing session of one parser with atheris (libFuzzer), on the same targets
as the Hypothesis properties (support/fuzz.py), starting from the committed corpus.

    .venv/bin/pip install -e '.[fuzz]'
    .venv/bin/python tests/fuzz/atheris_harness.py TARGET [libFuzzer options]
    .venv/bin/python tests/fuzz/atheris_harness.py sse -max_total_time=600

New inputs that reach new code go to a scratch folder (not the committed corpus); a crash is
written as `crash-<sha1>` into tests/fixtures/fuzz/TARGET/, where the replay test picks it up.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with atheris.instrument_imports():
    from support.fuzz import CORPUS, TARGETS


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} TARGET [libFuzzer options]; targets: {', '.join(TARGETS)}")
    name, options = sys.argv[1], sys.argv[2:]
    target = TARGETS[name]

    def one_input(data: bytes) -> None:
        whole = target([data])
        if len(data) > 1:  # and read in two pieces: the same outcome
            cut = data[0] % len(data) or 1
            assert target([data[:cut], data[cut:]]) == whole or name in ("eventstream", "bedrock_stream")

    scratch = tempfile.mkdtemp(prefix=f"turnout-fuzz-{name}-")
    seeds = str(CORPUS / name)
    atheris.Setup(
        [sys.argv[0], f"-artifact_prefix={CORPUS / name}/crash-", *options, scratch, seeds], one_input
    )
    atheris.Fuzz()


if __name__ == "__main__":
    main()
