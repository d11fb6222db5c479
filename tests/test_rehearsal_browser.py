"""A rehearsal's HTML report in a real browser (Debian's chromium, driven by Playwright, as the
console's tests do): it shows its plots, asks for nothing beyond its own file (no CDN, no script)
and logs no error. The screenshot in docs/exit.md is taken here. Skipped, saying why, only when
chromium is not installed (scripts/install_browser could not install it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support.answering import AnsweringUpstream, Reply
from support.rehearsal import BACKUP, OTHER, Logged, cli, replay

CHROMIUM = shutil.which("chromium")
if CHROMIUM is None:  # pragma: no cover - only where apt could not install it
    pytest.skip(
        "Debian's chromium is not installed (scripts/install_browser could not install it)",
        allow_module_level=True,
    )

from playwright.sync_api import sync_playwright  # noqa: E402

SHOTS = Path(__file__).resolve().parent.parent / "docs" / "exit"


def test_the_html_report_draws_its_plots_from_its_own_file_alone(tmp_path: Path) -> None:
    backup = AnsweringUpstream(replies=BACKUP).start()
    other = AnsweringUpstream(replies=OTHER, fallback=Reply("7")).start()
    history = Logged(tmp_path, backup, other)
    try:
        state = tmp_path / "other.jsonl"
        replay(history, state, "--from", "chat", "--to", "other/mini", "--judge", "judge")
        page_file = tmp_path / "rehearsal.html"
        cli("rehearse", "report", "--state", str(state), "--format", "html", "-o", str(page_file))
    finally:
        history.stop()
        backup.stop()
        other.stop()
    assert CHROMIUM is not None
    asked: list[str] = []
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_context(viewport={"width": 1100, "height": 800}).new_page()
            page.on("request", lambda request: asked.append(request.url))
            page.on(
                "console", lambda message: errors.append(message.text) if message.type == "error" else None
            )
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(page_file.as_uri())
            assert page.locator("svg").count() == 4  # latency, first token, cost, agreement
            assert page.locator("svg rect").count() > 20
            assert page.locator("#worst tr").count() == 1 + 4  # the four requests that disagree
            assert page.locator("#every tr").count() == 1 + 5
            assert not page.locator("#every").is_visible()  # folded away until asked for
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "rehearsal-report.png"), full_page=True)
        finally:
            browser.close()
    assert asked == [page_file.as_uri()]
    assert errors == []
