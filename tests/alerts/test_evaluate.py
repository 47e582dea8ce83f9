"""Real rules on real data: pushes through the real app, the evaluator at a chosen time, and
notifications received by a real HTTP server through Apprise's ``json://``, on both databases."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import pytest

from cdrhub.alerts import Evaluator, rules
from cdrhub.settings import Settings
from cdrhub.store import Store, open_store
from tests.helpers import Push, free_port
from tests.helpers.calls import call
from tests.helpers.receiver import Receiver, receiving

FAST = (0.05, 0.05)  # retry delays: the schedule's shape without its seconds


def _target(receiver: Receiver, path: str = "alerts") -> str:
    port = receiver.url.split(":")[2].split("/")[0]
    return f"json://127.0.0.1:{port}/{path}"


def _start(seconds_ago: float) -> str:
    moment = datetime.fromtimestamp(time.time() - seconds_ago, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def _queued_calls(push: Push, prefix: str, count: int, speed: float) -> None:
    """``count`` queued inbound calls of the last 10 minutes, answered ``speed`` s after queueing
    (SOA)."""
    for i in range(count):
        body = call(
            f"{prefix}-{i}",
            _start(600 - i),
            in_queue=1,
            answer=1 + speed,
            end=1 + speed + 30,
            callType=1,
            answered=True,
        )
        assert push(body).status_code == 200


def test_service_level_fires_once_and_resolves_once(
    push: Push, store: Store, settings: Settings
) -> None:
    with receiving() as receiver:
        rules.add(
            store,
            "low-sl",
            "service_level < 80%",
            window="30m",
            min_calls=8,
            targets=[_target(receiver)],
        )
        _queued_calls(push, "fast", 5, speed=5)
        _queued_calls(push, "slow", 5, speed=90)  # 5 of 10 within 20 s: 50 %
        linked = settings.model_copy(update={"public_url": "https://cdr.example.com"})
        evaluator = Evaluator(store, linked, retry_delays=FAST)
        now = time.time()
        fired = evaluator.evaluate_once(now)
        assert [(t.rule, t.kind) for t in fired] == [("low-sl", "firing")]
        assert fired[0].value == pytest.approx(0.5)
        assert evaluator.evaluate_once(now + 60) == []  # still firing: not announced again
        assert evaluator.evaluate_once(now + 120) == []
        first = receiver.wait_for(1)
        assert len(first) == 1
        message = first[0].json()
        assert message["type"] == "failure"
        assert message["title"] == "[cdrhub] FIRING: low-sl"
        assert message["message"] == (
            "service level 50% (threshold < 80%) over the last 30m, 10 queued calls\n"
            "https://cdr.example.com/"
        )

        _queued_calls(push, "more", 30, speed=3)  # 35 of 40 within: 87.5 %
        resolved = evaluator.evaluate_once(now + 300)
        assert [(t.rule, t.kind) for t in resolved] == [("low-sl", "resolved")]
        assert resolved[0].value == pytest.approx(0.875)
        assert evaluator.evaluate_once(now + 360) == []
        both = receiver.wait_for(2)
        assert len(both) == 2
        message = both[1].json()
        assert message["type"] == "success"
        assert message["title"] == "[cdrhub] RESOLVED: low-sl"
        assert message["message"].startswith("Resolved after 5m: service level 87.5%")

    shown = rules.history(store, "low-sl")
    assert [(h["kind"], h["delivered"], h["attempts"]) for h in shown] == [
        ("resolved", True, 1),
        ("firing", True, 1),
    ]
    assert shown[0]["duration_seconds"] == pytest.approx(300, abs=1)


def test_too_few_calls_never_fire(push: Push, store: Store, settings: Settings) -> None:
    with receiving() as receiver:
        rules.add(store, "low-sl", "service_level < 80%", min_calls=20, targets=[_target(receiver)])
        _queued_calls(push, "slow", 5, speed=90)  # 0 % but only 5 queued calls
        assert Evaluator(store, settings, retry_delays=FAST).evaluate_once() == []
        assert rules.require(store, "low-sl").last_value is None
        assert receiver.requests == []


def test_state_survives_a_restart_and_repeats_at_the_interval(
    push: Push, store: Store, settings: Settings
) -> None:
    with receiving() as receiver:
        rules.add(store, "slow-answer", "asa > 30s", window="1h", targets=[_target(receiver)])
        _queued_calls(push, "slow", 3, speed=90)
        now = time.time()
        assert [t.kind for t in Evaluator(store, settings).evaluate_once(now)] == ["firing"]

        # A new process on the same database: it knows the rule is firing already.
        again = open_store(settings.database_url)
        try:
            later = Evaluator(again, replace_repeat(settings, 10), retry_delays=FAST)
            assert later.evaluate_once(now + 60) == []
            assert rules.require(again, "slow-answer").firing_since_ms == int(now * 1000)
            repeated = later.evaluate_once(now + 601)
            assert [t.kind for t in repeated] == ["repeat"]
            assert later.evaluate_once(now + 700) == []
        finally:
            again.close()
        got = receiver.wait_for(2)
        assert [r.json()["title"] for r in got] == [
            "[cdrhub] FIRING: slow-answer",
            "[cdrhub] STILL FIRING: slow-answer",
        ]
        assert "average speed of answer 90s (threshold > 30s)" in got[1].json()["message"]


def replace_repeat(settings: Settings, minutes: float) -> Settings:
    return settings.model_copy(update={"alert_repeat_minutes": minutes})


def test_a_silence_window_fires_and_resolves(push: Push, store: Store, settings: Settings) -> None:
    with receiving() as receiver:
        rules.add(store, "silence", "no_pushes", window="10m", targets=[_target(receiver)])
        assert push(call("first", _start(30), end=20)).status_code == 200
        evaluator = Evaluator(store, settings, retry_delays=FAST)
        assert evaluator.evaluate_once(time.time() + 5 * 60) == []
        fired = evaluator.evaluate_once(time.time() + 11 * 60)
        assert [t.kind for t in fired] == ["firing"]
        assert fired[0].value == pytest.approx(11 * 60, abs=5)
        assert push(call("second", _start(10), end=5)).status_code == 200
        resolved = evaluator.evaluate_once(time.time() + 1)
        assert [t.kind for t in resolved] == ["resolved"]
        got = receiver.wait_for(2)
        assert "time since the last accepted push 11m" in got[0].json()["message"]
        assert "(threshold > 10m)" in got[0].json()["message"]
        assert got[1].json()["title"] == "[cdrhub] RESOLVED: silence"


def test_outside_its_hours_a_rule_does_not_fire(
    push: Push, store: Store, settings: Settings
) -> None:
    local = datetime.now(UTC)
    hour = (local.hour + 3) % 24
    hours = f"{hour:02d}:00-{hour:02d}:30"  # a half hour that is not now (UTC)
    with receiving() as receiver:
        rules.add(
            store, "silence", "no_pushes", window="1m", hours=hours, targets=[_target(receiver)]
        )
        assert Evaluator(store, settings).evaluate_once(time.time() + 3600) == []
        assert receiver.requests == []


def test_a_target_that_is_down_is_retried_and_reported_and_others_still_told(
    push: Push, store: Store, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"json://127.0.0.1:{free_port()}/nobody-home"
    with receiving() as receiver:
        # The live receiver refuses rule "slow" twice, then takes it: the third try delivers.
        refused: list[bytes] = []

        def answer(n: int, body: bytes) -> tuple[int, dict[str, str]]:
            if b"FIRING: slow" in body and len(refused) < 2:
                refused.append(body)
                return 503, {}
            return 200, {}

        receiver.answer = answer
        rules.add(
            store, "slow", "asa > 30s", window="1h", targets=[dead, _target(receiver, "flaky")]
        )
        rules.add(store, "also", "asa > 10s", window="1h", targets=[_target(receiver, "other")])
        _queued_calls(push, "slow", 3, speed=90)
        with caplog.at_level(logging.WARNING, logger="cdrhub.alerts"):
            done = Evaluator(store, settings, retry_delays=FAST).evaluate_once()
        assert sorted(t.rule for t in done) == ["also", "slow"]
        slow = next(t for t in done if t.rule == "slow")
        assert [(d.delivered, d.attempts) for d in slow.deliveries] == [(False, 3), (True, 3)]
        assert "Connection error" in slow.deliveries[0].answer
        assert any(
            "nobody-home" in r.getMessage() and "failed after 3 tries" in r.getMessage()
            for r in caplog.records
        )
        paths = [r.path for r in receiver.requests]
        assert paths.count("/flaky") == 3 and paths.count("/other") == 1
    kept = {(h["rule_name"], h["target"]): h for h in rules.history(store)}
    assert kept[("slow", dead)]["delivered"] is False
    assert kept[("slow", dead)]["attempts"] == 3
    assert kept[("also", _target(receiver, "other"))]["delivered"] is True


def test_secrets_in_targets_are_masked_in_answers_and_logs(
    push: Push, store: Store, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cr3tTOKENvalue0123456789"
    target = f"json://alice:{secret}@127.0.0.1:{free_port()}/{secret}?token={secret}"
    rules.add(store, "slow", "asa > 30s", window="1h", targets=[target])
    _queued_calls(push, "slow", 3, speed=90)
    with caplog.at_level(logging.DEBUG):
        done = Evaluator(store, settings, retry_delays=FAST).evaluate_once()
    assert done[0].deliveries[0].delivered is False
    assert secret not in caplog.text
    assert secret not in repr(done)
    assert secret not in repr(rules.history(store))
    assert secret not in repr(rules.require(store, "slow").public())
    assert rules.require(store, "slow").targets == (target,)  # kept whole, to send with


def test_a_broken_rule_never_stops_the_others(push: Push, store: Store, settings: Settings) -> None:
    """A rule whose figure cannot be computed (reconcile off: nothing to say) and a rule that
    fires in the same evaluation."""
    with receiving() as receiver:
        rules.add(store, "unpushed", "unpushed_calls > 0", targets=[_target(receiver)])
        rules.add(store, "slow", "asa > 30s", window="1h", targets=[_target(receiver)])
        _queued_calls(push, "slow", 3, speed=90)
        done = Evaluator(store, settings, retry_delays=FAST).evaluate_once()
        assert [t.rule for t in done] == ["slow"]
        assert rules.require(store, "unpushed").last_value is None


def test_refused_pushes_count_from_the_quarantine(
    push: Push, store: Store, settings: Settings
) -> None:
    with receiving() as receiver:
        rules.add(store, "refused", "refused > 2", window="5m", targets=[_target(receiver)])
        for _ in range(3):
            assert push(b"{not json").status_code == 400
        evaluator = Evaluator(store, settings, retry_delays=FAST)
        assert [t.value for t in evaluator.evaluate_once()] == [3]
        assert evaluator.evaluate_once(time.time() + 600)[0].kind == "resolved"  # out of window


def test_paused_rules_are_not_evaluated(push: Push, store: Store, settings: Settings) -> None:
    with receiving() as receiver:
        rules.add(store, "slow", "asa > 30s", window="1h", targets=[_target(receiver)])
        rules.set_state(store, "slow", "paused")
        _queued_calls(push, "slow", 3, speed=90)
        assert Evaluator(store, settings).evaluate_once() == []
        rules.set_state(store, "slow", "active")
        assert [t.kind for t in Evaluator(store, settings).evaluate_once()] == ["firing"]


def test_the_mask_filter_sits_on_apprises_own_logger() -> None:
    """The filter is put on Apprise's logger by name, before Apprise is loaded (it loads at
    the first alert): that name must be the one Apprise logs under."""
    import apprise

    from cdrhub.alerts import notify

    assert notify._FILTER in logging.getLogger(apprise.LOGGER_NAME).filters
