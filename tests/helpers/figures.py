"""What the dashboard must print for the API's figures: shared by the server and browser tests."""

from __future__ import annotations

from typing import Any

from cdrhub.web.routes import duration, money, percent


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
