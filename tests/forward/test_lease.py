"""Leases: a destination whose delivering process was killed is taken over at once.

Found by bench/forward_crash.py: after a kill -9 the dead process's lease stayed current for
its full 30 s, so the restarted server forwarded nothing for that long after every crash.
"""

from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import select, update

from cdrhub.forward import Deliverer, destinations
from cdrhub.forward import deliverer as delivering
from cdrhub.settings import Settings
from cdrhub.store import Store
from cdrhub.store.schema import destinations as table

FAR = delivering.now_ms() + 3_600_000


def _held_by(store: Store, dest_id: int, owner: str, until: int = FAR) -> None:
    with store.writing() as conn:
        conn.execute(
            update(table)
            .where(table.c.id == dest_id)
            .values(lease_owner=owner, lease_until_ms=until)
        )


def _lease(store: Store, dest_id: int) -> tuple[str, int]:
    with store.read_engine.connect() as conn:
        query = select(table.c.lease_owner, table.c.lease_until_ms).where(table.c.id == dest_id)
        owner, until = conn.execute(query).one()
    return owner, int(until)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_lease_of_a_dead_process_here_is_taken_over(settings: Settings, store: Store) -> None:
    added, _ = destinations.add(store, "crm", "http://127.0.0.1:9/hook")
    mine = Deliverer(store, settings)
    # The same owner as ours, but from a process that has exited.
    _held_by(store, added.id, mine.owner.replace(f":{os.getpid()}:", f":{_dead_pid()}:"))
    claimed = mine._claim(added.id)
    assert claimed is not None and claimed.name == "crm"
    with store.read_engine.connect() as conn:
        holder = conn.execute(select(table.c.lease_owner).where(table.c.id == added.id)).scalar()
    assert holder == mine.owner


def test_a_lease_of_a_live_or_distant_process_is_respected(
    settings: Settings, store: Store
) -> None:
    """A live process (here: this one, another deliverer), a dead pid on another machine or
    in another pid namespace, or an owner in an unknown format: wait for the lease to end."""
    added, _ = destinations.add(store, "crm", "http://127.0.0.1:9/hook")
    mine = Deliverer(store, settings)
    host, _, _, place = mine.owner.split(":")
    dead = _dead_pid()
    for owner in (
        Deliverer(store, settings).owner,  # alive: the same pid, another deliverer
        f"{host}:{os.getpid()}:0badcafe:{place}",
        f"elsewhere:{dead}:0badcafe:{place}",
        f"{host}:{dead}:0badcafe:0000ffff",
        f"{host}:{dead}:0badcafe:",
        "someone",
    ):
        _held_by(store, added.id, owner)
        assert mine._claim(added.id) is None, owner


def test_a_fresh_lease_of_ours_is_read_not_written(settings: Settings, store: Store) -> None:
    """Claiming before each round writes only when the lease is half spent (the rounds'
    records renew it): no synced commit per round in the push path's writer queue."""
    added, _ = destinations.add(store, "crm", "http://127.0.0.1:9/hook")
    mine = Deliverer(store, settings)
    assert mine._claim(added.id) is not None
    soon = delivering.now_ms() + delivering.LEASE_MS // 2 + 5_000
    _held_by(store, added.id, mine.owner, until=soon)
    assert mine._claim(added.id) is not None
    assert _lease(store, added.id) == (mine.owner, soon)  # not written
    _held_by(store, added.id, mine.owner, until=delivering.now_ms() + 1_000)
    assert mine._claim(added.id) is not None
    owner, until = _lease(store, added.id)
    assert owner == mine.owner and until > soon  # renewed
    destinations.set_state(store, "crm", "paused", "test")
    assert mine._claim(added.id) is None
