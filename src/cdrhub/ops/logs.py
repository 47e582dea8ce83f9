"""Log setup: readable text for a terminal, or one JSON object per line for log pipelines.

Push lines carry ``request_id``, ``status``, ``result``, ``call_id``, ``client`` and
``latency_ms`` as fields. Tokens, phone numbers and bodies are never logged.

Log lines quote what senders chose (a callId, an address, a user name, a file name), so in the
text format one record is always one line: control characters in the message are escaped,
and the lines of a traceback are indented, so no line that starts a record can be forged.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from types import TracebackType

#: ``extra=`` fields a log call may carry, copied into JSON lines.
FIELDS = ("request_id", "status", "result", "call_id", "client", "latency_ms")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the known fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in FIELDS:
            value = record.__dict__.get(field)
            if value is not None:
                line[field] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


#: What must not reach a text log raw: C0 and C1 controls and DEL (line breaks, carriage
#: returns, terminal escapes), Unicode line and paragraph separators, bidirectional overrides
#: (which reorder how a line reads), and lone surrogates (which no log file can encode).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` on one line: every control character as a visible ``\\xNN`` or ``\\uNNNN``."""
    return _UNPRINTABLE.sub(_escape, text)


_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


class TextFormatter(logging.Formatter):
    """Readable text, one line per record whatever the logged values hold (see the module)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: _ExcInfo) -> str:
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))


def _indented(text: str) -> str:
    """A traceback whose every line is indented and escaped: none can pass for a record."""
    return "\n".join("    " + printable(line) for line in text.split("\n"))


def configure(level: str, fmt: str = "text") -> None:
    """Set up the root logger once (the CLI, or each worker process)."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # Alembic announces its context on every schema check (each /readyz): keep it quiet.
    logging.getLogger("alembic").setLevel(logging.WARNING)
