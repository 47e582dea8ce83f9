"""The application factory: everything wired from one :class:`Settings`, nothing at import time."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive, Scope, Send

from cdrhub import __version__, cdr
from cdrhub.alerts import Evaluator, Refusals, Sources
from cdrhub.alerts import rules as alert_rules
from cdrhub.api import api_router
from cdrhub.errors import CdrhubError, FieldProblem, SchemaOutdated, Unauthorized
from cdrhub.forward import Deliverer, destinations, forwarding_status, history
from cdrhub.ingest import (
    BatchWriter,
    CallbackEndpoint,
    Guard,
    Journal,
    Spool,
    TokenCheck,
    accepted_tokens,
    applier_process,
    networks,
)
from cdrhub.ops import METRICS_CONTENT_TYPE, Activity, Metrics, configure_logging, memory
from cdrhub.pull import ReconcileStatus
from cdrhub.settings import Settings, load_settings
from cdrhub.store import Store, open_store
from cdrhub.web import install as install_dashboard

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """What the lifespan opens and the routes use; empty until the app has started."""

    store: Store | None = None
    writer: BatchWriter | None = None
    spool: Spool | None = None
    journal: Journal | None = None
    deliverer: Deliverer | None = None

    def require_store(self) -> Store:
        if self.store is None:
            raise RuntimeError("the app has not started (run it with its lifespan)")
        return self.store

    def require_writer(self) -> BatchWriter:
        if self.writer is None:
            raise RuntimeError("the app has not started (run it with its lifespan)")
        return self.writer


class CdrhubApp(FastAPI):
    """FastAPI, with pushes answered before the framework's middleware and router.

    The push path is the one hot path (NXCC pushes every call the moment it ends); routing
    it here skips several framework layers per request, while every other route, the error
    handlers and the lifespan stay ordinary FastAPI.
    """

    callback: CallbackEndpoint | None = None
    callback_paths: frozenset[str] = frozenset()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.callback is not None
            and scope["type"] == "http"
            and (scope["path"] in self.callback_paths)
        ):
            await self.callback(scope, receive, send)
            return
        answered = False

        async def send_noting_the_end(message: Message) -> None:
            nonlocal answered
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True

        try:
            await super().__call__(scope, receive, send_noting_the_end)
        except Exception:
            # Starlette re-raises an error after its handler (`_unexpected`, which logs it) has
            # sent the whole 500, "for the server to log"; uvicorn then closes the connection,
            # after a response that did not say `Connection: close`, so a keep-alive sender's
            # next request on it is reset. The answer is complete, so the connection is sound.
            if not answered:
                raise


def create_app(settings: Settings) -> FastAPI:
    """Build the cdrhub ASGI app. The database is opened when the app starts, not here."""
    tokens, _ = accepted_tokens(settings)
    if not tokens:
        raise ValueError(
            "no ingest token configured: set CDRHUB_TOKENS, or run `cdrhub token new --save`"
        )
    runtime = Runtime()
    metrics = Metrics()
    activity = Activity(
        alert_minutes=settings.silence_alert_minutes,
        business_hours=settings.business_hours,
        business_days=settings.business_days,
        timezone=settings.timezone,
    )
    metrics.watch_activity(activity.status)
    reconciling = ReconcileStatus(
        enabled=settings.reconcile_every_minutes > 0,
        every_minutes=settings.reconcile_every_minutes,
        window_hours=settings.reconcile_window_hours,
        shared_file=settings.data_dir / "reconcile-status.json",
    )
    if reconciling.enabled:
        metrics.watch_reconcile(reconciling.snapshot)

    refusals = Refusals()

    def observe(result: str, seconds: float) -> None:
        metrics.count(result, seconds)
        activity.record(result)
        refusals.record(result)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        memory.keep_freed_memory(settings.keep_freed_memory_mb)
        store = await run_in_threadpool(prepare_store, settings)
        journal = (
            Journal(
                settings.journal_directory,
                store,
                link=applier_process(settings.as_environment())
                if settings.journal_applier == "process"
                else None,
            )
            if settings.journal
            else None
        )
        # With a journal the database being away only delays the applier: no spool needed.
        spool = Spool(settings.spool_directory) if settings.spool and journal is None else None
        if spool is not None:
            metrics.watch_spool(spool.status)
        if journal is not None:
            metrics.watch_journal(journal.status)
            journal.start()
        writer = BatchWriter(
            store, batch_max=settings.batch_max, spool=spool, metrics=metrics, journal=journal
        )
        writer.start()
        runtime.store, runtime.writer, runtime.spool = store, writer, spool
        runtime.journal = journal
        app.state.runtime = runtime
        background = [
            asyncio.create_task(_watch_silence(activity, settings.silence_alert_minutes)),
            asyncio.create_task(_summarise_pushes(activity)),
            asyncio.create_task(_prune_daily(store, settings.retention_days)),
            asyncio.create_task(_refresh_statistics(store)),
        ]
        if reconciling.enabled:
            background.append(asyncio.create_task(_reconcile(store, settings, reconciling)))
        metrics.watch_alerts(lambda: [r.public() for r in alert_rules.all_rules(store)])
        if settings.alert_evaluate_seconds > 0:
            sources = Sources(
                activity=activity,
                refusals=refusals,
                spool_status=spool.status if spool is not None else None,
                reconcile_status=reconciling.snapshot if reconciling.enabled else None,
            )
            background.append(
                asyncio.create_task(_evaluate_alerts(Evaluator(store, settings, sources)))
            )
        stop_forwarding = asyncio.Event()
        delivering = None
        if settings.forward:
            deliverer = Deliverer(store, settings, on_result=metrics.forwarded)
            metrics.watch_forwarding(lambda: forwarding_status(store))
            store.listeners.append(deliverer.wake)
            runtime.deliverer = deliverer
            delivering = asyncio.create_task(deliverer.run(stop_forwarding))
            background.append(asyncio.create_task(_prune_outbox(store, settings)))
        try:
            yield
        finally:
            stop_forwarding.set()
            if delivering is not None:
                await asyncio.wait([delivering], timeout=settings.shutdown_grace_seconds)
            for task in background:
                task.cancel()
            await writer.stop()
            if journal is not None:
                await asyncio.to_thread(journal.stop, settings.shutdown_grace_seconds)
            if spool is not None:
                spool.close()
            store.close()

    app = CdrhubApp(
        title="cdrhub",
        version=__version__,
        summary="Receives NXCC call-log pushes and keeps them safely.",
        lifespan=lifespan,
        docs_url=None,  # the dashboard serves /docs from the package (web.install), no CDN
        swagger_ui_oauth2_redirect_url=None,
    )
    app.callback = CallbackEndpoint(
        TokenCheck(tokens),
        runtime.require_writer,
        guard=Guard(
            networks(settings.allowed_ips),
            networks(settings.trusted_proxies),
            limit=settings.auth_failure_limit,
            window=settings.auth_failure_window_seconds,
        ),
        max_body_bytes=settings.max_body_bytes,
        body_timeout=settings.body_timeout_seconds,
        count=observe,
        log_pushes=settings.log_pushes,
    )
    app.callback_paths = frozenset(settings.callback_paths)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up and answering."""
        return {"status": "ok"}

    metrics_token = (
        settings.metrics_token.get_secret_value().encode() if settings.metrics_token else None
    )

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def metrics_endpoint(request: Request) -> Response:
        """Prometheus metrics of this process: pushes, latency, commits, spool, silence."""
        if metrics_token is not None:
            presented = request.headers.get("authorization", "").removeprefix("Bearer ")
            if not hmac.compare_digest(presented.encode(), metrics_token):
                raise Unauthorized("`GET /metrics` needs `Authorization: Bearer <metrics token>`")
        return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    @app.get("/readyz", tags=["health"], responses={503: {"description": "Not ready"}})
    async def readyz() -> JSONResponse:
        """The database is reachable and its schema is the one this cdrhub needs. Forwarding
        destinations that are paused, failing or holding dead letters are listed under
        `checks.forwarding` without changing the status."""
        assert runtime.store is not None
        status, checks = await run_in_threadpool(
            _readiness, runtime.store, runtime.spool, runtime.journal
        )
        checks["pushes"] = activity.status()
        if status == "ready" and checks["pushes"]["silent"]:
            status = "degraded"
        if reconciling.enabled:
            checks["reconcile"] = reconciling.snapshot()
            if status == "ready" and checks["reconcile"]["last_ok"] is False:
                status = "degraded"
        if checks.get("database") == "ok":  # reported only: forwarding never holds up pushes
            checks["forwarding"] = await run_in_threadpool(_forwarding_check, runtime.store)
        return JSONResponse(
            {"status": status, "checks": checks},
            status_code=503 if status == "not_ready" else 200,
        )

    app.include_router(api_router(settings, runtime.require_store))
    _install_error_handlers(app)
    install_dashboard(app, settings, runtime.require_store)  # after: its pages defer to them
    _document_push(app, settings.callback_paths)
    return app


def _document_push(app: FastAPI, paths: list[str]) -> None:
    """Describe the push endpoint in the OpenAPI schema (it is a plain ASGI app, not a route).

    Integrators read it in /docs, and schemathesis tests the real server against it.
    """
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = base()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["PushError"] = {
            "type": "object",
            "required": ["error", "detail", "fields"],
            "properties": {
                "error": {"type": "string"},
                "detail": {"type": "string"},
                "fields": {"type": "array", "items": {"type": "object"}},
            },
        }
        components["PushResult"] = {
            "type": "object",
            "required": ["ok", "callId", "result"],
            "properties": {
                "ok": {"type": "boolean"},
                "callId": {"type": "string"},
                "result": {
                    "type": "string",
                    "enum": ["created", "duplicate", "updated", "stale", "spooled", "accepted"],
                },
            },
        }
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/PushError"}}}
        responses: dict[str, Any] = {
            "200": {
                "description": "Stored (committed and synced), spooled while the database "
                "is away, or accepted into the synced push journal (CDRHUB_JOURNAL).",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/PushResult"}}
                },
            }
        }
        for status, text in (
            ("400", "Not JSON, or not one JSON object"),
            ("401", "Missing or wrong `token` header"),
            ("403", "Sender address not allowed"),
            ("408", "Body did not arrive in time"),
            ("413", "Body over the size limit"),
            ("415", "Content-Type is not application/json"),
            ("422", "A field cannot be its type; `fields` names each one"),
            ("429", "Too many wrong tokens from this address"),
            ("500", "A bug of ours; the body is quarantined"),
            ("503", "Neither the database nor the spool can store it; retry"),
        ):
            responses[status] = {"description": text, "content": error}
        fields = {f.name: {} for f in cdr.FIELDS}  # any JSON value: lenient on purpose
        operation = {
            "tags": ["push"],
            "summary": "Receive one NXCC call log",
            "description": "See docs/ingest.md. A 200 means committed and synced.",
            "parameters": [
                {"name": "token", "in": "header", "required": True, "schema": {"type": "string"}},
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["callId"],
                            "properties": fields,
                            "additionalProperties": True,
                        }
                    }
                },
            },
            "responses": responses,
        }
        for path in paths:
            op = dict(operation, operationId=f"push_{path.strip('/').replace('/', '_')}")
            schema["paths"][path] = {"post": op}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _summarise_pushes(activity: Activity, every: float = 60.0) -> None:
    """A line a minute saying how many pushes were answered, and how (nothing when none were).

    The operator's sign of life when the line a push is off (``CDRHUB_LOG_PUSHES``, the default).
    """
    while True:
        await asyncio.sleep(every)
        line = activity.summary()
        if line is not None:
            logging.getLogger("cdrhub.ingest").info("%s in the last %g s", line, every)


async def _watch_silence(activity: Activity, minutes: float) -> None:
    """Log once when pushes stop arriving (and once when they come back)."""
    if not minutes:
        return
    alerted = False
    while True:
        await asyncio.sleep(min(30.0, minutes * 60 / 4))
        silent = activity.silent()
        if silent and not alerted:
            refused = activity.last_rejected_reason
            log.warning(
                "no push accepted for %g minutes: check NXCC's push URL and token, and any "
                "firewall in between%s",
                minutes,
                f" (last refused push: {refused})" if refused else "",
            )
        elif alerted and not silent:
            log.info("pushes are arriving again")
        alerted = silent


async def _prune_daily(store: Store, days: int) -> None:
    """Apply CDRHUB_RETENTION_DAYS: now, then every 24 hours."""
    if not days:
        return
    from cdrhub.ops import prune

    while True:
        try:
            counts = await run_in_threadpool(prune, store, timedelta(days=days))
            log.info("retention (%d days): deleted %s", days, counts)
        except Exception:  # the next day tries again; a prune must never stop the receiver
            log.exception("retention prune failed")
        await asyncio.sleep(24 * 3600)


async def _refresh_statistics(store: Store, every_seconds: float = 30) -> None:
    """Rebuild the statistics snapshots of hours that pushes changed, off the request path.

    Reports are exact without this (a reader rebuilds what is stale), but after a bulk import
    or a late batch of retries the first report would pay for it; here nobody waits.
    """
    from cdrhub.reports import rollup

    while True:
        try:
            built = await run_in_threadpool(rollup.refresh, store, limit=2000)
            if built:
                log.info("statistics snapshots rebuilt for %d hours", built)
        except Exception as exc:  # the database may be down: the spool covers pushes, retry later
            log.warning("statistics snapshot refresh failed, will retry: %s", exc)
        await asyncio.sleep(every_seconds)


async def _reconcile(store: Store, settings: Settings, status: ReconcileStatus) -> None:
    """Heal, every few minutes, what the push missed over the last hours (issue: NXCC drops a
    push after about an hour of failures). Failures are recorded in /readyz and the metrics.

    Only the process holding the schedule's lock runs it (``--workers N`` and several
    receivers on one database would otherwise each run it); the others try for the lock at
    each tick, so one of them takes over when that process goes.
    """
    import time
    from zoneinfo import ZoneInfo

    from cdrhub.pull import Leadership, from_settings

    zone = ZoneInfo(settings.timezone)
    leadership = Leadership(store, "reconcile")
    try:
        while True:
            try:
                leading = await run_in_threadpool(leadership.hold)
            except OSError as exc:  # the lock file cannot be made: run rather than never
                log.warning("cannot take the reconcile lock (%s); running it here", exc)
                leading = True
            status.set_leader(leading)
            if leading:
                await run_in_threadpool(
                    status.run, store, lambda: from_settings(settings), int(time.time()), zone
                )
            await asyncio.sleep(settings.reconcile_every_minutes * 60)
    finally:
        leadership.release()  # at once (a file or a connection closed): the next can lead


async def _evaluate_alerts(evaluator: Evaluator) -> None:
    """Evaluate the alert rules every CDRHUB_ALERT_EVALUATE_SECONDS, in the one process that
    holds the ``alerts`` lock of this database (as the reconcile): several receivers on one
    PostgreSQL, or ``--workers N``, tell people once. The others try for the lock each tick."""
    from cdrhub.pull import Leadership

    leadership = Leadership(evaluator.store, "alerts")
    try:
        while True:
            try:
                leading = await run_in_threadpool(leadership.hold)
            except OSError as exc:  # the lock file cannot be made: evaluate rather than never
                log.warning("cannot take the alerts lock (%s); evaluating here", exc)
                leading = True
            if leading:
                try:
                    await run_in_threadpool(evaluator.evaluate_once)
                except Exception as exc:  # the database may be away: the next tick tries again
                    log.warning("alert evaluation failed, will retry: %s", exc)
            await asyncio.sleep(evaluator.settings.alert_evaluate_seconds)
    finally:
        leadership.release()


def prepare_store(settings: Settings) -> Store:
    """Open the database and make sure its schema is the one this cdrhub needs.

    An outdated schema always stops the start (``SchemaOutdated`` names the fix). An
    unreachable database stops it only without a spool: with one, pushes are accepted into
    the spool and stored once the database answers.
    """
    store = open_store(
        settings.database_url,
        sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        fact_cache_bytes=settings.stats_cache_mb * 2**20,
    )
    try:
        if settings.auto_migrate:
            before, after = store.upgrade()
            if before != after:
                log.info("database schema upgraded from %s to %s", before, after)
        store.require_current_schema()
    except OperationalError as exc:
        if not settings.spool:
            store.close()
            raise
        log.warning("database unreachable at startup (%s); pushes go to the spool", exc.orig)
    except BaseException:
        store.close()
        raise
    return store


def _readiness(
    store: Store, spool: Spool | None, journal: Journal | None = None
) -> tuple[str, dict[str, Any]]:
    """ready: storing in the database; degraded: accepting into the spool or the journal
    while the database is away; not_ready: neither. ``checks.journal`` says how far the
    applier is behind."""
    checks: dict[str, Any] = {}
    if spool is not None:
        checks["spool"] = spool.status()
    if journal is not None:
        checks["journal"] = journal.status()
        spool = spool or journal  # type: ignore[assignment]  # buffers pushes just the same
    try:
        store.ping()
        current, head = store.schema_status()
    except CdrhubError as error:
        checks["database"] = error.detail
        return ("degraded" if spool is not None else "not_ready"), checks
    except Exception as exc:  # a readiness probe reports, it does not crash
        checks["database"] = f"unavailable: {type(exc).__name__}"
        return ("degraded" if spool is not None else "not_ready"), checks
    checks["database"] = "ok"
    if current != head:
        checks["schema"] = f"at {current}, needs {head}: run `cdrhub db upgrade`"
        return "not_ready", checks
    checks["schema"] = "ok"
    return "ready", checks


def _forwarding_check(store: Store) -> dict[str, Any]:
    """How many destinations there are, and each one that needs a person: paused (by an
    operator, a 410 or the auto-pause), failing every attempt, or holding dead letters."""
    try:
        found = destinations.all_destinations(store)
        problems = []
        for destination in found:
            counts = history.status(store, destination)
            if destination.state != "active":
                problem = "paused"
            elif destination.failing_since_ms is not None:
                problem = "failing"
            elif counts["dead"]:
                problem = "dead_letters"
            else:
                continue
            problems.append(
                {
                    "name": destination.name,
                    "problem": problem,
                    "state": destination.state,
                    "paused_reason": destinations.mask_text(destination.paused_reason, destination),
                    "failing_since_ms": destination.failing_since_ms,
                    "last_error": destinations.mask_text(destination.last_error, destination),
                    "last_error_at_ms": destination.last_error_at_ms,
                    "waiting": counts["waiting"],
                    "dead": counts["dead"],
                    "lag_seconds": round(counts["lag_seconds"], 3),
                }
            )
    except Exception as exc:  # a readiness probe reports, it does not crash
        return {"error": f"unavailable: {type(exc).__name__}"}
    return {"destinations": len(found), "problems": problems}


def _install_error_handlers(app: FastAPI) -> None:
    """Every error, from any route, gets the same JSON shape as the push endpoint's."""

    @app.exception_handler(CdrhubError)
    async def _cdrhub_error(_: Request, error: CdrhubError) -> JSONResponse:
        return JSONResponse(
            error.body(), status_code=error.status, headers=getattr(error, "headers", None)
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return JSONResponse(
            {"error": code, "detail": str(error.detail), "fields": []},
            status_code=error.status_code,
            headers=error.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        fields = [
            FieldProblem(".".join(str(p) for p in e["loc"][1:]), e.get("input"), e["msg"])
            for e in error.errors()
        ]
        body = CdrhubError("invalid request parameters", fields).body()
        body["error"] = "invalid_parameters"
        return JSONResponse(body, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> JSONResponse:
        log.error("unexpected error", exc_info=error)
        return JSONResponse(
            {
                "error": "internal_error",
                "detail": "unexpected server error; see the server log",
                "fields": [],
            },
            status_code=500,
        )


async def _prune_outbox(store: Store, settings: Settings) -> None:
    """Hourly: drop events delivered everywhere past ``CDRHUB_FORWARD_KEEP_DAYS``, old attempts."""
    while True:
        await asyncio.sleep(3600)
        try:
            removed = await run_in_threadpool(
                history.prune,
                store,
                keep_days=settings.forward_keep_days,
                attempts_keep_days=settings.forward_attempts_keep_days,
            )
            if any(removed.values()):
                log.info("forwarding outbox pruned: %s", removed)
        except Exception as exc:
            log.warning("could not prune the forwarding outbox: %s", exc)


def app_from_env() -> FastAPI:
    """Entry point for ASGI servers: ``uvicorn --factory --no-proxy-headers
    cdrhub.app:app_from_env`` (without ``--no-proxy-headers`` uvicorn believes
    ``X-Forwarded-For`` from any loopback client before cdrhub sees the request).

    Also what each ``cdrhub serve --workers N`` process runs, so it sets up logging the way
    ``serve`` does when nothing else has.
    """
    settings = load_settings()
    from cdrhub.ingest import DeclineH2CHttpToolsProtocol

    DeclineH2CHttpToolsProtocol.header_timeout = settings.header_timeout_seconds
    if not logging.getLogger().handlers:
        configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


__all__ = ["SchemaOutdated", "app_from_env", "create_app"]
