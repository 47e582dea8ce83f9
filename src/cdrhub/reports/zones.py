"""A time zone's UTC offsets over a range of instants, found once so a million times need not
ask ``zoneinfo`` one by one (statistics' local buckets, the database-formatted CSV export)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

_STEP_MS = 6 * 3_600_000


def transitions(first_ms: int, last_ms: int, tz: ZoneInfo) -> tuple[list[int], list[int]]:
    """``(changes, offsets)``: ``offsets[0]`` holds from ``first_ms`` on, ``offsets[i]`` from
    ``changes[i - 1]`` on, up to ``last_ms``. Offsets in ms; ``changes`` ascending.

    The offset is sampled every 6 hours over the range (no zone changes twice that fast);
    between two samples that differ, the exact instant is found by bisection.
    """
    first, last = first_ms // _STEP_MS, last_ms // _STEP_MS + 1
    samples = [offset_ms(i * _STEP_MS, tz) for i in range(first, last + 1)]
    changes: list[int] = []
    offsets = [samples[0]]
    for i in range(1, len(samples)):
        if samples[i] != samples[i - 1]:
            before, after = (first + i - 1) * _STEP_MS, (first + i) * _STEP_MS  # change in (b, a]
            while after - before > 1:
                middle = (before + after) // 2
                if offset_ms(middle, tz) == samples[i - 1]:
                    before = middle
                else:
                    after = middle
            changes.append(after)
            offsets.append(samples[i])
    return changes, offsets


def offset_ms(ms: int, tz: ZoneInfo) -> int:
    """The zone's UTC offset at an instant, in ms."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    return (moment.astimezone(tz).utcoffset() or timedelta(0)) // timedelta(milliseconds=1)


def offset_text(offset: int) -> str:
    """An offset in ms as ISO 8601 writes it (``+08:00``, ``-03:30``; seconds only if any),
    the same text ``datetime.isoformat`` gives."""
    sign = "-" if offset < 0 else "+"
    minutes, seconds = divmod(abs(offset) // 1000, 60)
    text = f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    return f"{text}:{seconds:02d}" if seconds else text


def iso_times(tz: ZoneInfo) -> Callable[[int | None], str | None]:
    """Epoch ms to ISO 8601 in ``tz`` with ms and offset, as ``datetime.isoformat`` gives.

    The local date, hour, minute and offset are worked out once per UTC minute (zones have
    had whole-minute offsets since the early 1900s), so a time costs one dict lookup and a
    small f-string.
    """
    minutes: dict[int, tuple[str, str]] = {}

    def text(ms: int | None) -> str | None:
        if ms is None:
            return None
        minute, rest = divmod(ms, 60_000)
        parts = minutes.get(minute)
        if parts is None:
            local = (_EPOCH + timedelta(minutes=minute)).astimezone(tz)
            parts = minutes[minute] = (local.strftime("%Y-%m-%dT%H:%M:"), local.isoformat()[19:])
        return f"{parts[0]}{rest // 1000:02d}.{rest % 1000:03d}{parts[1]}"

    return text


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
