"""The push path: from NXCC's POST on the socket to a synced commit, and the ``200`` after it.

``protocol`` is the HTTP protocol the server speaks (uvicorn's httptools one, declining the
``h2c`` upgrade offer that would lose a body); ``endpoint`` is the ASGI push endpoint (token,
size, parse, answer); ``guard`` brakes bad tokens and applies the address allowlist; ``tokens``
finds the accepted tokens; ``writer`` is the group-commit thread; ``spool`` keeps pushes safe on
local disk while the database is away; ``journal`` (``CDRHUB_JOURNAL``) acknowledges from a
synced append, and ``applier`` applies it to the tables from a process of its own;
``quarantine`` replays refused
bodies. Everything is written through :mod:`cdrhub.store`; nothing here reads reports.
"""

from cdrhub.ingest.applier import applier_process
from cdrhub.ingest.endpoint import CallbackEndpoint, TokenCheck
from cdrhub.ingest.guard import Guard, client_address, networks
from cdrhub.ingest.journal import Journal
from cdrhub.ingest.protocol import DeclineH2CHttpToolsProtocol
from cdrhub.ingest.quarantine import ReplayResult, replay, replay_all
from cdrhub.ingest.spool import Spool
from cdrhub.ingest.tokens import (
    accepted_tokens,
    create_token_file,
    new_token,
    read_token_file,
    session_secret_source,
    token_source,
    write_token_file,
)
from cdrhub.ingest.writer import BatchWriter

__all__ = [
    "BatchWriter",
    "CallbackEndpoint",
    "DeclineH2CHttpToolsProtocol",
    "Guard",
    "Journal",
    "ReplayResult",
    "Spool",
    "TokenCheck",
    "accepted_tokens",
    "applier_process",
    "client_address",
    "create_token_file",
    "networks",
    "new_token",
    "read_token_file",
    "replay",
    "replay_all",
    "session_secret_source",
    "token_source",
    "write_token_file",
]
