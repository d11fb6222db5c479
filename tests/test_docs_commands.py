"""Every `turnout` command a document shows in a shell block (```sh) is one the command line
accepts as written: its command exists and its options and arguments parse (nothing is run), so a
renamed command or option cannot leave a walk-through (docs/exit.md, the README ...) behind."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from turnout.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_SHELL = re.compile(r"^```(?:sh|bash|shell)\n(?P<body>.*?)^```", re.DOTALL | re.MULTILINE)
_FILE = re.compile(r"^[\w.-]+\.(json|jsonl|ya?ml|html)$")
_ENDS = {">", ">>", "|", "&&", ";", "2>", "<"}  # where the shell takes over from turnout's arguments


def _commands() -> list[tuple[str, list[str]]]:
    found = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for block in _SHELL.finditer(text):
            line_number = text.count("\n", 0, block.start()) + 1
            for offset, line in enumerate(block["body"].replace("\\\n", " ").splitlines(), start=1):
                words = shlex.split(line, comments=True)
                if not words or words[0] != "turnout":
                    continue
                cut = next((i for i, w in enumerate(words) if w in _ENDS), len(words))
                found.append((f"{document.relative_to(ROOT)}:{line_number + offset}", words[1:cut]))
    return found


COMMANDS = _commands()


def test_the_walk_through_shows_its_commands() -> None:
    shown = {" ".join(words[:2]) for where, words in COMMANDS if where.startswith("docs/exit.md")}
    assert {"exit-report --since", "rehearse replay", "rehearse report", "spend report"} <= shown


@pytest.mark.parametrize("words", [pytest.param(w, id=where) for where, w in COMMANDS])
def test_every_documented_command_parses(
    words: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the files a command names exist (empty): only parsing is checked
    for word in words:
        if _FILE.search(word):
            (tmp_path / word).write_text("")
    command: click.Command = main
    path = ["turnout"]
    while isinstance(command, click.Group):
        assert words, f"`{' '.join(path)}` needs a command"
        name, words = words[0], words[1:]
        sub = command.get_command(click.Context(command), name)
        assert sub is not None, f"`{' '.join(path)}` has no command {name!r}"
        command, path = sub, [*path, name]
    command.make_context(" ".join(path), list(words))  # raises a UsageError naming what is wrong
