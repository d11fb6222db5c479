"""Taking a provider out of service through the admin API: under the two-person rule it waits for
a second admin; once approved, every alias stops using it at once (the alias's other provider
answers), and restoring it brings it back. Only organisation-wide admins may do either."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from support.gateway import MASTER_KEY, Gateway, settings_for


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    doc = {
        "providers": {"alpha": {"type": "fake"}, "beta": {"type": "fake"}},
        "models": {
            "chat": {
                "targets": [
                    {"provider": "alpha", "model": "m", "priority": 0},
                    {"provider": "beta", "model": "m", "priority": 1},
                ]
            }
        },
    }
    gateway = Gateway(settings_for(doc, tmp_path / "data")).start()
    yield gateway
    gateway.stop()


def served_by(gateway: Gateway) -> str:
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as sdk:
        raw = sdk.chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": "hi"}]
        )
    return raw.headers["x-turnout-deployment"]


def test_a_removed_provider_leaves_every_alias_once_a_second_admin_approves(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.root_url, timeout=20) as http:

        def call(method: str, path: str, key: str = MASTER_KEY, status: int = 200, **body: Any) -> Any:
            response = http.request(
                method, path, headers={"authorization": f"Bearer {key}"}, json=body or None
            )
            assert response.status_code == status, response.text
            return response.json()

        admin = call("POST", "/admin/users", email="ops@example.com", role="admin")  # the first admin
        second = call("POST", "/admin/keys", name="ops", user_id=admin["id"], role="admin")["key"]
        team = call("POST", "/admin/teams", name="red")["id"]
        team_admin = call("POST", "/admin/keys", name="red admin", team_id=team, role="admin")["key"]

        assert served_by(gateway) == "alpha/m"
        call("DELETE", "/admin/providers/alpha", team_admin, 403)  # organisation-wide admins only
        call("DELETE", "/admin/providers/gamma", status=404)
        pending = call("DELETE", "/admin/providers/alpha", status=202)
        assert pending["action"] == "remove_provider"
        assert served_by(gateway) == "alpha/m"  # not before the second admin says so
        call("POST", f"/admin/approvals/{pending['id']}/approve", second)
        assert served_by(gateway) == "beta/m"
        listed = {p["name"]: p["in_service"] for p in call("GET", "/admin/providers")["data"]}
        assert listed == {"alpha": False, "beta": True}
        call("POST", "/admin/providers/alpha/restore")
        assert served_by(gateway) == "alpha/m"
        actions = [e["action"] for e in call("GET", "/admin/audit?action=provider.*")["data"]]
        assert actions == ["provider.restore", "provider.remove"]
