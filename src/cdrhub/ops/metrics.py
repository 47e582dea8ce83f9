"""Prometheus metrics: what an operator watches to know pushes are landing.

Each app has its own registry (no module-level globals), so tests and several apps in one
process never share counters. With ``--workers N`` every process reports its own numbers;
scrape each, or sum them in Prometheus. Labels never carry a token, a caller or a callId.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The counters the push path updates, and the gauges read when scraped."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._forward_attempts: Counter | None = None
        self._forward_seconds: Histogram | None = None
        self.pushes = Counter(
            "cdrhub_pushes",
            "Pushes answered, by result (created, duplicate, updated, stale, spooled) or by "
            "error code (unauthorized, invalid_record, ...).",
            ["result"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "cdrhub_commit_items",
            "Items stored per database commit (group commit).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "cdrhub_commit_seconds",
            "Time to store one batch, commit (and sync) included.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
            registry=self.registry,
        )
        self.spooled = Counter(
            "cdrhub_spooled_items",
            "Items written to the local spool because the database was unavailable.",
            registry=self.registry,
        )
        self.push_seconds = Histogram(
            "cdrhub_push_seconds",
            "Time from a push's arrival to its answer (its commit included).",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
            registry=self.registry,
        )
        self.database_errors = Counter(
            "cdrhub_database_errors",
            "Batches the database could not store (down, unreachable, locked).",
            registry=self.registry,
        )
        self._results: dict[str, Any] = {}

    def count(self, result: str, seconds: float) -> None:
        """One push answered with ``result`` (label children cached: this is the hot path)."""
        child = self._results.get(result)
        if child is None:
            child = self._results[result] = self.pushes.labels(result)
        child.inc()
        self.push_seconds.observe(seconds)

    def watch_activity(self, status: Callable[[], dict[str, Any]]) -> None:
        """Report how long ago pushes were last accepted and refused, at each scrape."""
        self.registry.register(_ActivityCollector(status))

    def watch_spool(self, status: Callable[[], dict[str, Any]]) -> None:
        """Report the spool's depth and age at each scrape."""
        self.registry.register(_SpoolCollector(status))

    def watch_journal(self, status: Callable[[], dict[str, Any]]) -> None:
        """Report how far the push journal's applier is behind, at each scrape."""
        self.registry.register(_JournalCollector(status))

    def watch_reconcile(self, status: Callable[[], dict[str, Any]]) -> None:
        """Report the scheduled reconcile's runs and findings at each scrape."""
        self.registry.register(_ReconcileCollector(status))

    def forwarded(self, destination: Any, event: Any, result: Any, latency_ms: float) -> None:
        """Count one forwarding attempt (called by the deliverer; labels: destination name)."""
        if self._forward_attempts is None:
            self._forward_attempts = Counter(
                "cdrhub_forward_attempts",
                "Forwarding attempts by destination and outcome (delivered, failed).",
                ["destination", "outcome"],
                registry=self.registry,
            )
            self._forward_seconds = Histogram(
                "cdrhub_forward_attempt_seconds",
                "How long one forwarding attempt took, by destination.",
                ["destination"],
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                registry=self.registry,
            )
        outcome = "delivered" if result.ok else "failed"
        self._forward_attempts.labels(destination.name, outcome).inc()
        assert self._forward_seconds is not None
        self._forward_seconds.labels(destination.name).observe(latency_ms / 1000)

    def watch_forwarding(self, status: Callable[[], list[dict[str, Any]]]) -> None:
        """Report each destination's state, lag, waiting and dead events at each scrape."""
        self.registry.register(_ForwardingCollector(status))

    def watch_alerts(self, status: Callable[[], list[dict[str, Any]]]) -> None:
        """Report each alert rule's state and last figure at each scrape (from the database,
        so every process shows the state the evaluating one stored)."""
        self.registry.register(_AlertsCollector(status))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ActivityCollector(Collector):
    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self._status = status

    def collect(self) -> Any:
        status = self._status()
        for name, key in (
            ("accepted", "seconds_since_accepted"),
            ("rejected", "seconds_since_rejected"),
        ):
            age = status[key]
            if age is not None:
                yield GaugeMetricFamily(
                    f"cdrhub_seconds_since_last_{name}_push",
                    f"Seconds since this process last {name} a push.",
                    value=age,
                )
        yield GaugeMetricFamily(
            "cdrhub_silent",
            "1 when no push was accepted for the alert time in business hours.",
            value=1 if status["silent"] else 0,
        )


class _SpoolCollector(Collector):
    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self._status = status

    def collect(self) -> Any:
        status = self._status()
        yield GaugeMetricFamily(
            "cdrhub_spool_pending",
            "Items in the spool, waiting for the database.",
            value=status["pending"],
        )
        yield GaugeMetricFamily(
            "cdrhub_spool_oldest_age_seconds",
            "Age of the oldest spooled item (0 when the spool is empty).",
            value=status["oldest_age_seconds"] or 0,
        )


class _JournalCollector(Collector):
    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self._status = status

    def collect(self) -> Any:
        status = self._status()
        yield GaugeMetricFamily(
            "cdrhub_journal_pending_bytes",
            "Journal bytes acknowledged (200) and not yet applied to the database.",
            value=status["pending_bytes"],
        )
        yield GaugeMetricFamily(
            "cdrhub_journal_pending_records",
            "Pushes acknowledged by this process and not yet applied to the database.",
            value=status["pending_records"],
        )
        yield GaugeMetricFamily(
            "cdrhub_journal_seconds_behind",
            "Age of the oldest acknowledged push not yet applied (0 when caught up).",
            value=status["seconds_behind"],
        )


class _ReconcileCollector(Collector):
    """The scheduled reconcile, from the one process that runs it (see cdrhub.leader).

    The others report only ``cdrhub_reconcile_leader 0``, so a sum over the workers counts
    each run once. Values that do not exist yet (before the first run) are left out rather
    than reported as 0, which would read as "failed" or "ran in 1970".
    """

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self._status = status

    def collect(self) -> Any:
        status = self._status()
        yield GaugeMetricFamily(
            "cdrhub_reconcile_leader",
            "1 when this process runs the scheduled reconcile (one process per database does).",
            value=1 if status["leader"] else 0,
        )
        if not status["leader"]:
            return
        yield CounterMetricFamily(
            "cdrhub_reconcile_failures",
            "Scheduled reconciles that failed since start (NXCC refused, unreachable, ...).",
            value=status["failures"],
        )
        for name, key, doc in (
            ("runs", "runs", "Scheduled reconciles run since start."),
            ("last_missing", "last_missing", "Calls NXCC had and cdrhub lacked, last run."),
            ("last_different", "last_different", "Calls that differed from NXCC's, last run."),
            ("last_quarantined", "last_quarantined", "NXCC's invalid records, last run."),
            ("stored", "total_stored", "Calls stored by scheduled reconciles since start."),
        ):
            yield GaugeMetricFamily(f"cdrhub_reconcile_{name}", doc, value=float(status[key] or 0))
        if status["last_ok"] is not None:
            yield GaugeMetricFamily(
                "cdrhub_reconcile_last_ok",
                "1 when the last scheduled reconcile succeeded, 0 when it failed.",
                value=1 if status["last_ok"] else 0,
            )
        for name, key, doc in (
            ("last_run", "last_finished_at", "When the last scheduled reconcile ended."),
            ("last_success", "last_success_at", "When a scheduled reconcile last succeeded."),
        ):
            if status[key]:
                yield GaugeMetricFamily(
                    f"cdrhub_reconcile_{name}_timestamp_seconds",
                    f"{doc} (Unix time; alert on time() minus this).",
                    value=datetime.fromisoformat(status[key]).timestamp(),
                )


class _ForwardingCollector(Collector):
    """Per destination, read from the database when scraped (so every process agrees)."""

    def __init__(self, status: Callable[[], list[dict[str, Any]]]) -> None:
        self._status = status

    def collect(self) -> Any:
        lag = GaugeMetricFamily(
            "cdrhub_forward_lag_seconds",
            "Age of the oldest event a destination has not received yet (0: none owed).",
            labels=["destination"],
        )
        waiting = GaugeMetricFamily(
            "cdrhub_forward_waiting", "Events a destination still owes.", labels=["destination"]
        )
        dead = GaugeMetricFamily(
            "cdrhub_forward_dead_letters",
            "Events whose every attempt failed (cdrhub forward retry NAME sends them again).",
            labels=["destination"],
        )
        paused = GaugeMetricFamily(
            "cdrhub_forward_paused", "1 while a destination is paused.", labels=["destination"]
        )
        try:
            rows = self._status()
        except Exception:
            rows = []
        for row in rows:
            name = [row["name"]]
            lag.add_metric(name, row["lag_seconds"])
            waiting.add_metric(name, row["waiting"])
            dead.add_metric(name, row["dead"])
            paused.add_metric(name, 0 if row["state"] == "active" else 1)
        yield from (lag, waiting, dead, paused)


class _AlertsCollector(Collector):
    """Per alert rule: 1 while firing, 1 while paused, and the figure last evaluated."""

    def __init__(self, status: Callable[[], list[dict[str, Any]]]) -> None:
        self._status = status

    def collect(self) -> Any:
        firing = GaugeMetricFamily(
            "cdrhub_alert_firing", "1 while an alert rule is firing.", labels=["rule"]
        )
        paused = GaugeMetricFamily(
            "cdrhub_alert_paused", "1 while an alert rule is paused.", labels=["rule"]
        )
        value = GaugeMetricFamily(
            "cdrhub_alert_value",
            "The figure an alert rule last compared with its threshold (ratios 0-1, seconds, "
            "counts; absent when there was nothing to judge).",
            labels=["rule"],
        )
        try:
            rows = self._status()
        except Exception:  # the database may be away: a scrape still answers
            rows = []
        for row in rows:
            name = [row["name"]]
            firing.add_metric(name, 1 if row["status"] == "firing" else 0)
            paused.add_metric(name, 1 if row["state"] == "paused" else 0)
            if row["last_value"] is not None:
                value.add_metric(name, row["last_value"])
        yield from (firing, paused, value)
