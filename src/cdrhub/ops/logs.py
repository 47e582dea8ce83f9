"""Log setup: readable text for a terminal, or one JSON object per line for log pipelines.

Push lines carry ``request_id``, ``status``, ``result``, ``call_id``, ``client`` and
``latency_ms`` as fields. Tokens, phone numbers and bodies are never logged.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

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


def configure(level: str, fmt: str = "text") -> None:
    """Set up the root logger once (the CLI, or each worker process)."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # Alembic announces its context on every schema check (each /readyz): keep it quiet.
    logging.getLogger("alembic").setLevel(logging.WARNING)
