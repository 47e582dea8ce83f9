"""The Destinations pages, server side, on SQLite and PostgreSQL (no browser): admins only,
CSRF and post/redirect/get on every action, the figures the API answers, and every stored
string (call ids, responses of destinations, names, reasons) shown as text.

The app runs with its lifespan, so its deliverer sends to a real HTTP receiver.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from html import unescape
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from cdrhub.app import create_app
from cdrhub.auth import users
from cdrhub.auth.apikeys import create_key
from cdrhub.forward import destinations
from cdrhub.settings import Settings
from cdrhub.store import Store
from tests.helpers import TOKEN
from tests.helpers.figures import destination_cells
from tests.helpers.forwarding import until
from tests.helpers.receiver import Receiver, receiving

PASSWORD = "correct horse battery"
EVIL = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>')


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as running:
        yield running


class Dashboard:
    """The app (deliverer included), a browser-like client, and the API with an admin key."""

    def __init__(self, client: TestClient, store: Store, zone: ZoneInfo) -> None:
        self.client, self.store, self.zone = client, store, zone
        self.key = {"Authorization": f"Bearer {create_key(store, 'admin')[1]}"}

    def sign_in(self, name: str = "ann", role: str = "admin") -> None:
        if not any(u.name == name for u in users.all_users(self.store)):
            users.create(self.store, name, role, PASSWORD)  # type: ignore[arg-type]
        self.client.cookies.clear()
        answer = self.client.post(
            "/login",
            data={"name": name, "password": PASSWORD, "csrf": self.csrf("/login"), "next": "/"},
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text

    def csrf(self, path: str) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.client.get(path).text)
        assert found, path
        return found[1]

    def api(self, path: str, **params: Any) -> Any:
        answer = self.client.get(path, params=params or None, headers=self.key)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def push(self, body: dict[str, Any]) -> None:
        answer = self.client.post("/cc/callback", json=body, headers={"token": TOKEN})
        assert answer.status_code == 200, answer.text

    def act(self, name: str, action: str, **form: str) -> Any:
        path = f"/destinations/{name}"
        data = {"csrf": self.csrf(path), **form}
        return self.client.post(f"{path}/{action}", data=data, follow_redirects=False)


@pytest.fixture
def site(settings: Settings, store: Store) -> Iterator[Dashboard]:
    fast = settings.model_copy(update={"forward_retry_schedule": "50ms,100ms"})
    with TestClient(create_app(fast)) as client:
        yield Dashboard(client, store, ZoneInfo(fast.timezone))


def _text(html: str) -> str:
    """What a reader sees of an HTML fragment: tags dropped, entities read, spaces collapsed."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def _listed(html: str) -> dict[str, dict[str, str]]:
    """The Destinations table: each row's cells by column, as text, by destination name."""
    rows = {}
    for row in re.findall(r"<tr data-name=.*?</tr>", html, re.S):
        cells = dict(re.findall(r'<td data-col="(\w+)"[^>]*>(.*?)</td>', row, re.S))
        rows[_text(cells["name"])] = {k: _text(v) for k, v in cells.items()}
        rows[_text(cells["name"])]["lag_seconds"] = re.search(r'data-seconds="([\d.]+)"', row)[1]  # type: ignore[index]
    return rows


def test_the_pages_are_for_admins_and_every_form_needs_its_token(
    site: Dashboard, receiver: Receiver
) -> None:
    destinations.add(site.store, "crm", receiver.url)
    for path in ("/destinations", "/destinations/crm"):
        answer = site.client.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    site.sign_in("vic", "viewer")
    assert 'href="/destinations"' not in site.client.get("/").text
    for path in ("/destinations", "/destinations/crm"):
        refused = site.client.get(path)
        assert refused.status_code == 403 and "for admins" in refused.text
    token = site.csrf("/")
    for action in ("pause", "resume", "retry", "replay"):
        assert (
            site.client.post(f"/destinations/crm/{action}", data={"csrf": token}).status_code == 403
        )
    site.sign_in("ann")
    assert 'href="/destinations"' in site.client.get("/").text
    for action in ("pause", "retry", "replay"):
        forged = site.client.post(f"/destinations/crm/{action}", data={"csrf": "forged"})
        assert forged.status_code == 403 and "reload the page" in forged.text
    assert destinations.require(site.store, "crm").state == "active"
    assert site.client.get("/destinations/nope").status_code == 404
    assert site.act("crm", "explode").status_code == 404
    token = site.csrf("/")
    assert site.client.post("/destinations/nope/pause", data={"csrf": token}).status_code == 404


def test_the_pages_show_what_the_api_answers(site: Dashboard, receiver: Receiver) -> None:
    """State, waiting, dead letters, lag, last success and error: the list and each page,
    cell by cell, equal /api/destinations; attempts and dead letters equal their API lists."""
    destinations.add(site.store, "ok", receiver.url)
    with receiving() as down:
        down.answer = lambda n, body: (503, {})
        destinations.add(site.store, "down", down.url)
        destinations.add(site.store, "held", receiver.url)
        destinations.set_state(site.store, "held", "paused", "paused by an operator")
        site.sign_in()
        empty = site.client.get("/destinations").text
        assert set(_listed(empty)) == {"down", "held", "ok"}
        for n in range(3):
            site.push({"callId": f"w-{n}", "startTime": 1764000000000 + n, "direction": 0})
        receiver.wait_for(3)
        until(lambda: len(site.api("/api/destinations/down/dead-letters")["items"]) == 3)
        until(lambda: site.api("/api/destinations/ok")["waiting"] == 0)
    api = {d["name"]: d for d in site.api("/api/destinations")["items"]}
    shown = _listed(site.client.get("/destinations").text)
    assert api["down"]["dead"] == 3 and api["held"]["waiting"] == 3
    assert api["ok"]["last_success_at_ms"] and api["down"]["last_error"] == "HTTP 503"
    for name, item in api.items():
        expected = destination_cells(item, site.zone)
        cells = {k: v for k, v in shown[name].items() if k != "lag_seconds"}
        if item["lag_seconds"]:  # growing while we look (the paused one)
            assert abs(float(shown[name]["lag_seconds"]) - item["lag_seconds"]) < 5
            del expected["lag"], cells["lag"]
        assert cells == expected, name
    page = site.client.get("/destinations/down").text
    attempts = site.api("/api/destinations/down/attempts")["items"]
    dead = site.api("/api/destinations/down/dead-letters")["items"]
    assert re.findall(r'data-attempt="(\d+)"', page) == [str(a["id"]) for a in attempts]
    assert len(attempts) == 9 and {a["status"] for a in attempts} == {503}
    assert re.findall(r'<tr data-event="([^"]+)"', page) == [d["event_id"] for d in dead]
    status = dict(
        re.findall(r'<tr data-field="(\w+)"><th>[^<]*</th><td[^>]*>(.*?)</td>', page, re.S)
    )
    assert _text(status["waiting"]) == "0" and _text(status["dead"]) == "3"
    assert _text(status["last_error"]).startswith("HTTP 503")
    assert 'id="retry-dead"' in page and 'id="pause"' in page
    held = site.client.get("/destinations/held").text
    assert 'id="resume"' in held and 'id="no-dead-letters"' in held and 'id="no-attempts"' in held


def test_actions_redirect_and_say_once_what_they_did(site: Dashboard, receiver: Receiver) -> None:
    """Pause, resume, retry the dead letters and replay a period: each a 303 back to the
    page, which tells the outcome once (in the reader's language), and each really done."""
    receiver.answer = lambda n, body: (500, {})
    destinations.add(site.store, "crm", receiver.url)
    site.sign_in()
    site.push({"callId": "a-1", "startTime": 1764000000000, "direction": 0})
    [letter] = until(lambda: site.api("/api/destinations/crm/dead-letters")["items"])

    posted = site.act("crm", "pause")
    assert posted.status_code == 303 and posted.headers["location"] == "/destinations/crm"
    assert "Paused: events wait" in site.client.get("/destinations/crm").text
    assert 'id="done"' not in site.client.get("/destinations/crm").text  # once
    assert site.api("/api/destinations/crm")["state"] == "paused"
    site.act("crm", "resume")
    shown = site.client.get("/destinations/crm", headers={"Accept-Language": "zh-CN"}).text
    assert "已恢复" in shown and "转发目标" in shown
    assert site.api("/api/destinations/crm")["state"] == "active"

    receiver.answer = lambda n, body: (200, {})
    assert site.act("crm", "retry").status_code == 303
    assert re.search(
        r"Dead letters queued again: <b>1</b>", site.client.get("/destinations/crm").text
    )
    [delivered] = receiver.wait_for(1)
    assert delivered.headers["webhook-id"] == letter["event_id"]
    until(lambda: site.api("/api/destinations/crm")["last_success_at"])

    today = time.strftime("%Y-%m-%d", time.gmtime())  # the events' day (the zone is UTC)
    assert site.act("crm", "replay", **{"from": today, "to": today}).status_code == 303
    page = site.client.get("/destinations/crm").text
    assert re.search(rf"Events queued again: <b>1</b> \({today} – {today}\)", page)
    assert receiver.wait_for(2)[-1].headers["webhook-id"] == letter["event_id"]
    site.act("crm", "replay", **{"from": "2020-01-01", "to": "2020-01-02"})
    assert "Events queued again: <b>0</b>" in site.client.get("/destinations/crm").text
    site.act("crm", "replay", filter="direction=outbound")
    assert "Events queued again: <b>0</b>" in site.client.get("/destinations/crm").text
    site.act("crm", "replay", filter="colour=red")
    refused = site.client.get("/destinations/crm").text
    assert "This filter is not understood:" in refused and "colour" in refused
    site.act("crm", "replay", **{"from": "2026-02-30"})
    assert "not days of the calendar" in site.client.get("/destinations/crm").text
    time.sleep(0.3)
    assert len(receiver.ok()) == 2  # the refused replays sent nothing


def test_stored_strings_are_shown_as_text(site: Dashboard, receiver: Receiver) -> None:
    """Call ids, a destination's answer, names, URLs, filters and reasons come from outside
    (or from whoever configured it): each payload is shown as text, never as markup."""
    receiver.answer = lambda n, body: (500, {})
    receiver.body = EVIL[1].encode() + b" " + EVIL[0].encode()
    name = '"><script>alert(1)'  # a name is one word: no spaces or slashes
    destinations.add(site.store, name, f"{receiver.url}?q=<script>alert(1)</script>")
    destinations.add(site.store, "held", receiver.url, call_filter=f"agent={EVIL[0]}")
    destinations.set_state(site.store, "held", "paused", EVIL[1])
    site.sign_in()
    for evil in EVIL:
        site.push({"callId": evil, "startTime": 1764000000000, "direction": 0})
    dead = f"/api/destinations/{name}/dead-letters"
    until(lambda: len(site.api(dead)["items"]) == 2)
    listing = site.client.get("/destinations").text
    detail = site.client.get(f"/destinations/{name}").text  # the client quotes the path
    held = site.client.get("/destinations/held").text
    for path, html, expected in (
        ("/destinations", listing, (name, EVIL[1], "<script>alert(1)</script>")),
        ("detail", detail, (name, *EVIL, "<script>alert(1)</script>")),
        ("held", held, EVIL),
    ):
        body = html.split("<main>")[1]
        assert "<script>alert" not in body and "<img src=x" not in body, path
        for text in expected:
            assert str(escape(text)) in body, (path, text)
    assert 'href="/destinations/%22%3E%3Cscript%3Ealert%281%29"' in listing
    assert 'href="/call?id=%3Cscript%3Ealert%281%29%3C%2Fscript%3E"' in detail
