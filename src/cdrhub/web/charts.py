"""Charts as plain data for server-rendered SVG: no chart library, nothing to load from a CDN.

Each function turns statistics groups into bars with heights in percent of the tallest, which
the templates draw as ``<rect>`` elements (labels go through autoescaping like any text).
"""

from __future__ import annotations

from typing import Any


def _label(key: str, unit: str) -> str:
    return key[11:16] if unit == "hour" else key[5:10]


def _thin(bars: list[dict[str, Any]], most: int = 12) -> list[dict[str, Any]]:
    """Keep every n-th axis label so at most ``most`` show (30 days of dates would overlap)."""
    step = max(1, -(-len(bars) // most))
    for i, bar in enumerate(bars):
        if i % step:
            bar["label"] = ""
    return bars


def volume(groups: list[dict[str, Any]], unit: str) -> list[dict[str, Any]]:
    """Per time bucket: answered, unanswered (not abandoned) and abandoned, stacked."""
    top = max((g["calls"] for g in groups), default=0) or 1
    out = []
    for g in groups:
        key = g["key"][unit]
        if key is None:
            continue
        unanswered = g["calls"] - g["answered"] - g["abandoned"]
        out.append(
            {
                "label": _label(key, unit),
                "title": f"{key}: {g['calls']}",
                "answered": 100 * g["answered"] / top,
                "unanswered": 100 * unanswered / top,
                "abandoned": 100 * g["abandoned"] / top,
                "calls": g["calls"],
                "answered_calls": g["answered"],
                "unanswered_calls": unanswered,
                "abandoned_calls": g["abandoned"],
            }
        )
    return _thin(out)


def service_level(groups: list[dict[str, Any]], unit: str) -> list[dict[str, Any]]:
    """Per time bucket: the service level as a bar of 0-100%."""
    out = []
    for g in groups:
        key = g["key"][unit]
        if key is None:
            continue
        level = g["service_level"]
        out.append(
            {
                "label": _label(key, unit),
                "title": f"{key}: {'–' if level is None else f'{level * 100:.1f}%'}",
                "height": 0 if level is None else 100 * level,
            }
        )
    return _thin(out)


def bars(items: list[tuple[Any, int]]) -> list[dict[str, Any]]:
    """Horizontal bars, biggest first (widths in percent of the biggest)."""
    ordered = sorted(items, key=lambda item: -item[1])[:12]
    top = max((n for _, n in ordered), default=0) or 1
    return [{"label": label or "–", "count": n, "width": 100 * n / top} for label, n in ordered]
