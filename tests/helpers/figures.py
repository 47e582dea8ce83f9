"""What the dashboard must print for the API's figures: shared by the server and browser tests."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from cdrhub.web.routes import duration, local_time, money, percent


def kpi_text(expected: dict[str, Any]) -> dict[str, str]:
    """The overview's KPI cards as they must read for an ``/api/stats`` group."""
    return {
        "calls": str(expected["calls"]),
        "answer_rate": percent(expected["answer_rate"]),
        "service_level": percent(expected["service_level"]),
        "avg_wait_seconds": duration(expected["avg_wait_seconds"]),
        "avg_talk_seconds": duration(expected["avg_talk_seconds"]),
        "abandoned": str(expected["abandoned"]),
        "cost_total": money(expected["cost_total"]),
    }


def destination_cells(item: dict[str, Any], zone: ZoneInfo) -> dict[str, str]:
    """The Destinations list's cells (English, whitespace collapsed) as they must read for an
    item of ``GET /api/destinations``. The lag is a duration a paused destination grows
    while a test looks: compare it with some slack where it is not 0."""
    last_error = item["last_error"]
    return {
        "name": item["name"],
        "kind": item["kind"],
        "url": item["url"],
        "state": " ".join(filter(None, [item["state"], item["paused_reason"]])),
        "waiting": str(item["waiting"]),
        "dead": str(item["dead"]),
        "lag": duration(item["lag_seconds"]),
        "last_success": local_time(item["last_success_at_ms"], zone),
        "last_error": f"{last_error} {local_time(item['last_error_at_ms'], zone)}"
        if last_error
        else "–",
    }
