"""The brake on sign-in guessing, shared by every server process through the database.

An attempt is counted *before* its password is checked, by one atomic upsert per key, so 40
guesses sent at once get the counts 1 to 40 and only the first few reach argon2 (slow, and
64 MiB each on purpose); the rest are refused at once. Counts live in ``sign_in_attempts``,
not in a process's memory, so ``--workers 4`` does not give a guesser four times the tries.

Two keys per attempt: the name from the address (a person mistyping, or one account being
guessed) and the address alone (many names sprayed from one place). The address is the one
the dashboard's :func:`cdrhub.guard.client_address` believes, so behind a reverse proxy listed
in ``CDRHUB_TRUSTED_PROXIES`` one guesser brakes only their own address, not everyone's.
Windows are fixed (they start at a key's first attempt), as the push endpoint's brake is.
"""

from __future__ import annotations

import hashlib
import importlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import case, delete, update
from sqlalchemy.sql.expression import Executable

from cdrhub.auth import users
from cdrhub.store import Store
from cdrhub.store.schema import sign_in_attempts

#: Attempts for one name from one address within the window; the next ones wait it out.
ATTEMPTS_PER_NAME = 5
#: Attempts from one address, whatever the names, within the window: stops spraying names.
ATTEMPTS_PER_ADDRESS = 20
WINDOW_SECONDS = 60.0
#: Password checks one process runs at once; more would each take argon2's 64 MiB.
CHECKS_AT_ONCE = 4
#: How long an attempt waits for one of those before it is refused as too many at once.
CHECK_WAIT_SECONDS = 2.0

_table = sign_in_attempts


class Busy(Exception):
    """Raised when every password check slot stayed taken for :data:`CHECK_WAIT_SECONDS`."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What counting an attempt decided: go ahead, or wait ``retry_after`` seconds."""

    keys: tuple[str, str]
    retry_after: int | None


def _hash(*parts: str) -> str:
    # Hashed: a name box sometimes receives a password typed one field too early.
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


class Throttle:
    """Counts sign-in attempts per name+address and per address, in the app's database."""

    def __init__(self, get_store: Callable[[], Store], window: float = WINDOW_SECONDS) -> None:
        self._get_store = get_store
        self._window_ms = int(window * 1000)
        self._checks = threading.BoundedSemaphore(CHECKS_AT_ONCE)

    def attempt(self, name: str, address: str) -> Verdict:
        """Count one attempt for ``name`` from ``address``; refused if either key is over."""
        # The account sign-in will look up (sign_in_name), and its case variants with it:
        # sign-in is case-sensitive, so folding case only ever joins counts, never splits.
        name_key = _hash("name", users.sign_in_name(name).lower(), address)
        keys = (name_key, _hash("address", address))
        limits = (ATTEMPTS_PER_NAME, ATTEMPTS_PER_ADDRESS)
        now = int(time.time() * 1000)
        store = self._get_store()
        wait: int | None = None
        with store.writing() as conn:
            conn.execute(delete(_table).where(_table.c.window_start_ms <= now - self._window_ms))
            for key, most in zip(keys, limits, strict=True):
                started, count = conn.execute(self._count(store.kind, key, now)).one()
                if count > most:
                    left = max(1, -(-(started + self._window_ms - now) // 1000))
                    wait = max(wait or 0, left)
        return Verdict(keys, wait)

    def succeeded(self, verdict: Verdict) -> None:
        """The password was right: this name from this address starts afresh, and the
        address gets its attempt back (an office signing in all morning is not a spray)."""
        name_key, address_key = verdict.keys
        with self._get_store().writing() as conn:
            conn.execute(delete(_table).where(_table.c.key_hash == name_key))
            conn.execute(
                update(_table)
                .where(_table.c.key_hash == address_key, _table.c.attempts > 0)
                .values(attempts=_table.c.attempts - 1)
            )

    @contextmanager
    def checking(self) -> Iterator[None]:
        """Hold one of the process's password check slots, or raise :class:`Busy`."""
        if not self._checks.acquire(timeout=CHECK_WAIT_SECONDS):
            raise Busy
        try:
            yield
        finally:
            self._checks.release()

    def _count(self, kind: str, key: str, now: int) -> Executable:
        """Add one attempt to ``key`` atomically (a new window if the last one is over);
        gives the window's start and the count including this attempt."""
        # The database's own dialect (for ON CONFLICT), imported here: the PostgreSQL one is
        # 2 MB that every server on SQLite would otherwise load at start.
        insert = importlib.import_module(f"sqlalchemy.dialects.{kind}").insert
        new = insert(_table).values(key_hash=key, window_start_ms=now, attempts=1)
        over = _table.c.window_start_ms <= now - self._window_ms
        return new.on_conflict_do_update(
            index_elements=[_table.c.key_hash],
            set_={
                "window_start_ms": case((over, now), else_=_table.c.window_start_ms),
                "attempts": case((over, 1), else_=_table.c.attempts + 1),
            },
        ).returning(_table.c.window_start_ms, _table.c.attempts)
