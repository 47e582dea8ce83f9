"""``/api/wall-links``: wallboard links for admins (API keys with the write right), the same
functions as ``cdrhub wall link``. A link's token is in the creation answer only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request

from cdrhub.auth import wallboard
from cdrhub.errors import FieldProblem, InvalidParameter, NotFound
from cdrhub.settings import Settings
from cdrhub.store import Store


def wall_links_router(settings: Settings, get_store: Callable[[], Store], admin: Any) -> APIRouter:
    """The ``/wall-links`` routes (mounted under ``/api``), each behind ``admin``."""
    router = APIRouter(prefix="/wall-links", tags=["wallboard"], dependencies=[admin])

    @router.get("")
    def list_links(include_revoked: bool = False) -> dict[str, Any]:
        """Every active wallboard link (with `include_revoked=true`, revoked ones too)."""
        found = wallboard.list_links(get_store(), include_revoked=include_revoked)
        return {"items": [_item(link) for link in found]}

    @router.post("", status_code=201)
    async def create_link(request: Request) -> dict[str, Any]:
        """A new link from `{"name": "floor-tv"}`; its `url` (with the token) is in this
        answer only, never again. (The body is read here, not by a model: a body that is not
        JSON gets the same field/value/expected error as an empty name.)"""
        try:
            body = await request.json()
        except ValueError:
            body = None
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name.strip():
            shown = name if isinstance(name, str | int | float | None) else str(name)
            raise InvalidParameter(
                "a wallboard link needs a name saying where it is shown (e.g. floor-tv)",
                [FieldProblem("name", shown, "a non-empty string, in a JSON object")],
            )
        link, token = wallboard.create_link(get_store(), name)
        base = (settings.public_url or "").rstrip("/")
        return {**_item(link), "token": token, "url": f"{base}/wall?link={token}"}

    @router.delete("/{which}")
    def revoke_link(which: str) -> dict[str, Any]:
        """Revoke a link by id or name; a TV showing it gets 403 at its next refresh."""
        try:
            return _item(wallboard.revoke_link(get_store(), which))
        except LookupError as exc:
            raise NotFound(
                str(exc), [FieldProblem("which", which, "the id or name of an active link")]
            ) from None

    return router


def _item(link: wallboard.WallLink) -> dict[str, Any]:
    return {
        "id": link.id,
        "name": link.name,
        "token_starts": link.prefix,
        "created_at": link.created_at.isoformat(),
        "revoked_at": link.revoked_at.isoformat() if link.revoked_at else None,
    }
