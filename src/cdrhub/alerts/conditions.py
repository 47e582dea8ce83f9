"""What a rule watches, written as it reads: ``service_level < 80%``, ``asa > 30s``, ``no_pushes``.

Each kind has exactly one meaning and one direction (a service level alarms when it is low,
an abandon rate when it is high), so ``service_level > 80%`` is refused rather than guessed
at. The figures are the ones ``/api/stats`` shows (docs/metrics.md); docs/alerts.md explains
each kind with an example.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cdrhub.errors import CdrhubError, FieldProblem

#: kind -> (operator, unit of the threshold, whether it takes a threshold)
#: units: "%" a ratio written as a percentage, "s" seconds, "n" a count, "" no threshold.
KINDS: dict[str, tuple[str, str, bool]] = {
    "service_level": ("<", "%", True),
    "abandon_rate": (">", "%", True),
    "asa": (">", "s", True),
    "no_pushes": ("", "", False),
    "refused": (">", "n", True),
    "spool_age": (">", "s", True),
    "destination_failing": ("", "", False),
    "unpushed_calls": (">", "n", True),
}

#: Kinds whose figure comes from the calls that started in the window (``--min-calls``,
#: ``--direction`` and ``--task`` apply to these only).
CALL_KINDS = frozenset({"service_level", "abandon_rate", "asa"})

_CONDITION = re.compile(r"^\s*([a-z_]+)\s*(?:([<>])\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z%]*)\s*)?$")
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(s|m|h|d)?\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ConditionError(CdrhubError):
    """A condition, duration or option that cannot mean anything; 422 naming the field."""

    status = 422
    code = "invalid_alert"


def _problem(field: str, value: object, expected: str) -> ConditionError:
    return ConditionError(
        f"{field} {value!r} is not valid: expected {expected}",
        [FieldProblem(field, value, expected)],
    )


@dataclass(frozen=True)
class Condition:
    """A parsed condition: ``kind``, and its ``threshold`` in base units (ratio 0-1, seconds,
    a count), ``None`` for kinds without one."""

    kind: str
    threshold: float | None = None

    @property
    def operator(self) -> str:
        return KINDS[self.kind][0]

    def breached(self, value: float | None) -> bool:
        """Whether ``value`` (the figure now) is on the alarming side of the threshold."""
        if value is None:
            return False
        if self.threshold is None:  # no_pushes, destination_failing: the figure is a count
            return value > 0
        return value < self.threshold if self.operator == "<" else value > self.threshold

    def text(self) -> str:
        """The canonical spelling, as stored: ``service_level < 80%``."""
        if self.threshold is None:
            return self.kind
        return f"{self.kind} {self.operator} {format_value(self.kind, self.threshold)}"


def format_value(kind: str, value: float | None) -> str:
    """A figure in the condition's own unit: ``72.5%``, ``41s``, ``3``."""
    if value is None:
        return "-"
    unit = KINDS[kind][1]
    if unit == "%":
        return f"{value * 100:.4g}%"
    if unit == "s":
        return f"{value:.4g}s"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.4g}"


def parse(text: str) -> Condition:
    """``"service_level < 80%"`` into a :class:`Condition`, or a 422 that says what fits."""
    expected = "one of " + ", ".join(_example(k) for k in KINDS)
    found = _CONDITION.match(text.lower()) if isinstance(text, str) else None
    if found is None or found.group(1) not in KINDS:
        raise _problem("condition", text, expected)
    kind, operator, number, unit = found.groups()
    want_op, want_unit, needs = KINDS[kind]
    if not needs:
        if operator is not None:
            raise _problem("condition", text, f"{kind} alone (it takes no threshold)")
        return Condition(kind)
    if operator is None:
        raise _problem("condition", text, _example(kind))
    if operator != want_op:
        raise _problem(
            "condition",
            text,
            f"{_example(kind)} ({kind} alarms only when "
            f"{'below' if want_op == '<' else 'above'} its threshold)",
        )
    value = float(number)
    if want_unit == "%":
        if unit not in ("%", ""):
            raise _problem("condition", text, _example(kind))
        if value > 100:
            raise _problem("condition", text, "a percentage from 0% to 100%")
        return Condition(kind, value / 100)
    if want_unit == "s":
        if unit not in _SECONDS and unit != "":
            raise _problem("condition", text, f"{_example(kind)} (units s, m, h)")
        return Condition(kind, value * _SECONDS.get(unit or "s", 1))
    if unit:
        raise _problem("condition", text, f"{_example(kind)} (a plain count)")
    return Condition(kind, value)


def _example(kind: str) -> str:
    return {
        "service_level": "service_level < 80%",
        "abandon_rate": "abandon_rate > 10%",
        "asa": "asa > 30s",
        "no_pushes": "no_pushes",
        "refused": "refused > 20",
        "spool_age": "spool_age > 5m",
        "destination_failing": "destination_failing",
        "unpushed_calls": "unpushed_calls > 0",
    }[kind]


def parse_duration(text: str | float, field: str = "window") -> float:
    """``"30m"`` (s, m, h, d; a bare number is minutes) into seconds, at least one second."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        found = _DURATION.match(str(text).lower())
        if found is None:
            raise _problem(field, text, "a duration such as 30m, 90s, 2h")
        seconds = float(found.group(1)) * _SECONDS[found.group(2) or "m"]
    if seconds < 1:
        raise _problem(field, text, "at least 1s")
    return seconds


def format_duration(seconds: float) -> str:
    """``1800`` -> ``30m``; ``5400`` -> ``1h30m``; ``42`` -> ``42s``."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs or not (hours or minutes) else "",
    ]
    return "".join(parts)
