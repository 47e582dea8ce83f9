"""Running the app under uvicorn: one process, or several built from the environment.

This sits above :mod:`cdrhub.app` (it serves the app ``create_app`` builds) and below the CLI,
which is its only caller; the HTTP protocol it serves with lives in :mod:`cdrhub.ingest`.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import uvicorn

from cdrhub.app import create_app
from cdrhub.ingest import DeclineH2CHttpToolsProtocol
from cdrhub.settings import Settings


def run(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM; in-flight pushes finish (and commit) before exit.

    One process runs the app built here; several (``workers``) are started by uvicorn, each
    building its app from the environment, so the effective settings are passed down that way.
    """
    DeclineH2CHttpToolsProtocol.header_timeout = settings.header_timeout_seconds
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": False,  # cdrhub logs each push (call id and outcome) itself
        # uvicorn's own lines (a traceback of an unhandled error among them) go through cdrhub's
        # handler: one format, and the text format's escaping of what senders chose.
        "log_config": None,
        "http": DeclineH2CHttpToolsProtocol,
        "server_header": False,
        # uvicorn would otherwise rewrite the peer from X-Forwarded-For sent by any loopback
        # client (its default forwarded_allow_ips), so every local process, or a proxy passing
        # the header through, could choose its address. cdrhub decides the address itself,
        # believing the header only from CDRHUB_TRUSTED_PROXIES (cdrhub.guard.client_address).
        "proxy_headers": False,
        "timeout_graceful_shutdown": settings.shutdown_grace_seconds,
    }
    # uvicorn finishes in-flight requests on SIGTERM/SIGINT, then re-raises the signal so the
    # previous handler decides how the process ends. A shutdown that drained cleanly is a
    # success, so that handler exits 0 (service managers otherwise log a failure).
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_cleanly)
    if settings.workers == 1:
        uvicorn.run(create_app(settings), **options)
    else:
        os.environ.update(settings.as_environment())
        # uvicorn kills a worker that has not answered its health check within 5 s, and a
        # worker still importing cannot answer: on a busy machine (a backup, a report) that
        # restarts workers in a loop. 60 s still catches a worker that really hangs.
        uvicorn.run(
            "cdrhub.app:app_from_env",
            factory=True,
            workers=settings.workers,
            timeout_worker_healthcheck=60,
            **options,
        )


def _exit_cleanly(signum: int, _frame: object) -> None:
    raise SystemExit(0)
