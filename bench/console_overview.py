"""How fast the console's overview answers with a big ledger: a gateway (SQLite, its own thread)
whose ledger holds N rows over the last 30 days (1 M by default: written by SQLite itself from a
recursive query, 50 teams, 1,000 keys, every 53rd request failed, every tenth with a failed first
attempt, every twentieth through a preset), the running totals computed from them by the
migrations' backfill (not the cube of every dimension at once, which these pages do not read), then
`GET /ui` for each plotted span, the billing pages (50 teams' accounts) and the presets page (one
preset's earnings) as the master key (the whole organisation) and as a team's admin (one team's
figures), timed from a client on loopback (so an upper bound of the server's time).

    .venv/bin/python bench/console_overview.py              # 1 M rows (fill and totals: ~2 min)
    .venv/bin/python bench/console_overview.py --rows 200000
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from turnout.storage.rollups import backfill

from support.gateway import MASTER_KEY, Gateway, settings_for

DOC = {"providers": {"fake": {"type": "fake"}}, "models": {"chat": {"provider": "fake", "model": "m"}}}
TEAMS = 50
SPAN = 30 * 86400  # seconds the rows are spread over, ending now
CALLS = 30  # timed calls per page and caller

FILL = """
INSERT INTO ledger (request_id, attempt, at, api, key_id, team_id, user_id, alias, deployment,
    provider, model, stream, status, input_tokens, output_tokens, cached_input_tokens,
    cache_write_tokens, reasoning_tokens, estimated, cost_micros, latency_ms, attempts,
    customer_price_micros, cache_write_1h_tokens, features, preset, preset_team_id,
    revenue_share_micros)
WITH RECURSIVE g(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g WHERE n < :rows - 1),
rows AS (
    SELECT n - (n % 10 = 9) AS r, 1 + (n % 10 = 9) AS a, n % 10 IN (8, 9) AS two,
        n % 10 = 8 AS first_of_two FROM g
)
SELECT 'req-' || r, a,
    strftime('%Y-%m-%d %H:%M:%S', :start + r * :step, 'unixepoch') || '.000000', 'chat',
    'key_' || ((r * 7919) % 1000),
    json_extract(:teams, '$[' || (((r * 7919) % 1000) % 50) || ']'),
    'user_' || ((r * 7919) % 200), 'chat', 'fake/m', 'fake', 'm', r % 2 = 0,
    CASE WHEN first_of_two THEN 502 WHEN r % 53 = 0 THEN 503 ELSE 200 END,
    (r * 13) % 2000, (r * 17) % 500, 0, 0, 0, 0,
    ((r * 13) % 2000) * 2 + ((r * 17) % 500) * 8, 100 + r % 900, CASE WHEN two THEN 2 ELSE 1 END,
    (((r * 13) % 2000) * 2 + ((r * 17) % 500) * 8) * 12 / 10, 0, 0,
    CASE WHEN r % 20 = 0 THEN 'helper' END, CASE WHEN r % 20 = 0 THEN json_extract(:teams, '$[0]') END,
    CASE WHEN r % 20 = 0 THEN ((r * 13) % 2000) / 5 END
FROM rows
"""


def fill(database: Path, rows: int, teams: list[str]) -> None:
    engine = sa.create_engine(f"sqlite:///{database}")
    now = time.time()
    with engine.begin() as conn:
        started = time.perf_counter()
        conn.execute(
            sa.text(FILL),
            {"rows": rows, "start": now - SPAN, "step": SPAN / rows, "teams": json.dumps(teams)},
        )
        print(f"filled {rows:,} ledger rows in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        backfill(conn)
        cells = conn.execute(sa.text("SELECT count(*) FROM spend_rollups")).scalar()
        print(f"running totals computed in {time.perf_counter() - started:.1f} s ({cells:,} cells)")
    engine.dispose()


def signed_in(gateway: Gateway, key: str) -> httpx.Client:
    client = httpx.Client(base_url=gateway.root_url, timeout=60)
    form = client.get("/ui/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token
    assert client.post("/ui/login", data={"key": key, "csrf": token.group(1)}).status_code == 303
    return client


def timed(client: httpx.Client, path: str) -> tuple[float, float]:
    client.get(path)  # warm
    took = []
    for _ in range(CALLS):
        started = time.perf_counter()
        answer = client.get(path)
        took.append(time.perf_counter() - started)
        assert answer.status_code == 200, answer.text
    return statistics.median(took) * 1000, sorted(took)[int(0.95 * len(took)) - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    rows = parser.parse_args().rows
    data_dir = Path(tempfile.mkdtemp(prefix="turnout-overview-"))
    settings = settings_for(DOC, data_dir)
    gateway = Gateway(settings).start()  # makes the database
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    teams = [
        httpx.post(gateway.root_url + "/admin/teams", json={"name": f"t{i}"}, headers=headers).json()["id"]
        for i in range(TEAMS)
    ]
    made = httpx.post(
        gateway.root_url + "/admin/keys",
        json={"name": "a", "role": "admin", "team_id": teams[0]},
        headers=headers,
    )
    team_admin = made.json()["key"]
    preset = {"name": "helper", "team_id": teams[0], "model": "chat", "revenue_share": "0.2"}
    assert httpx.post(gateway.root_url + "/admin/presets", json=preset, headers=headers).status_code == 200
    gateway.stop()
    fill(data_dir / "turnout.db", rows, teams)
    gateway = Gateway(settings).start()
    pages = [f"/ui?window={w}" for w in ("hour", "day", "month")]
    pages += ["/ui/billing", f"/ui/teams/{teams[0]}/billing", "/ui/presets"]
    try:
        print(f"{CALLS} calls each: median / p95 in ms")
        for who, key in (("master key (organisation)", MASTER_KEY), ("team admin", team_admin)):
            client = signed_in(gateway, key)
            try:
                for path in pages:
                    median, p95 = timed(client, path)
                    print(f"  {who:28} GET {path:48} {median:7.1f} / {p95:7.1f}")
            finally:
                client.close()
    finally:
        gateway.stop()
        shutil.rmtree(data_dir, ignore_errors=True)  # a million rows: hundreds of MB


if __name__ == "__main__":
    main()
