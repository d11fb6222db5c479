"""Single sign-on in a real browser (Debian's chromium through Playwright, as
tests/test_console_browser.py): the console is reached as `localhost` and the identity provider
as 127.0.0.1, two different sites, so the way back from the provider is a cross-site navigation as
it is in production (the person clicks "Sign in" on the provider's page) — the attempt's Lax
cookie must come back with it, and the Strict session cookie must be sent once the console's own
page moves on (a redirect would not do: the navigation would still be the provider's). No error
in the browser's console.

Skipped, saying why, only when chromium is not installed."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.gateway import MASTER_KEY, Gateway, settings_for
from support.identity_provider import IdentityProvider

CHROMIUM = shutil.which("chromium")
if CHROMIUM is None:  # pragma: no cover - only where apt could not install it
    pytest.skip(
        "Debian's chromium is not installed (scripts/install_browser could not install it)",
        allow_module_level=True,
    )

from playwright.sync_api import ConsoleMessage, sync_playwright  # noqa: E402

SECRET_ENV = "TURNOUT_TEST_OIDC_SECRET"
CONSOLE_HOST = "localhost"  # 127.0.0.1 under another name: another site than the provider's


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider(login_page=True).start()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def gateway(idp: IdentityProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    doc: dict[str, Any] = {
        "providers": {"fake": {"type": "fake"}},
        "models": {"chat": {"provider": "fake", "model": "m"}},
        "console": {
            "oidc": {"issuer": idp.issuer, "client_id": idp.client_id, "client_secret": f"env:{SECRET_ENV}"}
        },
    }
    settings = settings_for(
        doc, Path(tmp_path_factory.mktemp("sso-browser")), {SECRET_ENV: idp.client_secret}
    )
    gateway = Gateway(settings).start()
    answer = httpx.post(
        gateway.root_url + "/admin/users",
        headers={"authorization": f"Bearer {MASTER_KEY}"},
        json={"email": "ada@example.com", "name": "Ada", "role": "admin"},
    )
    assert answer.status_code == 200, answer.text
    yield gateway
    gateway.stop()


def test_a_person_signs_in_through_the_provider_in_a_real_browser(
    gateway: Gateway, idp: IdentityProvider
) -> None:
    assert CHROMIUM is not None and gateway.server is not None
    root = f"http://{CONSOLE_HOST}:{gateway.server.port}/ui"
    errors: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            errors.append(f"{message.type}: {message.text} ({message.location.get('url')})")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", f"--host-resolver-rules=MAP {CONSOLE_HOST} 127.0.0.1"],
        )
        try:
            page = browser.new_context().new_page()
            page.on("console", console)
            page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
            page.goto(root + "/users")
            assert page.url.endswith("/ui/login?next=/ui/users")
            page.click("#sso")
            page.wait_for_url(re.compile(r"^http://127\.0\.0\.1:\d+/authorize\?"))
            page.click("#approve")  # at the provider's page: the way back starts on another site
            page.wait_for_url(re.compile(r".*/ui/users$"))
            assert page.locator("h1").inner_text() == "Users"
            assert idp.authorize_requests[-1]["redirect_uri"] == root + "/login/oidc/callback"
            cookies = {c["name"]: c for c in page.context.cookies()}
            session = cookies["turnout_session"]
            assert session["httpOnly"] and session["sameSite"] == "Strict"
            assert "turnout_oidc" not in cookies  # the attempt is spent
            page.goto(root + "/keys")  # the session holds on the next click
            assert page.locator("h1").inner_text() == "Keys"
        finally:
            browser.close()
    assert not errors, "the browser's console reported errors:\n" + "\n".join(errors)
