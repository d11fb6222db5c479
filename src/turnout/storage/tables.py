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
    sa.Column("limits", sa.Text, nullable=True),  # JSON {rpm, tpm, parallel}
    sa.Column("metadata", sa.Text, nullable=True),  # JSON object
    sa.Column("created_by", sa.String(40), nullable=True),
    sa.Column("rotated_to", sa.String(40), nullable=True),
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
)
