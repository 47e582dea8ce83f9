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

if TYPE_CHECKING:
    import httpx

    from cdrhub.settings import Settings

log = logging.getLogger("cdrhub.nxcc")  # the name operators filter logs by; kept across moves

#: The most records NXCC returns per page.
MAX_PAGE_SIZE = 100
# The query's optional ``direction`` filter has its own encoding (0 all, 1 inbound, 2 outbound,
# 3 AICC) while the records it returns use the push's (0 inbound, 1 outbound, 2 AICC). cdrhub
# never sends the filter (it wants every call), so nothing is ever translated: a pulled
# record's ``direction`` is stored as it came, exactly like a push's.
PATH = "/saas/cc/openapi/cdr/page"

_LIST_KEYS = ("list", "records", "rows", "items", "data")
_TOTAL_KEYS = ("total", "totalRow", "totalCount")


class NxccError(Exception):
    """NXCC could not give us records; the message says what to check."""


class NxccRefused(NxccError):
    """NXCC answered with a non-zero ``code``."""

    def __init__(self, code: Any, msg: str, attempts: int = 1) -> None:
        self.code, self.msg = code, msg
        tried = f" ({attempts} attempts)" if attempts > 1 else ""
        super().__init__(f"NXCC refused the request: code {code}, msg {msg!r}{tried}. {_hint(msg)}")

    @property
    def rate_limited(self) -> bool:
        """Whether NXCC refused because of the request rate: worth retrying after a pause.

        The vendor's gateways can say so with HTTP 200 and an error ``code`` rather than a
        429; its codes are not documented, so the message decides (English or Chinese).
        """
        return str(self.code) == "429" or _rate_limit_words(self.msg)


_RATE_LIMIT_WORDS = ("frequen", "too many", "rate limit", "ratelimit", "throttl")
_RATE_LIMIT_WORDS_ZH = ("频繁", "频率", "限流")


def _rate_limit_words(msg: str) -> bool:
    text = msg.lower()
    return any(w in text for w in _RATE_LIMIT_WORDS) or any(w in msg for w in _RATE_LIMIT_WORDS_ZH)


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
    if "limit" in text or _rate_limit_words(msg):
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
    total: int | None = None
    records: Any = None
    if isinstance(data, list):
        records = data
    elif isinstance(data, dict):
        total = _total(data, answer)
        records = _list_in(data, total)
    elif data is None:
        records = []
    if records is None or not all(isinstance(r, dict) for r in records):
        raise NxccError(
            "NXCC's answer has no list of records under data (looked for a list, or one of "
            f"{', '.join(_LIST_KEYS)}): {sample(answer)}"
        )
    return Page(records, total)


def _total(data: dict[str, Any], answer: Any) -> int | None:
    value = next((data[k] for k in _TOTAL_KEYS if k in data), None)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise NxccError(f"NXCC's total is not a number: {sample(answer)}") from None


def _list_in(data: dict[str, Any], total: int | None) -> list[Any] | None:
    """The list of records in an object-shaped ``data``, or None when there is none.

    An empty result is sometimes sent without a list (``{"list": null, "total": 0}``, or just
    ``{"total": 0}``): that is an empty page, unless a total above 0 says records exist.
    """
    present = [k for k in _LIST_KEYS if k in data]
    found = next((data[k] for k in present if isinstance(data[k], list)), None)
    if found is not None:
        return found
    nothing = total == 0 or any(data[k] is None for k in present)
    return [] if nothing and not total else None


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
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not access_key or not access_secret:
            raise NxccError(
                "NXCC credentials are missing: set CDRHUB_NXCC_ACCESS_KEY and "
                "CDRHUB_NXCC_ACCESS_SECRET (NXCC console: API keys)"
            )
        self._url = gateway.rstrip("/") + PATH
        self._key, self._secret = access_key, access_secret
        import httpx  # here: a server that never pulls does not hold it

        self._http = httpx.Client(timeout=timeout)
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._retries, self._backoff = retries, backoff
        self._clock, self._sleep = clock, sleep
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
        """Calls that started between ``start_s`` and ``end_s`` (epoch seconds), one page.

        Whether NXCC includes ``end_s`` itself, and how much of that second, it does not say:
        callers ask for a little more than they need and keep what they asked for.
        """
        query = {"startTime": start_s, "endTime": end_s, "page": page, "size": min(size, 100)}
        body = json.dumps(query, separators=(",", ":"))
        for attempt in range(self._retries + 1):
            try:
                return records_of(self._send(body))
            except _Retry as retry:
                if attempt == self._retries:
                    raise NxccError(
                        f"{retry.problem}, {attempt + 1} attempts; try again later"
                    ) from None
                self._back_off(retry.problem, retry.wait, attempt)
            except NxccRefused as refused:
                if not refused.rate_limited:
                    raise
                if attempt == self._retries:
                    raise NxccRefused(refused.code, refused.msg, attempt + 1) from None
                self._back_off(f"NXCC rate limit ({refused.msg!r})", None, attempt)
        raise AssertionError("unreachable")

    def _back_off(self, problem: str, wait: float | None, attempt: int) -> None:
        """Exponential backoff with jitter (or the server's ``Retry-After``), then retry."""
        delay = wait if wait is not None else self._backoff * 2**attempt
        delay *= 1 + random.random() * 0.5  # noqa: S311 - jitter, not a secret
        log.warning("%s; retrying in %.1f s", problem, delay)
        self._sleep(delay)

    def _send(self, body: str) -> Any:
        """One signed request; its decoded JSON, or :class:`_Retry` for what may pass."""
        self._pace()
        headers = {
            "accessKey": self._key,
            "action": "cc",
            "bizType": "8",
            "ts": str(int(self._clock() * 1000)),
        }
        headers["sign"] = sign(headers, body, self._secret)
        headers["Content-Type"] = "application/json"
        import httpx  # imported by __init__ already: a dict lookup

        try:
            self.requests += 1
            response = self._http.post(self._url, content=body.encode(), headers=headers)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise _Retry(f"{type(exc).__name__} talking to {self._url}") from None
        problem = f"HTTP {response.status_code} from {self._url}"
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retry(problem, _retry_after(response))
        if response.status_code != 200:
            raise NxccError(f"{problem}: {sample(response.text)}. {_http_hint(response)}")
        try:
            return response.json()
        except ValueError:
            raise NxccError(f"NXCC's answer is not JSON: {sample(response.text)}") from None

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


class _Retry(Exception):
    """A failure a later attempt may not have: a timeout, no connection, 429, 5xx."""

    def __init__(self, problem: str, wait: float | None = None) -> None:
        self.problem, self.wait = problem, wait


def _http_hint(response: httpx.Response) -> str:
    """What to check after an HTTP error that retrying will not fix."""
    if response.status_code in (401, 403):
        return (
            "NXCC did not let this client in: check CDRHUB_NXCC_ACCESS_KEY and "
            "CDRHUB_NXCC_ACCESS_SECRET, and that this machine's public IP address is on the "
            "API key's IP allow-list in the NXCC console."
        )
    return "Check CDRHUB_NXCC_GATEWAY (the README lists the regional gateways)."


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return min(float(value), 60.0)
    except ValueError:
        return None
