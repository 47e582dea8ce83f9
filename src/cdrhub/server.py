"""Running the app under uvicorn, with the one fix real NXCC-style senders need.

uvicorn's fast parser (httptools/llhttp) treats any request carrying ``Connection: Upgrade``
and ``Upgrade: ...`` as "no body follows": httptools tells llhttp to skip the body when the
upgrade flag is set, and uvicorn then ignores the upgrade it does not support. The JDK's
``java.net.http.HttpClient`` with default settings offers ``Upgrade: h2c`` on every request to an
``http://`` URL, so every push from such a sender would arrive with an empty body. We decline
the offer before the parser sees it, by renaming the header; HTTP/1.1 lets a server ignore an
upgrade offer, which is exactly what the response then does.
"""

from __future__ import annotations

import re
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Only a header line offering h2c: a JSON body cannot contain this (CRLF then a bare word).
_H2C_OFFER = re.compile(rb"\r\nupgrade([ \t]*:[ \t]*h2c[ \t]*\r\n)", re.IGNORECASE)


class DeclineH2CHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that declines ``Upgrade: h2c`` offers instead of losing bodies.

    Limit: the rename needs the ``Upgrade`` header line to arrive within one read, as a
    sender's header block (a few hundred bytes, written at once) does in practice.
    """

    def data_received(self, data: bytes) -> None:
        if b"2c" in data or b"2C" in data:  # cheap pre-check: most pushes carry no offer
            data = _H2C_OFFER.sub(rb"\r\nx-declined-upgrade\1", data)
        super().data_received(data)


def run(app: Any, *, host: str, port: int, log_level: str) -> None:
    """Serve ``app`` until SIGINT/SIGTERM (uvicorn finishes in-flight requests first)."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,  # cdrhub logs each push (call id and outcome) itself
        http=DeclineH2CHttpToolsProtocol,
        server_header=False,
    )
