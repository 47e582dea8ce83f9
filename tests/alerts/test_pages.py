"""The Alerts pages and the header, server side on both databases: admins only, the rules
and history the API answers, stored strings (rule names, answers) shown as text, secrets never."""

from __future__ import annotations

import re
import time
from html import unescape

from fastapi.testclient import TestClient
from markupsafe import escape

from cdrhub.alerts import Evaluator, rules
from cdrhub.auth import users
from cdrhub.settings import Settings
from cdrhub.store import Store
from tests.helpers import free_port
from tests.helpers.receiver import receiving

PASSWORD = "correct horse battery"
EVIL = '<script>alert(1)</script>"><img src=x onerror=alert(1)>'
SECRET = "zzSECRETtokenVALUE0123456789"


def _sign_in(client: TestClient, store: Store, name: str, role: str) -> None:
    users.create(store, name, role, PASSWORD)  # type: ignore[arg-type]
    client.cookies.clear()
    page = client.get("/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf
    answer = client.post(
        "/login",
        data={"name": name, "password": PASSWORD, "csrf": csrf[1], "next": "/"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text


def test_pages_list_rules_and_history_escaped_and_masked(
    client: TestClient, store: Store, settings: Settings
) -> None:
    down = f"json://127.0.0.1:{free_port()}/{SECRET}"
    with receiving() as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        rules.add(
            store, EVIL, "refused > 0", window="1h", targets=[f"json://127.0.0.1:{port}/hook", down]
        )
        rules.add(store, "calm", "spool_age > 5m", targets=[f"json://127.0.0.1:{port}/hook"])
        rules.add(store, "zh-rule", "asa > 30s", language="zh", targets=[down])
        # A 401 counts only in the process that answered it (this evaluator is not the app's).
        client.post("/cc/callback", content=b"{broken", headers={"token": "x"})
        client.post(
            "/cc/callback",
            content=b"{broken",
            headers={
                "token": settings.tokens[0].get_secret_value(),
                "content-type": "application/json",
            },
        )  # 400: quarantined
        done = Evaluator(store, settings, retry_delays=(0.01,)).evaluate_once(time.time())
        assert [t.rule for t in done] == [EVIL]

    _sign_in(client, store, "viewer", "viewer")
    assert client.get("/alerts").status_code == 403
    assert client.get("/alerts/history").status_code == 403
    assert EVIL not in client.get("/").text
    _sign_in(client, store, "ann", "admin")

    overview = client.get("/").text
    header = re.search(r'<a href="/alerts" class="bad" id="active-alerts">(.*?)</a>', overview)
    assert header and unescape(header[1]) == f"Alerts firing: {EVIL}"
    assert EVIL not in overview and str(escape(EVIL)) in overview

    page = client.get("/alerts").text
    assert EVIL not in page and SECRET not in page
    rows = dict(re.findall(r'<tr data-name="([^"]*)">(.*?)</tr>', page, re.S))
    assert set(map(unescape, rows)) == {EVIL, "calm", "zh-rule"}
    evil = rows[str(escape(EVIL))]
    assert 'data-status="firing"' in evil and "refused &gt; 0" in evil
    assert 'data-status="ok"' in rows["calm"]
    assert "json://127.0.0.1:" in evil and "/***" in evil

    history = client.get("/alerts/history").text
    assert EVIL not in history and SECRET not in history
    kept = re.findall(r'<tr data-kind="firing">(.*?)</tr>', history, re.S)
    assert len(kept) == 2  # one per target
    delivered = sorted(re.search(r'data-delivered="(\w+)"', row)[1] for row in kept)
    assert delivered == ["no", "yes"]
    assert all('data-col="figure">1<' in row and 'data-col="threshold">0<' in row for row in kept)
    api = client.get("/api/alerts/history").status_code
    assert api == 401  # pages' sessions are not API keys

    client.cookies.set("lang", "zh-CN")
    assert "告警记录" in client.get("/alerts/history").text
    assert "正在告警" in client.get("/alerts").text
