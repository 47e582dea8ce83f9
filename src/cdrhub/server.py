"""Running the app under uvicorn, with the one fix real NXCC-style senders need.

uvicorn's fast parser (httptools/llhttp) treats any request carrying ``Connection: Upgrade``
and ``Upgrade: ...`` as "no body follows": httptools tells llhttp to skip the body when the
upgrade flag is set, and uvicorn then ignores the upgrade it does not support. The JDK's
``java.net.http.HttpClient`` with default settings offers ``Upgrade: h2c`` on every request to an
``http://`` URL, so every push from such a sender would arrive with an empty body. We decline
the offer before the parser sees it, by renaming the header; HTTP/1.1 lets a server ignore an
upgrade offer, which is exactly what the response then does. (Upstream: uvicorn issue #2722
and httptools issue #124, both open; with ``Expect: 100-continue`` the JDK client even hangs.)
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cdrhub.settings import Settings

# Only a header line offering h2c: a JSON body cannot contain this (CRLF then a bare word).
_H2C_OFFER = re.compile(rb"\r\nupgrade([ \t]*:[ \t]*h2c[ \t]*\r\n)", re.IGNORECASE)


class DeclineH2CHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with two fixes a public receiver needs.

    1. It declines ``Upgrade: h2c`` offers instead of losing the body (see the module
       docstring). Limit: the rename needs the ``Upgrade`` header line to arrive within one
       read, as a sender's header block (a few hundred bytes, written at once) does in practice.
    2. It closes connections whose request headers do not arrive within ``header_timeout``
       seconds, counted from the connection (or the request's first byte): uvicorn only times
       out idle keep-alive connections, so a slow or silent client could otherwise hold a
       connection forever (slowloris). The body has its own timeout in the push endpoint.
    """

    header_timeout: float = 10.0  # set from CDRHUB_HEADER_TIMEOUT_SECONDS by run()/app_from_env

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if b"2c" in data or b"2C" in data:  # cheap pre-check: most pushes carry no offer
            data = _H2C_OFFER.sub(rb"\r\nx-declined-upgrade\1", data)
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()


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
        "timeout_graceful_shutdown": settings.shutdown_grace_seconds,
    }
    # uvicorn finishes in-flight requests on SIGTERM/SIGINT, then re-raises the signal so the
    # previous handler decides how the process ends. A shutdown that drained cleanly is a
    # success, so that handler exits 0 (service managers otherwise log a failure).
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_cleanly)
    if settings.workers == 1:
        from cdrhub.app import create_app

        uvicorn.run(create_app(settings), **options)
    else:
        os.environ.update(settings.as_environment())
        uvicorn.run("cdrhub.app:app_from_env", factory=True, workers=settings.workers, **options)


def _exit_cleanly(signum: int, _frame: object) -> None:
    raise SystemExit(0)
