"""Sending a notification through Apprise: every platform it knows, with retries and a record.

A target is an Apprise URL (``dingtalk://``, ``slack://``, ``json://`` ...). Each target is
sent to on its own so that one that is down neither hides nor delays the answer of another,
and what the target answered (Apprise's log of the exchange) is kept with the result. Target
URLs carry tokens; :func:`mask` is the only spelling that leaves this module.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from urllib.parse import parse_qs, unquote, urlsplit

from cdrhub.alerts.conditions import ConditionError, _problem

log = logging.getLogger("cdrhub.alerts")


class _MaskSecrets(logging.Filter):
    """Apprise (and urllib3 under it) log the URLs they post to, tokens and all: Slack's and
    DingTalk's are in the path. This filter on their loggers rewrites each record without the
    credentials of every target this process has sent to, before any handler sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.urls:
            text = record.getMessage()
            masked = mask_text(text, self.urls)
            if masked != text:
                record.msg, record.args = masked, None
        return True


_FILTER = _MaskSecrets()
for _name in ("apprise", "urllib3.connectionpool"):  # apprise.LOGGER_NAME, a test checks
    logging.getLogger(_name).addFilter(_FILTER)


@cache
def _apprise() -> ModuleType:
    """Apprise with all its plugins, loaded at the first alert that needs it.

    Not at import: Apprise and the libraries its plugins import (paho-mqtt among them) are
    over 20 MB of every ``cdrhub serve``, which needs them only once a rule has a target.
    """
    with warnings.catch_warnings():
        # Apprise's attachment code imports the standard library's imghdr, deprecated in 3.11
        # and gone in 3.13 (Apprise has its own fallback there); not ours to act on. Its
        # plugins load lazily, at the first URL: load them here, where the warning is caught.
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*imghdr.*")
        import apprise
        from apprise.manager_plugins import NotificationManager

        NotificationManager().load_modules()
    return apprise


#: Seconds to wait before the 2nd, 3rd ... try of a target that did not take a notification.
RETRY_DELAYS: tuple[float, ...] = (1.0, 5.0)
_ANSWER_CHARS = 1000
_HOSTNAME = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$|^\[[0-9a-fA-F:]+\]$|^localhost$")


@dataclass(frozen=True)
class Delivery:
    """One target's result: its masked URL, whether it took the message, after how many
    tries, and what it answered (masked, at most 1000 characters)."""

    target: str
    delivered: bool
    attempts: int
    answer: str


def check_target(url: str) -> str:
    """``url`` if Apprise can send to it, else a 422 that says what would do."""
    if not isinstance(url, str) or _apprise().Apprise.instantiate(url.strip()) is None:
        shown = mask(url) if isinstance(url, str) else url
        raise _problem(
            "notify",
            shown,
            "an Apprise URL such as dingtalk://TOKEN, slack://T/B/C, mailto://user:pass@host, "
            "json://host:port/path (see docs/alerts.md)",
        )
    return url.strip()


def _secrets(url: str) -> list[str]:
    """The parts of ``url`` that may be a credential: the password, query values, and every
    host or path segment of 12 characters or more that is not a host name (DingTalk, Slack
    and WeCom put their tokens there)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found: set[str] = set()
    if parts.password:
        found.add(parts.password)
    if parts.username and len(parts.username) >= 12:
        found.add(parts.username)
    for values in parse_qs(parts.query).values():
        found.update(v for v in values if len(v) >= 4)
    hostport = parts.netloc.rpartition("@")[2]  # as written: .hostname lowercases a token
    host = hostport if hostport.startswith("[") else hostport.split(":", 1)[0]
    segments = [host, *parts.path.split("/")]
    found.update(s for s in segments if len(s) >= 12 and not _HOSTNAME.match(s))
    for secret in list(found):
        found |= {unquote(secret)}
    return sorted(filter(None, found), key=len, reverse=True)


def mask(url: str) -> str:
    """``url`` with its credentials replaced by ``***``: safe for listings, logs and pages."""
    text = url
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return text


def mask_text(text: str, urls: Iterable[str]) -> str:
    """``text`` (a target's answer, an error) without the credentials of any of ``urls``."""
    for url in urls:
        for secret in _secrets(url):
            text = text.replace(secret, "***")
    return text


def _once(url: str, title: str, body: str, notify_type: str) -> tuple[bool, str]:
    """One try at one target: (delivered, what Apprise logged of the exchange)."""
    apprise = _apprise()
    target = apprise.Apprise.instantiate(url)
    if target is None:
        return False, "not a URL Apprise can send to"
    with apprise.LogCapture(level=logging.DEBUG, fmt="%(levelname)s %(message)s") as captured:
        try:
            delivered = bool(target.notify(body=body, title=title, notify_type=notify_type))
        except Exception as exc:  # a plugin's bug must not stop the evaluator
            return False, f"{type(exc).__name__}: {exc}"
        lines = captured.getvalue().splitlines()
    kept = [
        line
        for line in lines
        if not line.startswith("DEBUG ") or "Response Details" in line or "Exception" in line
    ]
    return delivered, "\n".join(kept).strip()


def send(
    targets: Iterable[str],
    title: str,
    body: str,
    *,
    notify_type: str = "info",
    retry_delays: tuple[float, ...] = RETRY_DELAYS,
) -> list[Delivery]:
    """Send to each target, trying again after each of ``retry_delays`` while it fails.

    Never raises for a target's failure: the result says it, and a warning names the target
    (masked).
    """
    results = []
    for url in targets:
        _FILTER.urls.add(url)
        answer = ""
        delivered = False
        attempts = 0
        for attempt, delay in enumerate((0.0, *retry_delays), start=1):
            if delay:
                time.sleep(delay)
            attempts = attempt
            delivered, answer = _once(url, title, body, notify_type)
            if delivered:
                break
        answer = mask_text(answer, [url])[:_ANSWER_CHARS]
        if not delivered:
            log.warning(
                "alert notification to %s failed after %d tries: %s",
                mask(url),
                attempts,
                answer.replace("\n", " | "),
            )
        results.append(Delivery(mask(url), delivered, attempts, answer))
    return results


__all__ = ["RETRY_DELAYS", "ConditionError", "Delivery", "check_target", "mask", "send"]
