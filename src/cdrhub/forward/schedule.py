"""When a failed delivery is tried again: a fixed schedule with jitter, as Svix does.

The first attempt is immediate; after a failure the event waits the schedule's next step
(default ``5s, 5m, 30m, 2h, 5h, 10h, 10h``: about 28 hours in all), each step with +-20%
jitter so that a destination coming back is not hit by every waiting event at once. A
``Retry-After`` the destination sent is honoured when it asks for longer. After the last
step the event is dead-lettered.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_STEP = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
JITTER = 0.2
MAX_RETRY_AFTER_SECONDS = 86400.0


def parse(text: str) -> tuple[float, ...]:
    """``"5s,5m,2h"`` -> ``(5.0, 300.0, 7200.0)``; raises ValueError on anything else."""
    steps = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        match = _STEP.fullmatch(part)
        if not match:
            raise ValueError(f"retry step {part!r}: expected a number with ms, s, m, h or d")
        steps.append(float(match.group(1)) * _UNITS[match.group(2)])
    return tuple(steps)


def next_wait(
    schedule: tuple[float, ...], failures: int, retry_after: float | None
) -> float | None:
    """Seconds to wait after the ``failures``-th failure, or None when the event is dead."""
    if failures > len(schedule):
        return None
    wait = schedule[failures - 1] * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311
    if retry_after is not None:
        wait = max(wait, min(retry_after, MAX_RETRY_AFTER_SECONDS))
    return wait


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) in seconds, or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
