"""Staffing: how many agents each interval needs to meet a service-level target (Erlang C).

For an interval of T seconds with λ offered calls and a mean handle time h, the offered
traffic is A = λ·h / T erlangs. With N > A agents, Erlang C gives the probability that a call
waits, P_w = N·B / (N − A·(1 − B)), where B is Erlang B for N servers, computed by the
recursion B(0) = 1, B(k) = A·B(k−1) / (k + A·B(k−1)): no factorials or powers, so it stays
finite and exact to float precision for thousands of agents (A^N / N! overflows a double past
N ≈ 170). Then

- service level: P(wait ≤ t) = 1 − P_w · e^(−(N − A)·t / h),
- average speed of answer: ASA = P_w · h / (N − A),

and the agents needed is the smallest N > A whose service level reaches the target.
docs/metrics.md has the formula and its assumptions (Poisson arrivals, no abandons).
"""

from __future__ import annotations

import math
from typing import Any

from cdrhub.errors import FieldProblem, InvalidParameter

#: The default target: 80 % of calls answered within ``sl_seconds``.
DEFAULT_TARGET = 0.8
#: Past this many agents above the traffic the search stops (it never needs to: the service
#: level rises towards 1 as agents are added, and targets are below 1).
_MAX_EXTRA = 100_000


def parse_target(value: str | None) -> float:
    """``sl_target`` as a fraction in (0, 1). Not a percentage: ``1.5`` would be ambiguous."""
    if value in (None, ""):
        return DEFAULT_TARGET
    assert value is not None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and 0 < number < 1):
        raise InvalidParameter(
            "invalid value for sl_target",
            [FieldProblem("sl_target", value, "a fraction above 0, below 1, such as 0.8")],
        )
    return number


def erlang_b(agents: int, traffic: float) -> float:
    """Erlang B (blocking probability) by the stable recursion."""
    b = 1.0
    for k in range(1, agents + 1):
        b = traffic * b / (k + traffic * b)
    return b


def erlang_c(agents: int, traffic: float) -> float:
    """The probability a call waits (1 when the agents cannot keep up, N ≤ A)."""
    if agents <= traffic:
        return 1.0
    b = erlang_b(agents, traffic)
    return agents * b / (agents - traffic * (1 - b))


def _from_b(agents: int, traffic: float, b: float) -> float:
    return agents * b / (agents - traffic * (1 - b))


def service_level(agents: int, traffic: float, aht: float, seconds: float) -> float:
    """The share of calls answered within ``seconds`` with ``agents`` agents."""
    if agents <= traffic:
        return 0.0
    waits = erlang_c(agents, traffic)
    return 1 - waits * math.exp(-(agents - traffic) * seconds / aht)


def asa(agents: int, traffic: float, aht: float) -> float | None:
    """The mean speed of answer in seconds (None: unbounded, the queue only grows)."""
    if agents <= traffic:
        return None
    return erlang_c(agents, traffic) * aht / (agents - traffic)


def agents_needed(traffic: float, aht: float, target: float, seconds: float) -> int:
    """The fewest agents whose service level reaches ``target`` (0 when nothing is offered).

    Erlang B is carried from one N to the next, so the search costs one step per agent.
    """
    if traffic <= 0:
        return 0
    n = math.floor(traffic) + 1
    b = erlang_b(n, traffic)
    for _ in range(_MAX_EXTRA):
        waits = _from_b(n, traffic, b)
        if 1 - waits * math.exp(-(n - traffic) * seconds / aht) >= target:
            return n
        n += 1
        b = traffic * b / (n + traffic * b)
    raise ValueError(f"no staffing meets {target} for {traffic} erlangs")  # pragma: no cover


def plan(
    offered: int, aht: float | None, interval_seconds: float, target: float, seconds: float
) -> dict[str, Any]:
    """One interval's plan: traffic, agents needed, and the service level, ASA and occupancy
    that number gives. Without a known handle time (no answered call to measure it on) the
    plan is null: guessing a handle time would be inventing data."""
    if not offered:
        return {
            "traffic_erlangs": 0.0,
            "agents_needed": 0,
            "expected_service_level": None,
            "expected_asa_seconds": None,
            "occupancy": None,
        }
    if aht is None or aht <= 0 or interval_seconds <= 0:
        return {
            "traffic_erlangs": None,
            "agents_needed": None,
            "expected_service_level": None,
            "expected_asa_seconds": None,
            "occupancy": None,
        }
    traffic = offered * aht / interval_seconds
    n = agents_needed(traffic, aht, target, seconds)
    return {
        "traffic_erlangs": traffic,
        "agents_needed": n,
        "expected_service_level": service_level(n, traffic, aht, seconds),
        "expected_asa_seconds": asa(n, traffic, aht),
        "occupancy": traffic / n,
    }


def from_intervals(
    interval_report: dict[str, Any], target: float, seconds: float
) -> dict[str, Any]:
    """Staffing for each interval of an interval report (its offered calls and AHT)."""
    rows = []
    for row in interval_report["intervals"]:
        rows.append(
            {
                "start": row["start"],
                "end": row["end"],
                "minutes": row["minutes"],
                "offered": row["offered"],
                "aht_seconds": row["aht_seconds"],
                "service_level": row["service_level"],
                **plan(row["offered"], row["aht_seconds"], row["minutes"] * 60, target, seconds),
            }
        )
    peak = max((r["agents_needed"] or 0 for r in rows), default=0)
    return {"sl_target": target, "sl_seconds": seconds, "intervals": rows, "peak_agents": peak}


#: The columns of each staffing interval.
COLUMNS = (
    "start",
    "end",
    "minutes",
    "offered",
    "aht_seconds",
    "agents_needed",
    "expected_service_level",
    "expected_asa_seconds",
    "occupancy",
    "traffic_erlangs",
    "service_level",
)
