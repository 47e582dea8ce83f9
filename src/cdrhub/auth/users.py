"""Dashboard accounts: names, roles and argon2id password hashes.

Call data holds personal data, so the dashboard needs a sign-in of its own (API keys are for
programs). argon2id is memory-hard: a stolen database does not give passwords away cheaply.
Roles: ``viewer`` sees everything; ``admin`` may also replay quarantined payloads.

Sessions live in the database, not only in the signed cookie: a cookie copied before sign-out
opens nothing afterwards, and every server process of ``--workers N`` sees the same sessions.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from cdrhub.store import Store
from cdrhub.store.schema import dashboard_sessions, users

Role = Literal["viewer", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "admin")
MIN_PASSWORD = 8
#: How long a sign-in lasts however busy the browser is (a wall screen that polls all day
#: still signs in again): counted from the sign-in, not from the last request.
SESSION_LIFETIME = timedelta(hours=12)

_hasher = PasswordHasher()


@functools.cache
def _dummy() -> str:
    """Verified against when the name is unknown, so a wrong name costs as long as a wrong
    password.

    Made at the first sign-in, not at import: Argon2 takes 64 MB and a tenth of a second for
    it, which every ``cdrhub`` command and server would pay.
    """
    return _hasher.hash("not a password of anyone")


@dataclass(frozen=True, slots=True)
class User:
    """A dashboard account, without its password hash."""

    id: int
    name: str
    role: Role
    created_at: datetime
    #: Changes whenever the password does: a session remembers it, so a new password ends
    #: every session signed in with the old one.
    stamp: str = ""


class UserError(ValueError):
    """A user that cannot be created or changed, with the reason."""


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")


def sign_in_name(name: str) -> str:
    """The account a typed name means: the name without surrounding whitespace.

    The one definition the account lookup, account creation and the sign-in brake
    (:mod:`cdrhub.web.throttle`) share: were the brake to count ``" ann"`` apart from
    ``"ann"`` while sign-in treats them as one account, every spelling would get its own
    five guesses.
    """
    return name.strip()


def create(store: Store, name: str, role: Role, password: str) -> User:
    """Store a new user; the password is kept only as its argon2id hash."""
    name = sign_in_name(name)
    if not name:
        raise UserError("a user needs a name")
    if "\x00" in name:  # PostgreSQL text cannot hold NUL; refused on both databases alike
        raise UserError("a user name cannot contain NUL characters")
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    _check_password(password)
    values = {
        "name": name,
        "role": role,
        "password_hash": _hasher.hash(password),
        "created_at": datetime.now(UTC),
    }
    try:
        with store.writing() as conn:
            new_id = conn.execute(insert(users).returning(users.c.id), values).scalar_one()
    except IntegrityError:
        raise UserError(f"a user named {name!r} exists already") from None
    return User(int(new_id), name, role, values["created_at"], _stamp(values["password_hash"]))


def authenticate(store: Store, name: str, password: str) -> User | None:
    """The user if the password is theirs, else None (same work either way)."""
    name = sign_in_name(name)
    row = None
    if "\x00" not in name:  # no account has one, and PostgreSQL would refuse the query
        with store.read_engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).mappings().first()
    try:
        _hasher.verify(row["password_hash"] if row else _dummy(), password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    if _hasher.check_needs_rehash(row["password_hash"]):
        # Stronger parameters since this hash was made: upgrade it now that we know the password
        # (the session then remembers the new hash's stamp).
        fresh = _hasher.hash(password)
        with store.writing() as conn:
            conn.execute(update(users).where(users.c.id == row["id"]).values(password_hash=fresh))
        row = {**row, "password_hash": fresh}
    return _user(row)


def _stamp(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def _user(row: Any) -> User:
    return User(
        row["id"], row["name"], row["role"], row["created_at"], _stamp(row["password_hash"])
    )


def get(store: Store, user_id: int) -> User | None:
    """A user by id (what a session cookie names)."""
    with store.read_engine.connect() as conn:
        row = conn.execute(select(users).where(users.c.id == user_id)).mappings().first()
    return _user(row) if row else None


def set_password(store: Store, name: str, password: str) -> bool:
    """Replace a user's password and end their sessions (False if there is no such user)."""
    _check_password(password)
    with store.writing() as conn:
        result = conn.execute(
            update(users)
            .where(users.c.name == name)
            .values(password_hash=_hasher.hash(password))
            .returning(users.c.id)
        )
        ids = [row[0] for row in result]
        _end_sessions_of(conn, ids)
        return bool(ids)


def all_users(store: Store) -> list[User]:
    """Every user, by name."""
    with store.read_engine.connect() as conn:
        rows = conn.execute(select(users).order_by(users.c.name)).mappings()
        return [_user(r) for r in rows]


def remove(store: Store, name: str) -> bool:
    """Delete a user and their sessions."""
    with store.writing() as conn:
        ids = [
            row[0]
            for row in conn.execute(delete(users).where(users.c.name == name).returning(users.c.id))
        ]
        _end_sessions_of(conn, ids)
        return bool(ids)


# -- sessions ---------------------------------------------------------------------------------


def _session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def start_session(store: Store, user: User) -> str:
    """A new session for ``user``; returns its random id, which only the cookie holds.

    Expired sessions are swept out at the same time (sign-ins are rare; requests are not).
    """
    session_id = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    with store.writing() as conn:
        conn.execute(delete(dashboard_sessions).where(dashboard_sessions.c.expires_at <= now))
        conn.execute(
            insert(dashboard_sessions),
            {
                "id_hash": _session_hash(session_id),
                "user_id": user.id,
                "created_at": now,
                "expires_at": now + SESSION_LIFETIME,
            },
        )
    return session_id


def session_user(store: Store, session_id: object) -> User | None:
    """The user of a live session: None once it was ended, expired, or its user deleted."""
    if not isinstance(session_id, str) or not session_id:
        return None
    query = (
        select(users)
        .join(dashboard_sessions, dashboard_sessions.c.user_id == users.c.id)
        .where(
            dashboard_sessions.c.id_hash == _session_hash(session_id),
            dashboard_sessions.c.expires_at > datetime.now(UTC),
        )
    )
    with store.read_engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return _user(row) if row else None


def end_session(store: Store, session_id: object) -> None:
    """Sign one session out: its cookie opens nothing any more, in any server process."""
    if not isinstance(session_id, str) or not session_id:
        return
    with store.writing() as conn:
        conn.execute(
            delete(dashboard_sessions).where(
                dashboard_sessions.c.id_hash == _session_hash(session_id)
            )
        )


def _end_sessions_of(conn: Connection, user_ids: list[int]) -> None:
    if user_ids:
        conn.execute(delete(dashboard_sessions).where(dashboard_sessions.c.user_id.in_(user_ids)))
