"""The admin API's lists are paged by cursor (keys, teams, users, budgets, plans, presets, credit
entries, the audit log): `limit`
items a page in a stable order, `after` = the page before's `next_cursor`. Walking a list never
skips or repeats an item (even while items are added and removed), bad paging is a 400 in the
admin API's format naming the parameter, what each caller sees is what it saw unpaged, the CLI
lists every item across pages, and `GET /admin/budgets` costs the same number of queries for 3
budgets as for 40. A real gateway over HTTP; queries counted in-process with SQLAlchemy's hook."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from turnout.cli.main import main

from support.gateway import MASTER_KEY, Gateway, settings_for

DOC = {
    "providers": {"local": {"type": "fake"}},
    "models": {"chat": {"provider": "local", "model": "m"}},
    "governance": {"two_person_rule": []},  # every change at once: this is about lists
}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    gateway = Gateway(settings_for(DOC, tmp_path / "data")).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """One gateway for the tests that only read."""
    gateway = Gateway(settings_for(DOC, tmp_path_factory.mktemp("paging") / "data")).start()
    with master_client(gateway) as client:
        yield client
    gateway.stop()


def master_client(gateway: Gateway) -> httpx.Client:
    return httpx.Client(
        base_url=gateway.root_url, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30
    )


@pytest.fixture
def http(gateway: Gateway) -> Iterator[httpx.Client]:
    with master_client(gateway) as client:
        yield client


def made(http: httpx.Client, path: str, **body: Any) -> dict[str, Any]:
    response = http.post(path, json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def team(http: httpx.Client, name: str) -> str:
    return str(made(http, "/admin/teams", name=name)["id"])


# What makes one more item of each list, and the field that names an item in it.
MAKERS: dict[str, tuple[Callable[[httpx.Client, int], Any], str]] = {
    "keys": (lambda h, i: made(h, "/admin/keys", name=f"key {i}"), "id"),
    "teams": (lambda h, i: made(h, "/admin/teams", name=f"team-{i}"), "id"),
    "users": (lambda h, i: made(h, "/admin/users", email=f"user{i}@example.com"), "id"),
    "budgets": (
        lambda h, i: made(h, "/admin/budgets", scope="team", subject_id=team(h, f"b{i}"), limit="10"),
        "id",
    ),
    "plans": (lambda h, i: made(h, "/admin/plans", name=f"plan {i}", markup="1.25"), "id"),
    "presets": (
        lambda h, i: made(h, "/admin/presets", name=f"p{i:02d}", team_id=team(h, f"p{i}"), model="chat"),
        "name",
    ),
    "audit": (lambda h, i: made(h, "/admin/teams", name=f"audited-{i}"), "id"),  # each change is an event
    "credits": (lambda h, i: made(h, f"/admin/teams/{wallet(h)}/credits", amount=f"{i + 1}.00"), "id"),
}


def wallet(http: httpx.Client) -> str:
    """The team whose credit entries are listed (made on first use)."""
    found = http.get("/admin/teams/wallet")
    return str(found.json()["id"]) if found.status_code == 200 else team(http, "wallet")


def path_of(http: httpx.Client, kind: str) -> str:
    return f"/admin/teams/{wallet(http)}/credits" if kind == "credits" else f"/admin/{kind}"


def walk(http: httpx.Client, path: str, limit: int, **query: str) -> list[list[dict[str, Any]]]:
    """Every page of a list, following the cursors; each page checked for its shape."""
    pages: list[list[dict[str, Any]]] = []
    after: str | None = None
    while True:
        asked = {**query, "limit": str(limit), **({"after": after} if after else {})}
        response = http.get(path, params=asked)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["object"] == "list" and len(page["data"]) <= limit
        assert page["has_more"] == (page["next_cursor"] is not None)
        pages.append(page["data"])
        if not page["has_more"]:
            return pages
        after = page["next_cursor"]
        assert len(pages) < 1000, "the cursors never end"


@pytest.mark.parametrize("kind", list(MAKERS))
def test_walking_a_list_page_by_page_gives_every_item_once_in_a_stable_order(
    http: httpx.Client, kind: str
) -> None:
    make, field = MAKERS[kind]
    path = path_of(http, kind)
    for i in range(7):
        make(http, i)
    whole = http.get(path).json()  # the first page by default: 100 items, more than there are
    assert not whole["has_more"] and whole["next_cursor"] is None
    pages = walk(http, path, limit=3)
    assert [len(p) for p in pages[:-1]] == [3] * (len(pages) - 1) and pages[-1]  # full pages, then the rest
    walked = [item[field] for page in pages for item in page]
    assert walked == [item[field] for item in whole["data"]]  # same items, same order
    assert len(set(walked)) == len(walked) >= 7


def test_items_added_and_removed_during_a_walk_never_make_it_skip_or_repeat(http: httpx.Client) -> None:
    ids = [team(http, f"t{i}") for i in range(6)]
    first = http.get("/admin/teams", params={"limit": "2"}).json()
    assert [t["id"] for t in first["data"]] == ids[:2]
    http.delete(f"/admin/teams/{ids[0]}").raise_for_status()  # one already read goes
    http.delete(f"/admin/teams/{ids[3]}").raise_for_status()  # one not read yet goes
    added = team(http, "late")  # one is added (the newest: at the end)
    rest = walk(http, "/admin/teams", limit=2, after=first["next_cursor"])
    seen = [t["id"] for t in first["data"]] + [t["id"] for page in rest for t in page]
    assert seen == [*ids[:3], *ids[4:], added]


BAD_PAGING = {
    "limit 0": ({"limit": "0"}, "limit"),
    "limit over the largest page": ({"limit": "1001"}, "limit"),
    "limit not a number": ({"limit": "ten"}, "limit"),
    "limit negative": ({"limit": "-1"}, "limit"),
    "limit empty": ({"limit": ""}, "limit"),
    "limit huge": ({"limit": "9" * 5000}, "limit"),
    "after empty": ({"after": ""}, "after"),
    "after not a cursor": ({"after": "not a cursor!"}, "after"),
    "after not base64 of a position": ({"after": base64.urlsafe_b64encode(b'{"a": 1}').decode()}, "after"),
    "after of another list's shape": ({"after": base64.urlsafe_b64encode(b'["p01"]').decode()}, "after"),
    "after too long": ({"after": "A" * 4000}, "after"),
}


@pytest.mark.parametrize("kind", list(MAKERS))
@pytest.mark.parametrize("case", list(BAD_PAGING))
def test_bad_paging_is_a_400_naming_the_parameter(reader: httpx.Client, kind: str, case: str) -> None:
    query, param = BAD_PAGING[case]
    if kind == "presets" and case == "after of another list's shape":
        query = {"after": base64.urlsafe_b64encode(b"[1, 2]").decode()}  # presets are by name
    response = reader.get(path_of(reader, kind), params=query)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert error["message"]


def test_each_caller_sees_the_budgets_it_saw_before_paging_one_page_at_a_time(http: httpx.Client) -> None:
    red, blue = team(http, "red"), team(http, "blue")
    keys = {
        name: made(http, "/admin/keys", name=name, role=role, team_id=t)
        for name, role, t in (
            ("red_admin", "admin", red),
            ("red_member", "member", red),
            ("blue_admin", "admin", blue),
        )
    }
    inside = made(http, "/admin/users", email="ana@example.com")["id"]
    outside = made(http, "/admin/users", email="bo@example.com")["id"]
    made(http, f"/admin/teams/{red}/members", user_id=inside, role="member")
    budget: dict[str, str] = {}
    for label, scope, subject in (
        ("red team", "team", red),
        ("blue team", "team", blue),
        ("red key", "key", keys["red_member"]["id"]),
        ("blue key", "key", keys["blue_admin"]["id"]),
        ("red's member", "user", inside),
        ("someone else", "user", outside),
    ):
        budget[made(http, "/admin/budgets", scope=scope, subject_id=subject, limit="5")["id"]] = label
    everything = set(budget.values())
    red_things = {"red team", "red key", "red's member"}
    expected = {
        MASTER_KEY: everything,
        keys["red_admin"]["key"]: red_things,
        keys["red_member"]["key"]: red_things,
        keys["blue_admin"]["key"]: {"blue team", "blue key"},
    }
    for key, labels in expected.items():
        with httpx.Client(base_url=str(http.base_url), headers={"Authorization": f"Bearer {key}"}) as caller:
            pages = walk(caller, "/admin/budgets", limit=1)
        assert [budget[b["id"]] for page in pages for b in page] == [
            label for label in budget.values() if label in labels
        ]


def test_the_cli_lists_every_item_across_pages(gateway: Gateway, http: httpx.Client) -> None:
    names = {f"team-{i:04d}" for i in range(1001)}  # more than the largest page
    for name in sorted(names):
        made(http, "/admin/teams", name=name)
    result = CliRunner().invoke(
        main,
        ["teams", "list", "--url", gateway.root_url, "--key", MASTER_KEY],
        env={"TURNOUT_ADMIN_KEY": None, "TURNOUT_MASTER_KEY": None, "TURNOUT_URL": None},
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1001 and {line.split()[1] for line in lines} == names


# --------------------------------------------------------------------------- one query


class Statements:
    """The statements the gateway's request handlers send to its database (not its background
    tasks': the key sync, the budget refresh, the ledger's flush), counted by SQLAlchemy's hook."""

    def __init__(self, gateway: Gateway) -> None:
        self.engine = gateway.services.database.engine.sync_engine
        self.seen: list[str] = []
        self._lock = threading.Lock()
        sa.event.listen(self.engine, "before_cursor_execute", self._executed)

    def _executed(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        task = asyncio.current_task()
        if task is not None and "run_asgi" in task.get_coro().__qualname__:
            with self._lock:
                self.seen.append(statement)

    def during(self, call: Callable[[], Any]) -> list[str]:
        with self._lock:
            self.seen.clear()
        call()
        with self._lock:
            return list(self.seen)

    def close(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._executed)


def test_listing_budgets_is_one_query_whatever_their_number(gateway: Gateway, http: httpx.Client) -> None:
    red = team(http, "red")
    red_admin = made(http, "/admin/keys", name="red admin", role="admin", team_id=red)["key"]
    added = 0

    def add_budgets(n: int) -> None:
        """Half on other teams, half on keys of red (which red's admin sees)."""
        nonlocal added
        for _ in range(n):
            added += 1
            if added % 2:
                subject = {"scope": "team", "subject_id": team(http, f"other-{added}")}
            else:
                subject = {
                    "scope": "key",
                    "subject_id": made(http, "/admin/keys", name=f"k{added}", team_id=red)["id"],
                }
            made(http, "/admin/budgets", **subject, limit="5")

    statements = Statements(gateway)
    try:

        def listing(key: str) -> list[str]:
            def read() -> None:
                response = http.get("/admin/budgets", headers={"Authorization": f"Bearer {key}"})
                assert response.status_code == 200, response.text

            read()  # a first read opens the new budgets' windows
            return statements.during(read)

        counts: dict[int, dict[str, int]] = {}
        for total in (4, 40):
            add_budgets(total - added)
            counts[total] = {}
            for name, key in (("master", MASTER_KEY), ("red admin", red_admin)):
                sent = listing(key)
                assert sum("FROM budgets" in s for s in sent) == 1, sent  # the budgets and their subjects
                counts[total][name] = len(sent)
    finally:
        statements.close()
    assert counts[4] == counts[40]  # the same queries for 40 budgets as for 4 (authentication's too)
