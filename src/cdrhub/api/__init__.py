"""The API under ``/api`` (calls, statistics, exports, quarantine, forwarding), for API keys."""

from cdrhub.api.routes import api_router

__all__ = ["api_router"]
