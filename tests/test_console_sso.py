"""Signing in to the console through OpenID Connect (`console.oidc`), against a test identity
provider served for real on 127.0.0.1 (tests/support/identity_provider.py), the browser played
by httpx following the redirects: the whole round trip with PKCE, `state` and `nonce`; ID tokens
that are forged, expired, for another client, for another sign-in, or with an unverified email
refused; a state that does not match refused; a person no user has refused (or, when the operator
allows it, created as a viewer); the session's rights the user's as they are now; the cookies'
flags; and the settings that cannot work refused at load."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from turnout.config.loader import ConfigError
from turnout.config.settings import OidcSettings
from turnout.console.oidc import Attempt, OidcClient, SignOnFailed
from turnout.providers.http.client import HttpClient

from support.databases import PG_HOST, PG_USER, create_postgres_database, drop_postgres_database
from support.gateway import MASTER_KEY, Gateway, settings_for
from support.identity_provider import IdentityProvider, new_key

SECRET_ENV = "TURNOUT_TEST_OIDC_SECRET"
REFRESH = re.compile(r'<meta http-equiv="refresh" content="0; url=([^"]+)">')


def doc_for(idp: IdentityProvider, **oidc: Any) -> dict[str, Any]:
    return {
        "providers": {"fake": {"type": "fake"}},
        "models": {"chat": {"provider": "fake", "model": "m"}},
        "governance": {"two_person_rule": ["remove_provider"]},
        "console": {
            "oidc": {
                "issuer": idp.issuer,
                "client_id": idp.client_id,
                "client_secret": f"env:{SECRET_ENV}",
                **oidc,
            }
        },
    }


def start_gateway(idp: IdentityProvider, path: Path, **oidc: Any) -> Gateway:
    settings = settings_for(doc_for(idp, **oidc), path, {SECRET_ENV: idp.client_secret})
    return Gateway(settings).start()


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider().start()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def gateway(idp: IdentityProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(idp, Path(tmp_path_factory.mktemp("console-sso")))
    admin(gateway, "POST", "/admin/users", email="Ada@Example.com", name="Ada", role="admin")
    yield gateway
    gateway.stop()


@pytest.fixture(autouse=True)
def _fresh_provider(idp: IdentityProvider) -> Iterator[None]:
    yield
    idp.claims.clear()
    idp.signing_key = None
    idp.discovery_overrides.clear()
    idp.person = {"sub": "p-1", "email": "ada@example.com", "email_verified": True}


def admin(gateway: Gateway, method: str, path: str, **body: Any) -> Any:
    answer = httpx.request(
        method, gateway.root_url + path, headers={"authorization": f"Bearer {MASTER_KEY}"}, json=body or None
    )
    assert answer.status_code in (200, 202), answer.text
    return answer.json()


def set_cookies(answer: httpx.Response, name: str) -> list[str]:
    return [v for k, v in answer.headers.multi_items() if k == "set-cookie" and v.startswith(name + "=")]


def sign_on(gateway: Gateway, next_page: str = "/ui/keys") -> tuple[httpx.Client, httpx.Response]:
    """A browser that clicks "Sign in with single sign-on": the redirects followed to the provider
    and back; the answer is the console's last one."""
    client = httpx.Client(base_url=gateway.root_url, timeout=30, follow_redirects=True)
    login = client.get("/ui/login", params={"next": next_page})
    link = re.search(r'<a id="sso" href="([^"]+)"', login.text)
    assert link, login.text
    answer = client.get(link.group(1).replace("&amp;", "&"))
    return client, answer


def test_a_person_signs_in_through_the_provider_and_gets_a_strict_httponly_session(
    gateway: Gateway, idp: IdentityProvider
) -> None:
    client, answer = sign_on(gateway, "/ui/users")
    with closing(client):
        assert answer.status_code == 200, answer.text
        assert "Signed in" in answer.text and "Ada" in answer.text
        # the way back went through the provider and the callback, with PKCE S256, state and nonce
        hops = [str(r.url) for r in answer.history]
        assert hops[0].startswith(gateway.root_url + "/ui/login/oidc")
        assert hops[1].startswith(idp.issuer + "/authorize?")
        asked = idp.authorize_requests[-1]
        assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
        assert asked["scope"] == "openid email profile" and asked["state"] and asked["nonce"]
        assert asked["redirect_uri"] == gateway.root_url + "/ui/login/oidc/callback"
        sent = idp.token_requests[-1]
        assert sent["code_verifier"] and "client_secret" not in sent  # the secret went as Basic auth
        # the attempt's cookie: HttpOnly, Lax (the provider's redirect back is cross-site), 10 minutes
        attempt = set_cookies(answer.history[0], "turnout_oidc")[0]
        assert "HttpOnly" in attempt and "SameSite=Lax" in attempt and "Max-Age=600" in attempt
        assert "Path=/ui/login/oidc" in attempt
        session = set_cookies(answer, "turnout_session")[0]
        assert "HttpOnly" in session and "SameSite=Strict" in session and "Path=/ui" in session
        assert "Max-Age=28800" in session and "Secure" not in session  # plain HTTP: no Secure
        assert "Max-Age=0" in set_cookies(answer, "turnout_oidc")[0]  # the attempt is spent
        # the page moves on itself (a navigation of this site: the Strict cookie is sent)
        found = REFRESH.search(answer.text)
        assert found and found.group(1) == "/ui/users"
        users = client.get(found.group(1))
        assert users.status_code == 200 and "<h1>Users</h1>" in users.text
        # the audit log names the person who acted
        csrf = re.search(r'name="csrf" value="([^"]+)"', users.text)
        assert csrf
        made = client.post(
            "/ui/teams", data={"name": "sso-made", "csrf": csrf.group(1)}, follow_redirects=False
        )
        assert made.status_code == 303, made.text
    audit = admin(gateway, "GET", "/admin/audit?action=team.create")["data"]
    mine = next(e for e in audit if e["after"]["name"] == "sso-made")
    assert mine["actor_key_id"].startswith("sso:user_")


def test_the_session_has_the_users_rights_as_they_are_at_each_request(
    gateway: Gateway, idp: IdentityProvider
) -> None:
    user = admin(gateway, "POST", "/admin/users", email="grace@example.com", role="admin")
    idp.person = {"sub": "p-2", "email": "grace@example.com", "email_verified": True}
    client, answer = sign_on(gateway)
    with closing(client):
        assert answer.status_code == 200, answer.text
        assert client.get("/ui/keys").status_code == 200
        admin(gateway, "PATCH", f"/admin/users/{user['id']}", role="member")
        gone = client.get("/ui/keys", follow_redirects=False)
        assert gone.status_code == 303 and gone.headers["location"].startswith("/ui/login")


def test_a_member_is_refused_a_session_with_a_clear_page(gateway: Gateway, idp: IdentityProvider) -> None:
    admin(gateway, "POST", "/admin/users", email="lin@example.com")
    idp.person = {"sub": "p-3", "email": "lin@example.com", "email_verified": True}
    client, answer = sign_on(gateway)
    with closing(client):
        assert answer.status_code == 403
        assert "for owners, admins and viewers" in answer.text and "member" in answer.text
        assert not set_cookies(answer, "turnout_session")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("forged", "signature is not the sign-in provider"),
        ("expired", "has expired"),
        ("audience", "issued to another client"),
        ("nonce", "nonce differs"),
        ("issuer", "issued by another provider"),
        ("unverified", "has not verified the email"),
        ("no_email", "no email in the ID token"),
    ],
)
def test_an_id_token_that_does_not_hold_is_refused(
    gateway: Gateway, idp: IdentityProvider, change: str, message: str
) -> None:
    if change == "forged":
        idp.signing_key = new_key()  # same kid, another key
    elif change == "expired":
        idp.claims.update(exp=1_700_000_000, iat=1_699_999_000)  # long past, beyond the skew
    elif change == "audience":
        idp.claims["aud"] = "someone-else"
    elif change == "nonce":
        idp.claims["nonce"] = "replayed-from-another-sign-in"
    elif change == "issuer":
        idp.claims["iss"] = "https://evil.example"
    elif change == "unverified":
        idp.person = {**idp.person, "email_verified": False}
    else:
        idp.person = {"sub": "p-1"}
    client, answer = sign_on(gateway)
    with closing(client):
        assert answer.status_code == 403, answer.text
        assert message in answer.text
        assert not set_cookies(answer, "turnout_session") and "turnout_session" not in client.cookies
        assert client.get("/ui/keys", follow_redirects=False).status_code == 303


def test_a_callback_whose_state_differs_from_this_browsers_is_refused(
    gateway: Gateway, idp: IdentityProvider
) -> None:
    with httpx.Client(base_url=gateway.root_url, timeout=30) as client:
        away = client.get("/ui/login/oidc")
        assert away.status_code == 303 and away.headers["location"].startswith(idp.issuer + "/authorize?")
        # an attacker's own code and state, planted into this browser
        planted = client.get("/ui/login/oidc/callback", params={"code": "attackers-code", "state": "x" * 43})
        assert planted.status_code == 403 and "state does not match" in planted.text
        assert not set_cookies(planted, "turnout_session")
        assert not idp.token_requests or idp.token_requests[-1].get("code") != "attackers-code"
    with httpx.Client(base_url=gateway.root_url, timeout=30) as stranger:  # never started here
        answer = stranger.get("/ui/login/oidc/callback", params={"code": "c", "state": "s"})
        assert answer.status_code == 403 and "did not start here" in answer.text


def test_the_providers_refusal_is_shown(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.root_url, timeout=30) as client:
        client.get("/ui/login/oidc")
        answer = client.get("/ui/login/oidc/callback", params={"error": "access_denied", "state": "s"})
        assert answer.status_code == 403 and "did not sign you in (access_denied)" in answer.text


def test_a_person_no_user_has_is_refused_and_never_created(gateway: Gateway, idp: IdentityProvider) -> None:
    idp.person = {"sub": "p-9", "email": "stranger@example.com", "email_verified": True}
    client, answer = sign_on(gateway)
    with closing(client):
        assert answer.status_code == 403
        assert "No turnout user has the email stranger@example.com" in answer.text
    emails = [u["email"] for u in admin(gateway, "GET", "/admin/users?limit=100")["data"]]
    assert "stranger@example.com" not in emails


def test_with_signup_allowed_a_new_person_becomes_a_member_and_waits_for_an_admin(
    idp: IdentityProvider, tmp_path: Path
) -> None:
    gateway = start_gateway(idp, tmp_path, allow_signup=True)
    try:
        idp.person = {"sub": "p-10", "email": "new@example.com", "email_verified": True, "name": "New"}
        client, answer = sign_on(gateway)
        with closing(client):
            assert answer.status_code == 403 and "role is &#39;member&#39;" in answer.text
        made = [u for u in admin(gateway, "GET", "/admin/users")["data"] if u["email"] == "new@example.com"]
        assert len(made) == 1 and made[0]["role"] == "member" and made[0]["name"] == "New"
        created = admin(gateway, "GET", "/admin/audit?action=user.create")["data"]
        assert [e["actor"] for e in created if e["target_id"] == made[0]["id"]] == ["single sign-on"]
        admin(gateway, "PATCH", f"/admin/users/{made[0]['id']}", role="admin")
        client, answer = sign_on(gateway)
        with closing(client):
            assert answer.status_code == 200 and set_cookies(answer, "turnout_session")
    finally:
        gateway.stop()


def test_without_oidc_the_single_sign_on_pages_are_not_there(tmp_path: Path) -> None:
    doc = {"providers": {"fake": {"type": "fake"}}, "models": {"chat": {"provider": "fake", "model": "m"}}}
    gateway = Gateway(settings_for(doc, tmp_path)).start()
    try:
        assert httpx.get(gateway.root_url + "/ui/login/oidc").status_code == 404
        assert 'id="sso"' not in httpx.get(gateway.root_url + "/ui/login").text
    finally:
        gateway.stop()


@pytest.mark.parametrize(
    ("oidc", "problem"),
    [
        ({"issuer": "http://login.example.com"}, "console.oidc.issuer"),
        ({"issuer": "not a url"}, "console.oidc.issuer"),
        ({"client_secret": "a-literal-secret"}, "console.oidc.client_secret"),
        ({"scopes": ["openid", "profile"]}, "must include email"),
        ({"scopes": ["openid email"]}, "console.oidc.scopes"),
        ({"clock_skew": "1h"}, "console.oidc.clock_skew"),
        ({"client_id": " "}, "console.oidc.client_id"),
        ({"tenant": "x"}, "tenant"),
    ],
)
def test_settings_that_cannot_work_are_refused_at_load(
    oidc: dict[str, Any], problem: str, tmp_path: Path
) -> None:
    base = {"issuer": "https://login.example.com", "client_id": "turnout", "client_secret": "env:S"}
    doc = {
        "providers": {"fake": {"type": "fake"}},
        "models": {"chat": {"provider": "fake", "model": "m"}},
        "console": {"oidc": {**base, **oidc}},
    }
    with pytest.raises(ConfigError) as refused:
        settings_for(doc, tmp_path, {"S": "provider-secret"})
    assert problem in str(refused.value)
    assert "a-literal-secret" not in str(refused.value)


def test_oidc_with_the_console_off_is_refused(tmp_path: Path) -> None:
    doc = {
        "providers": {"fake": {"type": "fake"}},
        "models": {"chat": {"provider": "fake", "model": "m"}},
        "console": {"enabled": False, "oidc": {"issuer": "https://login.example.com", "client_id": "t"}},
    }
    with pytest.raises(ConfigError) as refused:
        settings_for(doc, tmp_path)
    assert "console.oidc" in str(refused.value)


def test_the_two_person_rule_knows_the_person_behind_a_single_sign_on_session(
    gateway: Gateway, idp: IdentityProvider
) -> None:
    """A removal proposed through an SSO session waits for another person: the proposer's own key
    cannot approve it, the master key can, and it then runs with the proposer's current rights."""
    users = admin(gateway, "GET", "/admin/users?limit=100")["data"]
    ada = next(u for u in users if u["email"] == "Ada@Example.com")
    client, answer = sign_on(gateway, "/ui/providers")
    with closing(client):
        assert answer.status_code == 200, answer.text
        page = client.get("/ui/providers")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert page.status_code == 200 and csrf, page.text
        proposed = client.post(
            "/ui/providers/fake/remove", data={"csrf": csrf.group(1)}, follow_redirects=False
        )
        assert proposed.status_code == 303 and "/ui/approvals/" in proposed.headers["location"]
    action = proposed.headers["location"].rsplit("/", 1)[1]
    own = admin(gateway, "POST", "/admin/keys", name="adas", user_id=ada["id"], role="admin")["key"]
    refused = httpx.post(
        f"{gateway.root_url}/admin/approvals/{action}/approve", headers={"authorization": f"Bearer {own}"}
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "self_approval"
    done = admin(gateway, "POST", f"/admin/approvals/{action}/approve")
    assert done["status"] == "approved", done
    assert done["requested_by"] == "sso:" + ada["id"]
    admin(gateway, "POST", "/admin/providers/fake/restore")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"issuer": "https://another.example"}, "discovery names another issuer"),
        ({"code_challenge_methods_supported": ["plain"]}, "does not support PKCE with S256"),
        ({"id_token_signing_alg_values_supported": ["HS256"]}, "no algorithm turnout accepts"),
        ({"jwks_uri": "ftp://keys.example"}, "no usable jwks_uri"),
    ],
)
def test_a_provider_whose_discovery_cannot_work_is_refused_before_anyone_leaves(
    overrides: dict[str, Any], message: str, tmp_path: Path
) -> None:
    idp = IdentityProvider().start()
    idp.discovery_overrides.update(overrides)
    gateway = start_gateway(idp, tmp_path)
    try:
        answer = httpx.get(gateway.root_url + "/ui/login/oidc")
        assert answer.status_code == 503 and message in answer.text
        assert not idp.authorize_requests
    finally:
        gateway.stop()
        idp.stop()


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_rotated_signing_key_is_read_again_at_most_once_a_minute() -> None:
    idp = IdentityProvider().start()
    http = HttpClient()
    try:
        clock = Clock()
        settings = OidcSettings(issuer=idp.issuer, client_id=idp.client_id, clock_skew=10**9)
        client = OidcClient(settings, http, clock=clock)
        nonce = Attempt.new().nonce
        assert (await client.verify(idp.id_token(nonce), nonce)).email == "ada@example.com"
        idp.rotate()
        with pytest.raises(SignOnFailed, match="does not publish"):  # keys read moments ago
            await client.verify(idp.id_token(nonce), nonce)
        clock.now += 61
        assert (await client.verify(idp.id_token(nonce), nonce)).email == "ada@example.com"
        with pytest.raises(SignOnFailed, match="signature is not"):  # right kid, wrong key
            idp.signing_key = new_key()
            await client.verify(idp.id_token(nonce), nonce)
    finally:
        await http.aclose()
        idp.stop()


def test_a_wrong_client_secret_is_named_by_the_providers_error_code(
    idp: IdentityProvider, tmp_path: Path
) -> None:
    settings = settings_for(doc_for(idp), tmp_path, {SECRET_ENV: "not-the-provider-secret-0123456789"})
    gateway = Gateway(settings).start()
    try:
        client, answer = sign_on(gateway)
        with closing(client):
            assert answer.status_code == 403 and "(token: HTTP 401, invalid_client)" in answer.text
            assert "not-the-provider-secret" not in answer.text
    finally:
        gateway.stop()


def test_a_team_admin_signed_in_by_sso_manages_their_team_only(
    gateway: Gateway, idp: IdentityProvider
) -> None:
    red = admin(gateway, "POST", "/admin/teams", name="sso-red")["id"]
    blue = admin(gateway, "POST", "/admin/teams", name="sso-blue")["id"]
    tia = admin(gateway, "POST", "/admin/users", email="tia@example.com")["id"]
    admin(gateway, "POST", f"/admin/teams/{red}/members", user_id=tia, role="admin")
    idp.person = {"sub": "p-4", "email": "tia@example.com", "email_verified": True}
    client, answer = sign_on(gateway)
    with closing(client):
        assert answer.status_code == 200, answer.text
        assert client.get(f"/ui/teams/{red}").status_code == 200
        assert client.get(f"/ui/teams/{blue}").status_code == 404
        assert client.get("/ui/providers").status_code == 403  # the organisation's, not a team's


def test_without_oidc_the_gateway_does_not_load_the_token_library() -> None:
    """PyJWT and the parts of cryptography it loads cost ~8 MiB of memory: only `console.oidc`
    brings them in."""
    probe = "import sys, turnout.server.asgi, turnout.console.app; print('jwt' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "False"


@pytest.mark.postgres
def test_a_sign_in_begun_on_one_instance_finishes_on_another_and_ends_on_both(
    idp: IdentityProvider, tmp_path: Path
) -> None:
    """Behind a load balancer the provider's redirect back may reach another instance: the attempt
    travels in the browser's cookie, the session is in the shared database."""
    database = asyncio.run(create_postgres_database())
    doc = {
        **doc_for(idp),
        "storage": {"database_url": f"postgresql+asyncpg://{PG_USER}@{PG_HOST}/{database}"},
    }
    environ = {SECRET_ENV: idp.client_secret, "TURNOUT_KEY_HASH_SECRET": "sso-test-secret-shared-by-both"}
    a = Gateway(settings_for(doc, tmp_path / "a", environ)).start()
    b = Gateway(settings_for(doc, tmp_path / "b", environ)).start()
    try:
        user = admin(a, "POST", "/admin/users", email="ada@example.com", role="admin")
        with httpx.Client(timeout=30) as browser:
            away = browser.get(a.root_url + "/ui/login/oidc")
            back = browser.get(away.headers["location"])
            assert back.status_code == 303 and back.headers["location"].startswith(a.root_url)
            host = a.root_url.removeprefix("http://")
            landed = browser.get(
                back.headers["location"].replace(a.root_url, b.root_url), headers={"host": host}
            )
            assert landed.status_code == 200, landed.text
            cookie = {"turnout_session": browser.cookies["turnout_session"]}
        assert httpx.get(a.root_url + "/ui/keys", cookies=cookie).status_code == 200
        assert httpx.get(b.root_url + "/ui/keys", cookies=cookie).status_code == 200
        admin(a, "DELETE", f"/admin/users/{user['id']}")
        assert httpx.get(b.root_url + "/ui/keys", cookies=cookie).status_code == 303  # at once, no sync
    finally:
        a.stop()
        b.stop()
        asyncio.run(drop_postgres_database(database))
