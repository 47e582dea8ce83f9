"""The dashboard's words in English and Simplified Chinese.

The language comes from the ``lang`` cookie (the switch in the header), else from the
browser's ``Accept-Language``. A missing translation shows the English text, never a key.
"""

from __future__ import annotations

LANGUAGES = {"en": "English", "zh-CN": "简体中文"}

_ZH = {
    "Overview": "概览",
    "Calls": "通话记录",
    "Quarantine": "隔离区",
    "Sign in": "登录",
    "Sign out": "退出",
    "Name": "用户名",
    "Password": "密码",
    "Wrong name or password.": "用户名或密码错误。",
    "Too many attempts; wait a minute and try again.": "尝试次数过多，请一分钟后再试。",
    "Today": "今天",
    "Yesterday": "昨天",
    "7 days": "近7天",
    "30 days": "近30天",
    "Custom": "自定义",
    "From": "开始",
    "To": "结束",
    "Direction": "方向",
    "All": "全部",
    "inbound": "呼入",
    "outbound": "外呼",
    "AICC": "AI外呼",
    "agent": "坐席",
    "user": "客户",
    "unknown": "未知",
    "Show": "查看",
    "Calls total": "通话总数",
    "Answer rate": "接通率",
    "Service level": "服务水平",
    "Average wait": "平均等待",
    "Average talk": "平均通话时长",
    "Abandoned": "放弃",
    "Cost": "费用",
    "Volume": "话务量",
    "Answered": "已接通",
    "Unanswered": "未接通",
    "Service level over time": "服务水平趋势",
    "Hangup reasons": "挂断原因",
    "Top agents": "坐席排行",
    "AICC tasks and intents": "AI外呼任务与意向",
    "Task": "任务",
    "Intent": "意向",
    "Agent": "坐席",
    "Number": "号码",
    "Hangup reason": "挂断原因",
    "Filter": "筛选",
    "Export CSV": "导出 CSV",
    "Start": "开始时间",
    "Caller": "主叫",
    "Callee": "被叫",
    "Talk": "通话",
    "Wait": "等待",
    "Next page": "下一页",
    "No calls.": "没有通话。",
    "Call": "通话",
    "Timeline": "时间线",
    "Ring": "振铃",
    "Queue in": "进入队列",
    "Queue out": "离开队列",
    "Answer": "接听",
    "End": "结束",
    "Recording": "录音",
    "Voicemail": "留言",
    "Raw payload versions": "原始数据版本",
    "Deliveries": "推送次数",
    "Fields": "字段",
    "Reason": "原因",
    "Received": "接收时间",
    "Replay": "重放",
    "Replay all": "全部重放",
    "Nothing in quarantine.": "隔离区为空。",
    "Times in": "时区",
    "yes": "是",
    "no": "否",
    "Updated live": "实时更新",
    "new calls": "条新通话",
    "hangup by": "挂断方",
}

CATALOGS = {"en": {}, "zh-CN": _ZH}


def choose(cookie: str | None, accept_language: str | None) -> str:
    """The language to show: the switch's choice, else the browser's first we have."""
    if cookie in LANGUAGES:
        return cookie
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return "en"


def translator(language: str):
    catalog = CATALOGS.get(language, {})
    return lambda text: catalog.get(text, text)
