"""API keys: who may read call data (phone numbers are personal data) through the HTTP API.

Keys are random, shown once when created, and stored only as their SHA-256. A request's key is
hashed and looked up by that hash, so no comparison ever runs over the secret itself, and a
leaked database does not leak usable keys. (A fast hash is enough: the keys carry 256 bits of
entropy, nothing to brute-force.) Ingest tokens live elsewhere and never open these endpoints.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import insert, select, update

from cdrhub.store import Store
from cdrhub.store.schema import api_keys

Right = Literal["read", "write"]

#: Every key starts with this, so a leaked one is recognisable (secret scanners, logs).
KEY_PREFIX = "cdrhub_"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key, without its secret."""

    id: int
    name: str
    prefix: str
    read_only: bool
    created_at: datetime
    revoked_at: datetime | None

    @property
    def rights(self) -> frozenset[Right]:
        """``read`` for every key; ``write`` (acting on data, e.g. replay) unless read-only."""
        return frozenset({"read"}) if self.read_only else frozenset({"read", "write"})


def hash_key(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(store: Store, name: str, *, read_only: bool = False) -> tuple[ApiKey, str]:
    """Make and store a new key; returns it and the secret, which exists nowhere else after."""
    if not name.strip():
        raise ValueError("an API key needs a name saying who or what uses it")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    values = {
        "name": name.strip(),
        "key_hash": hash_key(secret),
        "key_prefix": secret[: len(KEY_PREFIX) + 4],
        "read_only": read_only,
        "created_at": datetime.now(UTC),
        "revoked_at": None,
    }
    with store.write_engine.begin() as conn:
        key_id = conn.execute(insert(api_keys).values(values).returning(api_keys.c.id)).scalar_one()
    return _key({"id": key_id, **values}), secret


def list_keys(store: Store, *, include_revoked: bool = False) -> list[ApiKey]:
    """Every key, oldest first."""
    query = select(api_keys).order_by(api_keys.c.id)
    if not include_revoked:
        query = query.where(api_keys.c.revoked_at.is_(None))
    with store.read_engine.connect() as conn:
        return [_key(dict(row)) for row in conn.execute(query).mappings()]


def revoke_key(store: Store, which: str) -> ApiKey:
    """Revoke a key by id, or by name when exactly one active key has it; effective at once."""
    active = list_keys(store)
    matches = [k for k in active if str(k.id) == which] or [k for k in active if k.name == which]
    if not matches:
        raise LookupError(f"no active API key with id or name {which!r} (see `cdrhub apikey list`)")
    if len(matches) > 1:
        ids = ", ".join(str(k.id) for k in matches)
        raise LookupError(f"several active keys are named {which!r} (ids {ids}): give the id")
    key = matches[0]
    now = datetime.now(UTC)
    with store.write_engine.begin() as conn:
        conn.execute(update(api_keys).where(api_keys.c.id == key.id).values(revoked_at=now))
    return _key({**_values(key), "revoked_at": now})


def authenticate(store: Store, presented: str) -> ApiKey | None:
    """The active key a request presented, or None."""
    query = select(api_keys).where(
        api_keys.c.key_hash == hash_key(presented), api_keys.c.revoked_at.is_(None)
    )
    with store.read_engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return _key(dict(row)) if row else None


def _key(row: dict[str, object]) -> ApiKey:
    return ApiKey(
        id=int(row["id"]),  # type: ignore[call-overload]
        name=str(row["name"]),
        prefix=str(row["key_prefix"]),
        read_only=bool(row["read_only"]),
        created_at=row["created_at"],  # type: ignore[arg-type]
        revoked_at=row["revoked_at"],  # type: ignore[arg-type]
    )


def _values(key: ApiKey) -> dict[str, object]:
    return {
        "id": key.id,
        "name": key.name,
        "key_prefix": key.prefix,
        "read_only": key.read_only,
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
    }
