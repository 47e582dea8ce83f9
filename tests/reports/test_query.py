"""GET /api/calls and /api/calls/{callId}: filters, keyset paging, detail, and refusals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient

from cdrhub.store import Store
from tests.helpers import Api, Push, Server
from tests.helpers.calls import AWKWARD_IDS, call, ms

CALLS = [
    call(
        "c1",
        "2026-11-24T01:00:00",
        direction=0,
        answered=True,
        agentName="ann@example.com",
        caller="8613800000001",
        callee="1001@10.0.0.1:5060",
        hangupBy=0,
        hangupReason="normal",
        callStatus="ANSWERED",
        recordUrl="https://rec.example/c1.mp3",
        orderId="O-1",
        answer=3,
        end=63,
        in_queue=1,
    ),
    call("c2", "2026-11-24T02:00:00", direction=1, answered=False, caller="8613900000002"),
    call(
        "c3",
        "2026-11-24T02:00:00",
        direction=2,
        taskId="T9",
        intent="转人工-成功",
        caller="85235757581",
        callee="1001_2",
    ),
    call("c4", "2026-11-25T09:30:00", direction="1", answered="true", agentName="bob"),
    call("c5", None, direction=0),
]


@pytest.fixture
def loaded(push: Push) -> None:
    """Five calls: two with the same start time, one without any."""
    for body in CALLS:
        assert push(body).status_code == 200


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["call_id"] for item in response.json()["items"]]


def test_default_order_is_newest_first_untimed_last(api: Api, loaded: None) -> None:
    """Without parameters: newest start first, ties by callId, calls without a start last."""
    assert ids(api("/api/calls")) == ["c4", "c3", "c2", "c1", "c5"]
    assert ids(api("/api/calls", order="asc")) == ["c1", "c2", "c3", "c4", "c5"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"direction": "1"}, ["c4", "c2"]),
        ({"direction": "outbound"}, ["c4", "c2"]),
        ({"direction": "AICC"}, ["c3"]),
        ({"answered": "true"}, ["c4", "c1"]),
        ({"answered": "false"}, ["c3", "c2", "c5"]),
        ({"agent": "ann@example.com"}, ["c1"]),
        ({"caller": "8613800000001"}, ["c1"]),
        ({"caller_prefix": "86138"}, ["c1"]),
        ({"caller_prefix": "861"}, ["c2", "c1"]),
        ({"callee_prefix": "1001_"}, ["c3"]),
        ({"callee": "1001@10.0.0.1:5060"}, ["c1"]),
        ({"task_id": "T9"}, ["c3"]),
        ({"order_id": "O-1"}, ["c1"]),
        ({"intent": "转人工-成功"}, ["c3"]),
        ({"hangup_by": "agent"}, ["c1"]),
        ({"hangup_reason": "normal"}, ["c1"]),
        ({"call_status": "ANSWERED"}, ["c1"]),
        ({"has_recording": "true"}, ["c1"]),
        ({"has_recording": "false"}, ["c4", "c3", "c2", "c5"]),
        ({"from": "2026-11-24T02:00:00Z"}, ["c4", "c3", "c2"]),
        ({"to": "2026-11-24T02:00:00+00:00"}, ["c1"]),
        (
            {"from": str(ms("2026-11-24T02:00:00")), "to": str(ms("2026-11-25T00:00:00"))},
            ["c3", "c2"],
        ),
        # 2026-11-25 in Shanghai starts at 16:00 UTC on the 24th: only c4 is after it.
        ({"from": "2026-11-25", "tz": "Asia/Shanghai"}, ["c4"]),
        ({"from": "2026-11-24", "to": "2026-11-25"}, ["c3", "c2", "c1"]),
        ({"direction": "0", "answered": "true"}, ["c1"]),
    ],
)
def test_filters(api: Api, loaded: None, params: dict[str, str], expected: list[str]) -> None:
    """Each filter selects exactly the calls it names."""
    assert ids(api("/api/calls", **params)) == expected


@pytest.mark.parametrize(
    "evil",
    [
        "x' OR '1'='1",
        "'; DROP TABLE calls; --",
        "%",
        "_",
        "\\",
        '" OR 1=1 --',
        "c1') UNION SELECT * FROM api_keys --",
    ],
)
def test_injection_strings_are_just_values(api: Api, loaded: None, store: Store, evil: str) -> None:
    """SQL in any filter matches nothing and breaks nothing: values are bound, never spliced."""
    for name in ("agent", "caller", "caller_prefix", "callee_prefix", "intent", "task_id"):
        assert ids(api("/api/calls", **{name: evil})) == [], name
    assert api("/api/stats", agent=evil).json()["groups"][0]["calls"] == 0
    assert store.count_calls() == len(CALLS)
    assert api(f"/api/calls/{evil}").status_code == 404


def test_paging_visits_every_call_once_under_concurrent_inserts(
    api: Api, loaded: None, push: Push
) -> None:
    """Pages of 2 with the cursor give every call once, even as new calls arrive meanwhile."""
    for order, expected in (
        ("desc", ["c4", "c3", "c2", "c1", "c5"]),
        ("asc", ["c1", "c2", "c3", "c4", "c5"]),
    ):
        seen: list[str] = []
        cursor = None
        inserted = False
        while True:
            body = api("/api/calls", limit=2, order=order, cursor=cursor).json()
            seen += [i["call_id"] for i in body["items"]]
            if not inserted:  # one newer than everything, one older: neither may shift pages
                push(call(f"new-{order}", "2026-12-01T00:00:00"))
                push(call(f"old-{order}", "2026-01-01T00:00:00"))
                inserted = True
            cursor = body["next_cursor"]
            if cursor is None:
                break
        if order == "desc":
            assert seen == [*expected[:-1], "old-desc", expected[-1]]
        else:
            # old-desc is from the first pass; old-asc lands behind the cursor, so is not seen.
            assert seen == ["old-desc", *expected[:-1], "new-asc", "new-desc", expected[-1]]


def test_items_carry_snake_case_columns_and_zoned_times(api: Api, loaded: None) -> None:
    """Items have call_id and the other columns; times in the asked zone, ms kept."""
    [item] = api("/api/calls", caller="8613800000001", tz="Asia/Shanghai").json()["items"]
    assert item["call_id"] == "c1" and item["agent_name"] == "ann@example.com"
    assert item["start_time"] == "2026-11-24T09:00:00.000+08:00"
    assert item["start_time_ms"] == ms("2026-11-24T01:00:00")
    assert item["answer_time_ms"] == ms("2026-11-24T01:00:03")


def test_limit_is_capped_not_refused(api: Api, loaded: None) -> None:
    """A limit above the cap answers at most the cap."""
    response = api("/api/calls", limit=100000)
    assert response.status_code == 200 and len(response.json()["items"]) == 5


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("limit", "0"),
        ("limit", "ten"),
        ("order", "sideways"),
        ("cursor", "garbage"),
        ("from", "24/11/2026"),
        ("to", "2026-13-01"),
        ("direction", "3"),
        ("answered", "maybe"),
        ("hangup_by", "9"),
        ("tz", "Nowhere/City"),
        ("agentName", "ann"),
    ],
)
def test_bad_parameters_are_422_naming_them(api: Api, param: str, value: str) -> None:
    """Every invalid or unknown parameter is a 422 whose `fields` names it."""
    response = api("/api/calls", **{param: value})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_parameters"
    assert body["fields"][0]["field"] == param


def test_to_before_from_is_refused(api: Api) -> None:
    """An inverted range is a mistake worth saying, not an empty answer."""
    response = api("/api/calls", from_="2026-11-25", to="2026-11-24")
    assert response.status_code == 422 and response.json()["fields"][0]["field"] == "to"


def test_cursor_from_the_other_order_is_refused(api: Api, loaded: None) -> None:
    """A descending cursor cannot continue an ascending listing."""
    cursor = api("/api/calls", limit=1).json()["next_cursor"]
    response = api("/api/calls", limit=1, order="asc", cursor=cursor)
    assert response.status_code == 422 and response.json()["fields"][0]["field"] == "cursor"


def test_call_detail_has_derived_fields_and_raw_versions(
    api: Api, loaded: None, push: Push
) -> None:
    """The detail shows the row, its derived facts and every raw version, oldest first."""
    corrected = {**CALLS[0], "hangupReason": "corrected", "unknownNewField": "kept"}
    assert push(corrected).json()["result"] == "updated"
    response = api("/api/calls/c1")
    assert response.status_code == 200
    detail = response.json()
    assert detail["call_id"] == "c1" and detail["hangup_reason"] == "corrected"
    assert detail["derived"] == {
        "answered": True,
        "queued": True,
        "wait_seconds": 2.0,
        "abandoned": False,
        "short_abandoned": False,
        "speed_of_answer_seconds": 2.0,
        "talk_seconds": 60.0,
        "ring_seconds": None,
        "direction_name": "inbound",
        "hangup_by_name": "agent",
    }
    versions = detail["raw_versions"]
    assert [v["body"].get("hangupReason") for v in versions] == ["normal", "corrected"]
    assert versions[1]["body"]["unknownNewField"] == "kept"


def test_unknown_call_is_404(api: Api) -> None:
    """An unknown callId is 404 in the usual error shape."""
    response = api("/api/calls/nope")
    assert response.status_code == 404 and response.json()["error"] == "not_found"


@pytest.fixture
def awkward(push: Push) -> None:
    """One call per id of :data:`AWKWARD_IDS`, each with an agent name saying which it is."""
    for n, call_id in enumerate(AWKWARD_IDS):
        body = call(call_id, "2026-11-24T03:00:00", agentName=f"agent-{n}")
        assert push(body).json()["result"] == "created", repr(call_id)


def _opens(response: Any, n: int) -> None:
    assert response.status_code == 200, (AWKWARD_IDS[n], response.text)
    item = response.json()
    assert (item["call_id"], item["agent_name"]) == (AWKWARD_IDS[n], f"agent-{n}")


def test_every_stored_call_id_opens_by_query_parameter(api: Api, awkward: None) -> None:
    """``/api/call?id=`` opens any callId, whatever it holds: no route, no URL rewriting and
    no path pattern stands between a stored id and its call."""
    for n, call_id in enumerate(AWKWARD_IDS):
        _opens(api("/api/call", id=call_id, tz="Asia/Shanghai"), n)
    assert api("/api/call", id="nope").status_code == 404


def test_every_stored_call_id_opens_by_path_when_encoded(
    serve: Callable[..., Server], api_key: str, awkward: None
) -> None:
    """``/api/calls/{callId}`` with the id percent-encoded (dots too, which clients would
    otherwise resolve as path segments) opens that call, not a neighbour: ``/``, ``%`` and
    a trailing newline are part of the id. On a real server: the test client decodes a path
    twice, which would hide how ``%25`` arrives."""
    server = serve()
    auth = {"Authorization": f"Bearer {api_key}"}
    for n, call_id in enumerate(AWKWARD_IDS):
        path = "/api/calls/" + quote(call_id, safe="").replace(".", "%2E")
        _opens(httpx.get(server.url + path, headers=auth), n)
        _opens(httpx.get(server.url + "/api/call", params={"id": call_id}, headers=auth), n)


def test_the_query_form_refuses_a_missing_or_repeated_id(
    client: TestClient, api: Api, api_key: str, awkward: None
) -> None:
    """No id, an empty one, or two: a 422 naming ``id``, never a guess at which call."""
    auth = {"Authorization": f"Bearer {api_key}"}
    for query in ("", "?id=", "?id=a&id=export", "?id=a&other=1"):
        response = client.get(f"/api/call{query}", headers=auth)
        assert response.status_code == 422, query
        assert response.json()["fields"][0]["field"] in ("id", "other"), query


def _route_paths(routes: Any) -> Any:
    """Route paths in matching order (FastAPI nests included routers in newer versions)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _route_paths(included.routes)
        else:
            yield getattr(route, "path", "")


def test_call_routes_cannot_shadow_each_other(client: TestClient) -> None:
    """A fixed route under ``/api/calls/`` or ``/calls/`` is matched before the callId
    catch-all, and the catch-all is the last route there; ids equal to a fixed route's name
    are reached by the ``?id=`` form, which nothing can shadow."""
    paths = list(_route_paths(client.app.routes))  # type: ignore[attr-defined]
    for prefix in ("/api/calls/", "/calls/"):
        under = [p for p in paths if p.startswith(prefix)]
        catch_all = [p for p in under if p.startswith(prefix + "{")]
        assert len(catch_all) == 1, under
        assert under[-1] == catch_all[0], under


def test_read_api_is_in_the_openapi_schema(api: Api) -> None:
    """The read endpoints, their parameters and the key scheme are in /openapi.json."""
    schema = api("/openapi.json").json()
    listed = schema["paths"]["/api/calls"]["get"]
    assert {"from", "to", "cursor", "limit", "caller_prefix"} <= {
        p["name"] for p in listed["parameters"]
    }
    assert listed["security"] == [{"ApiKey": []}]
    assert {"/api/calls/{call_id}", "/api/call", "/api/stats", "/api/export"} <= set(
        schema["paths"]
    )
    assert [p["name"] for p in schema["paths"]["/api/call"]["get"]["parameters"]] == ["id", "tz"]
