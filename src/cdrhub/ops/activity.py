"""Silence is the loss nobody sees: when did pushes last arrive, and is it too long ago?

When NXCC's token is changed or a firewall starts blocking it, nothing fails here: pushes
just stop. This keeps the time of the last accepted and the last refused push (with its
reason), and says the service is "silent" when no push was accepted for
``silence_alert_minutes`` during business hours (so a quiet night is not an alarm).
Per process: with several workers, each reports what it saw.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from typing import Any
from zoneinfo import ZoneInfo

_ACCEPTED = frozenset({"created", "duplicate", "updated", "stale", "spooled", "accepted"})
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_hours(text: str) -> tuple[clock, clock]:
    """``"09:00-18:00"`` (``24:00`` allowed as the end) into two times of day."""
    start, _, end = text.partition("-")
    first = datetime.strptime(start.strip(), "%H:%M").time()
    last = clock.max if end.strip() == "24:00" else datetime.strptime(end.strip(), "%H:%M").time()
    return first, last


class Activity:
    """Last accepted / refused push, and the silence rule."""

    def __init__(
        self,
        *,
        alert_minutes: float = 0,
        business_hours: str = "00:00-24:00",
        business_days: list[str] | None = None,
        timezone: str = "UTC",
    ) -> None:
        self.started = time.time()
        self.last_accepted: float | None = None
        self.last_rejected: float | None = None
        self.last_rejected_reason: str | None = None
        self._alert = alert_minutes * 60
        self._hours = parse_hours(business_hours)
        self._days = {_DAYS.index(d.strip().lower()[:3]) for d in (business_days or _DAYS)}
        self._zone = ZoneInfo(timezone)
        self._since_summary: Counter[str] = Counter()

    def record(self, result: str) -> None:
        """Note one push answered with ``result`` (an outcome or an error code)."""
        self._since_summary[result] += 1
        if result in _ACCEPTED:
            self.last_accepted = time.time()
        else:
            self.last_rejected = time.time()
            self.last_rejected_reason = result

    def summary(self) -> str | None:
        """What was answered since the last call, as a log line's text; None if nothing was.

        ``"1,234 pushes: 1,230 created, 3 duplicate, 1 invalid_record"``, most frequent first.
        """
        counts, self._since_summary = self._since_summary, Counter()
        total = sum(counts.values())
        if not total:
            return None
        parts = ", ".join(f"{n:,} {result}" for result, n in counts.most_common())
        return f"{total:,} push{'es' if total != 1 else ''}: {parts}"

    def silent(self, now: float | None = None) -> bool:
        """No push accepted for the alert time, counted only within business hours now."""
        if not self._alert:
            return False
        now = time.time() if now is None else now
        local = datetime.fromtimestamp(now, self._zone)
        start, end = self._hours
        if local.weekday() not in self._days or not start <= local.time() <= end:
            return False
        return now - (self.last_accepted or self.started) > self._alert

    def status(self, now: float | None = None) -> dict[str, Any]:
        """For /readyz: times as ISO 8601 UTC, ages in seconds."""
        now = time.time() if now is None else now
        return {
            "last_accepted": _iso(self.last_accepted),
            "seconds_since_accepted": _age(self.last_accepted, now),
            "last_rejected": _iso(self.last_rejected),
            "last_rejected_reason": self.last_rejected_reason,
            "seconds_since_rejected": _age(self.last_rejected, now),
            "silent": self.silent(now),
        }


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=moment)).isoformat()


def _age(moment: float | None, now: float) -> float | None:
    return None if moment is None else round(now - moment, 1)
