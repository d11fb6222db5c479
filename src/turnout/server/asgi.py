"""The ASGI application: dispatch by path and method, and turn every failure into an API error.

No request, however malformed, gets a traceback: turnout's own errors render as OpenAI errors,
anything unexpected as a bare 500 (details go to the log, never to the client).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import orjson

from turnout import __version__
from turnout.app import Services
from turnout.console.app import ConsoleApp
from turnout.domain.errors import (
    InternalError,
    MethodNotAllowed,
    RouteNotFound,
    ServiceUnavailable,
    TurnoutError,
)
from turnout.domain.principal import Principal
from turnout.reload import Reloader
from turnout.server.admin import AdminKeys, KeyChange, NewKey, Rotation
from turnout.server.admin_billing import AdminBilling, CreditChange, NewPlan, NewPreset, TeamTerms
from turnout.server.admin_budgets import AdminBudgets, NewBudget
from turnout.server.admin_exit import AdminExit
from turnout.server.admin_game_days import AdminGameDays, NewGameDay
from turnout.server.admin_governance import AdminGovernance
from turnout.server.admin_providers import AdminProviders
from turnout.server.admin_request_logs import add_request_log_routes
from turnout.server.admin_routes import AdminRouter
from turnout.server.admin_spend import AdminSpend
from turnout.server.admin_teams import AdminTeams, Membership, NewTeam, NewUser, TeamChange, UserChange
from turnout.server.auth_guard import AuthGuard
from turnout.server.batches import BatchEndpoints
from turnout.server.cohere_rerank import cohere_errors
from turnout.server.exchange import ClientGone, Exchange, Receive, Scope, Send
from turnout.server.metrics_route import MetricsEndpoint
from turnout.server.openapi import openapi_endpoint
from turnout.server.overload import Classes, anthropic_errors, concurrency_gate, gated
from turnout.server.passthrough import METHODS as PASSTHROUGH_METHODS
from turnout.server.passthrough import PREFIX as PASSTHROUGH_PREFIX
from turnout.server.passthrough import passthrough
from turnout.server.routes import Endpoints, Handler
from turnout.spend.spend_query import PARAMETERS as SPEND_PARAMETERS
from turnout.storage.database import unreachable
from turnout.teams.names import Names

log = logging.getLogger("turnout.server")
access_log = logging.getLogger("turnout.access")

MODEL_PREFIXES = ("/v1/models/", "/models/")
RESPONSE_PREFIXES = ("/v1/responses/", "/responses/")
ADMIN_PREFIX = "/admin/"


def create_app(services: Services, reloader: Reloader | None = None) -> GatewayApp:
    return GatewayApp(services, reloader)


class GatewayApp:
    def __init__(self, services: Services, reloader: Reloader | None = None) -> None:
        self.services = services
        self.max_body = services.settings.server.max_request_bytes
        self.access_log = services.settings.server.access_log
        self.guard = AuthGuard.of(services.settings)
        self.gate = gate = concurrency_gate(services.settings.server.overload)
        e = Endpoints(services, gate)
        self.admin = admin_router(services, reloader)
        self.endpoints = e
        classes = Classes(services.keys, services.pipeline.admission.book)
        routes: dict[str, dict[str, Handler]] = {
            "/v1/chat/completions": {"POST": gated(gate, classes, e.chat_completions)},
            "/v1/completions": {"POST": gated(gate, classes, e.completions)},
            "/v1/embeddings": {"POST": gated(gate, classes, e.embeddings)},
            "/v1/rerank": {"POST": gated(gate, classes, e.rerank)},
            "/v2/rerank": {"POST": gated(gate, classes, e.cohere_rerank, errors=cohere_errors)},
            "/v1/moderations": {"POST": gated(gate, classes, e.moderations)},
            "/v1/images/generations": {"POST": gated(gate, classes, e.images)},
            "/v1/audio/transcriptions": {"POST": gated(gate, classes, e.transcriptions)},
            "/v1/audio/speech": {"POST": gated(gate, classes, e.speech)},
            "/v1/messages": {"POST": gated(gate, classes, e.messages, anthropic=True)},
            "/v1/messages/count_tokens": {
                "POST": gated(gate, classes, e.count_tokens, anthropic=True, measured=False)
            },
            "/v1/responses": {"POST": gated(gate, classes, e.responses)},
            "/v1/models": {"GET": e.list_models},
            "/health/live": {"GET": e.live, "HEAD": e.live},
            "/health/ready": {"GET": e.ready, "HEAD": e.ready},
            "/openapi.json": {"GET": openapi_endpoint(self.admin, __version__)},
        }
        pipeline = services.pipeline
        self.passthrough = gated(gate, classes, lambda x: passthrough(pipeline, x), measured=False)
        assert services.batches is not None
        self.batches = BatchEndpoints(services.batches, services.keys)
        routes.update(self.batches.routes())
        metrics = services.metrics
        self.metrics = None if metrics is None else MetricsEndpoint(services, metrics, e.deployment_states)
        if self.metrics is not None:
            routes["/metrics"] = {"GET": self.metrics}
        # Clients configured with a base URL without /v1 reach the same endpoints.
        for path in (
            "/v1/chat/completions",
            "/v1/completions",
            "/v1/embeddings",
            "/v1/rerank",
            "/v1/moderations",
            "/v1/images/generations",
            "/v1/audio/transcriptions",
            "/v1/audio/speech",
            "/v1/models",
            "/v1/messages",
            "/v1/messages/count_tokens",
            "/v1/responses",
            *self.batches.routes(),
        ):
            routes[path[3:]] = routes[path]
        self.routes = routes
        # routes of APIs with their own error shape: a method they do not take is refused in it too
        self.error_shapes: dict[str, Callable[[Exchange], None]] = {
            "/v1/messages": anthropic_errors,
            "/messages": anthropic_errors,
            "/v1/messages/count_tokens": anthropic_errors,
            "/messages/count_tokens": anthropic_errors,
            "/v2/rerank": cohere_errors,
        }
        # the web console: reached only by paths no API route matched (nothing on the API's way)
        self.console = (
            ConsoleApp(services, self.guard, e.deployment_states)
            if services.settings.console.enabled
            else None
        )

    def route_table(self) -> list[tuple[str, str]]:
        """Every (method, path) this gateway serves, `{name}` marking a path parameter: the fixed
        routes, the model and stored-response routes matched by prefix, the admin API."""
        table = [(method, path) for path, methods in self.routes.items() for method in methods]
        table += [("GET", prefix + "{model}") for prefix in MODEL_PREFIXES]
        for prefix in RESPONSE_PREFIXES:
            table += [
                ("GET", prefix + "{response_id}"),
                ("DELETE", prefix + "{response_id}"),
                ("GET", prefix + "{response_id}/input_items"),
            ]
        table += self.batches.table()
        table += [(method, PASSTHROUGH_PREFIX + "{provider}/{path}") for method in PASSTHROUGH_METHODS]
        return table + [(route.method, route.path) for route in self.admin.routes]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await _lifespan(receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        x = Exchange(scope, receive, send, self.max_body, self.guard)
        started = time.perf_counter() if self.access_log else 0.0
        status = 200
        try:
            await self.dispatch(scope["path"], scope["method"], x)
        except TurnoutError as error:
            status = error.status
            if error.refused_by is not None and self.services.metrics is not None:
                self.services.metrics.refused(error.refused_by)
            await x.error(error)
        except ClientGone:
            status = 499
        except Exception as error:
            status = await self.failed(x, error)
        if self.access_log:
            access_log.info(
                "%s %s %d %.1fms %s",
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000,
                x.request_id,
            )

    async def failed(self, x: Exchange, error: Exception) -> int:
        """Answer what turnout did not expect: 503 when its database did not answer in time (the
        admin API reads it), else a bare 500 (the details go to the log)."""
        if unreachable(error):
            log.warning("request %s: the database did not answer: %r", x.request_id, error)
            await x.error(
                ServiceUnavailable(
                    "turnout's database is not answering; try again shortly.", code="database_unavailable"
                )
            )
            return 503
        log.exception("request %s failed", x.request_id)
        await x.error(InternalError(f"turnout failed to handle the request (request id {x.request_id})."))
        return 500

    async def dispatch(self, path: str, method: str, x: Exchange) -> None:
        methods = self.routes.get(path)
        if methods is None and len(path) > 1 and path.endswith("/"):
            methods = self.routes.get(path.rstrip("/"))
        if methods is not None:
            handler = methods.get(method)
            if handler is None:
                shape = self.error_shapes.get(path.rstrip("/") if len(path) > 1 else path)
                if shape is not None:
                    shape(x)
                raise MethodNotAllowed(f"{method} is not allowed on {path}.", allowed=tuple(methods))
            await handler(x)
            return
        for prefix in MODEL_PREFIXES:
            if path.startswith(prefix):
                if method != "GET":
                    raise MethodNotAllowed(f"{method} is not allowed on {path}.", allowed=("GET",))
                raw = x.scope.get("raw_path") or path.encode()
                model_id = bytes(raw).split(b"?", 1)[0].decode("latin-1")[len(prefix) :]
                await self.endpoints.retrieve_model(x, model_id)
                return
        if path.startswith(ADMIN_PREFIX) and await self.admin.dispatch(path, method, x):
            return
        if await self.batches.dispatch(path, method, x):
            return
        if path.startswith(PASSTHROUGH_PREFIX):
            if method not in PASSTHROUGH_METHODS:
                raise MethodNotAllowed(f"{method} is not allowed on {path}.", allowed=PASSTHROUGH_METHODS)
            await self.passthrough(x)
            return
        for prefix in RESPONSE_PREFIXES:
            if path.startswith(prefix):
                await self.stored_response(path[len(prefix) :], method, x)
                return
        console = self.console
        if console is not None and console.serves(path):
            await console(x.scope, x.receive, x.send)
            return
        raise RouteNotFound(f"Unknown request URL: {method} {path}.")

    async def stored_response(self, rest: str, method: str, x: Exchange) -> None:
        """/v1/responses/{id} (GET, DELETE) and /v1/responses/{id}/input_items (GET)."""
        stored = self.endpoints.stored_responses
        response_id, _, sub = rest.partition("/")
        if not response_id or sub not in ("", "input_items"):
            raise RouteNotFound(f"Unknown request URL: {method} /v1/responses/{rest}.")
        allowed = ("GET", "DELETE") if sub == "" else ("GET",)
        if method not in allowed:
            raise MethodNotAllowed(f"{method} is not allowed here.", allowed=allowed)
        if sub == "input_items":
            await stored.input_items(x, response_id)
        elif method == "GET":
            await stored.retrieve(x, response_id)
        else:
            await stored.delete(x, response_id)


async def _lifespan(receive: Receive, send: Send) -> None:
    """Services are started before the server (see server/runner.py); lifespan only acknowledges."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


PAGE = ("limit", "after")  # the query parameters of a paged list (server/admin_query.py)


def admin_router(services: Services, reloader: Reloader | None = None) -> AdminRouter:
    """Every route of the admin API (also what /openapi.json describes). Without a `reloader`,
    a reload reads the settings the gateway was started with again (nothing changes)."""
    names = Names(services.database)
    keys = AdminKeys(services.key_service, names)
    assert services.limit_settings is not None
    teams = AdminTeams(services.directory, names, services.limit_settings)
    budgets = AdminBudgets(services.budget_service, names)
    governance = AdminGovernance(services.audit, services.approvals)
    billing = AdminBilling(services.billing_service, lambda: services.catalog, names)
    providers = AdminProviders(services.provider_control)
    drills = AdminGameDays(services.game_days)
    exits = AdminExit(services.database, lambda: services.catalog)
    spend = AdminSpend(services.database, names)
    people = services.key_service.people

    async def authenticate(x: Exchange) -> Principal:
        """The caller's key as it is now (read from the store, not from this instance's cache)."""
        return await people.current(await services.keys.resolve(x.credential()))

    reloading = reloader or Reloader(services, lambda: services.settings)

    async def reload(x: Exchange, caller: Principal) -> None:
        reloaded = await reloading.requested_by(caller, x.request_id)
        await x.send_json(200, orjson.dumps(reloaded.describe()))

    r = AdminRouter(authenticate, {"team_id": names.team, "user_id": names.user})
    r.add(
        "POST",
        "/admin/reload",
        reload,
        "Read the configuration again and apply its providers, models, routing and prices; requests "
        "in flight finish on the old ones (an invalid file: 422 with each problem, nothing changed)",
        tag="configuration",
    )
    r.add(
        "GET",
        "/admin/keys",
        keys.list,
        "List the virtual keys the caller manages (paged, oldest first)",
        query=PAGE,
        tag="keys",
        admin_only=True,
    )
    r.add(
        "POST",
        "/admin/keys",
        keys.create,
        "Issue a virtual key (shown in full once)",
        body=NewKey,
        tag="keys",
        admin_only=True,
    )
    r.add(
        "GET",
        "/admin/keys/{key_id}",
        lambda x, c, k: keys.one(x, c, k, ""),
        "Describe a key",
        tag="keys",
        admin_only=True,
    )
    r.add(
        "PATCH",
        "/admin/keys/{key_id}",
        keys.update,
        "Change a key's name, role, models, expiry, budget, limits or metadata (taking a team's last "
        "admin role away: 202 with the pending action)",
        body=KeyChange,
        tag="keys",
        admin_only=True,
        pending=True,
    )
    r.add(
        "POST",
        "/admin/keys/{key_id}/revoke",
        lambda x, c, k: keys.one(x, c, k, "revoke"),
        "Revoke a key (a team's last admin key, or many in a row: 202 with the pending action)",
        tag="keys",
        admin_only=True,
        pending=True,
    )
    r.add(
        "POST",
        "/admin/keys/{key_id}/rotate",
        lambda x, c, k: keys.one(x, c, k, "rotate"),
        "Issue a replacement; the old key works for a grace period",
        body=Rotation,
        tag="keys",
        admin_only=True,
    )
    r.add(
        "GET",
        "/admin/teams",
        teams.list_teams,
        "List the teams the caller may see (paged, oldest first)",
        query=PAGE,
        tag="teams",
    )
    r.add("POST", "/admin/teams", teams.create_team, "Create a team", body=NewTeam, tag="teams")
    r.add("GET", "/admin/teams/{team_id}", teams.team, "Describe a team and its members", tag="teams")
    r.add(
        "PATCH",
        "/admin/teams/{team_id}",
        teams.update_team,
        "Set a team's rate limits (all its keys together) and its defaults for new keys "
        "(organisation admins), and its priority class (its admins too, up to their own class)",
        body=TeamChange,
        tag="teams",
    )
    r.add(
        "DELETE",
        "/admin/teams/{team_id}",
        teams.team,
        "Delete a team and revoke its keys (two-person rule: 202 with the pending action)",
        tag="teams",
        pending=True,
    )
    r.add(
        "POST",
        "/admin/teams/{team_id}/members",
        teams.add_member,
        "Add a user to a team or change their role in it",
        body=Membership,
        tag="teams",
        pending=True,
    )
    r.add(
        "DELETE",
        "/admin/teams/{team_id}/members/{user_id}",
        teams.remove_member,
        "Remove a user from a team (their keys in it are revoked)",
        tag="teams",
        pending=True,
    )
    r.add(
        "POST",
        "/admin/teams/{team_id}/revoke-keys",
        teams.revoke_keys,
        "Revoke every key of a team (two-person rule: 202 with the pending action)",
        tag="teams",
        pending=True,
    )
    r.add(
        "GET", "/admin/users", teams.list_users, "List users (paged, oldest first)", query=PAGE, tag="users"
    )
    r.add(
        "POST",
        "/admin/users",
        teams.create_user,
        "Create a user (an admin role waits for a second admin: 202, the user and the pending action)",
        body=NewUser,
        tag="users",
        pending=True,
    )
    r.add("GET", "/admin/users/{user_id}", teams.user, "Describe a user and their teams", tag="users")
    r.add(
        "PATCH",
        "/admin/users/{user_id}",
        teams.user,
        "Change a user's organisation-wide role and/or rate limits (all their keys together)",
        body=UserChange,
        tag="users",
        pending=True,
    )
    r.add("DELETE", "/admin/users/{user_id}", teams.user, "Delete a user and revoke their keys", tag="users")
    r.add(
        "GET",
        "/admin/budgets",
        budgets.list,
        "List budgets with their current window (paged, oldest first)",
        query=("scope", "subject_id", *PAGE),
        tag="budgets",
    )
    r.add("POST", "/admin/budgets", budgets.create, "Set a budget", body=NewBudget, tag="budgets")
    r.add("GET", "/admin/budgets/{budget_id}", budgets.one, "Describe a budget and its window", tag="budgets")
    r.add("DELETE", "/admin/budgets/{budget_id}", budgets.one, "Remove a budget", tag="budgets")
    r.add(
        "GET",
        "/admin/audit",
        governance.audit,
        "Query the audit log (paged, newest first)",
        query=(
            "action",
            "actor_key_id",
            "actor_person",
            "target_type",
            "target_id",
            "team_id",
            "since",
            "until",
            "limit",
            "before_id",
            "after",
        ),
        tag="governance",
        admin_only=True,
    )
    r.add(
        "GET",
        "/admin/approvals",
        governance.approvals,
        "List actions under the two-person rule (paged, newest first)",
        query=("status", *PAGE),
        tag="governance",
        admin_only=True,
    )
    r.add(
        "GET",
        "/admin/approvals/{action_id}",
        lambda x, c, a: governance.approval(x, c, a, ""),
        "Describe a pending action",
        tag="governance",
        admin_only=True,
    )
    r.add(
        "POST",
        "/admin/approvals/{action_id}/approve",
        lambda x, c, a: governance.approval(x, c, a, "approve"),
        "Approve a pending action (a second admin; it runs now)",
        tag="governance",
        admin_only=True,
    )
    r.add(
        "POST",
        "/admin/approvals/{action_id}/reject",
        lambda x, c, a: governance.approval(x, c, a, "reject"),
        "Reject a pending action",
        tag="governance",
        admin_only=True,
    )
    r.add(
        "GET",
        "/admin/plans",
        billing.list_plans,
        "List billing plans (paged, oldest first)",
        query=PAGE,
        tag="billing",
    )
    r.add("POST", "/admin/plans", billing.create_plan, "Create a billing plan", body=NewPlan, tag="billing")
    r.add(
        "GET",
        "/admin/teams/{team_id}/billing",
        billing.terms,
        "A team's billing terms, credit balance and included tokens used",
        tag="billing",
    )
    r.add(
        "POST",
        "/admin/teams/{team_id}/billing",
        billing.terms,
        "Set a team's plan, markup and whether it is prepaid",
        body=TeamTerms,
        tag="billing",
    )
    r.add(
        "GET",
        "/admin/teams/{team_id}/credits",
        billing.credits,
        "A team's credit entries (paged, newest first) and balance",
        query=PAGE,
        tag="billing",
    )
    r.add(
        "POST",
        "/admin/teams/{team_id}/credits",
        billing.credits,
        "Top up (or adjust) a team's prepaid credit",
        body=CreditChange,
        tag="billing",
    )
    r.add(
        "GET",
        "/admin/presets",
        billing.list_presets,
        "List published presets (paged, by name)",
        query=PAGE,
        tag="presets",
    )
    r.add(
        "POST",
        "/admin/presets",
        billing.publish,
        "Publish a preset, callable as model 'preset/<name>'",
        body=NewPreset,
        tag="presets",
    )
    r.add("DELETE", "/admin/presets/{name}", billing.withdraw, "Withdraw a preset", tag="presets")
    r.add(
        "GET",
        "/admin/spend",
        spend.report,
        "Spend over a span, grouped by team, key, user, model, alias, deployment, provider or preset, "
        "as totals or an hour/day series, within what the caller may read (paged)",
        query=SPEND_PARAMETERS,
        tag="spend",
    )
    r.add(
        "GET",
        "/admin/providers",
        providers.list,
        "The configured providers, in service or not",
        tag="providers",
    )
    r.add(
        "GET",
        "/admin/exit-report",
        exits.report,
        "For each provider, how much of its traffic over a period (default: the last 30 days) the "
        "configured alternatives could take now, the rest by reason, and the cost difference",
        query=("since", "until"),
        tag="providers",
    )
    r.add(
        "DELETE",
        "/admin/providers/{name}",
        providers.remove,
        "Take a provider out of service on every instance (two-person rule: 202 with the pending action)",
        tag="providers",
        pending=True,
    )
    r.add(
        "POST",
        "/admin/providers/{name}/restore",
        providers.restore,
        "Put a removed provider back in service",
        tag="providers",
    )
    r.add(
        "GET",
        "/admin/game-days",
        drills.list,
        "Game days, newest first: a provider out of service for some traffic for a window",
        tag="providers",
    )
    r.add(
        "POST",
        "/admin/game-days",
        drills.start,
        "Take a provider out of service for a share of the traffic or for chosen teams for a window, "
        "rolled back when the affected requests' error rate passes a threshold (two-person rule: 202 "
        "with the pending action)",
        body=NewGameDay,
        tag="providers",
        pending=True,
    )
    r.add(
        "POST",
        "/admin/game-days/{game_day_id}/end",
        drills.end,
        "End a game day before its window does",
        tag="providers",
    )
    if services.request_log is not None:
        add_request_log_routes(r, services.request_log)
    return r
