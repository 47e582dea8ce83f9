"""A client for NXCC's CDR query API: the pull side, for healing what the push missed.

NXCC signs nothing it pushes but wants every pull signed: an MD5 over the sorted headers, the
exact body string sent, and the secret. The body is therefore built once, as a string, and
those very bytes are both signed and sent. The shape of ``data`` in the answer is not pinned
down by the vendor, so :func:`records_of` accepts the shapes seen in the wild and rejects
anything else with a sample of what came back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from cdrhub.settings import Settings

log = logging.getLogger(__name__)

#: The most records NXCC returns per page.
MAX_PAGE_SIZE = 100
#: Direction filter in the query API's own encoding (the push uses 0/1/2 for in/out/AICC).
DIRECTIONS = {"all": 0, "inbound": 1, "outbound": 2, "aicc": 3}
PATH = "/saas/cc/openapi/cdr/page"

_LIST_KEYS = ("list", "records", "rows", "items", "data")
_TOTAL_KEYS = ("total", "totalRow", "totalCount")


class NxccError(Exception):
    """NXCC could not give us records; the message says what to check."""


class NxccRefused(NxccError):
    """NXCC answered with a non-zero ``code``."""

    def __init__(self, code: Any, msg: str) -> None:
        self.code, self.msg = code, msg
        super().__init__(f"NXCC refused the request: code {code}, msg {msg!r}. {_hint(msg)}")


def _hint(msg: str) -> str:
    text = msg.lower()
    if "sign" in text:
        return (
            "Check CDRHUB_NXCC_ACCESS_KEY and CDRHUB_NXCC_ACCESS_SECRET, and this machine's "
            "clock (the signature covers the timestamp)."
        )
    if any(word in text for word in ("timestamp", "expire", "skew", "time out of", "ts ")):
        return "Check this machine's clock (NXCC allows about 60 s of difference; use NTP)."
    if any(word in text for word in ("access", "key", "auth", "permission")):
        return "Check CDRHUB_NXCC_ACCESS_KEY and that the key may use the CDR query API."
    if any(word in text for word in ("limit", "frequen", "too many")):
        return "Lower CDRHUB_NXCC_RATE (requests per second)."
    return "See NXCC's error code list, or contact NXCC support with this code."


def sample(value: Any, limit: int = 300) -> str:
    """What came back, short enough for one error line."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def sign(headers: Mapping[str, str], body: str, secret: str) -> str:
    """The vendor's signature: MD5 of ``k=v&...`` (headers sorted) + ``&body=`` + body +
    ``&accessSecret=`` + secret, as lowercase hex."""
    signed = "&".join(f"{k}={headers[k]}" for k in sorted(headers) if k != "sign")
    text = f"{signed}&body={body}&accessSecret={secret}"
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class Page:
    """One page of records, and the total NXCC reports for the query (if it says)."""

    records: list[dict[str, Any]]
    total: int | None


def records_of(answer: Any) -> Page:
    """The records of a ``{code, msg, data}`` answer, whatever shape ``data`` has."""
    if not isinstance(answer, dict) or "code" not in answer:
        raise NxccError(f"NXCC's answer is not {{code, msg, data}}: {sample(answer)}")
    if str(answer["code"]) != "0":
        raise NxccRefused(answer["code"], str(answer.get("msg", "")))
    data = answer.get("data")
    total: Any = None
    records: Any = None
    if isinstance(data, list):
        records = data
    elif isinstance(data, dict):
        records = next((data[k] for k in _LIST_KEYS if isinstance(data.get(k), list)), None)
        total = next((data[k] for k in _TOTAL_KEYS if k in data), None)
    elif data is None:
        records = []
    if records is None or not all(isinstance(r, dict) for r in records):
        raise NxccError(
            "NXCC's answer has no list of records under data (looked for a list, or one of "
            f"{', '.join(_LIST_KEYS)}): {sample(answer)}"
        )
    if total is not None:
        try:
            total = int(total)
        except (TypeError, ValueError):
            raise NxccError(f"NXCC's total is not a number: {sample(answer)}") from None
    return Page(records, total)


class Client:
    """Signed, paced and retried calls to one NXCC gateway.

    Retries (with exponential backoff and jitter) cover what a later attempt can fix:
    timeouts, connection errors, 429 and 5xx. Everything else fails at once, with a message.
    """

    def __init__(
        self,
        gateway: str,
        access_key: str,
        access_secret: str,
        *,
        timeout: float = 15.0,
        rate: float = 5.0,
        retries: int = 5,
        backoff: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not access_key or not access_secret:
            raise NxccError(
                "NXCC credentials are missing: set CDRHUB_NXCC_ACCESS_KEY and "
                "CDRHUB_NXCC_ACCESS_SECRET (NXCC console: API keys)"
            )
        self._url = gateway.rstrip("/") + PATH
        self._key, self._secret = access_key, access_secret
        self._http = httpx.Client(timeout=timeout)
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._retries, self._backoff = retries, backoff
        self._clock = clock
        self._next = 0.0
        self._lock = threading.Lock()
        self.requests = 0

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def page(self, start_s: int, end_s: int, page: int, size: int = MAX_PAGE_SIZE) -> Page:
        """Calls that started in ``[start_s, end_s]`` (epoch seconds), one page of them."""
        query = {"startTime": start_s, "endTime": end_s, "page": page, "size": min(size, 100)}
        return records_of(self._post(json.dumps(query, separators=(",", ":"))))

    def _post(self, body: str) -> Any:
        for attempt in range(self._retries + 1):
            self._pace()
            headers = {
                "accessKey": self._key,
                "action": "cc",
                "bizType": "8",
                "ts": str(int(self._clock() * 1000)),
            }
            headers["sign"] = sign(headers, body, self._secret)
            headers["Content-Type"] = "application/json"
            wait: float | None = None
            try:
                self.requests += 1
                response = self._http.post(self._url, content=body.encode(), headers=headers)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                problem = f"{type(exc).__name__} talking to {self._url}"
            else:
                if response.status_code == 200:
                    try:
                        return response.json()
                    except ValueError:
                        raise NxccError(
                            f"NXCC's answer is not JSON: {sample(response.text)}"
                        ) from None
                problem = f"HTTP {response.status_code} from {self._url}"
                if response.status_code != 429 and response.status_code < 500:
                    raise NxccError(
                        f"{problem}: {sample(response.text)}. Check CDRHUB_NXCC_GATEWAY "
                        "(the README lists the regional gateways)."
                    )
                wait = _retry_after(response)
            if attempt == self._retries:
                raise NxccError(f"{problem}, {attempt + 1} attempts; try again later")
            delay = wait if wait is not None else self._backoff * 2**attempt
            delay *= 1 + random.random() * 0.5  # noqa: S311 - jitter, not a secret
            log.warning("%s; retrying in %.1f s", problem, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _pace(self) -> None:
        """At most ``rate`` requests per second, across threads."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            time.sleep(start - now)


def from_settings(settings: Settings) -> Client:
    """The client the settings describe (raises :class:`NxccError` without credentials)."""
    key, secret = settings.nxcc_access_key, settings.nxcc_access_secret
    return Client(
        settings.nxcc_gateway,
        key.get_secret_value() if key else "",
        secret.get_secret_value() if secret else "",
        timeout=settings.nxcc_timeout_seconds,
        rate=settings.nxcc_rate,
        retries=settings.nxcc_retries,
    )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return min(float(value), 60.0)
    except ValueError:
        return None
