"""Alerts: rules over cdrhub's own figures, sent once to the chat tools people already use.

``conditions`` parses ``service_level < 80%`` and its kin into typed conditions with one
meaning each; ``rules`` stores the rules (and their firing state) in the database;
``evaluate`` computes each figure and sends one notification per transition (firing,
repeated, resolved); ``notify`` sends through Apprise with retries and masks the secrets in
target URLs; ``messages`` words the notifications in English or Chinese. It reads the
reports' statistics and forwarding's status, and is used by the app, the API, the pages and
the CLI. See docs/alerts.md.
"""

from cdrhub.alerts import conditions, messages, notify, rules
from cdrhub.alerts.conditions import Condition, ConditionError, format_duration, format_value
from cdrhub.alerts.evaluate import Evaluator, Refusals, Sources, Transition
from cdrhub.alerts.notify import Delivery, mask
from cdrhub.alerts.rules import Rule

__all__ = [
    "Condition",
    "ConditionError",
    "Delivery",
    "Evaluator",
    "Refusals",
    "Rule",
    "Sources",
    "Transition",
    "conditions",
    "format_duration",
    "format_value",
    "mask",
    "messages",
    "notify",
    "rules",
]
