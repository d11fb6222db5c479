"""GET /openapi.json: a valid OpenAPI 3.1 document, served without a key, describing every route of
the admin API (generated from its router, so a new route appears by itself) with request body
schemas that accept what the API accepts and refuse what it refuses."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from turnout.domain.principal import Principal
from turnout.server.admin_routes import AdminRouter
from turnout.server.asgi import admin_router
from turnout.server.openapi import openapi_document

from support.gateway import MASTER_KEY, Gateway, settings_for

MAY_PEND = {
    ("DELETE", "/admin/teams/{team_id}"),
    ("POST", "/admin/teams/{team_id}/revoke-keys"),
    ("POST", "/admin/teams/{team_id}/members"),
    ("DELETE", "/admin/teams/{team_id}/members/{user_id}"),
    ("PATCH", "/admin/users/{user_id}"),
    ("POST", "/admin/users"),
    ("DELETE", "/admin/providers/{name}"),
    ("POST", "/admin/game-days"),
    ("PATCH", "/admin/keys/{key_id}"),
    ("POST", "/admin/keys/{key_id}/revoke"),
}
COMPATIBLE = {
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/embeddings"),
    ("POST", "/v1/rerank"),
    ("POST", "/v2/rerank"),
    ("POST", "/v1/moderations"),
    ("POST", "/v1/images/generations"),
    ("POST", "/v1/audio/transcriptions"),
    ("POST", "/v1/audio/speech"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"),
    ("POST", "/v1/responses"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model}"),
    ("POST", "/v1/files"),
    ("GET", "/v1/files"),
    ("GET", "/v1/files/{file_id}"),
    ("DELETE", "/v1/files/{file_id}"),
    ("GET", "/v1/files/{file_id}/content"),
    ("POST", "/v1/batches"),
    ("GET", "/v1/batches"),
    ("GET", "/v1/batches/{batch_id}"),
    ("POST", "/v1/batches/{batch_id}/cancel"),
    ("POST", "/v1/messages/batches"),
    ("GET", "/v1/messages/batches"),
    ("GET", "/v1/messages/batches/{batch_id}"),
    ("DELETE", "/v1/messages/batches/{batch_id}"),
    ("POST", "/v1/messages/batches/{batch_id}/cancel"),
    ("GET", "/v1/messages/batches/{batch_id}/results"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    data = tmp_path_factory.mktemp("openapi") / "data"
    doc = {
        "providers": {"fake": {"type": "fake"}},
        "models": {"chat": {"provider": "fake", "model": "m"}},
        "governance": {"two_person_rule": []},
    }
    gateway = Gateway(settings_for(doc, data)).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def document(gateway: Gateway) -> dict[str, Any]:
    response = httpx.get(gateway.root_url + "/openapi.json", timeout=20)  # no key: the schema is public
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()  # type: ignore[no-any-return]


def body_validator(document: dict[str, Any], method: str, path: str) -> OAS31Validator:
    schema = document["paths"][path][method.lower()]["requestBody"]["content"]["application/json"]["schema"]
    return OAS31Validator({**schema, "components": document["components"]})


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    validate(document)  # raises if it is not a valid OpenAPI 3.1 document
    assert document["openapi"].startswith("3.1")
    assert document["info"]["title"] == "turnout" and document["info"]["version"]
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    error = document["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["required"] == ["message", "type", "param", "code"]
    operations = {(m.upper(), p) for p, item in document["paths"].items() for m in item if m != "parameters"}
    assert operations >= COMPATIBLE
    for method, path in COMPATIBLE:
        assert document["paths"][path][method.lower()]["summary"]
    assert document["paths"]["/health/live"]["get"]["security"] == []
    assert document["paths"]["/openapi.json"]["get"]["security"] == []


def test_every_admin_route_is_described(gateway: Gateway, document: dict[str, Any]) -> None:
    routes = admin_router(gateway.services).routes
    assert routes
    ids = set()
    for route in routes:
        operation = document["paths"][route.path][route.method.lower()]
        where = f"{route.method} {route.path}"
        assert operation["summary"] == route.summary, where
        assert operation["tags"] == [route.tag], where
        ids.add(operation["operationId"])
        parameters = operation.get("parameters", [])
        path_params = [p["name"] for p in parameters if p["in"] == "path"]
        assert path_params == [s[1:-1] for s in route.segments if s.startswith("{")], where
        assert [p["name"] for p in parameters if p["in"] == "query"] == list(route.query), where
        assert ("requestBody" in operation) == (route.body is not None), where
        responses = operation["responses"]
        assert "200" in responses, where
        assert ("202" in responses) == ((route.method, route.path) in MAY_PEND), where
        for status in ("400", "401", "403", "404"):
            assert responses[status] == {"$ref": f"#/components/responses/{_error_name(status)}"}, where
    assert len(ids) == len(routes)  # operation ids are unique
    pending = document["paths"]["/admin/teams/{team_id}"]["delete"]["responses"]["202"]
    assert pending["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/PendingAction"}
    assert "409" in document["paths"]["/admin/approvals/{action_id}/approve"]["post"]["responses"]
    budgets = document["paths"]["/admin/budgets"]["get"]["parameters"]
    assert {p["name"]: p["schema"] for p in budgets}["scope"] == {"enum": ["key", "team", "user"]}


ADMIN_DOC = Path(__file__).resolve().parents[1] / "docs" / "admin-api.md"
PAGED_LISTS = {
    "/admin/keys",
    "/admin/teams",
    "/admin/users",
    "/admin/budgets",
    "/admin/plans",
    "/admin/presets",
    "/admin/audit",
    "/admin/approvals",
    "/admin/teams/{team_id}/credits",
    "/admin/request-logs",
    "/admin/spend",
}


def test_the_admin_api_page_lists_every_route_and_no_other(
    gateway: Gateway, document: dict[str, Any]
) -> None:
    """docs/admin-api.md names every admin route (a route added without a row fails here), and says
    which lists are paged: those whose schema takes `limit` and `after` and answers `next_cursor`."""
    rows = re.findall(r"^\| `([A-Z]+)` \| `(/admin/[^`]*)` \| (.*) \|$", ADMIN_DOC.read_text(), re.MULTILINE)
    routes = admin_router(gateway.services).routes
    assert sorted((method, path) for method, path, _ in rows) == sorted((r.method, r.path) for r in routes)
    paged = {path for method, path, text in rows if method == "GET" and "(paged" in text}
    assert paged == PAGED_LISTS
    for path in PAGED_LISTS:
        operation = document["paths"][path]["get"]
        assert {"limit", "after"} <= {p["name"] for p in operation["parameters"]}, path
        answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert {"has_more", "next_cursor"} <= set(answer["properties"]), path


def _error_name(status: str) -> str:
    return {"400": "BadRequest", "401": "Unauthorized", "403": "Forbidden", "404": "NotFound"}[status]


def test_bodies_the_schema_accepts_the_api_accepts_and_the_ones_it_refuses_it_refuses(
    gateway: Gateway, document: dict[str, Any]
) -> None:
    keys = body_validator(document, "POST", "/admin/keys")
    budgets = body_validator(document, "POST", "/admin/budgets")
    with httpx.Client(
        base_url=gateway.root_url, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=20
    ) as http:
        team = http.post("/admin/teams", json={"name": "schema"}).json()["id"]
        new_key = {
            "name": "ci",
            "team_id": team,
            "models": ["chat"],
            "limits": {"rpm": 10},
            "max_budget": "5",
        }
        budget = {"scope": "team", "subject_id": team, "limit": "10", "period": "daily", "timezone": "UTC"}
        keys.validate(new_key)
        assert http.post("/admin/keys", json=new_key).status_code == 200
        budgets.validate(budget)
        assert http.post("/admin/budgets", json=budget).status_code == 200
        refused_by_both = [
            ("/admin/keys", keys, {"role": "member"}),  # no name
            ("/admin/keys", keys, {"name": "ci", "role": "emperor"}),
            ("/admin/keys", keys, {"name": "ci", "limits": {"rpm": "ten"}}),
            ("/admin/keys", keys, {"name": "ci", "colour": "blue"}),  # unknown fields are refused
            ("/admin/budgets", budgets, {**budget, "period": "hourly"}),
            ("/admin/budgets", budgets, {"scope": "team", "limit": "10"}),  # no subject_id
            ("/admin/budgets", budgets, {**budget, "limit": 10}),  # USD is a string
        ]
        for path, validator, bad in refused_by_both:
            assert not validator.is_valid(bad), bad
            refused = http.post(path, json=bad)
            assert refused.status_code == 400, (bad, refused.text)
            assert set(refused.json()["error"]) == {"message", "type", "param", "code"}
    rotation = document["paths"]["/admin/keys/{key_id}/rotate"]["post"]["requestBody"]
    assert rotation["required"] is False  # every field has a default: no body is fine


def test_a_route_added_to_the_router_is_described_without_other_changes() -> None:
    class Widget(msgspec.Struct, forbid_unknown_fields=True):
        colour: str
        size: int = 1

    async def handler(*_: Any) -> None:
        return None

    async def authenticate(_: Any) -> Principal:
        raise AssertionError("not called: the document is built from the table alone")

    router = AdminRouter(authenticate)
    router.add("PUT", "/admin/widgets/{widget_id}", handler, "Paint a widget", body=Widget, tag="widgets")
    router.add("GET", "/admin/widgets", handler, "List widgets", query=("colour", "limit"), tag="widgets")
    document = openapi_document(router, "9.9.9")
    validate(document)
    put = document["paths"]["/admin/widgets/{widget_id}"]["put"]
    assert put["parameters"][0]["name"] == "widget_id"
    assert put["requestBody"]["required"] is True
    validator = body_validator(document, "PUT", "/admin/widgets/{widget_id}")
    assert validator.is_valid({"colour": "red"})
    assert not validator.is_valid({"size": 2})
    listed = document["paths"]["/admin/widgets"]["get"]
    assert [p["schema"].get("type") for p in listed["parameters"]] == ["string", "integer"]
    assert "409" not in listed["responses"]
    assert {"name": "widgets"} in document["tags"]
    assert document["info"]["version"] == "9.9.9"


def test_the_document_is_served_to_anyone(gateway: Gateway) -> None:
    first = httpx.get(gateway.root_url + "/openapi.json", timeout=20)
    wrong_key = httpx.get(
        gateway.root_url + "/openapi.json", headers={"authorization": "Bearer sk-nope"}, timeout=20
    )
    assert first.status_code == wrong_key.status_code == 200
    assert first.content == wrong_key.content
