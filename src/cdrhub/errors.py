"""Every error cdrhub answers with, each carrying its HTTP status and a stable code.

All of them render to one JSON shape, ``{"error": code, "detail": text, "fields": [...]}``,
so an integrator can branch on ``error`` and an operator can read ``detail``. Nothing here
ever includes a token or a traceback.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec


class FieldProblem(msgspec.Struct, frozen=True):
    """One invalid value: which field, what it was, what would have been accepted."""

    field: str
    value: Any
    expected: str


class CdrhubError(Exception):
    """Base of the errors that become an HTTP response (and a quarantine reason)."""

    status = 500
    code = "internal_error"
    default_headers: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        detail: str,
        fields: list[FieldProblem] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fields = fields or []
        self.headers = {**self.default_headers, **(headers or {})}

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        return {
            "error": self.code,
            "detail": self.detail,
            "fields": [msgspec.structs.asdict(f) for f in self.fields],
        }


class Unauthorized(CdrhubError):
    """The ``token`` header is missing or matches none of the configured tokens."""

    status = 401
    code = "unauthorized"


class ForbiddenAddress(CdrhubError):
    """The sender's address is outside ``CDRHUB_ALLOWED_IPS``."""

    status = 403
    code = "forbidden_address"


class TooManyAuthFailures(CdrhubError):
    """This address sent too many wrong tokens lately; ``Retry-After`` says how long to wait."""

    status = 429
    code = "too_many_auth_failures"


class BadJson(CdrhubError):
    """The body is not JSON, or is JSON but not an object."""

    status = 400
    code = "bad_json"


class BodyTooLarge(CdrhubError):
    """The body is over ``max_body_bytes``; it is not read past the limit."""

    status = 413
    code = "body_too_large"


class BodyTimeout(CdrhubError):
    """The body did not arrive within ``body_timeout_seconds`` after the headers."""

    status = 408
    code = "body_timeout"


class UnsupportedMediaType(CdrhubError):
    """The ``Content-Type`` is not ``application/json``."""

    status = 415
    code = "unsupported_media_type"


class InvalidRecord(CdrhubError):
    """The JSON object is not a call log we can store: ``fields`` says which values and why."""

    status = 422
    code = "invalid_record"


class StoreUnavailable(CdrhubError):
    """The database cannot be written right now (down, unreachable or locked); NXCC retries."""

    status = 503
    code = "store_unavailable"


class StoreFailed(CdrhubError):
    """The database refused a valid call for a reason other than being away (a bug of ours)."""

    status = 500
    code = "store_failed"


class MethodNotAllowed(CdrhubError):
    """A callback path was called with something other than POST."""

    status = 405
    code = "method_not_allowed"


class MissingApiKey(CdrhubError):
    """A read endpoint was called without a valid API key (``Authorization: Bearer ...``)."""

    status = 401
    code = "unauthorized"
    default_headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": 'Bearer realm="cdrhub"'}


class Forbidden(CdrhubError):
    """The API key is valid but lacks the right this endpoint needs (a read-only key)."""

    status = 403
    code = "forbidden"


class InvalidParameter(CdrhubError):
    """A query parameter is unknown or malformed: ``fields`` names it, its value and the form."""

    status = 422
    code = "invalid_parameters"


class NotFound(CdrhubError):
    """The thing asked for (a callId, a quarantine entry) does not exist."""

    status = 404
    code = "not_found"


class Conflict(CdrhubError):
    """The thing cannot be created as asked because one like it exists (a destination's name)."""

    status = 409
    code = "conflict"


class SchemaOutdated(Exception):
    """The database schema is not the one this version of cdrhub needs."""
