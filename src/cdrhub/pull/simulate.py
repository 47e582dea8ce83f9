"""Synthetic NXCC traffic for demos, tests and benchmarks: seeded, so a seed is a data set.

Calls follow a working-day curve in the call center's zone; inbound calls queue, wait, get
answered by agents or are abandoned (some within seconds); outbound calls ring and often go
unanswered; AICC campaign calls belong to tasks and end with an intent. Each call is a push
body exactly as NXCC sends it (camelCase keys, epoch ms), so it goes through the same
validation as real traffic.
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
INTENTS = ("转人工-成功", "转人工-失败", "有意向", "无意向", "稍后再拨", "空号", "拒接")
HANGUP_REASONS = ("NORMAL_CLEARING", "USER_BUSY", "NO_ANSWER", "ORIGINATOR_CANCEL", "CALL_REJECTED")


def calls(
    count: int, *, seed: int, end: datetime, days: int, tz: ZoneInfo, agents: int = 40
) -> Iterator[dict[str, Any]]:
    """``count`` push bodies with start times over the ``days`` before ``end``, oldest first.

    Calls come in start-time order, as NXCC pushes them (each when it ends), so a database
    filled by ``simulate`` is laid out on disk like one filled by real traffic.
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    agent_names = [f"agent{i:02d}@example.com" for i in range(1, agents + 1)]
    tasks = [str(1688363452814331904 + i * 7919) for i in range(12)]
    local_end = end.astimezone(tz)
    first_day = (local_end - timedelta(days=days)).date()
    hours = list(range(24))
    starts = []
    for _ in range(count):
        day = first_day + timedelta(days=rng.randrange(days))
        hour = rng.choices(hours, HOUR_WEIGHTS)[0]
        local = datetime(day.year, day.month, day.day, hour, tzinfo=tz) + timedelta(
            seconds=rng.random() * 3600
        )
        starts.append(int(local.timestamp() * 1000))
    starts.sort()
    for start in starts:
        yield _call(rng, start, agent_names, tasks)


def _call(rng: random.Random, start: int, agents: list[str], tasks: list[str]) -> dict[str, Any]:
    direction = rng.choices((0, 1, 2), (60, 25, 15))[0]
    body: dict[str, Any] = {
        "callId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "direction": direction,
        "startTime": start,
        "caller": f"86{rng.choice((138, 139, 150, 186))}{rng.randrange(10**8):08d}",
        "callee": f"{1000 + rng.randrange(200)}@10.0.0.1:5060",
        "hangupBy": rng.choices((0, 1, 2), (40, 55, 5))[0],
        "orderId": f"ORD-{rng.randrange(10**9)}",
    }
    talk = 0
    if direction == 0:
        in_queue = start + rng.randrange(2000, 15000)  # IVR first
        patience = rng.expovariate(1 / 60)
        wait = rng.expovariate(1 / 12)
        answered = wait <= patience
        body["inQueueTime"] = in_queue
        if answered:
            out = in_queue + int(wait * 1000)
            body["outQueueTime"] = out
            ring = rng.randrange(1, 8)
            body["answerTime"] = out + ring * 1000
            body["ringDuration"] = ring
            talk = int(rng.lognormvariate(math.log(150), 0.8))
            body["endTime"] = body["answerTime"] + talk * 1000
            body["agentName"] = rng.choice(agents)
            body["agentNickName"] = body["agentName"].split("@")[0]
        else:
            gone = in_queue + int(patience * 1000)
            body["endTime"] = gone
            body["queueDuration"] = int(patience)
        body["answered"] = answered
    else:
        ring = rng.randrange(3, 30)
        answered = rng.random() < (0.45 if direction == 1 else 0.6)
        body["ringTime"] = start + 500
        body["ringDuration"] = ring
        body["answered"] = answered
        if answered:
            body["answerTime"] = start + 500 + ring * 1000
            talk = int(rng.lognormvariate(math.log(60 if direction == 2 else 120), 0.9))
            body["endTime"] = body["answerTime"] + talk * 1000
        else:
            body["endTime"] = start + 500 + ring * 1000
        if direction == 1:
            body["agentName"] = rng.choice(agents)
        else:
            body["taskId"] = rng.choice(tasks)
            body["intent"] = rng.choice(INTENTS) if answered else ""
    body["callDuration"] = talk
    body["hangupReason"] = rng.choice(HANGUP_REASONS)
    body["hangupCode"] = rng.choice((16, 17, 19, 21))
    body["callStatus"] = "ANSWERED" if body["answered"] else "NO_ANSWER"
    if body["answered"] and rng.random() < 0.9:
        body["recordUrl"] = f"https://rec.example.com/{body['callId']}.mp3"
    body["totalCustomerPrice"] = round(math.ceil(talk / 60) * 0.035, 4)
    return body
