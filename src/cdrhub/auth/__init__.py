"""Who may read: dashboard accounts and their sessions (``users``), API keys (``apikeys``)
and the wallboard's read-only links (``wallboard``).

Both live in the database; the web pages, the HTTP API and the CLI use them. The push token is
not here: it belongs to the push path (:mod:`cdrhub.ingest`).
"""

from cdrhub.auth import users, wallboard
from cdrhub.auth.apikeys import (
    ApiKey,
    Right,
    authenticate,
    create_key,
    hash_key,
    list_keys,
    revoke_key,
)

__all__ = [
    "ApiKey",
    "Right",
    "authenticate",
    "create_key",
    "hash_key",
    "list_keys",
    "revoke_key",
    "users",
    "wallboard",
]
