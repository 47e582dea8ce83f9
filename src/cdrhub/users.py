"""Dashboard accounts: names, roles and argon2id password hashes.

Call data holds personal data, so the dashboard needs a sign-in of its own (API keys are for
programs). argon2id is memory-hard: a stolen database does not give passwords away cheaply.
Roles: ``viewer`` sees everything; ``admin`` may also replay quarantined payloads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from cdrhub.store import Store
from cdrhub.store.schema import users

Role = Literal["viewer", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "admin")
MIN_PASSWORD = 8

_hasher = PasswordHasher()
#: Verified against when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY = _hasher.hash("not a password of anyone")


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    role: Role
    created_at: datetime


class UserError(ValueError):
    """A user that cannot be created or changed, with the reason."""


def create(store: Store, name: str, role: Role, password: str) -> User:
    """Store a new user; the password is kept only as its argon2id hash."""
    name = name.strip()
    if not name:
        raise UserError("a user needs a name")
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
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
    return User(int(new_id), name, role, values["created_at"])


def authenticate(store: Store, name: str, password: str) -> User | None:
    """The user if the password is theirs, else None (same work either way)."""
    with store.read_engine.connect() as conn:
        row = conn.execute(select(users).where(users.c.name == name.strip())).mappings().first()
    try:
        _hasher.verify(row["password_hash"] if row else _DUMMY, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    if _hasher.check_needs_rehash(row["password_hash"]):
        with store.writing() as conn:
            conn.execute(
                update(users)
                .where(users.c.id == row["id"])
                .values(password_hash=_hasher.hash(password))
            )
    return User(row["id"], row["name"], row["role"], row["created_at"])


def get(store: Store, user_id: int) -> User | None:
    """A user by id (what a session cookie names)."""
    with store.read_engine.connect() as conn:
        row = conn.execute(select(users).where(users.c.id == user_id)).mappings().first()
    return User(row["id"], row["name"], row["role"], row["created_at"]) if row else None


def all_users(store: Store) -> list[User]:
    with store.read_engine.connect() as conn:
        rows = conn.execute(select(users).order_by(users.c.name)).mappings()
        return [User(r["id"], r["name"], r["role"], r["created_at"]) for r in rows]


def remove(store: Store, name: str) -> bool:
    """Delete a user; their sessions end at their next request."""
    with store.writing() as conn:
        return conn.execute(delete(users).where(users.c.name == name)).rowcount > 0
