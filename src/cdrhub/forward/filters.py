"""Which calls a destination wants: a small filter language, not code.

A filter is conditions separated by commas or spaces, all of which must hold::

    direction=inbound answered=no min_talk=30s agent=alice@example.com task=T1

``direction`` is inbound, outbound or AICC (or 0, 1, 2); ``answered`` is yes or no;
``agent`` matches the agent name or nickname exactly; ``task`` the AICC task id;
``min_talk`` is the least talk time (answer to end), in seconds or with ``s``/``m``.
Several values of one key are alternatives: ``direction=inbound,direction=outbound``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cdrhub.cdr import DIRECTIONS

KEYS = ("direction", "answered", "agent", "task", "min_talk")
_YES = {"yes", "true", "1", "y"}
_NO = {"no", "false", "0", "n"}


class FilterError(ValueError):
    """A filter that does not parse; the message says which condition and what is allowed."""


@dataclass(frozen=True)
class CallFilter:
    """A parsed filter; :meth:`matches` tells whether a call's values pass it."""

    text: str = ""
    directions: frozenset[int] = field(default_factory=frozenset)
    answered: bool | None = None
    agents: frozenset[str] = field(default_factory=frozenset)
    tasks: frozenset[str] = field(default_factory=frozenset)
    min_talk_ms: int = 0

    def matches(self, values: Mapping[str, Any]) -> bool:
        """Whether a call (``CallRecord.values``) passes every condition."""
        if self.directions and values.get("direction") not in self.directions:
            return False
        answered = values.get("answered") is True
        if self.answered is not None and answered != self.answered:
            return False
        if self.agents and not (
            values.get("agent_name") in self.agents or values.get("agent_nick_name") in self.agents
        ):
            return False
        if self.tasks and values.get("task_id") not in self.tasks:
            return False
        if self.min_talk_ms:
            answer, end = values.get("answer_time_ms"), values.get("end_time_ms")
            if not answered or answer is None or end is None or end - answer < self.min_talk_ms:
                return False
        return True


def parse(text: str | None) -> CallFilter:
    """Parse a filter, or raise :class:`FilterError` naming the condition that is wrong."""
    text = (text or "").strip()
    directions: set[int] = set()
    agents: set[str] = set()
    tasks: set[str] = set()
    answered: bool | None = None
    min_talk_ms = 0
    by_name = {name.lower(): code for code, name in DIRECTIONS.items()}
    for condition in (c for c in re.split(r"[,\s]+", text) if c):
        key, sep, value = condition.partition("=")
        key = key.strip().lower()
        if not sep or not value:
            raise FilterError(f"{condition!r}: write conditions as key=value ({', '.join(KEYS)})")
        if key == "direction":
            code = by_name.get(value.lower())
            if code is None and value.isdigit() and int(value) in DIRECTIONS:
                code = int(value)
            if code is None:
                raise FilterError(f"direction={value}: expected inbound, outbound or AICC")
            directions.add(code)
        elif key == "answered":
            if value.lower() not in _YES | _NO:
                raise FilterError(f"answered={value}: expected yes or no")
            answered = value.lower() in _YES
        elif key == "agent":
            agents.add(value)
        elif key == "task":
            tasks.add(value)
        elif key == "min_talk":
            match = re.fullmatch(r"(\d+(?:\.\d+)?)([sm]?)", value.lower())
            if not match:
                raise FilterError(f"min_talk={value}: expected seconds, e.g. 30, 30s or 2m")
            seconds = float(match.group(1)) * (60 if match.group(2) == "m" else 1)
            min_talk_ms = int(seconds * 1000)
        else:
            raise FilterError(f"unknown filter key {key!r}: expected one of {', '.join(KEYS)}")
    return CallFilter(
        text=text,
        directions=frozenset(directions),
        answered=answered,
        agents=frozenset(agents),
        tasks=frozenset(tasks),
        min_talk_ms=min_talk_ms,
    )
