"""The console's front door: its routes, the session each needs, the CSRF check on every change,
and errors as pages. Mounted by the gateway under `console.path` (server/asgi.py), after every
API route, so API traffic never reaches it.

A page's authority is never the console's: every read and change goes through the same services
as the admin API, with the session's key as it is now as the caller; the console only decides
which page to show. A change (every POST) needs the session's CSRF token in its form (a
synchronizer token, compared in constant time) and, when the browser names it, a same-origin
`Origin`; the session cookie is SameSite=Strict as well.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

from turnout.app import Services
from turnout.console.billing_pages import BillingPages
from turnout.console.budget_pages import BudgetPages
from turnout.console.exit_pages import ExitPages
from turnout.console.key_pages import KeyPages
from turnout.console.overview_pages import OverviewPages
from turnout.console.pages import Pages, Visit
from turnout.console.rendering import Renderer
from turnout.console.request_log_pages import RequestLogPages
from turnout.console.sessions import Sessions
from turnout.console.signing_in import FailureGuard, SigningIn, SignInRefused
from turnout.console.spend_pages import SpendPages
from turnout.console.web import ClientLeft, Receive, Request, Response, Scope, Send, cookie, redirect
from turnout.domain.errors import AuthenticationFailed, TurnoutError
from turnout.domain.path_patterns import match_segments, path_segments
from turnout.storage.database import unreachable

if TYPE_CHECKING:
    from turnout.console.single_sign_on import SingleSignOn

log = logging.getLogger("turnout.console")

SESSION_COOKIE = "turnout_session"
LOGIN_COOKIE = "turnout_login"  # the sign-in form's CSRF token (double submit: no session yet)
STATIC_TYPES = {
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".LICENSE": b"text/plain; charset=utf-8",
}

READ_ONLY = "A viewer reads only: this key cannot change anything."

Handler = Callable[..., Awaitable[Response]]  # (request, visit, *path parameters)


@dataclass(frozen=True, slots=True)
class ConsoleRoute:
    method: str
    path: str  # below the console's root: /keys/{key_id}/revoke
    handler: Handler
    summary: str

    @property
    def segments(self) -> list[str]:
        return self.path.strip("/").split("/") if self.path.strip("/") else []


class ConsoleApp:
    def __init__(
        self,
        services: Services,
        guard: FailureGuard | None,
        deployments: Callable[[], list[dict[str, object]]],
    ) -> None:
        settings = services.settings.console
        self.root = settings.path
        self.renderer = Renderer(self.root)
        self.sessions = Sessions(services.database, settings.session_ttl)
        self.signing_in = SigningIn(services.keys, services.key_service.people, self.sessions, guard)
        self.ttl = int(settings.session_ttl)
        self.proxies = services.settings.server.trusted_proxies
        self.sso: SingleSignOn | None = None
        if settings.oidc is not None:
            # only when configured: PyJWT and the parts of cryptography it loads cost ~8 MiB
            from turnout.console.single_sign_on import SingleSignOn

            self.sso = SingleSignOn(
                settings.oidc,
                self.root,
                http=services.client,
                database=services.database,
                directory=services.directory,
                signing_in=self.signing_in,
                sessions=self.sessions,
                renderer=self.renderer,
                guard=guard,
                session_cookie=SESSION_COOKIE,
                session_ttl=self.ttl,
            )
        self.static = {
            f.name: f.read_bytes()
            for f in resources.files("turnout.console").joinpath("static").iterdir()
            if f.is_file() and any(f.name.endswith(s) for s in STATIC_TYPES)
        }
        pages = Pages(services, self.renderer, deployments)
        key_pages = KeyPages(services, self.renderer)
        budget_pages = BudgetPages(services, self.renderer)
        request_logs = RequestLogPages(services, self.renderer)
        spend = SpendPages(services, self.renderer)
        exits = ExitPages(services, self.renderer)
        overview = OverviewPages(services, self.renderer, deployments)
        billing = BillingPages(services, self.renderer)
        self.routes = [
            ConsoleRoute("GET", "", overview.overview, "Overview: traffic, errors, spend, latency, health"),
            ConsoleRoute("GET", "/keys", pages.keys, "Keys: paged, searchable; the form to issue one"),
            ConsoleRoute("POST", "/keys", pages.create_key, "Issue a key (shown once)"),
            ConsoleRoute("POST", "/keys/{key_id}/revoke", pages.revoke_key, "Revoke a key"),
            ConsoleRoute("GET", "/keys/{key_id}", key_pages.key, "A key; the forms to change and rotate it"),
            ConsoleRoute(
                "POST", "/keys/{key_id}", key_pages.update_key, "Change a key's name, models, expiry, budget"
            ),
            ConsoleRoute(
                "POST", "/keys/{key_id}/rotate", key_pages.rotate_key, "Rotate a key (the new one shown once)"
            ),
            ConsoleRoute("GET", "/budgets", budget_pages.budgets, "Budgets with their current window's use"),
            ConsoleRoute(
                "GET", "/spend", spend.spend, "Spend and customer charge over time, by any dimension"
            ),
            ConsoleRoute("GET", "/spend.csv", spend.spend_csv, "The spend shown, as CSV"),
            ConsoleRoute(
                "GET", "/exit-report", exits.exit_report, "How much of each provider's traffic could move"
            ),
            ConsoleRoute("POST", "/budgets", budget_pages.set_budget, "Set (or change) a budget"),
            ConsoleRoute(
                "POST", "/budgets/{budget_id}/delete", budget_pages.delete_budget, "Remove a budget"
            ),
            ConsoleRoute("GET", "/billing", billing.billing, "Plans and every team's terms and credit"),
            ConsoleRoute("POST", "/plans", billing.create_plan, "Create a billing plan"),
            ConsoleRoute(
                "GET", "/teams/{team_id}/billing", billing.team_billing, "A team's terms, credit and top-ups"
            ),
            ConsoleRoute("POST", "/teams/{team_id}/billing", billing.set_terms, "Set a team's billing terms"),
            ConsoleRoute("POST", "/teams/{team_id}/credits", billing.change_credit, "Top up or adjust"),
            ConsoleRoute("GET", "/presets", billing.presets, "Presets and what each earned its team"),
            ConsoleRoute("POST", "/presets", billing.publish, "Publish a preset"),
            ConsoleRoute("POST", "/presets/{name}/withdraw", billing.withdraw, "Withdraw a preset"),
            ConsoleRoute("GET", "/request-logs", request_logs.entries, "The request log, searched and paged"),
            ConsoleRoute(
                "GET", "/request-logs/{request_id}", request_logs.entry, "A logged request and its answer"
            ),
            ConsoleRoute("GET", "/teams", pages.teams, "Teams; the form to create one"),
            ConsoleRoute("POST", "/teams", pages.create_team, "Create a team"),
            ConsoleRoute("GET", "/teams/{team_id}", pages.team, "A team and its members"),
            ConsoleRoute(
                "POST", "/teams/{team_id}/members", pages.add_member, "Add a member or change a role"
            ),
            ConsoleRoute("GET", "/users", pages.users, "Users; the form to create one"),
            ConsoleRoute("POST", "/users", pages.create_user, "Create a user"),
            ConsoleRoute("GET", "/audit", pages.audit, "The audit log, filtered"),
            ConsoleRoute("GET", "/approvals", pages.approvals, "Actions under the two-person rule"),
            ConsoleRoute(
                "GET", "/approvals/{action_id}", pages.approval, "A pending action: before and after"
            ),
            ConsoleRoute("POST", "/approvals/{action_id}/approve", pages.approve, "Approve a pending action"),
            ConsoleRoute("POST", "/approvals/{action_id}/reject", pages.reject, "Reject a pending action"),
            ConsoleRoute("GET", "/providers", pages.providers, "Providers and deployments, as they are now"),
            ConsoleRoute(
                "POST",
                "/providers/{provider}/remove",
                pages.remove_provider,
                "Take a provider out of service",
            ),
            ConsoleRoute(
                "POST", "/providers/{provider}/restore", pages.restore_provider, "Restore a provider"
            ),
        ]

    def route_table(self) -> list[tuple[str, str]]:
        """Every (method, path) the console serves, `{name}` marking a path parameter."""
        fixed = [
            ("GET", "/login"),
            ("POST", "/login"),
            ("POST", "/logout"),
            ("GET", "/static/{name}"),
            ("GET", "/login/oidc"),  # single sign-on (console.oidc; 404 without it)
            ("GET", "/login/oidc/callback"),
        ]
        return [(m, self.root + p) for m, p in fixed] + [(r.method, self.root + r.path) for r in self.routes]

    def serves(self, path: str) -> bool:
        return path == self.root or path.startswith(self.root + "/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, scope["path"][len(self.root) :], self.proxies)
        try:
            response = await self.respond(request)
        except ClientLeft:
            return
        except TurnoutError as error:
            response = self.renderer.page("error.html", error.status, caller=None, message=error.message)
        except Exception as error:
            status, message = 500, "The console failed to show this page (the log has the details)."
            if unreachable(error):
                status, message = 503, "turnout's database is not answering; try again shortly."
            log.exception("console %s %s failed", scope["method"], scope["path"])
            response = self.renderer.page("error.html", status, caller=None, message=message)
        await response.send(send)

    async def respond(self, request: Request) -> Response:
        path, method = request.path.rstrip("/"), request.method
        if path.startswith("/static/") and method in ("GET", "HEAD"):
            return self.static_file(path[len("/static/") :])
        if path == "/login":
            return await (self.sign_in(request) if method == "POST" else self.login_page(request))
        if path == "/logout" and method == "POST":
            return await self.sign_out(request)
        if path in ("/login/oidc", "/login/oidc/callback") and method == "GET":
            return await self.single_sign_on(request, path)
        allowed = []
        for route in self.routes:
            params = match_segments(route.segments, path_segments(path))
            if params is None:
                continue
            if route.method != method:
                allowed.append(route.method)
                continue
            return await self.run(route, request, params)
        if allowed or path in ("/login", "/logout", "/login/oidc", "/login/oidc/callback"):
            return self.renderer.page(
                "error.html", 405, caller=None, message=f"{method} is not allowed here."
            )
        return self.renderer.page("error.html", 404, caller=None, message="There is no such page.")

    async def run(self, route: ConsoleRoute, request: Request, params: list[str]) -> Response:
        session = await self.sessions.find(request.cookies.get(SESSION_COOKIE))
        caller = None if session is None else await self.signing_in.caller(session)
        if session is None or caller is None:
            if route.method == "GET":
                return redirect(f"{self.root}/login?next={quote(self.root + request.path)}")
            return self.forbidden("Your session has ended; sign in again.")
        if route.method == "POST":
            form = await request.form()
            if not session.csrf_matches(form.get("csrf")) or not _same_origin(request):
                return self.forbidden(
                    "This form was not sent by the console (its CSRF token is missing or wrong)."
                )
            if caller.read_only:  # enforced here, before any page's code: not by hiding buttons
                return self.renderer.page(
                    "error.html", 403, caller=caller, csrf=session.csrf_token, message=READ_ONLY
                )
        visit = Visit(caller, session.csrf_token, request_id="console_" + secrets.token_hex(8))
        try:
            return await route.handler(request, visit, *params)
        except AuthenticationFailed:  # the key stopped working during the request
            return redirect(f"{self.root}/login")
        except TurnoutError as error:
            return self.renderer.page(
                "error.html", error.status, caller=caller, csrf=visit.csrf, message=error.message
            )

    def forbidden(self, message: str) -> Response:
        return self.renderer.page("error.html", 403, caller=None, message=message)

    # ------------------------------------------------------------------ signing in and out

    async def login_page(self, request: Request, status: int = 200, message: str | None = None) -> Response:
        token = request.cookies.get(LOGIN_COOKIE)
        if not token or len(token) > 64:
            token = secrets.token_urlsafe(24)
        response = self.renderer.page(
            "login.html",
            status,
            caller=None,
            login_csrf=token,
            message=message,
            next=self._next(request),
            sso=None if self.sso is None else self.sso.start_path,
        )
        response.headers.append(cookie(LOGIN_COOKIE, token, self.root, secure=request.secure, max_age=3600))
        return response

    async def sign_in(self, request: Request) -> Response:
        form = await request.form()
        sent, expected = form.get("csrf", ""), request.cookies.get(LOGIN_COOKIE, "")
        if (
            not expected
            or not secrets.compare_digest(sent.encode(), expected.encode())
            or not _same_origin(request)
        ):
            return self.forbidden(
                "This sign-in was not sent by the console's form (its CSRF token is missing or wrong)."
            )
        key = form.get("key", "").strip()
        if not key:
            return await self.login_page(request, 400, "Paste an owner's or admin's API key.")
        try:
            token, _ = await self.signing_in.sign_in(request.scope, key)
        except TurnoutError as error:
            return await self.login_page(request, error.status, error.message)
        earlier = await self.sessions.find(request.cookies.get(SESSION_COOKIE))
        if earlier is not None:  # one session per browser: the one it signed in with before ends
            await self.sessions.end(earlier)
        session = cookie(SESSION_COOKIE, token, self.root, secure=request.secure, max_age=self.ttl)
        spent = cookie(LOGIN_COOKIE, "", self.root, secure=request.secure, max_age=0)
        return redirect(self._next(request), session, spent)

    async def single_sign_on(self, request: Request, path: str) -> Response:
        """Off to the OIDC provider, or back from it (console/single_sign_on.py)."""
        if self.sso is None:
            return self.renderer.page(
                "error.html", 404, caller=None, message="Single sign-on is not set up (console.oidc)."
            )
        try:
            if path == "/login/oidc":
                return await self.sso.start(request, self._next(request))
            return await self.sso.finish(request, self._safe_next)
        except SignInRefused as refused:
            response = await self.login_page(request, refused.status, refused.message)
            response.headers += refused.headers
            return response

    async def sign_out(self, request: Request) -> Response:
        session = await self.sessions.find(request.cookies.get(SESSION_COOKIE))
        if session is not None:
            form = await request.form()
            if not session.csrf_matches(form.get("csrf")) or not _same_origin(request):
                return self.forbidden(
                    "This form was not sent by the console (its CSRF token is missing or wrong)."
                )
            await self.sessions.end(session)
        gone = cookie(SESSION_COOKIE, "", self.root, secure=request.secure, max_age=0)
        return redirect(self.root + "/login", gone)

    def _next(self, request: Request) -> str:
        """Where to go once signed in: a page of the console, never elsewhere."""
        return self._safe_next(unquote(request.text("next", 2000) or ""))

    def _safe_next(self, wanted: str) -> str:
        if (
            wanted.startswith(self.root + "/")
            and not wanted.startswith(self.root + "//")
            and "\\" not in wanted
        ):
            return wanted
        return self.root

    def static_file(self, name: str) -> Response:
        body = self.static.get(name)
        if body is None:
            return self.renderer.page("error.html", 404, caller=None, message="There is no such file.")
        kind = next(t for suffix, t in STATIC_TYPES.items() if name.endswith(suffix))
        return Response(200, body, kind, cacheable=True)


def _same_origin(request: Request) -> bool:
    """A browser's `Origin`, when it sends one, names this host, and its `Sec-Fetch-Site` (when
    sent) does not say the form came from another site; without them the CSRF token decides alone."""
    if request.header(b"sec-fetch-site") in ("cross-site", "same-site"):
        return False
    origin = request.header(b"origin")
    if origin is None:
        return True
    return origin != "null" and urlsplit(origin).netloc == (request.header(b"host") or "")
