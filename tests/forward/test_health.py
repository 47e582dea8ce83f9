"""Forwarding in /metrics and /readyz, after real deliveries and real failures.

Three destinations on real HTTP receivers: one that answers 200, one that always answers 500
(three attempts per event, then a dead letter), and one paused. The scrape must count every
attempt by outcome, time each one, and report what each destination owes and holds dead,
with the same figures as the API; /readyz stays ready and names the two that need a person.
"""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from cdrhub.app import create_app
from cdrhub.auth.apikeys import create_key
from cdrhub.forward import destinations
from cdrhub.settings import Settings
from cdrhub.store import Store
from tests.helpers import TOKEN
from tests.helpers.forwarding import until
from tests.helpers.receiver import receiving


def _scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    text = client.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }



def test_metrics_and_readiness_after_deliveries_and_failures(
    settings: Settings, store: Store
) -> None:
    fast = settings.model_copy(update={"forward_retry_schedule": "50ms,100ms"})
    key = {"Authorization": f"Bearer {create_key(store, 'ops')[1]}"}
    with receiving() as good, receiving() as bad, TestClient(create_app(fast)) as client:
        bad.answer = lambda n, body: (500, {})
        destinations.add(store, "good", good.url)
        destinations.add(store, "bad", bad.url)
        destinations.add(store, "held", good.url)
        destinations.set_state(store, "held", "paused", "paused by an operator")
        before = client.get("/readyz").json()
        assert before["status"] == "ready"
        assert [p["name"] for p in before["checks"]["forwarding"]["problems"]] == ["held"]
        for n in range(2):
            body = {"callId": f"m-{n}", "startTime": 1764000000000 + n, "direction": 0}
            assert (
                client.post("/cc/callback", json=body, headers={"token": TOKEN}).status_code == 200
            )
        good.wait_for(2)
        until(lambda: len(client.get("/api/destinations/bad/dead-letters", headers=key).json()
                           ["items"]) == 2)  # fmt: skip
        time.sleep(0.3)  # nothing more may be attempted
        samples = _scrape(client)

        def value(name: str, **labels: str) -> float | None:
            return samples.get((name, tuple(sorted(labels.items()))))

        attempts = "cdrhub_forward_attempts_total"
        assert value(attempts, destination="good", outcome="delivered") == 2
        assert value(attempts, destination="bad", outcome="failed") == 6
        assert value(attempts, destination="good", outcome="failed") is None
        assert value(attempts, destination="bad", outcome="delivered") is None
        assert value(attempts, destination="held", outcome="delivered") is None
        seconds = "cdrhub_forward_attempt_seconds"
        assert value(f"{seconds}_count", destination="good") == 2
        assert value(f"{seconds}_count", destination="bad") == 6
        assert (value(f"{seconds}_sum", destination="bad") or 0) > 0
        assert value(f"{seconds}_bucket", destination="bad", le="+Inf") == 6
        api = {d["name"]: d for d in client.get("/api/destinations", headers=key).json()["items"]}
        expected = {"good": (0, 0, 0), "bad": (0, 2, 0), "held": (2, 0, 1)}
        for name, (waiting, dead, paused) in expected.items():
            assert value("cdrhub_forward_waiting", destination=name) == waiting, name
            assert value("cdrhub_forward_dead_letters", destination=name) == dead, name
            assert value("cdrhub_forward_paused", destination=name) == paused, name
            assert (api[name]["waiting"], api[name]["dead"]) == (waiting, dead), name
        assert value("cdrhub_forward_lag_seconds", destination="good") == 0
        assert value("cdrhub_forward_lag_seconds", destination="bad") == 0  # dead: not owed
        held_lag = value("cdrhub_forward_lag_seconds", destination="held") or 0
        assert 0.3 < held_lag < 60
        assert abs(held_lag - api["held"]["lag_seconds"]) < 5

        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        forwarding = ready.json()["checks"]["forwarding"]
        assert forwarding["destinations"] == 3
        problems = {p["name"]: p for p in forwarding["problems"]}
        assert set(problems) == {"bad", "held"}
        assert (problems["bad"]["problem"], problems["bad"]["last_error"]) == (
            "failing",
            "HTTP 500",
        )
        assert problems["bad"]["dead"] == 2 and problems["bad"]["failing_since_ms"] is not None
        assert (problems["held"]["problem"], problems["held"]["waiting"]) == ("paused", 2)
        assert problems["held"]["paused_reason"] == "paused by an operator"

        destinations.set_state(store, "held", "active")
        bad.answer = lambda n, body: (200, {})
        assert client.post("/api/destinations/bad/retry", headers=key).json() == {"queued": 2}
        good.wait_for(4)
        bad.wait_for(2)
        until(lambda: client.get("/readyz").json()["checks"]["forwarding"]["problems"] == [])
        samples = _scrape(client)
        assert value(attempts, destination="bad", outcome="delivered") == 2
        assert value(attempts, destination="held", outcome="delivered") == 2
        assert value("cdrhub_forward_dead_letters", destination="bad") == 0
        assert value("cdrhub_forward_paused", destination="held") == 0
