"""Synthetic NXCC traffic for demos, tests and benchmarks: seeded, so a seed is a data set.

Demo data is the first thing a new user judges, so every call agrees with itself:

- Calls follow a working-day curve (:data:`HOUR_WEIGHTS`) and a working-week curve
  (:data:`WEEKDAY_WEIGHTS`) in the call center's zone, and every call has *ended* by ``end``
  (NXCC pushes a call when it ends), so a database filled "until now" has no future calls.
- Inbound calls pass the IVR, queue, and are either answered by an agent (ringing, then
  talking) or abandoned in the queue by the caller (some within seconds).
- Outbound calls ring and are answered, not answered, busy or rejected; AICC campaign calls
  belong to tasks and end with an intent when answered.
- The outcome decides the rest (:data:`OUTCOMES`): ``callStatus``, ``hangupReason``, its Q.850
  ``hangupCode`` and ``hangupBy``; an answered call always ends with ``NORMAL_CLEARING``/16,
  an unanswered one never does. ``callDuration`` is the talk time, ``ringDuration`` and
  ``queueDuration`` equal the differences of the times they span, and only answered calls
  have a cost, a recording and an intent.

Each call is a push body exactly as NXCC sends it (camelCase keys, epoch ms), so it goes
through the same validation as real traffic.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

#: Relative call volume per local hour (a call center open 08:00-22:00, peaks at 10 and 15).
HOUR_WEIGHTS = (
    1, 1, 1, 1, 1, 2, 4, 10, 40, 80, 100, 95, 60, 70, 90, 100, 85, 70, 50, 35, 25, 15, 6, 2,
)  # fmt: skip
#: Relative call volume per weekday, Monday first: busy Mondays, quiet weekends.
WEEKDAY_WEIGHTS = (110, 100, 100, 95, 90, 45, 30)
INTENTS = ("转人工-成功", "转人工-失败", "有意向", "无意向", "稍后再拨", "拒接")

#: How a call ended, and what NXCC then says about it:
#: ``(callStatus, hangupReason, hangupCode (its Q.850 cause), hangupBy choices)``.
#: hangupBy: 0 agent, 1 user, 2 unknown.
OUTCOMES: dict[str, tuple[str, str, int, tuple[int, ...]]] = {
    "answered": ("ANSWERED", "NORMAL_CLEARING", 16, (0, 1)),
    # The caller hung up while waiting: no Q.850 cause says that; 487 is the number
    # FreeSWITCH-based platforms report with ORIGINATOR_CANCEL (SIP's "request terminated").
    "abandoned": ("ABANDONED", "ORIGINATOR_CANCEL", 487, (1,)),
    "no_answer": ("NO_ANSWER", "NO_ANSWER", 19, (2,)),
    "busy": ("BUSY", "USER_BUSY", 17, (1,)),
    "rejected": ("REJECTED", "CALL_REJECTED", 21, (1,)),
    "unallocated": ("FAILED", "UNALLOCATED_NUMBER", 1, (2,)),
}
#: Price per started minute of talk, by direction (NXCC sends costs with up to 4 decimals).
PRICE_PER_MINUTE = {0: 0.035, 1: 0.049, 2: 0.0245}
#: Draws in a row that may fall after ``end`` before giving up (a window too short to hold
#: a whole call, such as ``--days 1`` a minute after midnight).
_MAX_MISSES = 10_000


class NoRoomError(ValueError):
    """The period before ``end`` is too short to hold the calls asked for."""


def calls(
    count: int, *, seed: int, end: datetime, days: int, tz: ZoneInfo, agents: int = 40
) -> Iterator[dict[str, Any]]:
    """``count`` push bodies of calls that started on the ``days`` local days up to ``end``
    and ended by ``end``, oldest first.

    Calls come in start-time order, as NXCC pushes them (each when it ends), so a database
    filled by ``simulate`` is laid out on disk like one filled by real traffic. Each call is
    drawn from its own seed, so the filter "ended by ``end``" can look at a whole call before
    it is kept without holding every body in memory. The start times are drawn before this
    returns, so a period too short raises :class:`NoRoomError` here, not mid-way.
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    agent_names = [f"agent{i:02d}@example.com" for i in range(1, agents + 1)]
    tasks = [str(1688363452814331904 + i * 7919) for i in range(12)]
    end_ms = int(end.timestamp() * 1000)
    last_day = (end.astimezone(tz) - timedelta(microseconds=1)).date()
    day_list = [last_day - timedelta(days=n) for n in range(max(days, 1))]
    day_weights = [WEEKDAY_WEIGHTS[d.weekday()] for d in day_list]
    hours = list(range(24))
    drawn: list[tuple[int, int]] = []
    misses = 0
    while len(drawn) < count:
        day = rng.choices(day_list, day_weights)[0]
        hour = rng.choices(hours, HOUR_WEIGHTS)[0]
        local = datetime(day.year, day.month, day.day, hour, tzinfo=tz) + timedelta(
            seconds=rng.random() * 3600
        )
        start = int(local.timestamp() * 1000)
        own_seed = rng.getrandbits(64)
        if start <= end_ms and _call(own_seed, start, agent_names, tasks)["endTime"] <= end_ms:
            drawn.append((start, own_seed))
            misses = 0
            continue
        misses += 1
        if misses > _MAX_MISSES:
            raise NoRoomError(f"the {days} day(s) before {end.isoformat()} cannot hold whole calls")
    drawn.sort()
    return (_call(own_seed, start, agent_names, tasks) for start, own_seed in drawn)


def _call(seed: int, start: int, agents: list[str], tasks: list[str]) -> dict[str, Any]:
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    direction = rng.choices((0, 1, 2), (60, 25, 15))[0]
    body: dict[str, Any] = {
        "callId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "direction": direction,
        "startTime": start,
        "caller": f"86{rng.choice((138, 139, 150, 186))}{rng.randrange(10**8):08d}",
        "callee": f"{1000 + rng.randrange(200)}@10.0.0.1:5060",
        "orderId": f"ORD-{rng.randrange(10**9)}",
    }
    talk = 0
    if direction == 0:
        in_queue = start + rng.randrange(2000, 15000)  # IVR first
        patience = rng.expovariate(1 / 60)
        wait = rng.expovariate(1 / 12)
        body["inQueueTime"] = in_queue
        if wait <= patience:
            outcome = "answered"
            out = in_queue + int(wait * 1000)
            ring = rng.randrange(1, 8)
            body["outQueueTime"] = out
            body["ringTime"] = out
            body["answerTime"] = out + ring * 1000
            body["ringDuration"] = ring
            body["queueDuration"] = (out - in_queue) // 1000
            talk = max(5, int(rng.lognormvariate(math.log(150), 0.8)))
            body["endTime"] = body["answerTime"] + talk * 1000
            body["agentName"] = rng.choice(agents)
            body["agentNickName"] = body["agentName"].split("@")[0]
        else:
            outcome = "abandoned"
            gone = in_queue + int(patience * 1000)
            body["outQueueTime"] = gone
            body["endTime"] = gone
            body["queueDuration"] = (gone - in_queue) // 1000
    else:
        ring_at = start + 500
        body["ringTime"] = ring_at
        answer_rate = 0.45 if direction == 1 else 0.6
        if rng.random() < answer_rate:
            outcome = "answered"
            ring = rng.randrange(3, 25)
            body["answerTime"] = ring_at + ring * 1000
            talk = max(3, int(rng.lognormvariate(math.log(60 if direction == 2 else 120), 0.9)))
            body["endTime"] = body["answerTime"] + talk * 1000
        else:
            outcome = rng.choices(
                ("no_answer", "busy", "rejected", "unallocated"), (70, 15, 10, 5)
            )[0]
            # No answer rings until the platform's timeout; busy, rejected and unallocated
            # numbers end within a few seconds.
            ring = rng.randrange(25, 46) if outcome == "no_answer" else rng.randrange(0, 6)
            body["endTime"] = ring_at + ring * 1000
        body["ringDuration"] = ring
        if direction == 1:
            body["agentName"] = rng.choice(agents)
            body["agentNickName"] = body["agentName"].split("@")[0]
        else:
            body["taskId"] = rng.choice(tasks)
            body["intent"] = rng.choice(INTENTS) if outcome == "answered" else ""
    status, reason, code, hangup_by = OUTCOMES[outcome]
    body["answered"] = outcome == "answered"
    body["callStatus"] = status
    body["hangupReason"] = reason
    body["hangupCode"] = code
    body["hangupBy"] = rng.choice(hangup_by)
    body["callDuration"] = talk
    if body["answered"] and rng.random() < 0.9:
        body["recordUrl"] = f"https://rec.example.com/{body['callId']}.mp3"
    body["totalCustomerPrice"] = round(math.ceil(talk / 60) * PRICE_PER_MINUTE[direction], 4)
    return body
