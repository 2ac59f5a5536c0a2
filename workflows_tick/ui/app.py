"""The ASGI application: routes, the access rules, HTML and JSON rendering.

Page handlers are plain functions (Starlette runs them in its thread pool): each
opens one read-only, repeatable-read transaction, so a page is one consistent
snapshot, and asks :mod:`workflows_tick.ui.pages` for its data.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, quote, urlencode
from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup, escape
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workflows_tick.dags import DagRegistry
from workflows_tick.errors import UnknownRunError, WorkflowsError
from workflows_tick.model import Dag
from workflows_tick.ui import pages
from workflows_tick.ui.graph import layout, render_svg
from workflows_tick.ui.security import CSRF_FIELD, SESSION_COOKIE, Guard, safe_next
from workflows_tick.ui.words import age, duration

log = logging.getLogger(__name__)

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
ZERO = timedelta(0)
OPEN_PATHS = frozenset({"/login", "/logout"})
"""Reachable without the token (the static files are too)."""


# --- JSON and templates -----------------------------------------------------------------


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return (value if value.utcoffset() == ZERO else value.astimezone(UTC)).isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class ApiResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, default=_json_default, ensure_ascii=False).encode()


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except Exception:
        return None


def when(value: datetime | None, timezone: str = "UTC") -> Markup:
    """A time in UTC and, for a DAG in another zone, in that zone too."""
    if value is None:
        return Markup('<span class="none">-</span>')
    utc = value.astimezone(UTC)
    shown = f'<time datetime="{utc.isoformat()}">{utc:%Y-%m-%d %H:%M:%S} UTC</time>'
    zone = _zone(timezone) if timezone != "UTC" else None
    if zone is not None:
        local = value.astimezone(zone)
        pattern = "%H:%M:%S %Z" if local.date() == utc.date() else "%Y-%m-%d %H:%M:%S %Z"
        shown += (
            f' <span class="zone" title="{_escaped(timezone)}">'
            f"{escape(local.strftime(pattern))}</span>"
        )
    return Markup(shown)


@lru_cache(maxsize=64)
def _escaped(value: str) -> Markup:
    return escape(value)


def run_squares(runs: list[dict[str, Any]], link_prefix: str = "/runs/") -> Markup:
    """Coloured squares for ``runs`` (newest first), oldest left. Built here rather than
    in the template: the DAG list draws thousands of them."""
    parts = []
    for run in reversed(runs):
        status, trigger = _escaped(run["status"]), _escaped(run["trigger"])
        created = run["created_at"][:19].replace("T", " ")
        parts.append(
            f'<a class="square s-{status}" href="{link_prefix}{int(run["id"])}" '
            f'title="run {int(run["id"])}: {status}, {trigger}, created {escape(created)} UTC"></a>'
        )
    return Markup("".join(parts))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("workflows_tick.ui", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["duration"] = duration
    env.filters["squares"] = run_squares
    env.filters["part"] = lambda value: quote(str(value), safe="")
    env.globals["age"] = age
    return env


# --- the access rules -------------------------------------------------------------------


def _cookie(headers: Headers) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:
        return None
    morsel = jar.get(SESSION_COOKIE)
    return morsel.value if morsel else None


class GuardMiddleware:
    """Host check, authentication and the POST rule for every request; security
    headers and ``Server-Timing`` (time spent in the server) on every response."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        static = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "same-origin"
                headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
                if not static:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        refused = self.refusal(scope)
        if refused is not None:
            await refused(scope, receive, send_with_headers)
        else:
            await self.app(scope, receive, send_with_headers)

    def refusal(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        path, method = scope["path"], scope["method"]
        if not self.guard.host_allowed(headers.get("host")):
            return PlainTextResponse(
                "unknown Host: this page answers to localhost only\n", status_code=421
            )
        if (
            path not in OPEN_PATHS
            and not path.startswith("/static/")
            and not self.guard.authenticated(headers.get("authorization"), _cookie(headers))
        ):
            if method in ("GET", "HEAD") and _wants_html(path, headers):
                query = scope.get("query_string", b"").decode("latin-1")
                target = path + (f"?{query}" if query else "")
                return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)
            return PlainTextResponse(
                "authentication required: send Authorization: Bearer <WORKFLOWS_UI_TOKEN>\n",
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="workflows"'},
            )
        if (
            method not in ("GET", "HEAD")
            and path not in OPEN_PATHS
            and not self.guard.allow_actions
        ):
            return PlainTextResponse(
                "read-only: start the page with --allow-actions to use its buttons\n",
                status_code=403,
            )
        return None


def _wants_html(path: str, headers: Headers) -> bool:
    if path.startswith("/api/") or path in ("/metrics", "/healthz"):
        return False
    return "text/html" in headers.get("accept", "text/html")


# --- the application --------------------------------------------------------------------


class Ui:
    """Everything the handlers share: the database, the DAGs, the rules, the templates."""

    def __init__(
        self,
        engine: Engine,
        registry: DagRegistry,
        guard: Guard,
        reload_seconds: float = pages.RELOAD_SECONDS,
        clock: Callable[[], datetime] = pages.utc_now,
    ) -> None:
        # One consistent snapshot per page, and never a write by accident.
        self.engine = engine.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
        self.write_engine = engine
        self.registry = registry
        self.dags = pages.RegistryCache(registry, reload_seconds)
        self.guard = guard
        self.clock = clock
        self.templates = _environment()

    # rendering

    def render(self, request: Request, template: str, page: Mapping[str, Any]) -> HTMLResponse:
        cookie = _cookie(request.headers)
        html = self.templates.get_template(template).render(
            page=page,
            allow_actions=self.guard.allow_actions,
            csrf_field=CSRF_FIELD,
            csrf=self.guard.csrf_token(cookie) if self.guard.allow_actions else "",
            signed_in=bool(self.guard.token),
            path=request.url.path,
        )
        return HTMLResponse(html)

    def read(self, build: Callable[[Connection], dict[str, Any] | None]) -> dict[str, Any]:
        with self.engine.connect() as conn:
            page = build(conn)
        if page is None:
            raise HTTPException(404, "not found")
        return page

    def respond(
        self, request: Request, template: str, build: Callable[[Connection], dict[str, Any] | None]
    ) -> Response:
        page = self.read(build)
        if request.url.path.startswith("/api/"):
            return ApiResponse(page)
        return self.render(request, template, page)

    # pages

    def dags_list(self, request: Request) -> Response:
        failing = request.query_params.get("failing", "") not in ("", "0")
        search = request.query_params.get("q", "").strip()[:200]
        return self.respond(
            request,
            "dags.html",
            lambda conn: pages.dags_page(conn, self.dags.dags(), self.clock(), failing, search),
        )

    def dag(self, request: Request) -> Response:
        name = request.path_params["name"]
        selected = _int(request.query_params.get("run"))

        def build(conn: Connection) -> dict[str, Any] | None:
            page = pages.dag_page(conn, self.dags.dags(), name, self.clock(), selected)
            if page is not None and not request.url.path.startswith("/api/"):
                page["svg"] = self.graph_svg(page["graph"], name)
            return page

        return self.respond(request, "dag.html", build)

    def run(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]

        def build(conn: Connection) -> dict[str, Any] | None:
            page = pages.run_page(conn, self.dags.dags(), run_id, self.clock())
            if page is not None and not request.url.path.startswith("/api/"):
                page["svg"] = self.graph_svg(page["graph"], page["dag"]["name"])
            return page

        return self.respond(request, "run.html", build)

    def task_run(self, request: Request) -> Response:
        task_run_id = request.path_params["task_run_id"]
        return self.respond(
            request,
            "task_run.html",
            lambda conn: pages.task_run_page(conn, self.dags.dags(), task_run_id, self.clock()),
        )

    def task_run_log(self, request: Request) -> Response:
        task_run_id = request.path_params["task_run_id"]
        page = self.read(
            lambda conn: pages.task_run_page(conn, self.dags.dags(), task_run_id, self.clock())
        )
        attempt = next(a for a in page["attempts"] if a["id"] == task_run_id)
        filename = f"task-run-{task_run_id}.log"
        return PlainTextResponse(
            pages.log_text(page, attempt),
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    def failures(self, request: Request) -> Response:
        return self.respond(
            request,
            "failures.html",
            lambda conn: pages.failures_page(conn, self.dags.dags(), self.clock()),
        )

    def schedulers(self, request: Request) -> Response:
        return self.respond(
            request, "schedulers.html", lambda conn: pages.schedulers_page(conn, self.clock())
        )

    def healthz(self, request: Request) -> Response:
        """200 ``ok`` while the database answers, else 503 and why."""
        from workflows_tick.health import check_database

        reason = check_database(self.engine)
        return PlainTextResponse(f"{reason or 'ok'}\n", status_code=503 if reason else 200)

    def metrics(self, request: Request) -> Response:
        """The Prometheus metrics the schedulers serve, read from the database."""
        from workflows_tick import metrics

        return Response(metrics.render(self.engine), media_type=metrics.CONTENT_TYPE)

    def graph_svg(self, graph: Mapping[str, Any], dag_name: str) -> Markup:
        inputs = graph["inputs"]
        task_runs = graph["task_runs"]
        external = frozenset(n for n in inputs if n not in task_runs and ":" in n)
        return render_svg(
            layout(inputs),
            graph["states"],
            link=lambda task: f"/task-runs/{task_runs[task]}" if task in task_runs else None,
            external=external,
        )

    # signing in

    def login_form(self, request: Request) -> Response:
        return self.render(
            request,
            "login.html",
            {
                "now": self.clock(),
                "live": False,
                "next": safe_next(request.query_params.get("next")),
                "failed": False,
            },
        )

    async def login(self, request: Request) -> Response:
        form = await _form(request)
        target = safe_next(form.get("next"))
        if not self.guard.token:
            return RedirectResponse(target, status_code=303)
        if not self.guard.token_matches(form.get("token", "")):
            page = {"now": self.clock(), "live": False, "next": target, "failed": True}
            refused = self.render(request, "login.html", page)
            refused.status_code = 401
            return refused
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            self.guard.session_value(),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    def logout(self, request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    # actions (only reachable with --allow-actions: see GuardMiddleware)

    async def action(self, request: Request) -> Response:
        form = await _form(request)
        bearer = request.headers.get("authorization", "").lower().startswith("bearer ")
        if not bearer and not self.guard.csrf_ok(form.get(CSRF_FIELD), _cookie(request.headers)):
            return PlainTextResponse(
                "missing or stale form token: reload the page and try again\n", status_code=403
            )
        verb = request.path_params["verb"]
        handler = self.actions().get((request.path_params["kind"], verb))
        if handler is None:
            raise HTTPException(404, "no such action")
        try:
            target = await run_in_threadpool(handler, request.path_params["key"], request)
        except UnknownRunError as exc:
            raise HTTPException(404, str(exc)) from None
        except WorkflowsError as exc:
            # Already ended, already paused, still running...: say so, change nothing.
            raise HTTPException(409, f"{verb}: {exc}") from None
        return RedirectResponse(target, status_code=303)

    def actions(self) -> dict[tuple[str, str], Callable[[str, Request], str]]:
        return {
            ("dags", "trigger"): self.trigger,
            ("dags", "pause"): self.pause,
            ("dags", "unpause"): self.unpause,
            ("runs", "cancel"): self.cancel,
            ("runs", "rerun"): self.rerun,
        }

    @staticmethod
    def _who(request: Request) -> str:
        return f"ui ({request.client.host if request.client else 'unknown'})"

    def _loaded(self, name: str) -> Dag:
        dag = self.dags.dags().get(name)
        if not isinstance(dag, Dag):
            raise HTTPException(404, f"no loadable DAG {name!r}")
        return dag

    def trigger(self, name: str, request: Request) -> str:
        from workflows_tick.scheduler import trigger_dag

        run = trigger_dag(self._loaded(name), creator=self._who(request), engine=self.write_engine)
        return f"/runs/{run.id}"

    def pause(self, name: str, request: Request) -> str:
        from workflows_tick.scheduler import pause_dag

        pause_dag(self._loaded(name), by=self._who(request), engine=self.write_engine)
        return f"/dags/{quote(name, safe='')}"

    def unpause(self, name: str, request: Request) -> str:
        from workflows_tick.scheduler import unpause_dag

        unpause_dag(self._loaded(name), by=self._who(request), engine=self.write_engine)
        return f"/dags/{quote(name, safe='')}"

    def cancel(self, key: str, request: Request) -> str:
        from workflows_tick.scheduler import cancel_run

        run_id = _int(key)
        if run_id is None:
            raise HTTPException(404, "no such run")
        cancel_run(run_id, by=self._who(request), engine=self.write_engine)
        return f"/runs/{run_id}"

    def rerun(self, key: str, request: Request) -> str:
        from workflows_tick.scheduler import rerun_run

        run_id = _int(key)
        if run_id is None:
            raise HTTPException(404, "no such run")
        rerun_run(run_id, by=self._who(request), registry=self.registry, engine=self.write_engine)
        return f"/runs/{run_id}"

    def database_down(self, request: Request, exc: Exception) -> Response:
        """The database did not answer: one line, never a traceback or the statement."""
        from workflows_tick.logs import redact

        reason = str(getattr(exc, "orig", None) or type(exc).__name__).strip().splitlines()
        detail = f"database unavailable: {redact(reason[0] if reason else '')}"
        log.warning("%s %s: %s", request.method, request.url.path, detail)
        return self.error_page(request, HTTPException(503, detail))

    def error_page(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if request.url.path.startswith("/api/") or "text/html" not in request.headers.get(
            "accept", ""
        ):
            return ApiResponse({"error": exc.detail}, status_code=exc.status_code)
        page = {"now": self.clock(), "live": False, "status": exc.status_code, "detail": exc.detail}
        response = self.render(request, "error.html", page)
        response.status_code = exc.status_code
        return response


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form body (the only kind the page sends)."""
    body = await request.body()
    if len(body) > 64 * 1024:
        raise HTTPException(413, "form too large")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0] for key, values in fields.items()}


def create_app(
    engine: Engine,
    registry: DagRegistry,
    guard: Guard | None = None,
    reload_seconds: float = pages.RELOAD_SECONDS,
    clock: Callable[[], datetime] = pages.utc_now,
) -> Starlette:
    """The page as an ASGI application (served by ``workflows CONFIG ui``)."""
    guard = guard or Guard(
        token=None, secret=secrets.token_bytes(32), loopback_only=False, allow_actions=False
    )
    ui = Ui(engine, registry, guard, reload_seconds, clock)

    def both(path: str, endpoint: Callable[[Request], Response]) -> list[Route]:
        return [Route(path, endpoint), Route("/api" + path, endpoint)]

    routes = [
        Route("/", ui.dags_list),
        Route("/api/dags", ui.dags_list),
        *both("/dags/{name}", ui.dag),
        *both("/runs/{run_id:int}", ui.run),
        *both("/task-runs/{task_run_id:int}", ui.task_run),
        Route("/task-runs/{task_run_id:int}/log", ui.task_run_log),
        *both("/failures", ui.failures),
        *both("/schedulers", ui.schedulers),
        Route("/healthz", ui.healthz),
        Route("/metrics", ui.metrics),
        Route("/login", ui.login_form, methods=["GET"]),
        Route("/login", ui.login, methods=["POST"]),
        Route("/logout", ui.logout),
        Route("/{kind:str}/{key}/{verb:str}", ui.action, methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("workflows_tick.ui", "static")]), name="static"),
    ]
    handlers: Mapping[Any, Callable[[Request, Exception], Response | Awaitable[Response]]] = {
        HTTPException: ui.error_page,
        DBAPIError: ui.database_down,
    }
    app = Starlette(
        routes=routes,
        exception_handlers=handlers,
        middleware=[Middleware(GuardMiddleware, guard=guard)],
    )
    app.state.ui = ui
    return app
