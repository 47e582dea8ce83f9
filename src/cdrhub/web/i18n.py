"""The dashboard's words in English and Simplified Chinese.

The language comes from the ``lang`` cookie (the switch in the header), else from the
browser's ``Accept-Language``. A missing translation shows the English text, never a key.
"""

from __future__ import annotations

from collections.abc import Callable

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
    "Error": "出错了",
    "Sorry": "抱歉",
    "Back to the overview": "返回概览",
    "This page is for admins.": "此页面仅限管理员。",
    "No call with this id.": "没有这个通话ID的记录。",
    "The form expired or came from another site; reload the page.": "表单已过期或来自其他网站，请刷新页面。",
    "All times are shown in the call center time zone": "所有时间均按呼叫中心时区显示",
    "Accounts are created by an administrator with {command}.": "账号由管理员用 {command} 创建。",
    "answered": "已接通",
    "per hour": "按小时",
    "per day": "按天",
    "Highest": "最高",
    "Target": "目标",
    "Total": "合计",
    "Figures": "数据",
    "The tallest bar is cut off so the others stay readable; its true figures are in its tooltip and in the table.": "最高的柱子被截断，以便其他柱子清晰可读；真实数值见提示框和表格。",
    "AICC calls by task": "AI外呼：按任务",
    "AICC calls by intent": "AI外呼：按意向",
    "caller or callee, any part": "主叫或被叫号码（任意部分）",
    "account or nickname": "账号或昵称",
    "per month": "按月",
    "more": "条未列出",
    "Too many sign-ins at once; try again.": "同时登录的人过多，请稍后再试。",
    "The period's dates are not days of the calendar (YYYY-MM-DD).": "所选时段的日期无效（应为 YYYY-MM-DD）。",
    "Choose a period of at most ten years.": "请选择不超过十年的时段。",
    "There is no such page.": "没有这个页面。",
    "This page cannot be opened that way.": "不能以这种方式打开此页面。",
    "This filter is not understood:": "无法识别的筛选条件：",
    "still refused:": "仍被拒绝：",
    "already replayed": "已重放过",
    "created": "已新建",
    "duplicate": "重复推送",
    "updated": "已更新",
    "stale": "旧版本（未覆盖）",
    "spooled": "已暂存",
    "body was cut at the size limit when it arrived; it cannot be stored": "接收时内容超出大小限制被截断，无法保存",
    # Alerts (the Alerts pages and the header).
    "Alerts": "告警",
    "Alert history": "告警记录",
    "Alerts firing": "正在告警",
    "Rules that tell people when something is wrong, through DingTalk, Feishu, WeCom, Slack, Teams or e-mail. Add, pause or test them with `cdrhub alert` or the API (docs/alerts.md).": "出现问题时通过钉钉、飞书、企业微信、Slack、Teams 或邮件通知相关人员的规则。用 `cdrhub alert` 或 API 添加、暂停或测试（见 docs/alerts.md）。",
    "No alert rules yet.": "还没有告警规则。",
    "No notifications yet.": "还没有通知记录。",
    "Condition": "条件",
    "Window": "时间窗口",
    "Figure": "数值",
    "Threshold": "阈值",
    "Firing since": "告警开始于",
    "Notify": "通知对象",
    "firing": "告警中",
    "ok": "正常",
    "repeat": "持续告警",
    "resolved": "已恢复",
    "test": "测试",
    "When": "时间",
    "Rule": "规则",
    "What": "事件",
    "Lasted": "持续",
    "Told": "通知对象",
    "Target answered": "对方回应",
    # Forwarding (the Destinations pages).
    "Destinations": "转发目标",
    "Destination": "转发目标",
    "Every stored call goes on to these systems, each call's versions in order. Add or remove them with `cdrhub forward` or the API (docs/forwarding.md).": "每条保存的通话都会转发到这些系统，同一通话的各个版本按顺序送达。用 `cdrhub forward` 或 API 添加或删除（见 docs/forwarding.md）。",
    "Kind": "类型",
    "State": "状态",
    "Waiting": "待发送",
    "Dead letters": "死信",
    "Lag": "延迟",
    "Last success": "最近成功",
    "Last error": "最近错误",
    "No destinations yet.": "还没有转发目标。",
    "active": "运行中",
    "paused": "已暂停",
    "paused by an operator": "已被管理员暂停",
    "the destination answered 410 Gone": "目标返回 410 Gone（已停止发送）",
    "Paused: events wait and go out in order on resume.": "已暂停：事件会等待，恢复后按顺序发送。",
    "Resumed: sending from where it stopped.": "已恢复：从暂停处继续发送。",
    "Dead letters queued again": "已重新排队的死信",
    "Events queued again": "已重新排队的事件",
    "Events": "事件",
    "At once": "并发",
    "at most": "最多",
    "timeout": "超时",
    "Signing secret": "签名密钥",
    "set": "已设置",
    "the previous one also signs until": "旧密钥同时签名至",
    "Resume": "恢复",
    "Pause": "暂停",
    "Send again the events stored in a period, with their original ids, so consumers recognise what they already have.": "重新发送某一时段内保存的事件，事件ID不变，接收方可识别已收到的事件。",
    "Retry dead letters": "重试死信",
    "Event": "事件",
    "Type": "类型",
    "Attempts": "尝试次数",
    "Status": "状态码",
    "Error message": "错误信息",
    "Last attempt": "最近尝试",
    "No dead letters.": "没有死信。",
    "Recent attempts": "最近的发送尝试",
    "Time": "时间",
    "Delivered": "已送达",
    "Response": "响应内容",
    "No attempts yet.": "还没有发送尝试。",
    "No destination with this name.": "没有这个名称的转发目标。",
    # Hangup codes, read as ITU-T Q.850 causes (see routes.HANGUP_CAUSES).
    "unallocated number": "空号",
    "normal call clearing": "正常挂机",
    "user busy": "用户忙",
    "no user responding": "用户无响应",
    "no answer": "无人接听",
    "call rejected": "呼叫被拒绝",
    "number changed": "号码已更改",
    "destination out of order": "目的地故障",
    "invalid number format": "号码格式无效",
    "normal, unspecified": "正常，未说明原因",
    "no circuit available": "无可用线路",
    "network out of order": "网络故障",
    "temporary failure": "临时故障",
    "switching equipment congestion": "交换设备拥塞",
    "recovery on timer expiry": "定时器超时",
    "interworking, unspecified": "互通故障，未说明原因",
    "Clear": "清除",
    "Back to the calls": "返回通话记录",
    "not sent": "未发送",
    "Counted as": "统计为",
    "answered (NXCC sent answered: true).": "已接通（NXCC 发送了 answered: true）。",
    "not answered (NXCC sent answered: false).": "未接通（NXCC 发送了 answered: false）。",
    "not answered: NXCC sent no answered flag, and only answered: true counts a call as answered.": "未接通：NXCC 没有发送 answered 字段，只有 answered: true 才计为接通。",
    "The call log does have an answer time ({time}) and a call duration of {duration}, so the call may well have been answered; reports count it as not answered and without talk time.": "但通话记录中有接听时间（{time}）和通话时长 {duration}，此通话可能实际已接通；报表将其计为未接通，且不计通话时长。",
    "The call log has an answer time ({time}) although answered is false; reports follow the flag.": "通话记录中有接听时间（{time}），但 answered 为 false；报表以该字段为准。",
    "Moment": "时刻",
    "Since start": "距开始",
    "Newest calls": "最新通话",
    "Not answered": "未接通",
    "Abandoned in queue": "排队中放弃",
    "short": "短时放弃",
    "Speed of answer": "应答速度",
    "No times in this call log.": "此通话记录没有时间信息。",
    "Recordings are kept on NXCC's storage and their links can expire.": "录音保存在 NXCC 的存储上，链接可能会过期。",
    "current": "当前版本",
    "push": "推送",
    "import": "导入",
    "replay": "重放",
    "Pushes that carried a valid token but could not be stored. Replay stores those that today's cdrhub accepts; the others stay here.": "令牌正确但无法保存的推送。重放会保存当前版本 cdrhub 能接受的记录，其余的留在这里。",
    "Replayed": "已重放",
    "stored": "已保存",
    "not stored": "未保存",
    "expected": "应为",
    "Body": "原始内容",
    "cut at the size limit": "超出大小限制被截断",
    "?": "?",
    # The NXCC fields, in plain words (the call page; the raw name is shown beside).
    "field:agentName": "坐席账号",
    "field:agentNickName": "坐席昵称",
    "field:answerTime": "接听时间",
    "field:callDuration": "通话时长",
    "field:callee": "被叫号码",
    "field:caller": "主叫号码",
    "field:callId": "通话ID",
    "field:direction": "呼叫方向",
    "field:dtmfKeys": "按键 (DTMF)",
    "field:endTime": "结束时间",
    "field:hangupBy": "挂断方",
    "field:hangupCode": "挂断码",
    "field:callStatus": "通话状态",
    "field:hangupReason": "挂断原因",
    "field:inQueueTime": "进入队列时间",
    "field:leaveMsgUrl": "留言录音地址",
    "field:orderId": "订单ID",
    "field:other": "透传数据",
    "field:intent": "意向",
    "field:outQueueTime": "离开队列时间",
    "field:queueDuration": "排队时长",
    "field:recordUrl": "录音地址",
    "field:ringDuration": "振铃时长",
    "field:ringTime": "振铃开始时间",
    "field:startTime": "开始时间",
    "field:taskId": "AI外呼任务ID",
    "field:answered": "是否接通",
    "field:totalCustomerPrice": "费用",
    # The wallboard (/wall)
    "Wallboard": "大屏看板",
    "Today so far": "今日实时",
    "Updated": "更新于",
    "Theme": "主题",
    "Dark": "深色",
    "Light": "浅色",
    "ASA": "平均应答速度",
    "Longest wait": "最长等待",
    "Last hour, by 15 minutes": "最近一小时（每15分钟）",
    "Calls per 15 minutes": "每15分钟通话数",
    "No active alerts": "当前无告警",
    "Cannot reach cdrhub; showing the last figures.": "无法连接 cdrhub，显示的是上次的数据。",
    "This wallboard link is not valid or was revoked.": "此看板链接无效或已被撤销。",
}

#: English needs only the NXCC field names in plain words; everything else is written in English.
_EN = {
    "field:agentName": "Agent account",
    "field:agentNickName": "Agent nickname",
    "field:answered": "Answered",
    "field:answerTime": "Answered at",
    "field:callDuration": "Call duration (as sent)",
    "field:callee": "Called number",
    "field:caller": "Calling number",
    "field:callId": "Call id",
    "field:direction": "Direction",
    "field:dtmfKeys": "Keys pressed (DTMF)",
    "field:endTime": "Ended at",
    "field:hangupBy": "Hung up by",
    "field:hangupCode": "Hangup code",
    "field:callStatus": "Call status",
    "field:hangupReason": "Hangup reason",
    "field:inQueueTime": "Entered the queue at",
    "field:leaveMsgUrl": "Voicemail link",
    "field:orderId": "Your order id",
    "field:other": "Pass-through data",
    "field:intent": "AI intent",
    "field:outQueueTime": "Left the queue at",
    "field:queueDuration": "Time in queue (as sent)",
    "field:recordUrl": "Recording link",
    "field:ringDuration": "Ringing time (as sent)",
    "field:ringTime": "Started ringing at",
    "field:startTime": "Started at",
    "field:taskId": "AICC task id",
    "field:totalCustomerPrice": "Cost",
}

#: Hangup reasons as NXCC sends them (FreeSWITCH/Q.850 cause names), in Chinese words. English
#: pages show the name as sent; a name not listed shows as sent in both languages.
HANGUP_REASONS_ZH = {
    "NORMAL_CLEARING": "正常挂机",
    "ORIGINATOR_CANCEL": "主叫取消",
    "NO_ANSWER": "无人接听",
    "NO_USER_RESPONSE": "用户无响应",
    "USER_BUSY": "用户忙",
    "CALL_REJECTED": "呼叫被拒绝",
    "UNALLOCATED_NUMBER": "空号",
    "NUMBER_CHANGED": "号码已更改",
    "DESTINATION_OUT_OF_ORDER": "目的地故障",
    "INVALID_NUMBER_FORMAT": "号码格式无效",
    "NORMAL_UNSPECIFIED": "正常，未说明原因",
    "NORMAL_TEMPORARY_FAILURE": "临时故障",
    "NETWORK_OUT_OF_ORDER": "网络故障",
    "RECOVERY_ON_TIMER_EXPIRE": "定时器超时",
    "ALLOTTED_TIMEOUT": "超过允许时长",
    "MEDIA_TIMEOUT": "媒体超时",
    "LOSE_RACE": "已被其他坐席接听",
    "MANAGER_REQUEST": "系统挂断",
    "SYSTEM_SHUTDOWN": "系统关闭",
}
# The Reports pages: column names (``col:`` + the API's key) and their words.
_EN.update(
    {
        "col:start": "Start",
        "col:end": "End",
        "col:minutes": "Minutes",
        "col:offered": "Offered",
        "col:answered": "Answered",
        "col:abandoned": "Abandoned",
        "col:short_abandoned": "Short abandons",
        "col:service_level": "Service level",
        "col:asa_seconds": "ASA",
        "col:aht_seconds": "AHT",
        "col:longest_wait_seconds": "Longest wait",
        "col:abandon_rate": "Abandon rate",
        "col:queued": "Queued",
        "col:talk_seconds": "Talk time",
        "col:agent": "Agent",
        "col:handled": "Handled",
        "col:missed": "Missed",
        "col:avg_talk_seconds": "Average talk",
        "col:answered_share": "Share of answered",
        "col:first_call": "First call",
        "col:last_call": "Last call",
        "col:inbound_handled": "Inbound",
        "col:inbound_answered": "Inbound answered",
        "col:outbound_handled": "Outbound",
        "col:outbound_answered": "Outbound answered",
        "col:aicc_handled": "AICC",
        "col:aicc_answered": "AICC answered",
        "col:agents_needed": "Agents needed",
        "col:expected_service_level": "Expected service level",
        "col:expected_asa_seconds": "Expected ASA",
        "col:occupancy": "Occupancy",
        "col:traffic_erlangs": "Traffic (erlangs)",
    }
)
_ZH.update(
    {
        "col:start": "开始",
        "col:end": "结束",
        "col:minutes": "分钟",
        "col:offered": "呼入量",
        "col:answered": "接通",
        "col:abandoned": "放弃",
        "col:short_abandoned": "短时放弃",
        "col:service_level": "服务水平",
        "col:asa_seconds": "平均应答速度",
        "col:aht_seconds": "平均处理时长",
        "col:longest_wait_seconds": "最长等待",
        "col:abandon_rate": "放弃率",
        "col:queued": "排队",
        "col:talk_seconds": "通话时长",
        "col:agent": "坐席",
        "col:handled": "处理量",
        "col:missed": "未接",
        "col:avg_talk_seconds": "平均通话",
        "col:answered_share": "接通占比",
        "col:first_call": "首次通话",
        "col:last_call": "末次通话",
        "col:inbound_handled": "呼入",
        "col:inbound_answered": "呼入接通",
        "col:outbound_handled": "呼出",
        "col:outbound_answered": "呼出接通",
        "col:aicc_handled": "AI外呼",
        "col:aicc_answered": "AI外呼接通",
        "col:agents_needed": "所需坐席",
        "col:expected_service_level": "预计服务水平",
        "col:expected_asa_seconds": "预计平均应答速度",
        "col:occupancy": "占用率",
        "col:traffic_erlangs": "话务量（爱尔兰）",
        "Reports": "报表",
        "Interval report": "时段报表",
        "Agent report": "坐席报表",
        "Staffing": "排班测算",
        "Interval": "时段",
        "min": "分钟",
        "Target": "目标",
        "Within (s)": "时限（秒）",
        "Excel (.xlsx)": "Excel (.xlsx)",
        "Peak agents needed": "高峰所需坐席",
        "target": "目标",
        "within": "时限",
    }
)

CATALOGS = {"en": _EN, "zh-CN": _ZH}


def hangup_reason(value: str | None, language: str) -> str:
    """A hangup reason for the reader: in Chinese words on Chinese pages when it is a known
    name, else as sent (English pages show NXCC's name, which is what its docs and logs use)."""
    if not value:
        return ""
    if language == "zh-CN":
        return HANGUP_REASONS_ZH.get(value.strip().upper(), value)
    return value


#: Unit words of a duration: hours, minutes, seconds.
_UNITS = {"en": ("h ", "m ", "s"), "zh-CN": ("小时", "分", "秒")}


def duration(seconds: float | None, language: str = "en") -> str:
    """``194`` to ``3m 14s`` (English) or ``3分14秒`` (Chinese); ``4000`` to ``1h 06m`` or
    ``1小时06分``; a dash when there is none."""
    if seconds is None:
        return "–"
    hours, minutes, secs = _UNITS.get(language, _UNITS["en"])
    whole = round(seconds)
    if whole >= 3600:
        return f"{whole // 3600}{hours}{whole % 3600 // 60:02d}{minutes.strip()}"
    if whole >= 60:
        return f"{whole // 60}{minutes}{whole % 60:02d}{secs}"
    return f"{whole}{secs}"


def choose(cookie: str | None, accept_language: str | None) -> str:
    """The language to show: the switch's choice, else the one the browser prefers most
    (by its ``q`` weights, RFC 9110) among those we have."""
    if cookie in LANGUAGES:
        return cookie
    best, weight = "en", 0.0
    for part in (accept_language or "").split(","):
        tag, _, params = part.partition(";")
        found = _ours(tag.strip().lower())
        quality = _quality(params)
        if found and quality > weight:  # on equal weights the browser's first one wins
            best, weight = found, quality
    return best


def _ours(tag: str) -> str | None:
    if tag.startswith("zh"):
        return "zh-CN"
    return "en" if tag.startswith("en") else None


def _quality(params: str) -> float:
    """The ``q=`` of one Accept-Language entry: 1 when absent, 0 when it is not a number."""
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                quality = float(value)
            except ValueError:
                return 0.0
            return quality if 0.0 <= quality <= 1.0 else 0.0
    return 1.0


def replay_message(message: str, t: Callable[[str], str]) -> str:
    """A replay outcome from :mod:`cdrhub.quarantine` in the reader's language: the fixed
    words are translated; what comes from the refused body stays as it was."""
    if message in _OUTCOMES:
        return t(message)
    for prefix in ("still refused:", "already replayed"):
        if message.startswith(prefix):
            rest = message[len(prefix) :]
            inner = rest.strip(" ()")
            return t(prefix) + (f" ({t(inner)})" if inner in _OUTCOMES else rest)
    return t(message)


_OUTCOMES = frozenset({"created", "duplicate", "updated", "stale", "spooled"})


def translator(language: str) -> Callable[[str], str]:
    """``t(text)`` for templates: the text in ``language``, else as written (English)."""
    catalog = CATALOGS.get(language, {})
    if language != "en":
        # A field name missing from a catalog still reads as English words, never as camelCase.
        catalog = {**_EN, **catalog}
    return lambda text: catalog.get(text, text)
