"""The schema, as SQLAlchemy Core tables (queries are built from these, never from strings)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("key_hash", sa.LargeBinary(32), nullable=False, unique=True),
    sa.Column("prefix", sa.String(32), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # master | virtual
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    # virtual keys (0004): owner, what the key may do, who issued it
    sa.Column("team_id", sa.String(40), nullable=True),
    sa.Column("user_id", sa.String(40), nullable=True),
    sa.Column("allowed_models", sa.Text, nullable=True),  # JSON list; NULL: every model
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("max_budget_micros", sa.BigInteger, nullable=True),
    sa.Column("limits", sa.Text, nullable=True),  # JSON {rpm, tpm, rpd, parallel}
    sa.Column("metadata", sa.Text, nullable=True),  # JSON object
    sa.Column("created_by", sa.String(40), nullable=True),
    sa.Column("rotated_to", sa.String(40), nullable=True),
    # (0005) set by every write to the row: other instances pick changes up from it (keys.sync)
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True, index=True),
    # (0007) the person it acts for (its user, or its issuer's person; "master"), and the level
    # (organisation | team) its max_budget was set at
    sa.Column("person", sa.String(40), nullable=True),
    sa.Column("budget_set_level", sa.String(16), nullable=True),
)

# (0007) Every person who could use a key: its person and everyone who could use the key that
# issued it (domain.key_policy.lineage_of_new_key). A person's lost authority reaches these keys.
key_controllers = sa.Table(
    "key_controllers",
    metadata,
    sa.Column("key_id", sa.String(40), primary_key=True),
    sa.Column("person", sa.String(40), primary_key=True, index=True),
)

# Responses created through /v1/responses with `store: true` (kept for retrieval and for
# `previous_response_id`); the JSON columns hold orjson-encoded documents.
stored_responses = sa.Table(
    "stored_responses",
    metadata,
    sa.Column("id", sa.String(80), primary_key=True),
    sa.Column("key_id", sa.String(40), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("response", sa.LargeBinary, nullable=False),
    sa.Column("input_items", sa.LargeBinary, nullable=False),
    sa.Column("conversation", sa.LargeBinary, nullable=False),
)

# One row per request (turnout's request id): who, what, which deployment, tokens by kind, cost.
ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("api", sa.String(16), nullable=False),
    sa.Column("key_id", sa.String(40), nullable=False, index=True),
    sa.Column("team_id", sa.String(40), nullable=True, index=True),
    sa.Column("user_id", sa.String(40), nullable=True),
    sa.Column("alias", sa.String(256), nullable=False),
    sa.Column("deployment", sa.String(256), nullable=True),
    sa.Column("provider", sa.String(128), nullable=True),
    sa.Column("model", sa.String(256), nullable=True),
    sa.Column("stream", sa.Boolean, nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("input_tokens", sa.BigInteger, nullable=False),
    sa.Column("output_tokens", sa.BigInteger, nullable=False),
    sa.Column("cached_input_tokens", sa.BigInteger, nullable=False),
    sa.Column("cache_write_tokens", sa.BigInteger, nullable=False),
    sa.Column("reasoning_tokens", sa.BigInteger, nullable=False),
    sa.Column("estimated", sa.Boolean, nullable=False),
    sa.Column("cost_micros", sa.BigInteger, nullable=True),  # None: the model's price is unknown
    sa.Column("latency_ms", sa.Integer, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    # customer billing (0006): what the caller's team pays, and a preset creator's share of it
    sa.Column("customer_price_micros", sa.BigInteger, nullable=True),
    sa.Column("preset", sa.String(128), nullable=True),
    sa.Column("preset_team_id", sa.String(40), nullable=True, index=True),
    sa.Column("revenue_share_micros", sa.BigInteger, nullable=True),
    # 0008: a row per upstream attempt (0: the request reached none)
    sa.Column("attempt", sa.Integer, primary_key=True, server_default="1"),
    # 0009: what the price it was charged at depended on: the version (its date), the service
    # tier, the cache writes kept an hour
    sa.Column("price_version", sa.String(32), nullable=True),
    sa.Column("service_tier", sa.String(32), nullable=True),
    sa.Column("cache_write_1h_tokens", sa.BigInteger, nullable=False, server_default="0"),
    # 0011: why an attempt failed (the error's code; client_closed, gateway_shutdown); NULL: answered
    sa.Column("reason", sa.String(64), nullable=True),
    # 0016: what the request needed (domain/request_features.py bits: tools, images ...; 0: plain)
    sa.Column("features", sa.Integer, nullable=False, server_default="0"),
    # 0023: a mirror's shadow (rehearsal spend: key `rehearsal`, no team, never charged)
    sa.Column("rehearsal", sa.Boolean, nullable=False, server_default=sa.false()),
    # 0024: a reranker's search units (what rerank requests are priced by)
    sa.Column("search_units", sa.BigInteger, nullable=False, server_default="0"),
    # 0026: what an image or audio request was billed by (images, seconds of audio, characters)
    sa.Column("images", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("audio_seconds", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("characters", sa.BigInteger, nullable=False, server_default="0"),
)

# Teams and users (0005). A user's `role` is organisation-wide (NULL: none); a membership's is
# within its team. Deleted teams and users are kept (their ledger rows refer to them).
teams = sa.Table(
    "teams",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("metadata", sa.Text, nullable=True),  # JSON object
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(40), nullable=True),
    sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    # (0020) the team's own rate limits (all its keys together) and its new keys' defaults, JSON
    sa.Column("limits", sa.Text, nullable=True),
    sa.Column("key_limits", sa.Text, nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
    # (0021) the team's priority class (critical, standard, batch; NULL: the configured default)
    sa.Column("priority", sa.String(16), nullable=True),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=True),
    sa.Column("role", sa.String(16), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(40), nullable=True),
    sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("limits", sa.Text, nullable=True),  # (0020) the user's rate limits (all their keys), JSON
)

team_members = sa.Table(
    "team_members",
    metadata,
    sa.Column("team_id", sa.String(40), primary_key=True),
    sa.Column("user_id", sa.String(40), primary_key=True, index=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
)

# Budgets (0005): a hard limit and an optional soft one, per key, team or user, per period in a
# time zone. A window row is written once per budget and period: its reset, and when its limits
# were first reached (the soft limit's alert fires once a window).
budgets = sa.Table(
    "budgets",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("scope", sa.String(8), nullable=False),
    sa.Column("subject_id", sa.String(40), nullable=False),
    sa.Column("period", sa.String(8), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("limit_micros", sa.BigInteger, nullable=False),
    sa.Column("soft_limit_micros", sa.BigInteger, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(40), nullable=True),
    sa.Column("set_level", sa.String(16), nullable=True),  # (0007) organisation | team
    sa.UniqueConstraint("scope", "subject_id", "period", name="uq_budgets_scope"),
)

budget_windows = sa.Table(
    "budget_windows",
    metadata,
    sa.Column("budget_id", sa.String(40), primary_key=True),
    sa.Column("window_start", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("soft_limit_reached_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("hard_limit_reached_at", sa.DateTime(timezone=True), nullable=True),
)

# Every admin action (0005): who, what, when, before and after. Append-only: the database
# refuses UPDATE and DELETE on it (a trigger).
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("actor_key_id", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target_type", sa.String(32), nullable=False),
    sa.Column("target_id", sa.String(80), nullable=True),
    sa.Column("team_id", sa.String(40), nullable=True, index=True),
    sa.Column("before", sa.Text, nullable=True),  # JSON
    sa.Column("after", sa.Text, nullable=True),  # JSON
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("actor_person", sa.String(40), nullable=True),  # (0007) the person behind the key
)

# Admin actions under the two-person rule (0005), waiting for a second admin.
pending_actions = sa.Table(
    "pending_actions",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target_type", sa.String(32), nullable=False),
    sa.Column("target_id", sa.String(80), nullable=False),
    sa.Column("team_id", sa.String(40), nullable=True),
    sa.Column("params", sa.Text, nullable=False),  # JSON
    sa.Column("requested_by", sa.String(40), nullable=False),
    sa.Column("requested_by_user", sa.String(40), nullable=True),
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("decided_by", sa.String(40), nullable=True),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("result", sa.Text, nullable=True),  # JSON
    # (0007) the people behind the proposing and the deciding keys
    sa.Column("requested_by_person", sa.String(40), nullable=True),
    sa.Column("decided_by_person", sa.String(40), nullable=True),
)

AUDIT_APPEND_ONLY = {
    "postgresql": (
        "CREATE FUNCTION turnout_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$",
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION turnout_audit_append_only()",
    ),
    "sqlite": tuple(
        f"CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        for event in ("UPDATE", "DELETE")
    ),
}
"""The triggers that keep the audit log append-only: created by migration 0005 and, for a new
database, with the table itself."""

for _dialect, _statements in AUDIT_APPEND_ONLY.items():
    for _statement in _statements:
        ddl = sa.DDL(_statement).execute_if(dialect=_dialect)  # type: ignore[no-untyped-call]
        sa.event.listen(audit_log, "after_create", ddl)

# Customer billing (0006). A plan prices by markup or by fixed per-token prices (decimal strings,
# USD per 1M tokens), may include tokens each month and charge a monthly fee.
plans = sa.Table(
    "plans",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("markup", sa.String(32), nullable=True),
    sa.Column("input_price", sa.String(32), nullable=True),
    sa.Column("output_price", sa.String(32), nullable=True),
    sa.Column("included_tokens", sa.BigInteger, nullable=False),
    sa.Column("monthly_fee_micros", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(40), nullable=True),
)

# A team's terms: its plan, or a markup of its own; prepaid teams stop at a zero balance.
team_billing = sa.Table(
    "team_billing",
    metadata,
    sa.Column("team_id", sa.String(40), primary_key=True),
    sa.Column("plan_id", sa.String(40), nullable=True),
    sa.Column("markup", sa.String(32), nullable=True),
    sa.Column("prepaid", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.String(40), nullable=True),
)

# Money into (top-ups, adjustments) and out of (monthly fees) a team's balance; what requests
# cost it is in the ledger. A monthly fee is one row per team and month (`period`, unique).
credits = sa.Table(
    "credits",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("team_id", sa.String(40), nullable=False, index=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("amount_micros", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # topup | adjustment | monthly_fee
    sa.Column("period", sa.String(16), nullable=True),
    sa.Column("note", sa.String(500), nullable=True),
    sa.Column("created_by", sa.String(40), nullable=True),
    sa.UniqueConstraint("team_id", "kind", "period", name="uq_credits_team_id"),
)

# Published presets, callable as `preset/<name>`: a model alias with a system prompt and
# parameters, owned by the team that created it, which is credited a share of what callers pay.
presets = sa.Table(
    "presets",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("team_id", sa.String(40), nullable=False),
    sa.Column("alias", sa.String(256), nullable=False),
    sa.Column("system_prompt", sa.Text, nullable=True),
    sa.Column("params", sa.Text, nullable=True),  # JSON object
    sa.Column("revenue_share", sa.String(32), nullable=False),
    sa.Column("share_cap_micros", sa.BigInteger, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(40), nullable=True),
    sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("description", sa.String(500), nullable=True),  # (0007) shown to every team
)

# Configured providers taken out of service through the admin API (0006): every instance stops
# routing to them until they are restored.
removed_providers = sa.Table(
    "removed_providers",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("removed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("removed_by", sa.String(40), nullable=True),
)

# (0023) Game days: a provider taken out of service for a share of traffic or for chosen teams until
# `ends_at`; rolled back early (`state` rolled_back) when the affected traffic's error rate passes
# `error_rate`. Every instance reads the active ones (governance/game_days.py).
game_days = sa.Table(
    "game_days",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("share", sa.Float, nullable=True),  # of every request (None: the teams' only)
    sa.Column("teams", sa.Text, nullable=True),  # JSON list of team ids (None: by share)
    sa.Column("error_rate", sa.Float, nullable=False),
    sa.Column("min_requests", sa.Integer, nullable=False),
    sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("state", sa.String(16), nullable=False),  # active | ended | rolled_back
    sa.Column("created_by", sa.String(40), nullable=True),
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("ended_by", sa.String(40), nullable=True),
    sa.Column("end_reason", sa.String(200), nullable=True),
)

# (0010) Values every instance sharing the database must agree on, written by the first to start
# (the key-hash secret's check: `keys.secret_check`).
instance_checks = sa.Table(
    "instance_checks",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# (0028) the units image and audio requests are billed by, summed in both kinds of totals
_MEDIA_UNITS = ("images", "audio_seconds", "characters")

# (0012) Running totals of the ledger, by grain (`quarter`: 15 minutes, `hour`, `day`, all
# UTC; `all`: one bucket for all time, at 1970-01-01), dimension (key, team, user, model, alias,
# deployment, preset, preset_team) and value ('' for none). Updated in the transaction that inserts
# the ledger rows they count, from the rows actually inserted, so a replayed batch adds nothing:
# budgets and billing read them on start (O(budgets), not O(rows)) and `spend report` reads them
# instead of the rows. Quarter-hour rows are kept only for key, team and user (the edges of budget
# windows in time zones offset by 30 or 45 minutes) and only for RECENT_QUARTERS.
spend_rollups = sa.Table(
    "spend_rollups",
    metadata,
    sa.Column("grain", sa.String(8), primary_key=True),
    sa.Column("dim", sa.String(16), primary_key=True),
    sa.Column("value", sa.String(256), primary_key=True),
    sa.Column("bucket", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("requests", sa.BigInteger, nullable=False),  # distinct requests with a row here
    sa.Column("attempts", sa.BigInteger, nullable=False),  # rows
    sa.Column("failed", sa.BigInteger, nullable=False),  # requests none of whose rows here answered
    sa.Column("input_tokens", sa.BigInteger, nullable=False),
    sa.Column("cached_input_tokens", sa.BigInteger, nullable=False),
    sa.Column("output_tokens", sa.BigInteger, nullable=False),
    sa.Column("cache_write_tokens", sa.BigInteger, nullable=False),
    sa.Column("reasoning_tokens", sa.BigInteger, nullable=False),
    sa.Column("cost_micros", sa.BigInteger, nullable=False),  # rows without a price count 0
    sa.Column("customer_price_micros", sa.BigInteger, nullable=False),
    sa.Column("revenue_share_micros", sa.BigInteger, nullable=False),
    sa.Column("cost_unknown", sa.BigInteger, nullable=False),  # rows without a price
    sa.Column("estimated", sa.BigInteger, nullable=False),  # rows whose tokens turnout counted
    # (0027) a reranker's searches, as billed (rows before 0024 have none)
    sa.Column("search_units", sa.BigInteger, nullable=False, server_default="0"),
    # (0028) images generated, seconds of audio transcribed, characters read aloud (rows before
    # 0026 have none)
    *(sa.Column(n, sa.BigInteger, nullable=False, server_default="0") for n in _MEDIA_UNITS),
    sa.Index("ix_spend_rollups_grain_dim_bucket", "grain", "dim", "bucket"),
)

# (0018) The ledger's totals by every dimension at once (storage/cube.py): per hour and per day, per
# combination of the dimensions below ("" for none); counts as in spend_rollups, and requests and
# failures seen through each subset of the attempt-level dimensions (requests_1..7, failed_1..7).
_CUBE_COUNTS = (
    "requests",
    "attempts",
    "failed",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_micros",
    "customer_price_micros",
    "revenue_share_micros",
    "cost_unknown",
    "estimated",
    *(f"requests_{m}" for m in range(1, 8)),
    *(f"failed_{m}" for m in range(1, 8)),
)
spend_cube = sa.Table(
    "spend_cube",
    metadata,
    sa.Column("grain", sa.String(8), primary_key=True),
    sa.Column("bucket", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("key_id", sa.String(40), primary_key=True),
    sa.Column("team_id", sa.String(40), primary_key=True),
    sa.Column("user_id", sa.String(40), primary_key=True),
    sa.Column("alias", sa.String(256), primary_key=True),
    sa.Column("preset", sa.String(128), primary_key=True),
    sa.Column("model", sa.String(256), primary_key=True),
    sa.Column("deployment", sa.String(256), primary_key=True),
    sa.Column("provider", sa.String(128), primary_key=True),
    *(sa.Column(name, sa.BigInteger, nullable=False) for name in _CUBE_COUNTS),
    sa.Column("search_units", sa.BigInteger, nullable=False, server_default="0"),  # (0027)
    *(sa.Column(n, sa.BigInteger, nullable=False, server_default="0") for n in _MEDIA_UNITS),  # (0028)
    sa.Index("ix_spend_cube_grain_team_bucket", "grain", "team_id", "bucket"),
    sa.Index("ix_spend_cube_grain_key_bucket", "grain", "key_id", "bucket"),
)

# (0012) How far ledger retention (`storage.ledger_retention_days`) has deleted rows: every row
# before `pruned_before` is gone (counted in spend_rollups only). One row, id 1, once pruning began.
ledger_horizon = sa.Table(
    "ledger_horizon",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("pruned_before", sa.DateTime(timezone=True), nullable=False),
)

# (0022) How far the running totals' cells of a grain (`hour`) have been pruned
# (`storage.hourly_totals_retention_days`): every such cell before `pruned_before` is gone from
# spend_rollups and spend_cube, its figures kept by the day cells.
totals_horizon = sa.Table(
    "totals_horizon",
    metadata,
    sa.Column("grain", sa.String(8), primary_key=True),
    sa.Column("pruned_before", sa.DateTime(timezone=True), nullable=False),
)

# (0013) The gateway processes sharing this database: each writes its row on start and renews it
# every few seconds (times are the database's own clock, in unix seconds); a row past `expires_at`
# is an instance that stopped without saying so. Without Redis, each live instance enforces its
# share of every budget.
instances = sa.Table(
    "instances",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
    sa.Column("shared_counters", sa.Boolean, nullable=False),  # configured with storage.redis_url
)

# (0014) Which turnout can serve a database at each schema revision: `oldest_reader` is the oldest
# schema revision whose code may serve it (every migration after that one only added what older
# code can ignore). Written by the code that creates or upgrades the schema; read by older code
# finding a revision newer than it knows, which serves it when it is at least `oldest_reader`.
schema_readers = sa.Table(
    "schema_readers",
    metadata,
    sa.Column("revision", sa.String(32), primary_key=True),
    sa.Column("oldest_reader", sa.String(32), nullable=False),
)

# (0015) The request log (request_logs/): for keys and teams that have it switched on, what a
# request asked and what it was answered (redacted, each part cut at `request_logs.max_entry_bytes`
# and marked so), under the ledger's request id. Written in batches off the request path, deleted
# after `request_logs.retention_days`. `request` and `response` are JSON text (a cut one is not).
request_logs = sa.Table(
    "request_logs",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("api", sa.String(16), nullable=False),
    sa.Column("key_id", sa.String(40), nullable=False),
    sa.Column("team_id", sa.String(40), nullable=True),
    sa.Column("user_id", sa.String(40), nullable=True),
    sa.Column("alias", sa.String(256), nullable=False),  # the model the client asked for
    sa.Column("model", sa.String(256), nullable=True),  # the upstream model that answered
    sa.Column("deployment", sa.String(256), nullable=True),
    sa.Column("stream", sa.Boolean, nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("reason", sa.String(64), nullable=True),
    sa.Column("latency_ms", sa.Integer, nullable=False),
    sa.Column("request", sa.Text, nullable=False),
    sa.Column("response", sa.Text, nullable=True),  # None: no answer (the request failed)
    sa.Column("truncated", sa.Boolean, nullable=False),
    # in the admin API's order (newest first, by id within a time): a page is read off an index,
    # and a search walks it until the page is full rather than sorting every match
    sa.Index("ix_request_logs_at_request_id", "at", "request_id"),
    sa.Index("ix_request_logs_key_id_at", "key_id", "at", "request_id"),
    sa.Index("ix_request_logs_team_id_at", "team_id", "at", "request_id"),
)

# (0015) Who is logged: a key's or a team's own setting (a key's wins over its team's, a team's over
# `request_logs.log_by_default`). Every instance reads the table every few seconds.
request_log_settings = sa.Table(
    "request_log_settings",
    metadata,
    sa.Column("scope", sa.String(8), primary_key=True),  # key | team
    sa.Column("subject_id", sa.String(40), primary_key=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.String(40), nullable=True),
)

# (0017) One signed-in console browser (console/sessions.py): the cookie itself is never stored, only
# its SHA-256; the key it signed in with is re-read on every request.
console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("id_hash", sa.LargeBinary(32), primary_key=True),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("key_hash", sa.LargeBinary(32), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)

# (0019) Budget alerts waiting to reach a webhook (spend/alerts.py), written in the transaction
# that records the budget window reaching its limit: one row per alert and webhook, kept once
# delivered or given up (`state`), so none is lost on a restart.
alert_outbox = sa.Table(
    "alert_outbox",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # Turnout-Delivery: the same on every retry
    sa.Column("event", sa.String(32), nullable=False),  # budget.soft_limit | budget.exhausted
    sa.Column("budget_id", sa.String(40), nullable=False),
    sa.Column("team_id", sa.String(40), nullable=True),  # the budget's team, for the audit log
    sa.Column("destination", sa.Text, nullable=False),  # the webhook's URL
    sa.Column("body", sa.Text, nullable=False),  # the JSON sent, the same on every retry
    sa.Column("state", sa.String(16), nullable=False),  # pending | delivered | failed
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_at", sa.Float, nullable=False),  # unix seconds: when it may be tried next
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_error", sa.String(200), nullable=True),
    sa.Index("ix_alert_outbox_state_next_at", "state", "next_at"),
)

# (0025) The files and batches of providers' batch APIs (batches/): which deployment holds each (its
# id is the provider's own), whose it is (only its key's team sees it), and for a file turnout
# uploaded, the model alias its lines name and the most they can use (reserved when a batch of it is
# created). Output files a batch produced are added when the batch is read.
batch_files = sa.Table(
    "batch_files",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("provider", sa.String(128), nullable=False),
    sa.Column("deployment", sa.String(256), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),  # the deployment's model the lines were given
    sa.Column("alias", sa.String(256), nullable=False),  # the model the lines named
    sa.Column("key_id", sa.String(40), nullable=False),
    sa.Column("team_id", sa.String(40), nullable=True, index=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("purpose", sa.String(32), nullable=False),
    sa.Column("endpoint", sa.String(64), nullable=True),  # the `url` every line names
    sa.Column("lines", sa.Integer, nullable=False),
    sa.Column("max_input_tokens", sa.BigInteger, nullable=False),
    sa.Column("max_output_tokens", sa.BigInteger, nullable=False),
    sa.Column("file", sa.Text, nullable=False),  # the provider's file object (JSON)
)

# (0025) A batch: its deployment, its owner, what was reserved for it, its last known state (the
# provider's batch object, JSON), and when its usage was accounted in the ledger (once: the
# instance whose update sets `accounted_at` settles its budgets).
batches = sa.Table(
    "batches",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("api", sa.String(16), nullable=False),  # batches (OpenAI's) | messages (Anthropic's)
    sa.Column("provider", sa.String(128), nullable=False),
    sa.Column("deployment", sa.String(256), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("alias", sa.String(256), nullable=False),
    sa.Column("key_id", sa.String(40), nullable=False),
    sa.Column("team_id", sa.String(40), nullable=True),
    sa.Column("user_id", sa.String(40), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("reserved_micros", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("batch", sa.Text, nullable=False),
    sa.Column("accounted_at", sa.Float, nullable=True),
    sa.Index("ix_batches_team_id_created_at", "team_id", "created_at"),
    sa.Index("ix_batches_accounted_at_status", "accounted_at", "status"),
)
