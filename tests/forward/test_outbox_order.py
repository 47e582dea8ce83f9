"""PostgreSQL writers commit in their own order: no event is skipped because of it.

Two batches for different hours do not wait for each other, so the one that took the lower
``seq`` can commit after the other. A deliverer that moved its cursor past the higher seq
would never send the lower one.
"""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from sqlalchemy import event as sqlalchemy_event

from cdrhub import cdr
from cdrhub.forward import Deliverer, destinations
from cdrhub.forward.deliverer import make_sink
from cdrhub.settings import Settings
from cdrhub.store import Push, Store
from tests.helpers.receiver import receiving

HOUR_MS = 3_600_000


def _push(call_id: str, start_ms: int) -> Push:
    raw = json.dumps({"callId": call_id, "startTime": start_ms, "direction": 0}).encode()
    return Push(cdr.parse(raw), raw)


async def _rounds(deliverer: Deliverer, dest_id: int, count: int) -> None:
    claimed = deliverer._claim(dest_id)
    assert claimed is not None
    sink = make_sink(claimed, deliverer.renderer, deliverer.guard)
    try:
        for _ in range(count):
            current = deliverer._claim(dest_id)
            assert current is not None
            await deliverer.deliver_round(current, sink)
    finally:
        await sink.close()


def test_an_event_committed_after_a_later_one_is_still_sent(
    settings: Settings, store: Store
) -> None:
    if store.write_engine.dialect.name != "postgresql":
        pytest.skip("one writer at a time on SQLite: commits follow seq")
    paused, release = threading.Event(), threading.Event()

    def hold(conn: object) -> None:
        if threading.current_thread().name == "slow-writer":
            paused.set()
            release.wait(10)

    with receiving() as receiver:
        added, _ = destinations.add(store, "crm", receiver.url)
        deliverer = Deliverer(store, settings)
        sqlalchemy_event.listen(store.write_engine, "commit", hold)
        slow = threading.Thread(
            target=store.save, args=(_push("late", 1764000000000),), name="slow-writer"
        )
        try:
            slow.start()
            assert paused.wait(10)  # "late" holds the lower seq, not committed yet
            assert store.save(_push("early", 1764000000000 + 5 * HOUR_MS)) == "created"
            asyncio.run(_rounds(deliverer, added.id, 2))  # sees only "early" committed
        finally:
            release.set()
            slow.join(10)
            sqlalchemy_event.remove(store.write_engine, "commit", hold)
        asyncio.run(_rounds(deliverer, added.id, 3))
        got = receiver.wait_for(2, timeout=10)
    sent = sorted(json.loads(r.body)["data"]["call"]["call_id"] for r in got)
    assert sent == ["early", "late"]
