"""GET /openapi.json: an OpenAPI 3.1 document of the admin API, generated from its router (every
route, with its path and query parameters, its request body's schema from the msgspec Struct it
decodes, and what it answers, from server/openapi_responses.py), plus the OpenAI- and
Anthropic-compatible endpoints, described briefly (their bodies are OpenAI's and Anthropic's own,
documented in those APIs' references, not copied here).

The router is fixed once the gateway starts, so the document is built once and served as bytes.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import orjson

from turnout.governance.approvals import STATUSES
from turnout.server.admin_routes import AdminRoute, AdminRouter
from turnout.server.exchange import Exchange
from turnout.server.openapi_responses import ANSWERS, RESPONSE_SCHEMAS
from turnout.server.routes import Handler
from turnout.storage.paging import DEFAULT_LIMIT, MAX_LIMIT

Json = dict[str, Any]

SCHEMAS = "#/components/schemas/{name}"
JSON = "application/json"
ERROR_REF = {"$ref": "#/components/schemas/Error"}

_WHEN = "an ISO 8601 date or time (UTC unless it says otherwise), or unix seconds."

# What the admin API's query parameters mean, by name (a name not here is a plain string).
QUERY: dict[str, Json] = {
    "limit": {
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        "description": "At most this many items (a page).",
    },
    "after": {
        "schema": {"type": "string", "minLength": 1},
        "description": "Items after this cursor: the page before's `next_cursor` (absent: the first page).",
    },
    "before_id": {
        "schema": {"type": "integer", "minimum": 1},
        "description": "Only items older than this one (the next page).",
    },
    "since": {
        "schema": {"type": "string"},
        "description": "From this time on: " + _WHEN,
    },
    "until": {
        "schema": {"type": "string"},
        "description": "Up to this time: " + _WHEN,
    },
    "action": {"schema": {"type": "string"}, "description": "An action, or a prefix ending in * (key.*)."},
    "actor_person": {
        "schema": {"type": "string"},
        "description": "Only what this person did: a user's id, or `master` (the break-glass master key).",
    },
    "scope": {"schema": {"enum": ["key", "team", "user"]}, "description": "Only budgets of this scope."},
    "group_by": {
        "schema": {"type": "string"},
        "description": "Spend: dimensions separated by commas, of team, key, user, model, alias, "
        "deployment, provider, preset (absent: totals only).",
    },
    "interval": {
        "schema": {"enum": ["hour", "day"]},
        "description": "Spend: a series of UTC hour or day buckets (an hourly one covers at most 31 days).",
    },
    "status": {"schema": {"enum": list(STATUSES)}, "description": "Only actions in this state."},
}

# The request log's filters (its `status` is an HTTP status, not an action's state).
_LOG_FILTERS: dict[str, Json] = {
    "key_id": {"schema": {"type": "string"}, "description": "Only this key's requests."},
    "team_id": {"schema": {"type": "string"}, "description": "Only this team's requests."},
    "user_id": {"schema": {"type": "string"}, "description": "Only this user's requests."},
    "model": {
        "schema": {"type": "string"},
        "description": "Only requests for this model (as asked for, or the upstream model that answered).",
    },
    "status": {
        "schema": {"type": "string", "pattern": "^([1-5][0-9][0-9]|[1-5]xx)$"},
        "description": "Only requests that ended with this HTTP status (429) or class (4xx).",
    },
    "q": {
        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
        "description": "Only requests whose request or answer contains this text, ignoring case.",
    },
}
ROUTE_QUERY: dict[str, dict[str, Json]] = {
    "/admin/request-logs": _LOG_FILTERS,
    "/admin/request-logs/export": _LOG_FILTERS,
}
# Answers that are not one JSON document.
ROUTE_CONTENT: dict[tuple[str, str], str] = {("GET", "/admin/request-logs/export"): "application/x-ndjson"}

ERRORS: dict[str, tuple[str, str]] = {  # status: (component name, description)
    "400": ("BadRequest", "The request is malformed: a missing or invalid field (`param` names it)."),
    "401": ("Unauthorized", "No API key, or one turnout does not know."),
    "403": ("Forbidden", "The key may not do this."),
    "404": ("NotFound", "No such object, or one the key may not see."),
    "409": ("Conflict", "The object is not in a state that allows this (an action already decided)."),
    "429": (
        "TooManyFailedAuthentications",
        "Too many failed authentications from the client's address lately: retry after `Retry-After`.",
    ),
}

# Answers only some routes give, beside the common ones.
ROUTE_ERRORS: dict[tuple[str, str], dict[str, Json]] = {
    ("POST", "/admin/reload"): {
        "422": {
            "description": "The configuration does not load: the running one is kept; the error's "
            "`problems` lists each fault with its dotted path.",
            "content": {JSON: {"schema": {"type": "object"}}},
        }
    }
}

ERROR_SCHEMA: Json = {
    "title": "Error",
    "description": "An error, in OpenAI's format.",
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
            "required": ["message", "type", "param", "code"],
        }
    },
    "required": ["error"],
}

_STRING_OR_NULL = {"type": ["string", "null"]}
_TIME = {"type": "number", "description": "Unix seconds."}
_TIME_OR_NULL = {"type": ["number", "null"], "description": "Unix seconds."}

PENDING_ACTION_SCHEMA: Json = {
    "title": "PendingAction",
    "description": "An action under the two-person rule: it runs when a second admin approves it "
    "(POST /admin/approvals/{action_id}/approve).",
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "pending_action"},
        "action": {"type": "string"},
        "description": _STRING_OR_NULL,
        "target_type": {"type": "string"},
        "target_id": {"type": "string"},
        "team_id": _STRING_OR_NULL,
        "params": {"type": "object"},
        "requested_by": {"type": "string"},
        "requested_by_user": _STRING_OR_NULL,
        "requested_at": _TIME,
        "expires_at": _TIME,
        "status": {"enum": list(STATUSES)},
        "decided_by": _STRING_OR_NULL,
        "decided_at": _TIME_OR_NULL,
        "result": {"description": "What the action returned once it ran (null until then)."},
    },
    "required": ["id", "object", "action", "target_type", "target_id", "status"],
}

OPENAI_REFERENCE = "https://platform.openai.com/docs/api-reference"
ANTHROPIC_REFERENCE = "https://docs.anthropic.com/en/api/messages"
RERANK_REFERENCE = "https://docs.cohere.com/reference/rerank"
COHERE_V2_REFERENCE = "https://docs.cohere.com/v2/reference/rerank"
# the APIs whose errors are in their own format (the rest: OpenAI's)
OWN_ERRORS = {ANTHROPIC_REFERENCE: "Anthropic's", COHERE_V2_REFERENCE: "Cohere's"}


def _compatible(
    summary: str,
    tag: str,
    *,
    body: str | None = None,
    reference: str = OPENAI_REFERENCE,
    stream: bool = False,
) -> Json:
    """An operation of the OpenAI/Anthropic-compatible API: its bodies are that API's own."""
    content: Json = {JSON: {"schema": {"type": "object"}}}
    if stream:
        content["text/event-stream"] = {"schema": {"type": "string"}}
    own = OWN_ERRORS.get(reference)
    shape = own or "OpenAI's"
    operation: Json = {
        "summary": summary,
        "tags": [tag],
        "responses": {
            "200": {"description": "As the upstream API answers (see its reference).", "content": content},
            "default": {
                "description": f"An error, in {shape} format.",
                "content": {JSON: {"schema": {"type": "object"} if own else ERROR_REF}},
            },
        },
        "externalDocs": {"url": reference},
    }
    if body is not None:
        operation["description"] = f"The request and response bodies are {body}; see {reference}."
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": {"type": "object"}}}}
    return operation


def _model_parameter() -> Json:
    return {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}


def _response_id() -> Json:
    return {"name": "response_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _health(summary: str, *, optional_key: bool) -> Json:
    operation: Json = {
        "summary": summary,
        "tags": ["health"],
        "security": [{}, {"bearer": []}, {"apiKey": []}] if optional_key else [],
        "responses": {
            "200": {
                "description": "Up (readiness: `ready`, or `degraded` while the database is unreachable "
                "and serving goes on without it).",
                "content": {JSON: {"schema": {"type": "object"}}},
            },
            "503": {"description": "Not ready.", "content": {JSON: {"schema": {"type": "object"}}}},
        },
    }
    return operation


def _path_id(name: str) -> Json:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _batch_paths() -> dict[str, Json]:
    """OpenAI's files and batches endpoints, for deployments whose provider has a batch API."""
    upload = _compatible(
        "Upload a batch input file (purpose 'batch'; JSON Lines, checked line by line)",
        "openai",
        body="OpenAI's file upload (multipart/form-data: `file`, `purpose`) and file object",
    )
    form = {
        "type": "object",
        "properties": {"file": {"type": "string", "contentMediaType": "application/jsonl"}},
    }
    upload["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": form}}}
    batch = "OpenAI's batch request and batch object"
    return {
        "/v1/files": {
            "post": upload,
            "get": _compatible(
                "List the files of the key's team (newest first; `purpose`, `after`, `limit`)", "openai"
            ),
        },
        "/v1/files/{file_id}": {
            "parameters": [_path_id("file_id")],
            "get": _compatible("Describe a file", "openai"),
            "delete": _compatible("Delete a file", "openai"),
        },
        "/v1/files/{file_id}/content": {
            "parameters": [_path_id("file_id")],
            "get": _compatible("A file's content (a batch's output: JSON Lines)", "openai"),
        },
        "/v1/batches": {
            "post": _compatible(
                "Create a batch (its most reserved in the key's budgets)", "openai", body=batch
            ),
            "get": _compatible("List the batches of the key's team (newest first)", "openai"),
        },
        "/v1/batches/{batch_id}": {
            "parameters": [_path_id("batch_id")],
            "get": _compatible("Describe a batch (a finished one is accounted at batch prices)", "openai"),
        },
        "/v1/batches/{batch_id}/cancel": {
            "parameters": [_path_id("batch_id")],
            "post": _compatible("Cancel a batch", "openai"),
        },
        **_message_batch_paths(),
    }


def _message_batch_paths() -> dict[str, Json]:
    """Anthropic's Message Batches, for models with an Anthropic deployment."""

    def anthropic(summary: str, body: str | None = None) -> Json:
        return _compatible(summary, "anthropic", body=body, reference=ANTHROPIC_REFERENCE)

    one = [_path_id("batch_id")]
    return {
        "/v1/messages/batches": {
            "post": anthropic(
                "Create a message batch (one model; its most reserved in the key's budgets)",
                body="Anthropic's message batch request and batch object",
            ),
            "get": anthropic("List the message batches of the key's team (newest first)"),
        },
        "/v1/messages/batches/{batch_id}": {
            "parameters": one,
            "get": anthropic("Describe a message batch (an ended one is accounted at batch prices)"),
            "delete": anthropic("Delete a message batch"),
        },
        "/v1/messages/batches/{batch_id}/cancel": {
            "parameters": one,
            "post": anthropic("Cancel a message batch"),
        },
        "/v1/messages/batches/{batch_id}/results": {
            "parameters": one,
            "get": anthropic("A message batch's results (JSON Lines)"),
        },
    }


def media_paths() -> dict[str, Json]:
    """OpenAI's image generation, transcription and speech endpoints."""
    images = _compatible("Create images", "openai", body="OpenAI's image generation request and response")
    transcription = _compatible(
        "Transcribe audio", "openai", body="OpenAI's transcription form (multipart) and response"
    )
    transcription["requestBody"] = {
        "required": True,
        "content": {"multipart/form-data": {"schema": {"type": "object", "required": ["file", "model"]}}},
    }
    transcription["responses"]["200"]["content"]["text/plain"] = {"schema": {"type": "string"}}
    speech = _compatible("Generate speech", "openai", body="OpenAI's speech request; the answer is audio")
    speech["responses"]["200"]["content"] = {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
    }
    return {
        "/v1/images/generations": {"post": images},
        "/v1/audio/transcriptions": {"post": transcription},
        "/v1/audio/speech": {"post": speech},
    }


def compatible_paths() -> dict[str, Json]:
    """The OpenAI- and Anthropic-compatible endpoints (also served without the /v1 prefix)."""
    chat = "OpenAI's chat completion request and response (or its stream of chunks)"
    return {
        "/v1/chat/completions": {
            "post": _compatible("Create a chat completion", "openai", body=chat, stream=True)
        },
        "/v1/completions": {
            "post": _compatible(
                "Create a completion (the legacy API: a prompt)",
                "openai",
                body="OpenAI's legacy completions request and response",
                stream=True,
            )
        },
        "/v1/embeddings": {
            "post": _compatible(
                "Create embeddings", "openai", body="OpenAI's embeddings request and response"
            )
        },
        "/v1/moderations": {
            "post": _compatible(
                "Classify content (OpenAI's moderations; without `model`, the configured "
                "routing.moderation_model)",
                "openai",
                body="OpenAI's moderation request and response",
            )
        },
        "/v1/rerank": {
            "post": _compatible(
                "Rank documents against a query (Cohere's and Jina's rerank shape)",
                "openai",
                body="Cohere's and Jina's rerank request (query, documents as strings or objects with "
                "`text`, top_n, return_documents) and response (results best first, "
                "meta.billed_units.search_units)",
                reference=RERANK_REFERENCE,
            )
        },
        "/v2/rerank": {
            "post": _compatible(
                "Rank documents against a query (Cohere's v2 rerank, as the Cohere SDK calls it)",
                "cohere",
                body="Cohere's v2 rerank request (model, query, documents as strings, top_n, "
                "max_tokens_per_doc) and response (id, results best first, meta.billed_units.search_units)",
                reference=COHERE_V2_REFERENCE,
            )
        },
        **media_paths(),
        "/v1/messages": {
            "post": _compatible(
                "Create a message (Anthropic's Messages API)",
                "anthropic",
                body="Anthropic's Messages request and response (or its stream of events)",
                reference=ANTHROPIC_REFERENCE,
                stream=True,
            )
        },
        "/v1/messages/count_tokens": {
            "post": _compatible(
                "Count a message's input tokens (Anthropic's count_tokens)",
                "anthropic",
                body="Anthropic's token counting request and response: exact from an Anthropic-format "
                "deployment, else turnout's estimate (x-turnout-token-count)",
                reference=ANTHROPIC_REFERENCE,
            )
        },
        "/v1/responses": {
            "post": _compatible(
                "Create a response (OpenAI's Responses API)",
                "openai",
                body="OpenAI's Responses request and response (or its stream of events)",
                stream=True,
            )
        },
        "/v1/responses/{response_id}": {
            "parameters": [_response_id()],
            "get": _compatible("Retrieve a stored response", "openai"),
            "delete": _compatible("Delete a stored response", "openai"),
        },
        "/v1/responses/{response_id}/input_items": {
            "parameters": [_response_id()],
            "get": _compatible("List a stored response's input items", "openai"),
        },
        **_batch_paths(),
        "/v1/models": {"get": _compatible("List the models the key may use", "openai")},
        "/v1/models/{model}": {
            "parameters": [_model_parameter()],
            "get": _compatible("Describe a model", "openai"),
        },
        "/health/live": {"get": _health("Is the process up?", optional_key=False)},
        "/health/ready": {
            "get": _health(
                "Can it serve? (with an admin key: each deployment's circuit breaker)", optional_key=True
            )
        },
    }


def operation_id(method: str, path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", f"{method} {path}".lower()).strip("_")


def _takes_body(struct: type[msgspec.Struct]) -> bool:
    """Is a body required? (Without one, the API decodes `{}`: fine when every field has a default.)"""
    return any(f.required for f in msgspec.structs.fields(struct))


def admin_operation(route: AdminRoute, body_schema: Json | None) -> Json:
    params: list[Json] = [
        {"name": segment[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
        for segment in route.segments
        if segment.startswith("{") and segment.endswith("}")
    ]
    for name in route.query:
        params.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                **(
                    ROUTE_QUERY.get(route.path, {}).get(name)
                    or QUERY.get(name, {"schema": {"type": "string"}})
                ),
            }
        )
    answers = ANSWERS.get((route.method, route.path), {})
    content = ROUTE_CONTENT.get((route.method, route.path), JSON)
    responses: Json = {
        "200": {
            "description": "OK.",
            "content": {content: {"schema": answers.get("200", {"type": "object"})}},
        }
    }
    if route.pending:
        pending = {"$ref": SCHEMAS.format(name="PendingAction")}
        responses["202"] = {
            "description": "Under the two-person rule: the action waits for a second admin's approval.",
            "content": {JSON: {"schema": answers.get("202", pending)}},
        }
    for status, (name, _) in ERRORS.items():
        if status != "409" or route.method != "GET":
            responses[status] = {"$ref": f"#/components/responses/{name}"}
    responses.update(ROUTE_ERRORS.get((route.method, route.path), {}))
    operation: Json = {
        "operationId": operation_id(route.method, route.path),
        "summary": route.summary,
        "tags": [route.tag],
        "responses": responses,
    }
    if params:
        operation["parameters"] = params
    if route.body is not None and body_schema is not None:
        operation["requestBody"] = {
            "required": _takes_body(route.body),
            "content": {JSON: {"schema": body_schema}},
        }
    return operation


def openapi_document(router: AdminRouter, version: str) -> Json:
    """The OpenAPI 3.1 document of `router`'s admin API and the compatible endpoints."""
    bodies = list(dict.fromkeys(route.body for route in router.routes if route.body is not None))
    refs, schemas = msgspec.json.schema_components(bodies, ref_template=SCHEMAS)
    body_schema: dict[type[msgspec.Struct], Json] = dict(zip(bodies, refs, strict=True))
    paths: dict[str, Json] = compatible_paths()
    tags: dict[str, None] = dict.fromkeys(["openai", "anthropic", "health"])
    for route in router.routes:
        tags[route.tag] = None
        operation = admin_operation(route, None if route.body is None else body_schema[route.body])
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    paths["/openapi.json"] = {
        "get": {
            "summary": "This document",
            "tags": ["meta"],
            "security": [],
            "responses": {
                "200": {"description": "OpenAPI 3.1.", "content": {JSON: {"schema": {"type": "object"}}}}
            },
        }
    }
    tags["meta"] = None
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "turnout",
            "version": version,
            "description": "An OpenAI-compatible gateway in front of every LLM provider. The admin API "
            "(/admin/) is for owners and admins; errors are in OpenAI's format. The compatible "
            "endpoints are also served without the /v1 prefix.",
        },
        "tags": [{"name": tag} for tag in tags],
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": paths,
        "components": {
            "schemas": _with_own(schemas),
            "responses": {
                name: {"description": description, "content": {JSON: {"schema": ERROR_REF}}}
                for name, description in ERRORS.values()
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
    }


def _with_own(schemas: Json) -> Json:
    own = {"Error": ERROR_SCHEMA, "PendingAction": PENDING_ACTION_SCHEMA, **RESPONSE_SCHEMAS}
    clash = own.keys() & schemas.keys()
    if clash:
        raise ValueError(f"a request body's Struct is named like a schema of the document: {sorted(clash)}")
    return {**schemas, **own}


def openapi_endpoint(router: AdminRouter, version: str) -> Handler:
    """GET /openapi.json, built now (no key needed to read it)."""
    document = orjson.dumps(openapi_document(router, version))

    async def serve(x: Exchange) -> None:
        await x.send_json(200, document)

    return serve
