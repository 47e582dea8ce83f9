"""The words of a notification, in the rule's language: short, and enough to act on.

What fired, the figure and its threshold, the window, and a link to the dashboard page that
shows it (``CDRHUB_PUBLIC_URL``; without it no link).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdrhub.alerts.conditions import format_duration, format_value

if TYPE_CHECKING:
    from cdrhub.alerts.rules import Rule

_WHAT = {
    "en": {
        "service_level": "service level",
        "abandon_rate": "abandon rate",
        "asa": "average speed of answer",
        "no_pushes": "time since the last accepted push",
        "refused": "refused pushes",
        "spool_age": "age of the oldest spooled push",
        "destination_failing": "forwarding destinations paused, failing or with dead letters",
        "unpushed_calls": "calls reconcile found that NXCC never pushed",
    },
    "zh": {
        "service_level": "服务水平",
        "abandon_rate": "放弃率",
        "asa": "平均应答速度",
        "no_pushes": "距上次成功推送",
        "refused": "被拒绝的推送",
        "spool_age": "缓存中最早推送的时长",
        "destination_failing": "暂停、失败或有死信的转发目标",
        "unpushed_calls": "对账发现 NXCC 未推送的通话",
    },
}
_KIND = {
    "en": {"firing": "FIRING", "repeat": "STILL FIRING", "resolved": "RESOLVED", "test": "TEST"},
    "zh": {"firing": "告警", "repeat": "持续告警", "resolved": "已恢复", "test": "测试"},
}
_PAGE = {
    "service_level": "/",
    "abandon_rate": "/",
    "asa": "/",
    "no_pushes": "/",
    "refused": "/quarantine",
    "spool_age": "/alerts/history",
    "destination_failing": "/destinations",
    "unpushed_calls": "/alerts/history",
}


def render(
    rule: Rule,
    kind: str,
    value: float | None,
    calls: int | None,
    duration: float | None,
    base_url: str | None,
) -> tuple[str, str]:
    """(title, body) of one notification about ``rule``."""
    zh = rule.language == "zh"
    lang = "zh" if zh else "en"
    cond = rule.condition
    what = _WHAT[lang][cond.kind]
    threshold = rule.threshold
    if cond.kind == "no_pushes":
        shown = format_duration(value) if value is not None else "-"
        limit = f"> {format_duration(threshold or 0)}"
    elif threshold is None:
        shown, limit = format_value(cond.kind, value), "> 0"
    else:
        shown = format_value(cond.kind, value)
        limit = f"{cond.operator} {format_value(cond.kind, threshold)}"
    window = format_duration(rule.window_seconds)
    scope = []
    if rule.direction:
        scope.append(rule.direction)
    if rule.task_id:
        scope.append(f"task {rule.task_id}")
    title = f"[cdrhub] {_KIND[lang][kind]}: {rule.name}"
    if zh:
        line = f"{what} {shown}（阈值 {limit}）"
        if cond.kind in ("service_level", "abandon_rate", "asa", "refused"):
            line += f"，最近 {window}"
        if calls is not None:
            line += f"，{calls} 通排队来电"
        if kind == "resolved" and duration is not None:
            line = f"持续 {format_duration(duration)} 后恢复。" + line
    else:
        line = f"{what} {shown} (threshold {limit})"
        if cond.kind in ("service_level", "abandon_rate", "asa", "refused"):
            line += f" over the last {window}"
        if calls is not None:
            line += f", {calls} queued calls"
        if kind == "resolved" and duration is not None:
            line = f"Resolved after {format_duration(duration)}: " + line
    if scope:
        line += f" [{', '.join(scope)}]"
    if not base_url:  # a bare path opens nothing from a chat: CDRHUB_PUBLIC_URL makes the link
        return title, line
    return title, f"{line}\n{base_url.rstrip('/')}{_PAGE[cond.kind]}"
