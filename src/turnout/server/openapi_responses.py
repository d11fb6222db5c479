"""What the admin API answers, for /openapi.json: one schema per kind of object its services
describe (a key, a team, a budget...), and which route answers which, by method and path.

Each schema names the fields every answer carries and lets others through (a field added later is
no break); a route not listed here is documented as answering some JSON object.
"""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]

SCHEMAS = "#/components/schemas/{name}"
STRING = {"type": "string"}
STRING_OR_NULL = {"type": ["string", "null"]}
INTEGER = {"type": "integer"}
INTEGER_OR_NULL = {"type": ["integer", "null"]}
TIME = {"type": "number", "description": "Unix seconds."}
TIME_OR_NULL = {"type": ["number", "null"], "description": "Unix seconds."}
OBJECT = {"type": "object"}
OBJECT_OR_NULL = {"type": ["object", "null"]}


def ref(name: str) -> Json:
    return {"$ref": SCHEMAS.format(name=name)}


def _object(kind: str | None, required: dict[str, Json], optional: dict[str, Json] | None = None) -> Json:
    """An object with these fields (`object` set to `kind`), others allowed."""
    properties = {**({"object": {"const": kind}} if kind else {}), **required, **(optional or {})}
    return {
        "type": "object",
        "properties": properties,
        "required": [*(["object"] if kind else []), *required],
    }


def list_of(name: str, **extra: Json) -> Json:
    return _object("list", {"data": {"type": "array", "items": ref(name)}}, extra)


REVOKED_KEYS = {"type": "array", "items": STRING, "description": "The keys revoked with it."}

RESPONSE_SCHEMAS: dict[str, Json] = {
    "Key": _object(
        "key",
        {
            "id": STRING,
            "name": STRING,
            "prefix": STRING,
            "role": STRING,
            "team_id": STRING_OR_NULL,
            "user_id": STRING_OR_NULL,
            "models": {"type": ["array", "null"], "items": STRING},
            "expires_at": TIME_OR_NULL,
            "max_budget_micros": INTEGER_OR_NULL,
            "limits": OBJECT_OR_NULL,
            "metadata": OBJECT,
            "created_at": TIME,
            "created_by": STRING_OR_NULL,
            "revoked_at": TIME_OR_NULL,
            "rotated_to": STRING_OR_NULL,
        },
    ),
    "IssuedKey": {
        "allOf": [ref("Key"), {"type": "object", "properties": {"key": STRING}, "required": ["key"]}],
        "description": "A new key: the only time the key itself is shown.",
    },
    "Team": _object(
        "team",
        {
            "id": STRING,
            "name": STRING,
            "metadata": OBJECT,
            "created_at": TIME,
            "created_by": STRING_OR_NULL,
            "deleted_at": TIME_OR_NULL,
        },
        {"members": {"type": "array", "items": OBJECT}, "revoked_keys": REVOKED_KEYS},
    ),
    "User": _object(
        "user",
        {
            "id": STRING,
            "email": STRING,
            "name": STRING_OR_NULL,
            "role": STRING,
            "created_at": TIME,
            "created_by": STRING_OR_NULL,
            "deleted_at": TIME_OR_NULL,
        },
        {
            "teams": {"type": "array", "items": OBJECT},
            "revoked_keys": REVOKED_KEYS,
            "pending_action": ref("PendingAction"),
        },
    ),
    "Budget": _object(
        "budget",
        {
            "id": STRING,
            "scope": {"enum": ["key", "team", "user"]},
            "subject_id": STRING,
            "period": STRING,
            "timezone": STRING,
            "limit_micros": INTEGER,
            "soft_limit_micros": INTEGER_OR_NULL,
            "window_start": TIME_OR_NULL,
            "window_end": TIME_OR_NULL,
            "spent_micros": INTEGER,
            "reserved_micros": INTEGER,
            "remaining_micros": INTEGER,
            "soft_limit_reached": {"type": "boolean"},
            "hard_limit_reached": {"type": "boolean"},
        },
    ),
    "Deleted": _object(None, {"object": STRING, "deleted": {"const": True}}),
    "AuditEvent": _object(
        "audit_event",
        {
            "id": INTEGER,
            "at": TIME,
            "actor": STRING,
            "actor_key_id": STRING_OR_NULL,
            "action": STRING,
            "target_type": STRING_OR_NULL,
            "target_id": STRING_OR_NULL,
            "team_id": STRING_OR_NULL,
            "request_id": STRING_OR_NULL,
        },
        {"before": {"description": "The object before the change."}, "after": {"description": "And after."}},
    ),
    "Plan": _object(
        "plan",
        {
            "id": STRING,
            "name": STRING,
            "markup": STRING_OR_NULL,
            "prices": OBJECT_OR_NULL,
            "included_tokens": INTEGER_OR_NULL,
            "monthly_fee_micros": INTEGER_OR_NULL,
            "created_at": TIME,
        },
    ),
    "TeamBilling": _object(
        "team.billing",
        {
            "team_id": STRING,
            "plan_id": STRING_OR_NULL,
            "markup": STRING_OR_NULL,
            "prepaid": {"type": "boolean"},
            "balance_micros": INTEGER,
            "reserved_micros": INTEGER,
            "included_tokens": INTEGER,
            "included_tokens_used": INTEGER,
            "month": STRING,
        },
    ),
    "Credit": _object(
        "credit",
        {
            "id": INTEGER,
            "at": TIME,
            "amount_micros": INTEGER,
            "kind": STRING,
            "period": STRING_OR_NULL,
            "note": STRING_OR_NULL,
            "created_by": STRING_OR_NULL,
        },
    ),
    "Preset": _object(
        "preset",
        {
            "name": STRING,
            "model": STRING,
            "team_id": STRING,
            "alias": STRING,
            "system_prompt": STRING_OR_NULL,
            "params": OBJECT,
            "created_at": TIME,
            "created_by": STRING_OR_NULL,
        },
    ),
    "Provider": _object(
        "provider",
        {
            "name": STRING,
            "type": STRING,
            "in_service": {"type": "boolean"},
            "removed_at": TIME_OR_NULL,
            "removed_by": STRING_OR_NULL,
        },
    ),
    "RequestLog": _object(
        "request_log",
        {
            "request_id": {"type": "string", "description": "The ledger's request id (x-request-id)."},
            "at": TIME,
            "api": STRING,
            "key_id": STRING,
            "team_id": STRING_OR_NULL,
            "user_id": STRING_OR_NULL,
            "model": STRING,
            "served_model": STRING_OR_NULL,
            "deployment": STRING_OR_NULL,
            "stream": {"type": "boolean"},
            "status": INTEGER,
            "reason": STRING_OR_NULL,
            "latency_ms": INTEGER,
            "truncated": {"type": "boolean", "description": "A body was cut at the size cap."},
        },
        {
            "request": {"description": "The request (JSON; the text as kept when it was cut)."},
            "response": {"description": "The answer, a stream assembled (null: none)."},
        },
    ),
    "RequestLogSetting": _object(
        "request_log_setting",
        {
            "scope": {"enum": ["key", "team"]},
            "subject_id": STRING,
            "team_id": STRING_OR_NULL,
            "enabled": {"type": ["boolean", "null"], "description": "Its own setting (null: inherited)."},
            "effective": {"type": "boolean", "description": "Whether its traffic is logged now."},
        },
    ),
    "KeysRevoked": _object("team.keys_revoked", {"team_id": STRING, "revoked_keys": REVOKED_KEYS}),
    "SpendFigures": _object(
        None,
        {
            "requests": INTEGER,
            "attempts": INTEGER,
            "failed": INTEGER,
            "input_tokens": INTEGER,
            "cached_input_tokens": INTEGER,
            "output_tokens": INTEGER,
            "cache_write_tokens": INTEGER,
            "reasoning_tokens": INTEGER,
            "cost_micros": INTEGER,
            "customer_price_micros": INTEGER,
            "revenue_share_micros": INTEGER,
            "search_units": INTEGER,
            "images": INTEGER,
            "audio_seconds": INTEGER,
            "characters": INTEGER,
            "cost_unknown": INTEGER,
            "estimated": INTEGER,
            "cost_usd": STRING,
            "charged_usd": STRING,
        },
    ),
    "SpendGroup": {
        "allOf": [
            ref("SpendFigures"),
            _object(
                None,
                {"group": {"type": "object", "additionalProperties": STRING_OR_NULL}},
                {"bucket": {"type": "number", "description": "The bucket's start, unix seconds (a series)."}},
            ),
        ]
    },
}

# A page of a list paged by cursor (storage/paging.py): ask for the next with `after=next_cursor`.
PAGED: dict[str, Json] = {
    "has_more": {"type": "boolean", "description": "More items follow."},
    "next_cursor": {
        "type": ["string", "null"],
        "description": "Pass as `after` for the next page (null: this is the last page).",
    },
}

# (method, path) → status → schema; 202 is PendingAction wherever a route may pend, unless given.
ANSWERS: dict[tuple[str, str], dict[str, Json]] = {
    ("GET", "/admin/keys"): {"200": list_of("Key", **PAGED)},
    ("POST", "/admin/keys"): {"200": ref("IssuedKey")},
    ("GET", "/admin/keys/{key_id}"): {"200": ref("Key")},
    ("PATCH", "/admin/keys/{key_id}"): {"200": ref("Key")},
    ("POST", "/admin/keys/{key_id}/revoke"): {"200": ref("Key")},
    ("POST", "/admin/keys/{key_id}/rotate"): {"200": ref("IssuedKey")},
    ("GET", "/admin/teams"): {"200": list_of("Team", **PAGED)},
    ("POST", "/admin/teams"): {"200": ref("Team")},
    ("GET", "/admin/teams/{team_id}"): {"200": ref("Team")},
    ("DELETE", "/admin/teams/{team_id}"): {"200": ref("Team")},
    ("POST", "/admin/teams/{team_id}/members"): {"200": ref("User")},
    ("DELETE", "/admin/teams/{team_id}/members/{user_id}"): {"200": ref("User")},
    ("POST", "/admin/teams/{team_id}/revoke-keys"): {"200": ref("KeysRevoked")},
    ("GET", "/admin/users"): {"200": list_of("User", **PAGED)},
    # the user is created at once, as a member; the admin role waits (the user, with `pending_action`)
    ("POST", "/admin/users"): {"200": ref("User"), "202": ref("User")},
    ("GET", "/admin/users/{user_id}"): {"200": ref("User")},
    ("PATCH", "/admin/users/{user_id}"): {"200": ref("User")},
    ("DELETE", "/admin/users/{user_id}"): {"200": ref("User")},
    ("GET", "/admin/budgets"): {"200": list_of("Budget", **PAGED)},
    ("POST", "/admin/budgets"): {"200": ref("Budget")},
    ("GET", "/admin/budgets/{budget_id}"): {"200": ref("Budget")},
    ("DELETE", "/admin/budgets/{budget_id}"): {"200": ref("Deleted")},
    ("GET", "/admin/audit"): {"200": list_of("AuditEvent", **PAGED)},
    ("GET", "/admin/approvals"): {"200": list_of("PendingAction", **PAGED)},
    ("GET", "/admin/approvals/{action_id}"): {"200": ref("PendingAction")},
    ("POST", "/admin/approvals/{action_id}/approve"): {"200": ref("PendingAction")},
    ("POST", "/admin/approvals/{action_id}/reject"): {"200": ref("PendingAction")},
    ("GET", "/admin/plans"): {"200": list_of("Plan", **PAGED)},
    ("POST", "/admin/plans"): {"200": ref("Plan")},
    ("GET", "/admin/teams/{team_id}/billing"): {"200": ref("TeamBilling")},
    ("POST", "/admin/teams/{team_id}/billing"): {"200": ref("TeamBilling")},
    ("GET", "/admin/teams/{team_id}/credits"): {
        "200": list_of("Credit", account=ref("TeamBilling"), **PAGED)
    },
    ("POST", "/admin/teams/{team_id}/credits"): {"200": ref("TeamBilling")},
    ("GET", "/admin/presets"): {"200": list_of("Preset", **PAGED)},
    ("POST", "/admin/presets"): {"200": ref("Preset")},
    ("DELETE", "/admin/presets/{name}"): {"200": ref("Deleted")},
    ("GET", "/admin/spend"): {
        "200": list_of(
            "SpendGroup",
            since=TIME,
            until=TIME,
            group_by={"type": "array", "items": STRING},
            interval={"enum": ["hour", "day", None]},
            filters={"type": "object", "additionalProperties": STRING},
            totals=ref("SpendFigures"),
            **PAGED,
        )
    },
    ("GET", "/admin/providers"): {"200": list_of("Provider")},
    ("DELETE", "/admin/providers/{name}"): {"200": ref("Provider")},
    ("POST", "/admin/providers/{name}/restore"): {"200": ref("Provider")},
    ("GET", "/admin/request-logs"): {"200": list_of("RequestLog", **PAGED)},
    ("GET", "/admin/request-logs/export"): {
        "200": {"type": "string", "description": "One RequestLog a line."}
    },
    ("GET", "/admin/request-logs/{request_id}"): {"200": ref("RequestLog")},
    ("GET", "/admin/keys/{key_id}/request-log"): {"200": ref("RequestLogSetting")},
    ("PUT", "/admin/keys/{key_id}/request-log"): {"200": ref("RequestLogSetting")},
    ("GET", "/admin/teams/{team_id}/request-log"): {"200": ref("RequestLogSetting")},
    ("PUT", "/admin/teams/{team_id}/request-log"): {"200": ref("RequestLogSetting")},
}
