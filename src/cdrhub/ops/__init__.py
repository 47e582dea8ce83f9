"""Running cdrhub: Prometheus metrics, the silence watch, logging, memory, retention and backup.

These know the store and nothing above it, so the push path can count into ``metrics`` and
the CLI and the app can call ``maintenance`` without either depending on the other.
"""

from cdrhub.ops import memory
from cdrhub.ops.activity import Activity, parse_hours
from cdrhub.ops.logs import JsonFormatter, TextFormatter, printable
from cdrhub.ops.logs import configure as configure_logging
from cdrhub.ops.maintenance import backup, parse_age, prune
from cdrhub.ops.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from cdrhub.ops.metrics import Metrics

__all__ = [
    "METRICS_CONTENT_TYPE",
    "Activity",
    "JsonFormatter",
    "TextFormatter",
    "Metrics",
    "backup",
    "configure_logging",
    "memory",
    "parse_age",
    "parse_hours",
    "printable",
    "prune",
]
