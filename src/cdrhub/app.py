"""The application factory: everything wired from one :class:`Settings`, nothing at import time."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from cdrhub import __version__
from cdrhub.api import api_router
from cdrhub.errors import CdrhubError, FieldProblem, SchemaOutdated
from cdrhub.ingest import CallbackEndpoint, TokenCheck
from cdrhub.settings import Settings, load_settings
from cdrhub.store import Store, open_store
from cdrhub.tokens import accepted_tokens
from cdrhub.writer import BatchWriter

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """What the lifespan opens and the routes use; empty until the app has started."""

    store: Store | None = None
    writer: BatchWriter | None = None

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
        await super().__call__(scope, receive, send)


def create_app(settings: Settings) -> FastAPI:
    """Build the cdrhub ASGI app. The database is opened when the app starts, not here."""
    tokens, _ = accepted_tokens(settings)
    if not tokens:
        raise ValueError(
            "no ingest token configured: set CDRHUB_TOKENS, or run `cdrhub token new --save`"
        )
    runtime = Runtime()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await run_in_threadpool(_open, settings)
        writer = BatchWriter(store, batch_max=settings.batch_max)
        writer.start()
        runtime.store, runtime.writer = store, writer
        app.state.runtime = runtime
        try:
            yield
        finally:
            await writer.stop()
            store.close()

    app = CdrhubApp(
        title="cdrhub",
        version=__version__,
        summary="Receives NXCC call-log pushes and keeps them safely.",
        lifespan=lifespan,
    )
    app.callback = CallbackEndpoint(
        TokenCheck(tokens), runtime.require_writer, max_body_bytes=settings.max_body_bytes
    )
    app.callback_paths = frozenset(settings.callback_paths)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up and answering."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "Not ready"}})
    async def readyz() -> JSONResponse:
        """The database is reachable and its schema is the one this cdrhub needs."""
        assert runtime.store is not None
        ready, checks = await run_in_threadpool(_readiness, runtime.store)
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    app.include_router(api_router(settings, runtime.require_store))
    _install_error_handlers(app)
    return app


def _open(settings: Settings) -> Store:
    store = open_store(
        settings.database_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
    )
    try:
        if settings.auto_migrate:
            before, after = store.upgrade()
            if before != after:
                log.info("database schema upgraded from %s to %s", before, after)
        store.require_current_schema()
    except BaseException:
        store.close()
        raise
    return store


def _readiness(store: Store) -> tuple[bool, dict[str, Any]]:
    try:
        store.ping()
        current, head = store.schema_status()
    except CdrhubError as error:
        return False, {"database": error.detail}
    except Exception as exc:  # a readiness probe reports, it does not crash
        return False, {"database": f"unavailable: {type(exc).__name__}"}
    schema_ok = current == head
    return schema_ok, {
        "database": "ok",
        "schema": "ok" if schema_ok else f"at {current}, needs {head}: run `cdrhub db upgrade`",
    }


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


def app_from_env() -> FastAPI:
    """Entry point for ASGI servers: ``uvicorn --factory cdrhub.app:app_from_env``."""
    return create_app(load_settings())


__all__ = ["SchemaOutdated", "app_from_env", "create_app"]
