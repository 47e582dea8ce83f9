"""The dashboard's server side, through the real app on SQLite and PostgreSQL (no browser).

The browser tests (test_dashboard.py) show what a person sees; these pin down what the server
promises: sign-in, sessions, CSRF, throttling, security headers, escaping, and that every
figure and list comes from the same functions as the API.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, quote, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlalchemy import select, update

from cdrhub.auth import users
from cdrhub.reports import stats
from cdrhub.settings import Settings
from cdrhub.store import Rejected, Store
from cdrhub.store.schema import dashboard_sessions
from cdrhub.web import charts, i18n, session_secret
from cdrhub.web.routes import call_url, duration, percent, safe_next
from cdrhub.web.throttle import ATTEMPTS_PER_ADDRESS, ATTEMPTS_PER_NAME
from tests.helpers import TOKEN, Api, Push, Server
from tests.helpers.calls import AWKWARD_IDS, call
from tests.helpers.figures import kpi_text

PASSWORD = "correct horse battery"
EVIL = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>')


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found[1]


SignIn = Callable[..., Any]


@pytest.fixture
def sign_in(client: TestClient, store: Store) -> SignIn:
    """Create a user (admin unless told) and sign the test client in as them."""

    def _sign_in(name: str = "ann", role: str = "admin") -> Any:
        if not any(u.name == name for u in users.all_users(store)):
            users.create(store, name, role, PASSWORD)  # type: ignore[arg-type]
        token = _csrf(client.get("/login").text)
        answer = client.post(
            "/login",
            data={"name": name, "password": PASSWORD, "csrf": token, "next": "/calls"},
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text
        return answer

    return _sign_in


def _now_ms(minutes_ago: float = 0) -> int:
    return int((time.time() - minutes_ago * 60) * 1000)


def _shown_call(html: str) -> tuple[str, str | None]:
    """The callId and agent name a call page shows."""
    found = re.search(r'<code id="call-id">(.*?)</code>', html, re.S)
    assert found, "not a call page"
    agent = re.search(r'data-field="agentName"><th>.*?</th><td>(.*?)</td>', html, re.S)
    return unescape(found[1]), unescape(agent[1]) if agent else None


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


class TestSignIn:
    def test_pages_redirect_to_sign_in_and_back(self, client: TestClient, store: Store) -> None:
        """Every page needs a session; after signing in the user lands where they were going."""
        for path in ("/", "/calls?direction=0", "/calls/x", "/quarantine"):
            answer = client.get(path, follow_redirects=False)
            assert answer.status_code == 303
            assert answer.headers["location"].startswith("/login?next=")
        users.create(store, "ann", "viewer", PASSWORD)
        login = client.get("/login?next=/calls%3Fdirection%3D0")
        assert 'name="next" value="/calls?direction=0"' in login.text
        answer = client.post(
            "/login",
            data={"name": "ann", "password": PASSWORD, "csrf": _csrf(login.text),
                  "next": "/calls?direction=0"},
            follow_redirects=False,
        )  # fmt: skip
        assert answer.status_code == 303
        assert answer.headers["location"] == "/calls?direction=0"
        assert client.get("/calls?direction=0").status_code == 200

    def test_session_cookie_is_signed_httponly_and_samesite(
        self, client: TestClient, sign_in: SignIn
    ) -> None:
        """The cookie cannot be read by scripts, is not sent cross-site, and is tamper-proof."""
        answer = sign_in()
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        value = client.cookies["cdrhub_session"]
        client.cookies.set("cdrhub_session", value[:-3] + ("AAA" if value[-3:] != "AAA" else "BBB"))
        assert client.get("/", follow_redirects=False).status_code == 303

    def test_forms_without_the_csrf_token_are_refused(
        self, client: TestClient, store: Store, sign_in: SignIn
    ) -> None:
        """Sign-in, sign-out and replay all need the session's token (a page shows why)."""
        users.create(store, "bob", "viewer", PASSWORD)
        client.get("/login")
        refused = client.post("/login", data={"name": "bob", "password": PASSWORD})
        assert refused.status_code == 403 and "reload the page" in refused.text
        sign_in()
        assert client.post("/logout", data={"csrf": "forged"}).status_code == 403
        assert client.post("/quarantine/replay", data={"csrf": "forged"}).status_code == 403
        assert client.get("/", follow_redirects=False).status_code == 200  # still signed in

    def test_sign_out_ends_the_session(self, client: TestClient, sign_in: SignIn) -> None:
        """After signing out, the same cookie jar is sent to the sign-in page again."""
        sign_in()
        token = _csrf(client.get("/").text)
        assert (
            client.post("/logout", data={"csrf": token}, follow_redirects=False).status_code == 303
        )
        assert client.get("/", follow_redirects=False).status_code == 303

    def test_a_cookie_saved_before_sign_out_opens_nothing(
        self, client: TestClient, sign_in: SignIn
    ) -> None:
        """The session lives on the server: a copy of the cookie taken while signed in (a
        shared computer, a stolen backup) is dead once its owner signs out."""
        sign_in()
        saved = client.cookies["cdrhub_session"]
        token = _csrf(client.get("/").text)
        client.post("/logout", data={"csrf": token}, follow_redirects=False)
        client.cookies.clear()
        client.cookies.set("cdrhub_session", saved)
        assert client.get("/", follow_redirects=False).status_code == 303

    def test_a_session_lasts_twelve_hours_from_sign_in_however_busy(
        self, client: TestClient, store: Store, sign_in: SignIn
    ) -> None:
        """Requests do not stretch a session (a wall screen polling all day signs in again
        after 12 hours): the server keeps its end, counted from the sign-in."""
        sign_in()
        with store.read_engine.connect() as conn:
            row = conn.execute(select(dashboard_sessions)).mappings().one()
        assert (
            row["expires_at"] - row["created_at"] == users.SESSION_LIFETIME == timedelta(hours=12)
        )
        for _ in range(3):
            assert client.get("/", follow_redirects=False).status_code == 200
        with store.read_engine.connect() as conn:
            assert (
                conn.execute(select(dashboard_sessions.c.expires_at)).scalar_one()
                == row["expires_at"]
            )
        with store.writing() as conn:  # twelve hours later
            conn.execute(
                update(dashboard_sessions).values(
                    expires_at=datetime.now(UTC) - timedelta(seconds=1)
                )
            )
        assert client.get("/", follow_redirects=False).status_code == 303

    def test_wrong_passwords_are_slowed_per_user_and_per_address(
        self, client: TestClient, store: Store
    ) -> None:
        """After repeated failures even the right password waits: guessing cannot continue."""
        users.create(store, "ann", "admin", PASSWORD)
        token = _csrf(client.get("/login").text)

        def attempt(name: str, password: str) -> Any:
            return client.post("/login", data={"name": name, "password": password, "csrf": token})

        statuses = [attempt("ann", "wrong").status_code for _ in range(ATTEMPTS_PER_NAME + 1)]
        assert statuses == [401] * ATTEMPTS_PER_NAME + [429]
        blocked = attempt("ann", PASSWORD)
        assert blocked.status_code == 429 and 1 <= int(blocked.headers["retry-after"]) <= 60
        assert "Too many attempts" in blocked.text
        # Spraying many names from one address hits the address's own limit.
        for i in range(ATTEMPTS_PER_ADDRESS):
            attempt(f"nobody{i}", "wrong")
        assert attempt("someone-else", "wrong").status_code == 429

    def test_every_spelling_of_a_name_shares_one_count(
        self, client: TestClient, store: Store
    ) -> None:
        """Sign-in strips the name it is given, so " ann", "ann " and "\tann" are all ann's
        account: they share ann's five tries, and after them even "ann" with the right
        password waits. Case variants (other accounts, sign-in being case-sensitive) count
        with them too: no spelling gets guesses of its own."""
        users.create(store, "ann", "admin", PASSWORD)
        token = _csrf(client.get("/login").text)

        def attempt(name: str, password: str) -> int:
            form = {"name": name, "password": password, "csrf": token}
            return client.post("/login", data=form, follow_redirects=False).status_code

        assert attempt(" ann", PASSWORD) == 303  # the same account as "ann"...
        client.cookies.clear()
        token = _csrf(client.get("/login").text)
        spellings = [" ann", "ann ", "\tann", "ann\n", "\u3000ann", "ANN", "Ann "]
        statuses = [attempt(name, "wrong password") for name in spellings]
        assert statuses == [401] * ATTEMPTS_PER_NAME + [429] * (len(spellings) - ATTEMPTS_PER_NAME)
        assert attempt("ann", PASSWORD) == 429  # ...so its tries are theirs too

    def test_a_name_the_database_cannot_hold_is_a_wrong_name(
        self, client: TestClient, store: Store
    ) -> None:
        """A NUL in the name (PostgreSQL text cannot hold one) is 401 like any unknown name,
        counted by the brake, not a 500; and no account can be created with one."""
        users.create(store, "ann", "admin", PASSWORD)
        token = _csrf(client.get("/login").text)
        for name in ("ann\x00", "\x00", "\x00ann"):
            form = {"name": name, "password": PASSWORD, "csrf": token}
            assert client.post("/login", data=form).status_code == 401, repr(name)
        with pytest.raises(users.UserError, match="NUL"):
            users.create(store, "bob\x00", "viewer", PASSWORD)

    def test_a_right_password_starts_the_name_afresh(
        self, client: TestClient, store: Store
    ) -> None:
        """Mistyping a few times and then signing in does not leave the account half-braked."""
        users.create(store, "ann", "admin", PASSWORD)
        token = _csrf(client.get("/login").text)
        form = {"name": "ann", "csrf": token}
        for _ in range(ATTEMPTS_PER_NAME - 1):
            assert client.post("/login", data={**form, "password": "wrong"}).status_code == 401
        signed = client.post("/login", data={**form, "password": PASSWORD}, follow_redirects=False)
        assert signed.status_code == 303
        client.cookies.clear()
        token = _csrf(client.get("/login").text)
        for _ in range(ATTEMPTS_PER_NAME):
            wrong = {"name": "ann", "csrf": token, "password": "wrong"}
            assert client.post("/login", data=wrong).status_code == 401

    def test_a_deleted_user_or_a_new_password_ends_sessions(
        self, client: TestClient, store: Store, sign_in: SignIn
    ) -> None:
        """Sessions are checked against the account on every request."""
        sign_in("vic", "viewer")
        assert client.get("/", follow_redirects=False).status_code == 200
        users.set_password(store, "vic", "a brand new password")
        assert client.get("/", follow_redirects=False).status_code == 303
        sign_in("ann")
        users.remove(store, "ann")
        assert client.get("/", follow_redirects=False).status_code == 303

    @pytest.mark.parametrize(
        ("target", "expected"),
        [
            ("/calls?direction=0", "/calls?direction=0"),
            ("//evil.example", "/"),
            ("/\\evil.example", "/"),
            ("https://evil.example/", "/"),
            ("/ok\r\nSet-Cookie: x=1", "/"),
            ("javascript:alert(1)", "/"),
        ],
    )
    def test_redirects_stay_on_this_site(self, target: str, expected: str) -> None:
        """``next`` is only ever a path here: no open redirect, no header injection."""
        assert safe_next(target) == expected

    def test_api_keys_still_open_the_api_and_sessions_do_not(
        self, client: TestClient, sign_in: SignIn, api: Api
    ) -> None:
        """The dashboard's session is not an API credential; API keys work as before."""
        sign_in()
        assert client.get("/api/calls").status_code == 401
        assert api("/api/calls").status_code == 200


class TestSignInOnARealServer:
    """The brake and the sessions where they can break: many requests at once, several
    server processes, a reverse proxy in front."""

    @staticmethod
    def _form(server: Server) -> tuple[dict[str, str], str]:
        login = httpx.get(server.url + "/login")
        return dict(login.cookies), _csrf(login.text)

    def test_guesses_sent_at_once_are_counted_before_any_is_checked(
        self, serve: Callable[..., Server], store: Store
    ) -> None:
        """40 wrong passwords in parallel: exactly the first 5 reach the password check."""
        users.create(store, "vic", "viewer", PASSWORD)
        server = serve()
        jar, token = self._form(server)

        async def burst() -> list[int]:
            async with httpx.AsyncClient(base_url=server.url, cookies=jar, timeout=60) as c:
                sent = [
                    c.post("/login", data={"name": "vic", "password": f"no{i}", "csrf": token})
                    for i in range(40)
                ]
                return [
                    "busy" if "Too many sign-ins at once" in r.text else r.status_code
                    for r in await asyncio.gather(*sent)
                ]

        statuses = asyncio.run(burst())
        # Exactly the first five were let through to argon2. On a loaded machine one of them
        # may find the CHECKS_AT_ONCE slots still taken after CHECK_WAIT_SECONDS and be told
        # "too many sign-ins at once" (a 429 of its own): let through all the same.
        assert statuses.count(401) + statuses.count("busy") == ATTEMPTS_PER_NAME
        assert statuses.count(401) >= 1
        assert statuses.count(429) == 40 - ATTEMPTS_PER_NAME

    def test_workers_share_the_counts_and_the_sessions(
        self, serve: Callable[..., Server], store: Store
    ) -> None:
        """With three processes, a guesser still gets five tries, not five per process; and
        a session signed out on one process is over on all of them."""
        users.create(store, "vic", "viewer", PASSWORD)
        users.create(store, "ann", "viewer", PASSWORD)
        server = serve(CDRHUB_WORKERS="3")
        jar, token = self._form(server)
        statuses = [  # a new connection each time, so the requests spread over the workers
            httpx.post(
                server.url + "/login",
                data={"name": "vic", "password": f"no{i}", "csrf": token},
                cookies=jar,
            ).status_code
            for i in range(15)
        ]
        assert statuses == [401] * ATTEMPTS_PER_NAME + [429] * (15 - ATTEMPTS_PER_NAME)
        signed = httpx.post(
            server.url + "/login",
            data={"name": "ann", "password": PASSWORD, "csrf": token},
            cookies=jar,
        )
        assert signed.status_code == 303
        session = {**jar, **dict(signed.cookies)}
        page = httpx.get(server.url + "/", cookies=session)
        assert page.status_code == 200
        out = httpx.post(server.url + "/logout", data={"csrf": _csrf(page.text)}, cookies=session)
        assert out.status_code == 303
        for _ in range(6):
            assert httpx.get(server.url + "/", cookies=session).status_code == 303

    def test_behind_a_trusted_proxy_a_guesser_brakes_only_their_own_address(
        self, serve: Callable[..., Server], store: Store
    ) -> None:
        """Every request comes from the proxy; X-Forwarded-For says who sent it, and one
        person spraying names does not lock out the rest of the office."""
        users.create(store, "ann", "viewer", PASSWORD)
        server = serve(CDRHUB_TRUSTED_PROXIES="127.0.0.1/32")
        jar, token = self._form(server)

        def attempt(name: str, password: str, sender: str) -> int:
            return httpx.post(
                server.url + "/login",
                data={"name": name, "password": password, "csrf": token},
                cookies=jar,
                headers={"X-Forwarded-For": sender},
            ).status_code

        sprayed = [attempt(f"guess{i}", "wrong", "203.0.113.9") for i in range(25)]
        assert sprayed == [401] * ATTEMPTS_PER_ADDRESS + [429] * (25 - ATTEMPTS_PER_ADDRESS)
        assert attempt("ann", PASSWORD, "203.0.113.9") == 429
        assert attempt("ann", PASSWORD, "198.51.100.7") == 303

    @pytest.mark.parametrize("trusted", [False, True], ids=["no-proxy", "trusted-proxy"])
    def test_a_forged_forwarded_for_does_not_escape_the_brake(
        self, serve: Callable[..., Server], store: Store, trusted: bool
    ) -> None:
        """A guesser who writes a new X-Forwarded-For each time is still one address: the
        peer without trusted proxies, or the entry our proxy appended (the right-most) with
        one. So the right password from a "new" address is still braked."""
        users.create(store, "ann", "viewer", PASSWORD)
        server = serve(**({"CDRHUB_TRUSTED_PROXIES": "127.0.0.1/32"} if trusted else {}))
        jar, token = self._form(server)
        real = ", 203.0.113.9" if trusted else ""

        def attempt(name: str, password: str, forged: str) -> int:
            return httpx.post(
                server.url + "/login",
                data={"name": name, "password": password, "csrf": token},
                cookies=jar,
                headers={"X-Forwarded-For": forged + real},
            ).status_code

        sprayed = [attempt(f"guess{i}", "wrong", f"10.0.{i}.1") for i in range(25)]
        assert sprayed == [401] * ATTEMPTS_PER_ADDRESS + [429] * (25 - ATTEMPTS_PER_ADDRESS)
        assert attempt("ann", PASSWORD, "10.99.99.99") == 429


class TestHeaders:
    def test_pages_forbid_inline_scripts_and_framing(self, client: TestClient) -> None:
        """Every dashboard response carries a CSP without 'unsafe-inline' for scripts."""
        answer = client.get("/login")
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "object-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "same-origin"
        assert answer.headers["server-timing"].startswith("app;dur=")
        assert "<script>" not in answer.text and "onclick" not in answer.text
        assert client.get("/static/app.js").headers["content-security-policy"] == csp

    def test_the_api_browser_is_served_from_the_package(self, client: TestClient) -> None:
        """/docs is Swagger UI from static/swagger-ui, under the strict policy, nothing from
        elsewhere (the browser test renders it with every outside request blocked)."""
        docs = client.get("/docs")
        assert (
            docs.status_code == 200
            and "script-src 'self'" in docs.headers["content-security-policy"]
        )
        assert "http" not in docs.text and "<script>" not in docs.text
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "init.js", "LICENSE"):
            assert client.get(f"/static/swagger-ui/{asset}").status_code == 200, asset
        assert 'data-url="/openapi.json"' in docs.text
        assert "server-timing" not in client.get("/healthz").headers

    def test_favicon(self, client: TestClient) -> None:
        """Browsers ask every site for /favicon.ico: an icon, not a 404 in every page's log."""
        icon = client.get("/favicon.ico")
        assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
        assert icon.content[:4] == b"\x00\x00\x01\x00"  # the ICO header
        assert client.get("/static/favicon.svg").status_code == 200
        assert '<link rel="icon" href="/static/favicon.svg"' in client.get("/login").text

    def test_login_hint_shows_the_command_as_code(self, client: TestClient) -> None:
        """The hint's command is code, in both languages, never literal backticks."""
        for lang in ("en", "zh-CN"):
            page = client.get("/login", headers={"accept-language": lang}).text
            assert "<code>cdrhub user create</code>" in page and "`" not in page, lang


def _seed(push: Push) -> dict[str, Any]:
    """A few calls today (UTC, the test settings' zone), of each direction, and two hostile."""
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    base = max(_now_ms(90), int(midnight.timestamp() * 1000) + 60_000)
    bodies = [
        call("in-1", _utc(base), direction=0, answered=True, in_queue=2, out_queue=12,
             answer=14, end=74, agentName="ann@example.com", agentNickName="Ann Li",
             caller="8613800000001",
             callee="1001@10.0.0.1:5060", hangupReason="NORMAL_CLEARING", totalCustomerPrice=0.5,
             recordUrl="https://rec.example.com/in-1.mp3"),
        call("in-2", _utc(base + 60_000), direction=0, answered=False, in_queue=2, end=40,
             caller="8613800000002", hangupReason="ORIGINATOR_CANCEL"),
        call("out-1", _utc(base + 120_000), direction=1, answered=True, answer=5, end=65,
             agentName="bob@example.com", agentNickName="Bob Wang", caller="1001",
             callee="8613800000001",
             hangupReason="NORMAL_CLEARING", totalCustomerPrice=0.3),
        call("ai-1", _utc(base + 180_000), direction=2, answered=True, answer=3, end=33,
             taskId="T1", intent="转人工-成功", hangupReason="NORMAL_CLEARING"),
        # Each hostile text in every free-text field a page shows (the two payloads).
        *(call(call_id, _utc(base + 240_000 + n * 1000), direction=2, answered=True, answer=3,
               end=9, agentName=evil, agentNickName=evil, hangupReason=evil, intent=evil,
               taskId=evil, recordUrl="javascript:alert(1)")
          for n, (call_id, evil) in enumerate(zip(("evil/1", "evil-2"), EVIL, strict=True))),
    ]  # fmt: skip
    for body in bodies:
        assert push(body).status_code == 200
    return {b["callId"]: b for b in bodies}


def _today() -> tuple[datetime, datetime]:
    """Today in the test settings' zone (UTC), worked out here, not read from the page."""
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def _stats(api: Api, start: datetime, end: datetime, direction: str, by: str = "") -> Any:
    params = {"from": start.isoformat(), "to": end.isoformat(), "direction": direction or None}
    return api("/api/stats", group_by=by or None, **params).json()["groups"]


def _visible_kpis(html: str) -> dict[str, str]:
    """Each KPI card's big figure, as a person reads it."""
    found = re.findall(r'data-metric="(\w+)"[^>]*><span>[^<]*</span><b>([^<]*)</b>', html)
    return {metric: unescape(text) for metric, text in found}


def _chart(html: str, chart: str) -> list[dict[str, Any]]:
    """The buckets of the volume or service chart, read from the JSON data island that
    charts.js draws: key, each series' value (counts; the service level 0..1) and whether the
    bucket is a gap. The page's "Figures" table must say the same, bucket for bucket."""
    section = html.split(f'id="{chart}"', 1)[1].split("</figure>", 1)[0]
    island = re.search(r'<script type="application/json" id="[^"]+">(.*?)</script>', section, re.S)
    assert island, f"no data island in #{chart}"
    spec = json.loads(island[1])
    names = ["answered", "unanswered", "abandoned"] if chart == "volume" else ["service"]
    assert len(spec["series"]) == len(names)
    table = re.findall(r'<tr data-key="([^"]+)">(.*?)</tr>', section, re.S)
    assert [unescape(key) for key, _ in table] == spec["keys"]
    out = []
    for i, key in enumerate(spec["keys"]):
        values = {n: spec["series"][j]["values"][i] for j, n in enumerate(names)}
        cells = [unescape(c) for c in re.findall(r"<td>(.*?)</td>", table[i][1], re.S)][1:]
        if chart == "volume":
            assert cells == [str(sum(values.values()))] + [str(values[n]) for n in names], key
        else:
            assert cells == [percent(values["service"])], key
        out.append({"key": key, "gap": values.get("service", 0) is None, "values": values})
    return out


def _hbars(html: str, list_id: str) -> list[tuple[str, int]]:
    """A horizontal bar list (hangup reasons, AICC tasks, intents): the full label (its
    title; the visible text may be shortened or translated) and count."""
    section = html.split(f'id="{list_id}"', 1)[1].split("</ul>", 1)[0]
    found = re.findall(r'<span class="name" title="([^"]*)">.*?<b>(\d+)</b>', section, re.S)
    return [(unescape(name), int(count)) for name, count in found]


def _counted(groups: list[dict[str, Any]], key: str) -> list[tuple[str, int]]:
    """What a bar list must show for API groups: calls per value, most first, at most 12."""
    items = [(g["key"][key] or "–", g["calls"]) for g in groups]
    return sorted(items, key=lambda item: -item[1])[:12]


def _hours(start: datetime) -> list[str]:
    return [f"{start + timedelta(hours=h):%Y-%m-%dT%H:00}+00:00" for h in range(24)]


class TestPages:
    @pytest.mark.parametrize("direction", ["", "0", "2"])
    def test_overview_figures_equal_the_api(
        self, client: TestClient, push: Push, sign_in: SignIn, api: Api, direction: str
    ) -> None:
        """The KPI cards show, as printed, /api/stats for today (worked out by the test, not
        taken from the page) and the chosen direction."""
        _seed(push)
        sign_in()
        start, end = _today()
        html = client.get(f"/?range=today&direction={direction}").text
        expected = _stats(api, start, end, direction)[0]
        assert expected["calls"] == {"": 6, "0": 2, "2": 3}[direction]
        assert _visible_kpis(html) == kpi_text(expected)
        assert f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC" in html
        found = re.search(r'data-api="/api/stats\?([^"]+)"', html)
        assert found
        own = dict(parse_qsl(unescape(found[1])))
        assert own["from"] == start.isoformat() and own["to"] == end.isoformat()
        assert ('id="aicc"' in html) == (direction in ("", "2"))

    @pytest.mark.parametrize("direction", ["", "0", "2"])
    def test_overview_charts_and_lists_equal_the_api(
        self, client: TestClient, push: Push, sign_in: SignIn, api: Api, direction: str
    ) -> None:
        """Every hour's bar, the service level line, hangup reasons, top agents and the AICC
        lists are /api/stats grouped the same way, count for count."""
        _seed(push)
        sign_in()
        start, end = _today()
        html = client.get(f"/?range=today&direction={direction}").text
        hourly = {g["key"]["hour"]: g for g in _stats(api, start, end, direction, "hour")}
        volume = _chart(html, "volume")
        assert [bar["key"] for bar in volume] == _hours(start)
        for bar in volume:
            g = hourly.get(bar["key"], {"calls": 0, "answered": 0, "abandoned": 0})
            unanswered = g["calls"] - g["answered"] - g["abandoned"]
            assert bar["values"] == {
                "answered": g["answered"],
                "unanswered": unanswered,
                "abandoned": g["abandoned"],
            }, bar["key"]
        service = _chart(html, "service")
        assert [bar["key"] for bar in service] == _hours(start)
        for bar in service:
            level = hourly.get(bar["key"], {"service_level": None})["service_level"]
            assert bar["gap"] == (level is None), bar
            if level is not None:
                assert bar["values"]["service"] == pytest.approx(level)
        reasons = _stats(api, start, end, direction, "hangup_reason")
        assert _hbars(html, "reasons") == _counted(reasons, "hangup_reason")
        agents = [g for g in _stats(api, start, end, direction, "agent") if g["key"]["agent"]]
        agents.sort(key=lambda g: (-g["answered"], -g["calls"]))
        rows = re.findall(
            r'<tr><td class="name"><a [^>]*>(.*?)</a></td><td>(\d+)</td><td>(\d+)</td>'
            r"<td>([^<]*)</td>",
            html.split('id="agents"', 1)[1].split("</table>", 1)[0],
        )
        assert [(unescape(a), int(c), int(n), t) for a, c, n, t in rows] == [
            (g["key"]["agent"], g["calls"], g["answered"], duration(g["avg_talk_seconds"]))
            for g in agents[:10]
        ]
        if direction in ("", "2"):
            for name, list_id in (("task_id", "aicc-tasks"), ("intent", "aicc-intents")):
                aicc = _stats(api, start, end, "2", name)
                assert _hbars(html, list_id) == _counted(aicc, name), name

    def test_charts_are_time_axes(self, client: TestClient, push: Push, sign_in: SignIn) -> None:
        """Calls at 01:30 and 15:00 are bars fourteen hours apart, every hour between them an
        empty bar; an hour without a queued call has no service level, drawn as a gap."""
        start, _ = _today()
        push(
            call(
                "early",
                _utc(int((start + timedelta(hours=1, minutes=30)).timestamp() * 1000)),
                direction=0,
                in_queue=1,
                out_queue=3,
                answer=3,
                answered=True,
                end=60,
            )
        )
        push(call("late", _utc(int((start + timedelta(hours=15)).timestamp() * 1000)),
                  direction=1, answered=False, end=20))  # fmt: skip
        sign_in()
        html = client.get("/?range=today").text
        volume = {bar["key"]: bar for bar in _chart(html, "volume")}
        service = {bar["key"]: bar for bar in _chart(html, "service")}
        hours = _hours(start)
        assert list(volume) == list(service) == hours
        calls = [sum(volume[h]["values"].values()) for h in hours]
        assert calls == [0, 1] + [0] * 13 + [1] + [0] * 8
        assert service[hours[1]]["values"] == {"service": 1.0}
        assert all(service[h]["gap"] for h in hours if h != hours[1])
        assert service[hours[15]]["gap"]  # calls, but none queued

    def test_calls_filters_number_search_and_inclusive_dates(
        self, client: TestClient, push: Push, sign_in: SignIn
    ) -> None:
        """The number box finds a customer as caller (inbound) or callee (outbound); a `to`
        date is the last day shown, included."""
        bodies = _seed(push)
        sign_in()
        found = client.get("/calls?number=86138000000 01").text
        assert 'data-id="in-1"' in found and 'data-id="out-1"' in found
        assert 'data-id="in-2"' not in found
        today = datetime.fromtimestamp(bodies["out-1"]["startTime"] / 1000, UTC).date().isoformat()
        same_day = client.get(f"/calls?from={today}&to={today}&direction=1").text
        assert re.findall(r'data-id="([^"]+)"', same_day) == ["out-1"]
        bad = client.get("/calls?from=tomorrow")
        assert bad.status_code == 422 and "From = <code>tomorrow</code>" in bad.text
        chinese = client.get("/calls?from=tomorrow", headers={"Accept-Language": "zh-CN"}).text
        assert "无法识别的筛选条件：" in chinese and "开始 = <code>tomorrow</code>" in chinese

    @pytest.mark.parametrize(
        ("typed", "expected"),
        [
            ("+8613800000001", {"in-1", "out-1"}),  # with the +
            ("13800000001", {"in-1", "out-1"}),  # without the country code
            ("+86 138-0000-0001", {"in-1", "out-1"}),  # as people write it
            ("0000000", {"in-1", "out-1", "in-2"}),  # any part
            ("1001@10.0.0.1", {"in-1"}),  # a SIP URI, as typed
        ],
    )
    def test_number_search_finds_what_supervisors_type(
        self, client: TestClient, push: Push, sign_in: SignIn, typed: str, expected: set[str]
    ) -> None:
        """Stored numbers are NXCC's digits (8613800000001); people type +86, spaces, dashes,
        or the national number alone."""
        _seed(push)
        sign_in()
        html = client.get("/calls", params={"number": typed}).text
        assert set(re.findall(r'data-id="([^"]+)"', html)) == expected

    @pytest.mark.parametrize(
        ("typed", "expected"),
        [
            ("Ann Li", {"in-1"}),
            ("ann", {"in-1"}),
            ("WANG", {"out-1"}),
            ("bob@example.com", {"out-1"}),
        ],
    )
    def test_agent_search_matches_the_name_shown(
        self, client: TestClient, push: Push, sign_in: SignIn, typed: str, expected: set[str]
    ) -> None:
        """The table shows the nickname first, so the agent box finds nicknames as well as
        accounts, by any part, in any case; the export link keeps the same selection."""
        _seed(push)
        sign_in()
        html = client.get("/calls", params={"agent": typed}).text
        assert set(re.findall(r'data-id="([^"]+)"', html)) == expected
        href = re.search(r'href="(/calls/export\?[^"]+)"', html)
        assert href
        exported = client.get(unescape(href[1])).content.decode("utf-8-sig")
        assert {row[0] for row in list(csv.reader(io.StringIO(exported)))[1:]} == expected

    def test_export_link_gives_the_selection_as_the_api_does(
        self, client: TestClient, push: Push, sign_in: SignIn, api: Api
    ) -> None:
        """The page's CSV is byte for byte the API's export of the same selection."""
        _seed(push)
        sign_in()
        page = client.get("/calls?direction=0&answered=true").text
        href = re.search(r'href="(/calls/export\?[^"]+)"', page)
        assert href
        mine = client.get(href[1].replace("&amp;", "&"))
        theirs = api("/api/export", direction="0", answered="true", format="csv")
        rows = list(csv.reader(io.StringIO(mine.content.decode("utf-8-sig"))))
        assert [r[0] for r in rows[1:]] == ["in-1"]
        assert mine.content == theirs.content

    def test_paging_follows_the_api_cursor(
        self, client: TestClient, push: Push, sign_in: SignIn
    ) -> None:
        """60 calls: a full first page, then the rest, none twice, and "newest calls" leads
        back to the first page (not to the same one)."""
        start = _now_ms(200)
        for i in range(60):
            push(call(f"p-{i:02d}", _utc(start + i * 1000), direction=1))
        sign_in()
        first = client.get("/calls?direction=1").text
        ids = re.findall(r'data-id="([^"]+)"', first)
        assert len(ids) == 50 and ids[0] == "p-59"
        nxt = re.search(r'href="([^"]+)" id="next-page"', first)
        assert nxt
        second = client.get(unescape(nxt[1])).text
        rest = re.findall(r'data-id="([^"]+)"', second)
        assert len(rest) == 10 and not set(rest) & set(ids)
        assert 'id="next-page"' not in second
        assert 'data-rows=""' in second  # live rows only on the newest page
        back = re.search(r'href="([^"]+)" id="first-page"', second)
        assert back and "cursor" not in back[1] and "direction=1" in back[1]
        again = client.get(unescape(back[1])).text
        assert re.findall(r'data-id="([^"]+)"', again) == ids
        export = re.search(r'href="(/calls/export\?[^"]+)"', second)
        assert export and "cursor" not in export[1]

    def test_live_rows_bring_late_calls_and_respect_the_filters(
        self, client: TestClient, push: Push, sign_in: SignIn
    ) -> None:
        """NXCC pushes a call when it ends: a long call arriving now started before the calls
        already shown, and still appears; other directions do not."""
        _seed(push)
        sign_in()
        page = client.get("/calls?direction=0").text
        after = re.search(r'data-after="(\d+)"', page)
        assert after
        time.sleep(0.01)
        push(call("late-1", _utc(_now_ms(120)), direction=0, end=7000))
        push(call("late-2", _utc(_now_ms(1)), direction=1))
        rows = client.get(f"/calls/rows?direction=0&after={after[1]}")
        ids = re.findall(r'data-id="([^"]+)"', rows.text)
        # Newest arrival first; the rest are the overlap the page already shows and drops.
        assert ids[0] == "late-1" and "late-2" not in ids
        assert set(ids[1:]) <= set(re.findall(r'data-id="([^"]+)"', page))
        later = int(rows.headers["x-cdrhub-after"]) + 6000  # past the overlap window
        assert "data-id" not in client.get(f"/calls/rows?direction=0&after={later}").text

    def test_call_detail_in_plain_words(
        self, client: TestClient, push: Push, sign_in: SignIn
    ) -> None:
        """Direction, hangup side and hangup code spelled out, times local, a player for the
        recording, every raw version with its deliveries."""
        bodies = _seed(push)
        corrected = {**bodies["in-1"], "hangupBy": 1, "hangupCode": 16}
        push(bodies["in-1"])  # a retry
        push(corrected)  # a correction
        sign_in()
        html = client.get("/calls/in-1").text
        assert re.search(r'data-field="direction".*?inbound <small>\(0\)</small>', html, re.S)
        assert re.search(r'data-field="hangupBy".*?user <small>\(1\)</small>', html, re.S)
        assert re.search(
            r'data-field="hangupCode".*?normal call clearing <small>\(16, Q.850\)</small>',
            html,
            re.S,
        )
        assert 'id="recording"' in html and 'src="https://rec.example.com/in-1.mp3"' in html
        assert 'id="voicemail"' not in html
        assert "Raw payload versions</h2>" not in html and "Raw payload versions (2)" in html
        assert '<span id="deliveries">3</span>' in html
        for label in ("Start", "Queue in", "Queue out", "Answer", "End"):
            assert f"<tr><th>{label}</th><td>" in html  # the timeline, one row per moment
        chinese = client.get("/calls/in-1", headers={"Accept-Language": "zh-CN"}).text
        assert "正常挂机 <small>(16, Q.850)</small>" in chinese
        missing = client.get("/calls/nope")
        assert missing.status_code == 404 and "No call with this id." in missing.text

    def test_every_call_id_opens_from_the_calls_page_links(
        self, client: TestClient, push: Push, sign_in: SignIn
    ) -> None:
        """Each row's link on the calls page and in its live rows opens that row's call,
        whatever its id holds: route names, dot segments, ``/``, ``?``, ``#``, ``%``,
        spaces, newlines, Chinese text."""
        now = _now_ms(5)
        for n, call_id in enumerate(AWKWARD_IDS):
            body = {"callId": call_id, "startTime": now + n, "agentName": f"agent-{n}"}
            assert push(body).json()["result"] == "created", repr(call_id)
        sign_in()
        for listing in ("/calls", "/calls/rows?after=0"):
            html = client.get(listing).text
            rows = re.findall(r'<tr data-id="([^"]*)">\s*<td><a href="([^"]+)"', html)
            links = {unescape(i): unescape(href) for i, href in rows}
            assert set(links) == set(AWKWARD_IDS), listing
            for n, call_id in enumerate(AWKWARD_IDS):
                page = client.get(links[call_id])
                assert page.status_code == 200, (listing, call_id, links[call_id])
                assert _shown_call(page.text) == (call_id, f"agent-{n}"), links[call_id]

    def test_old_call_addresses_keep_working(
        self, serve: Callable[..., Server], push: Push, store: Store
    ) -> None:
        """``/calls/<id>`` (percent-encoded, as before) still opens the call, trailing
        newline, ``%`` and slashes included; only ids equal to a page of their own (``rows``,
        ``export``) need the ``/call?id=`` form the links use. On a real server: the test
        client decodes a path twice, which would hide how ``%25`` arrives."""
        now = _now_ms(5)
        for n, call_id in enumerate(AWKWARD_IDS):
            push({"callId": call_id, "startTime": now + n, "agentName": f"agent-{n}"})
        users.create(store, "ann", "viewer", PASSWORD)
        server = serve()
        with httpx.Client(base_url=server.url, follow_redirects=True) as browser:
            login = browser.get("/login").text
            signed = browser.post(
                "/login", data={"name": "ann", "password": PASSWORD, "csrf": _csrf(login)}
            )
            assert signed.status_code == 200
            for n, call_id in enumerate(AWKWARD_IDS):
                if call_id in ("rows", "export"):
                    continue
                path = "/calls/" + quote(call_id, safe="").replace(".", "%2E")
                page = browser.get(path)
                assert page.status_code == 200, (call_id, path)
                assert _shown_call(page.text) == (call_id, f"agent-{n}"), path
                assert _shown_call(browser.get(call_url(call_id)).text)[0] == call_id

    def test_sign_in_and_language_switch_return_to_the_same_call(
        self, client: TestClient, push: Push, store: Store, sign_in: SignIn
    ) -> None:
        """The address a signed-out reader is sent back to, and the one the language switch
        returns to, are the address asked for, still encoded: ``/calls/q%3Fx%3D1`` must not
        come back as ``/calls/q?x=1`` (the call ``q``)."""
        for n, call_id in enumerate(("q", "q?x=1", "amp&id=x", "amp")):
            push({"callId": call_id, "startTime": _now_ms(5), "agentName": f"agent-{n}"})
        sign_in()
        for path, call_id in (("/calls/q%3Fx%3D1", "q?x=1"), ("/call?id=amp%26id%3Dx", "amp&id=x")):
            html = client.get(path).text
            switch = re.search(r'href="(/lang/zh-CN\?[^"]+)"', html)
            assert switch, path
            target = parse_qs(urlsplit(unescape(switch[1])).query)["next"][0]
            assert target == path
            back = client.get(unescape(switch[1]), follow_redirects=False)
            assert back.headers["location"] == path
            assert _shown_call(client.get(back.headers["location"]).text)[0] == call_id
        client.post("/logout", data={"csrf": _csrf(client.get("/calls").text)})
        for path, call_id in (("/calls/q%3Fx%3D1", "q?x=1"), ("/call?id=amp%26id%3Dx", "amp&id=x")):
            answer = client.get(path, follow_redirects=False)
            target = parse_qs(urlsplit(answer.headers["location"]).query)["next"][0]
            assert target == path
            login = client.get(answer.headers["location"]).text
            signed = client.post(
                "/login",
                data={"name": "ann", "password": PASSWORD, "csrf": _csrf(login), "next": target},
                follow_redirects=False,
            )
            assert signed.headers["location"] == path
            assert _shown_call(client.get(path).text)[0] == call_id
            client.post("/logout", data={"csrf": _csrf(client.get("/calls").text)})

    def test_a_replayed_call_links_to_its_own_call(
        self, client: TestClient, store: Store, sign_in: SignIn
    ) -> None:
        """The replay outcome links to the stored call, by its whole id: a long id is never
        cut into a link to some other call."""
        long_id = "x/" + "9" * 100
        for call_id in ("a/../b", long_id):
            body = json.dumps({"callId": call_id, "agentName": "replayed"}).encode()
            store.quarantine(Rejected(body=body, status=422, reason="invalid_record", detail={}))
        sign_in()
        page = client.get("/quarantine").text
        replayed = client.post("/quarantine/replay", data={"csrf": _csrf(page)}).text
        shown = replayed.split("<ul>")[1].split("</ul>")[0]
        hrefs = [unescape(h) for h in re.findall(r'href="([^"]+)"', shown)]
        opened = [_shown_call(client.get(h).text)[0] for h in hrefs]
        assert opened == ["a/../b"]  # the long id is named, not linked by a piece of it
        assert "x/999" in shown

    def test_a_voicemail_gets_its_own_player(
        self, client: TestClient, push: Push, sign_in: SignIn
    ) -> None:
        """An unanswered call that left a message: the voicemail player plays leaveMsgUrl;
        an unknown hangup code is shown as the number alone."""
        url = "https://rec.example.com/vm-1.wav?sig=a&x=1"
        body = call("vm-1", _utc(_now_ms(30)), direction=0, answered=False, in_queue=1, end=40,
                    leaveMsgUrl=url, hangupCode=999)  # fmt: skip
        assert push(body).status_code == 200
        sign_in()
        html = client.get("/calls/vm-1").text
        player = re.search(r'<audio [^>]*id="voicemail"', html)
        assert player and f'src="{url.replace("&", "&amp;")}"' in player[0]
        assert 'id="recording"' not in html
        assert re.search(r'data-field="hangupCode"><th>.*?</th><td>999</td>', html, re.S)

    def test_hostile_call_data_is_escaped_everywhere(
        self, client: TestClient, push: Push, store: Store, sign_in: SignIn
    ) -> None:
        """Agent names, reasons, intents, ids and quarantined bodies come from outside: each
        payload, in each field, is shown as text on every page, never as markup."""
        _seed(push)
        store.quarantine(
            Rejected(body=EVIL[1].encode(), status=400, reason="bad_json",
                     detail={"detail": EVIL[0], "fields": [{"field": EVIL[1], "value": EVIL[0],
                                                            "expected": EVIL[1]}]},
                     call_id=EVIL[0])
        )  # fmt: skip
        sign_in()
        listing = client.get("/calls?direction=2").text
        after = re.search(r'data-after="(\d+)"', listing)
        assert after
        pages = {
            "/calls?direction=2": listing,
            "/calls/rows?direction=2&after=0": client.get("/calls/rows?direction=2&after=0").text,
            "/calls/evil%2F1": client.get("/calls/evil%2F1").text,
            "/calls/evil-2": client.get("/calls/evil-2").text,
            "/?range=today&direction=2": client.get("/?range=today&direction=2").text,
            "/?range=today": client.get("/?range=today").text,
            "/quarantine": client.get("/quarantine").text,
        }
        own = {"/calls/evil%2F1": EVIL[:1], "/calls/evil-2": EVIL[1:]}  # one call, one payload
        for path, html in pages.items():
            assert "<script>alert" not in html and "<img src=x" not in html, path
            for evil in own.get(path, EVIL):
                assert escape(evil) in html, (path, evil)
        sections = {
            "agents": pages["/?range=today"].split('id="agents"')[1].split("</table>")[0],
            "reasons": pages["/?range=today"].split('id="reasons"')[1].split("</ul>")[0],
            "intents": pages["/?range=today"].split('id="aicc-intents"')[1].split("</ul>")[0],
            "rows": pages["/calls?direction=2"].split("<tbody>")[1].split("</tbody>")[0],
        }
        for name, section in sections.items():
            for evil in EVIL:
                assert escape(evil) in section, (name, evil)
        detail = pages["/calls/evil%2F1"]
        assert "javascript:" not in detail.split("<table")[0]  # no player for a non-http URL
        assert 'href="/call?id=evil%2F1"' in listing

    def test_quarantine_is_for_admins_and_replays(
        self, client: TestClient, push: Push, store: Store, sign_in: SignIn
    ) -> None:
        """Viewers get a 403 page; an admin replays one entry or all and reads each outcome."""
        assert push({"callId": "q-1", "startTime": "yesterday"}).status_code == 422
        good = b'{"callId": "q-2", "direction": 1}'
        entry = store.quarantine(Rejected(body=good, status=500, reason="store_failed", detail={}))
        sign_in("vic", "viewer")
        refused = client.get("/quarantine")
        assert refused.status_code == 403 and "for admins" in refused.text
        token = _csrf(refused.text)
        assert client.post("/quarantine/replay", data={"csrf": token}).status_code == 403
        client.cookies.clear()
        sign_in("ann")
        page = client.get("/quarantine").text
        assert "invalid_record" in page and "startTime" in page and "q-1" in page
        one = client.post("/quarantine/replay", data={"csrf": _csrf(page), "entry": entry}).text
        assert "Replayed: 1 / 1" in one and "q-2" in one and "created" in one
        rest = client.post("/quarantine/replay", data={"csrf": _csrf(page)}).text
        assert "Replayed: 0 / 1" in rest and "still refused" in rest
        assert store.get_call("q-2") is not None

    def test_replay_answers_with_a_redirect_to_the_quarantine_page(
        self, client: TestClient, push: Push, store: Store, sign_in: SignIn
    ) -> None:
        """Post/redirect/get: the outcome shows once on /quarantine, so reloading replays
        nothing again and switching language there works (in the new language)."""
        assert push({"callId": "q-1", "startTime": "yesterday"}).status_code == 422
        sign_in("ann")
        page = client.get("/quarantine").text
        posted = client.post(
            "/quarantine/replay", data={"csrf": _csrf(page)}, follow_redirects=False
        )
        assert posted.status_code == 303 and posted.headers["location"] == "/quarantine"
        shown = client.get("/quarantine", headers={"Accept-Language": "zh-CN"}).text
        assert "已重放: 0 / 1" in shown and "仍被拒绝：" in shown
        again = client.get("/quarantine").text  # a reload
        assert 'id="replayed"' not in again and "q-1" in again
        switched = client.get("/lang/zh-CN?next=/quarantine")
        assert switched.status_code == 200 and "隔离区" in switched.text

    def test_many_replay_outcomes_fit_the_session_cookie(
        self, client: TestClient, store: Store, sign_in: SignIn
    ) -> None:
        """Outcomes travel to the next page in the session cookie, which browsers cap at
        4 KB: as many as fit are listed, the rest are counted."""
        for i in range(40):
            body = json.dumps({"callId": f"q-{i}", "startTime": "不是时间" * 30}).encode()
            store.quarantine(Rejected(body=body, status=422, reason="invalid_record", detail={}))
        sign_in("ann")
        page = client.get("/quarantine").text
        posted = client.post(
            "/quarantine/replay", data={"csrf": _csrf(page)}, follow_redirects=False
        )
        assert len(posted.headers["set-cookie"]) < 4000
        shown = client.get("/quarantine").text
        listed = len(re.findall(r"<li>#\d+: not stored", shown))
        assert 0 < listed < 40 and f"… {40 - listed} more" in shown

    def test_language_follows_the_browser_and_the_switch(
        self, client: TestClient, sign_in: SignIn
    ) -> None:
        """Accept-Language picks Chinese; the switch's cookie wins; times name the zone."""
        sign_in()
        chinese = client.get("/", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}).text
        assert 'lang="zh-CN"' in chinese and "接通率" in chinese and "时区 UTC" in chinese
        weighted = client.get("/", headers={"Accept-Language": "en;q=0.1, zh-CN;q=0.9"}).text
        assert 'lang="zh-CN"' in weighted
        switched = client.get("/lang/en?next=/calls", follow_redirects=False)
        assert switched.status_code == 303 and switched.headers["location"] == "/calls"
        english = client.get("/", headers={"Accept-Language": "zh-CN"}).text
        assert 'lang="en"' in english and "Answer rate" in english
        assert (
            client.get("/lang/en?next=//evil.example", follow_redirects=False).headers["location"]
            == "/"
        )

    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            ("en;q=0.1, zh-CN;q=0.9", "zh-CN"),
            ("zh-CN;q=0.5, en", "en"),
            ("fr, zh-TW;q=0.8, en;q=0.7", "zh-CN"),
            ("en-GB, zh;q=1.0", "en"),  # equal weights: the browser's first
            ("zh;q=0, en;q=0.2", "en"),
            ("zh;q=abc", "en"),
            ("", "en"),
        ],
    )
    def test_accept_language_weights(self, header: str, expected: str) -> None:
        """The browser's q weights decide, not only the order of the list."""
        assert i18n.choose(None, header) == expected

    def test_unknown_dashboard_addresses_get_the_error_page(
        self, client: TestClient, sign_in: SignIn
    ) -> None:
        """A person who mistypes an address gets the dashboard's page, in their language
        and with the navigation; programs on /api keep their JSON."""
        sign_in()
        browser = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
        page = client.get("/no-such-page", headers={**browser, "Accept-Language": "zh-CN"})
        assert page.status_code == 404 and "text/html" in page.headers["content-type"]
        assert "没有这个页面。" in page.text and 'href="/calls"' in page.text
        wrong_way = client.get("/quarantine/replay", headers=browser)
        assert wrong_way.status_code == 405 and "cannot be opened that way" in wrong_way.text
        for path in ("/api/no-such-thing", "/cc/callback"):
            answer = client.get(path, headers=browser)
            assert "application/json" in answer.headers["content-type"], path
        program = client.get("/no-such-page")  # no text/html in Accept: docs/ingest.md's JSON
        assert program.json() == {"error": "not_found", "detail": "Not Found", "fields": []}

    def test_the_overview_refreshes_only_when_its_calls_changed(
        self, client: TestClient, push: Push, sign_in: SignIn
    ) -> None:
        """Every open tab polls every 10 s; while nothing in the period changed the answer is
        an empty 204, and a new call brings the new figures and a new mark."""
        _seed(push)
        sign_in()
        html = client.get("/?range=today").text
        mark = re.search(r'data-mark="([^"]+)"', html)
        assert mark
        same = client.get(f"/overview/live?range=today&mark={mark[1]}")
        assert same.status_code == 204 and same.content == b""
        assert push(call("new-1", _utc(_now_ms(1)), direction=1)).status_code == 200
        fresh = client.get(f"/overview/live?range=today&mark={mark[1]}")
        assert fresh.status_code == 200 and 'id="kpis"' in fresh.text
        assert _visible_kpis(fresh.text)["calls"] == "7"
        assert fresh.headers["x-cdrhub-mark"] != mark[1]
        later = client.get(f"/overview/live?range=today&mark={fresh.headers['x-cdrhub-mark']}")
        assert later.status_code == 204

    def test_dates_without_a_preset_are_a_custom_period(
        self, client: TestClient, sign_in: SignIn
    ) -> None:
        """A link carrying only dates shows those dates, not today."""
        sign_in()
        html = client.get("/?from=2026-11-20&to=2026-11-30").text
        assert "2026-11-20 00:00 – 2026-12-01 00:00 UTC" in html
        assert re.search(r'value="custom" checked', html)
        assert len(_chart(html, "volume")) == 11  # one bar a day

    @pytest.mark.parametrize(
        "path",
        [
            "/calls?to=9999-12-31",
            "/calls/export?to=9999-12-31",
            "/calls/rows?to=9999-12-31",
        ],
    )
    def test_the_last_day_of_the_calendar_is_a_date_like_any(
        self, client: TestClient, push: Push, sign_in: SignIn, path: str
    ) -> None:
        """`to` is included, so its next midnight would be past year 9999: no upper bound."""
        _seed(push)
        sign_in()
        answer = client.get(path)
        assert answer.status_code == 200 and "in-1" in answer.text

    @pytest.mark.parametrize(
        "path",
        [
            "/calls?from=999999999999999",
            "/calls/export?from=999999999999999",
            "/calls/rows?after=99999999999999999999",
            "/calls/rows?after=999999999999999",
            "/?range=custom&to=9999-12-31",
            "/?range=custom&from=2000-01-01&to=2026-12-31",
            "/?range=custom&from=someday&to=2026-12-31",
            "/overview/live?range=custom&to=9999-12-31",
        ],
    )
    def test_dates_past_the_calendar_are_a_422_page(
        self, client: TestClient, sign_in: SignIn, path: str
    ) -> None:
        """Extreme or broken dates are the reader's mistake, said on a page, never a 500."""
        sign_in()
        answer = client.get(path, headers={"Accept-Language": "zh-CN"})
        assert answer.status_code == 422, answer.text
        assert "text/html" in answer.headers["content-type"]
        # The calls page says it above its form; elsewhere it is the error page.
        assert ("无法识别的筛选条件" if path.startswith("/calls?") else "出错了") in answer.text

    @pytest.mark.parametrize(
        "params",
        [
            {"from": "999999999999999"},
            {"to": "0001-01-01", "tz": "Asia/Shanghai"},
            {"from": "9999-12-31T23:00:00-05:00"},
        ],
    )
    def test_the_api_refuses_times_past_the_calendar(
        self, api: Api, params: dict[str, str]
    ) -> None:
        """/api/calls, /api/stats and /api/export answer 422 naming the parameter."""
        for path in ("/api/calls", "/api/stats", "/api/export"):
            answer = api(path, **params)
            assert answer.status_code == 422, (path, answer.text)
            assert answer.json()["fields"][0]["field"] in params

    def test_the_api_refuses_a_forged_cursor_past_the_calendar(self, api: Api) -> None:
        """A cursor is ours to read back; one naming a time that cannot exist is a 422."""
        forged = base64.urlsafe_b64encode(b'["desc",99999999999999999,"x"]').decode().rstrip("=")
        answer = api("/api/calls", cursor=forged)
        assert answer.status_code == 422 and answer.json()["fields"][0]["field"] == "cursor"


class TestCharts:
    @pytest.mark.parametrize(
        ("day", "zone", "hours"),
        [("2026-11-01", "America/New_York", 25), ("2026-03-08", "America/New_York", 23),
         ("2026-11-25", "Asia/Shanghai", 24), ("2026-11-25", "Asia/Kathmandu", 24)],
    )  # fmt: skip
    def test_a_day_has_every_hour_of_the_call_centers_clock(
        self, day: str, zone: str, hours: int
    ) -> None:
        """The hours are the zone's, with their offsets, as /api/stats keys them: the night
        clocks go back has two 01:00 hours, the night they go forward none at 02:00."""
        tz = ZoneInfo(zone)
        start = datetime.fromisoformat(day).replace(tzinfo=tz)
        end = datetime.combine(start.date() + timedelta(days=1), datetime.min.time(), tz)
        keys = charts.buckets(start, end, "hour", tz)
        assert len(keys) == len(set(keys)) == hours
        assert keys[0].startswith(f"{day}T00:00")
        key = stats.bucketer("hour", tz)
        ms = int(start.timestamp() * 1000)
        assert [key(ms + n * 3_600_000) for n in range(hours)] == keys

    def test_long_periods_are_drawn_by_day_then_by_month(self) -> None:
        """30 days are 30 bars; a year is 12 months (366 day bars would be hairlines)."""
        tz = ZoneInfo("Asia/Shanghai")
        start = datetime(2026, 10, 27, tzinfo=tz)
        month = charts.buckets(start, start + timedelta(days=30), "day", tz)
        assert len(month) == 30 and month[0] == "2026-10-27" and month[-1] == "2026-11-25"
        year_end = datetime(2027, 1, 1, tzinfo=tz)
        assert charts.unit_for(datetime(2026, 1, 1, tzinfo=tz), year_end) == "month"
        months = charts.buckets(datetime(2026, 1, 1, tzinfo=tz), year_end, "month", tz)
        assert months == [f"2026-{m:02d}" for m in range(1, 13)]


def test_workers_starting_at_once_agree_on_the_session_key(tmp_path: Path) -> None:
    """The first start generates the session key; processes racing to write it all end up
    with the one that was written first, and nobody truncates it under another's feet."""
    settings = Settings(database_url="sqlite://", data_dir=tmp_path)
    barrier = threading.Barrier(8)
    real = secrets.token_urlsafe

    def generated(size: int) -> str:
        barrier.wait()  # every "worker" has seen no file and makes its own secret
        return real(size)

    found: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("cdrhub.web.secrets.token_urlsafe", generated)
        threads = [threading.Thread(target=lambda: found.append(session_secret(settings)))
                   for _ in range(8)]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(found) == 8 and len(set(found)) == 1
    assert (tmp_path / "session.key").read_text().split() == found[:1]
    assert session_secret(settings) == found[0]


def test_times_and_buckets_follow_the_call_center_zone(
    settings: Any, store: Store, api_key: str
) -> None:
    """In Asia/Shanghai, a call at 16:30 UTC on 24 November is at 00:30 on the 25th: the
    list, the call page and the overview's day and hour say so, as /api/stats does."""
    local = settings.model_copy(update={"timezone": "Asia/Shanghai"})
    from cdrhub.app import create_app

    with TestClient(create_app(local)) as shanghai:
        users.create(store, "ann", "viewer", PASSWORD)
        token = _csrf(shanghai.get("/login").text)
        shanghai.post("/login", data={"name": "ann", "password": PASSWORD, "csrf": token})
        body = call("sh-1", "2026-11-24T16:30:00", direction=1, answered=True, answer=4, end=64)
        pushed = shanghai.post("/cc/callback", json=body, headers={"token": TOKEN})
        assert pushed.status_code == 200
        listing = shanghai.get("/calls?from=2026-11-25&to=2026-11-25").text
        assert re.findall(r'data-id="([^"]+)"', listing) == ["sh-1"]
        assert ">2026-11-25 00:30:00</a>" in listing
        detail = shanghai.get("/calls/sh-1").text
        assert "<tr><th>Start</th><td><time>2026-11-25 00:30:00</time>" in detail
        day = shanghai.get("/?range=custom&from=2026-11-25&to=2026-11-25").text
        assert "2026-11-25 00:00 – 2026-11-26 00:00 Asia/Shanghai" in day
        assert _visible_kpis(day)["calls"] == "1"
        bars = {bar["key"]: sum(bar["values"].values()) for bar in _chart(day, "volume")}
        assert len(bars) == 24 and bars["2026-11-25T00:00+08:00"] == 1
        hourly = shanghai.get(
            "/api/stats",
            params={"from": "2026-11-25", "to": "2026-11-26", "group_by": "hour"},
            headers={"Authorization": f"Bearer {api_key}"},
        ).json()["groups"]
        assert [g["key"]["hour"] for g in hourly] == ["2026-11-25T00:00+08:00"]
        before = shanghai.get("/?range=custom&from=2026-11-24&to=2026-11-24").text
        assert _visible_kpis(before)["calls"] == "0"


#: Numbers no parameter should choke on: past 64 bits, negative, not numbers at all.
HOSTILE_NUMBERS = (
    str(2**70), str(-(2**70)), str(2**63), str(2**63 - 1), "-1", "0", "abc", "1e400", "nan",
    "9" * 400, "１２",
)  # fmt: skip


def _routes(routes: list[Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Every FastAPI route of the app, with its full path (routers included)."""
    from fastapi.routing import APIRoute

    found: list[tuple[str, Any]] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append((prefix + route.path, route))
        elif hasattr(route, "original_router"):  # an included router
            found += _routes(route.original_router.routes, prefix + route.include_context.prefix)
    return found


def _declared(dependant: Any) -> list[tuple[str, str]]:
    """(where, name) of every parameter a route declares, its dependencies' included."""
    found = [
        (where, field.alias)
        for where in ("path", "query", "body")
        for field in getattr(dependant, f"{where}_params")
    ]
    for sub in dependant.dependencies:
        found += _declared(sub)
    return found


class TestHostileNumbers:
    """Every parameter of every route (the API's and the dashboard's, declared or read from
    the query string), with numbers too big for a 64-bit column, negative ones and words:
    answered 404 or 422 (or the page as usual), never 500, on both databases."""

    #: Session-changing forms, driven in TestSignIn: here they would sign the sweep out.
    SKIPPED = {("POST", "/login"), ("POST", "/logout")}

    def test_no_parameter_value_makes_a_500(
        self, client: TestClient, store: Store, push: Push, sign_in: SignIn, api_key: str
    ) -> None:
        from cdrhub.web.routes import _CALL_PARAMS, _OVERVIEW_PARAMS

        assert push(call("c-1", _utc(_now_ms(5)))).status_code == 200
        store.quarantine(Rejected(body=b"{", status=400, reason="bad_json", detail={}))
        sign_in()
        csrf = _csrf(client.get("/quarantine").text)
        # Pages that read request.query_params themselves declare nothing to FastAPI.
        undeclared = {
            "/": _OVERVIEW_PARAMS, "/overview/live": _OVERVIEW_PARAMS,
            "/calls": _CALL_PARAMS, "/calls/rows": _CALL_PARAMS, "/calls/export": _CALL_PARAMS,
        }  # fmt: skip
        tried: set[tuple[str, str, str]] = set()
        failures = []
        for path, route in _routes(client.app.routes):  # type: ignore[attr-defined]
            params = _declared(route.dependant)
            params += [("query", name) for name in sorted(undeclared.get(path, ()))]
            for method in route.methods - {"HEAD"}:
                if (method, path) in self.SKIPPED:
                    continue
                for where, name in params:
                    if name == "csrf":
                        continue
                    tried.add((method, path, name))
                    for value in HOSTILE_NUMBERS:
                        answer = self._send(client, method, path, where, name, value, csrf, api_key)
                        status = answer.status_code
                        if status >= 500 or (
                            path.startswith("/api/") and status >= 400
                            and set(answer.json()) != {"error", "detail", "fields"}
                        ):  # fmt: skip
                            failures.append((method, path, name, value[:30], status))
        assert not failures
        # The sweep reached what the issue named (a route that vanished would shrink it).
        expected = {
            ("POST", "/api/quarantine/{entry_id}/replay", "entry_id"),
            ("POST", "/quarantine/replay", "entry"),
            ("GET", "/calls/rows", "after"), ("GET", "/api/calls", "limit"),
            ("GET", "/calls", "cursor"), ("GET", "/api/stats", "sl_seconds"),
        }  # fmt: skip
        assert expected <= tried and len(tried) > 80

    @staticmethod
    def _send(
        client: TestClient,
        method: str,
        path: str,
        where: str,
        name: str,
        value: str,
        csrf: str,
        api_key: str,
    ) -> httpx.Response:
        """One request with ``value`` as ``name``, other path parameters a plain word."""
        from urllib.parse import quote

        url = re.sub(
            r"\{(\w+)(?::path)?\}",
            lambda m: quote(value, safe="") if m[1] == name and where == "path" else "x",
            path,
        )
        headers = {"Authorization": f"Bearer {api_key}"} if path.startswith("/api/") else {}
        if method == "GET":
            query = {name: value} if where == "query" else {}
            return client.get(url, params=query, headers=headers, follow_redirects=False)
        form = {"csrf": csrf, **({name: value} if where == "body" else {})}
        query = {name: value} if where == "query" else {}
        return client.post(url, data=form, params=query, headers=headers, follow_redirects=False)

    @pytest.mark.parametrize("entry", [str(2**70), str(2**63), "-1", "0"])
    def test_replaying_an_id_no_entry_can_have_is_404(
        self, client: TestClient, store: Store, sign_in: SignIn, api_key: str, entry: str
    ) -> None:
        """The issue's case: an id past 64 bits (or below 1) names no entry, on the API and
        the dashboard's replay form alike; a word is 422 naming the field."""
        store.quarantine(Rejected(body=b"{", status=400, reason="bad_json", detail={}))
        bearer = {"Authorization": f"Bearer {api_key}"}
        answer = client.post(f"/api/quarantine/{entry}/replay", headers=bearer)
        assert answer.status_code == 404 and answer.json()["error"] == "not_found"
        word = client.post("/api/quarantine/abc/replay", headers=bearer)
        assert word.status_code == 422 and word.json()["fields"][0]["field"] == "entry_id"
        sign_in()
        csrf = _csrf(client.get("/quarantine").text)
        page = client.post("/quarantine/replay", data={"csrf": csrf, "entry": entry})
        assert page.status_code == 404 and f"#{entry}" in page.text
        assert store.quarantined()[0]["replayed_at"] is None  # nothing was replayed
