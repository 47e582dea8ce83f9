"""Wallboard links: a read-only address of ``/wall`` for a TV that nobody signs in on.

A link is a random token in the URL (``/wall?link=...``). As with API keys, only its SHA-256
is stored, so a leaked database does not leak working links; the presented token is hashed,
looked up by that hash, and the stored hash is compared again in constant time. A link opens
the wallboard and its data, nothing else, and revoking it takes effect on the next refresh.
The server writes no access log (``server.py``) and nothing here logs a token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert, select, update

from cdrhub.store import Store
from cdrhub.store.schema import wall_links

#: Every link token starts with this, so a leaked one is recognisable.
TOKEN_PREFIX = "cdrwall_"  # noqa: S105 - a marker, not a secret


@dataclass(frozen=True, slots=True)
class WallLink:
    """A stored link, without its token."""

    id: int
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


def hash_token(token: str) -> str:
    """The stored form of a token (256 random bits: a fast hash is enough)."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_link(store: Store, name: str) -> tuple[WallLink, str]:
    """Make and store a new link; returns it and its token, which exists nowhere else after."""
    if not name.strip():
        raise ValueError("a wallboard link needs a name saying where it is shown (e.g. floor-tv)")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    values = {
        "name": name.strip(),
        "token_hash": hash_token(token),
        "token_prefix": token[: len(TOKEN_PREFIX) + 4],
        "created_at": datetime.now(UTC),
        "revoked_at": None,
    }
    with store.write_engine.begin() as conn:
        link_id = conn.execute(
            insert(wall_links).values(values).returning(wall_links.c.id)
        ).scalar_one()
    return _link({"id": link_id, **values}), token


def list_links(store: Store, *, include_revoked: bool = False) -> list[WallLink]:
    """Every link, oldest first."""
    query = select(wall_links).order_by(wall_links.c.id)
    if not include_revoked:
        query = query.where(wall_links.c.revoked_at.is_(None))
    with store.read_engine.connect() as conn:
        return [_link(dict(row)) for row in conn.execute(query).mappings()]


def revoke_link(store: Store, which: str) -> WallLink:
    """Revoke a link by id, or by name when exactly one active link has it; effective at once."""
    active = list_links(store)
    matches = [k for k in active if str(k.id) == which] or [k for k in active if k.name == which]
    if not matches:
        raise LookupError(
            f"no active wallboard link with id or name {which!r} (see `cdrhub wall link list`)"
        )
    if len(matches) > 1:
        ids = ", ".join(str(k.id) for k in matches)
        raise LookupError(f"several active links are named {which!r} (ids {ids}): give the id")
    link = matches[0]
    now = datetime.now(UTC)
    with store.write_engine.begin() as conn:
        conn.execute(update(wall_links).where(wall_links.c.id == link.id).values(revoked_at=now))
    return WallLink(link.id, link.name, link.prefix, link.created_at, now)


def authenticate_link(store: Store, presented: str) -> WallLink | None:
    """The active link whose token was presented, or None (also for a revoked one)."""
    if not presented.startswith(TOKEN_PREFIX) or len(presented) > 128:
        return None
    digest = hash_token(presented)
    query = select(wall_links).where(
        wall_links.c.token_hash == digest, wall_links.c.revoked_at.is_(None)
    )
    with store.read_engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    if row is None or not hmac.compare_digest(str(row["token_hash"]), digest):
        return None
    return _link(dict(row))


def _link(row: dict[str, object]) -> WallLink:
    return WallLink(
        id=int(row["id"]),  # type: ignore[call-overload]
        name=str(row["name"]),
        prefix=str(row["token_prefix"]),
        created_at=row["created_at"],  # type: ignore[arg-type]
        revoked_at=row["revoked_at"],  # type: ignore[arg-type]
    )
