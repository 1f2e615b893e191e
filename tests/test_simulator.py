"""The simulator: HTTP shapes, pagination, filters, IAM, AK/SK, faults, statistics, evolution."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import yarl
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from exporter.modelarts.signing import sign_request
from exporter.simulator import (
    DEFAULT_PROJECT_ID,
    RequestStats,
    SimEvent,
    Simulation,
    create_app,
    serve,
)
from exporter.simulator.cli import main as simulator_main
from exporter.simulator.faults import MODELARTS_ENDPOINTS

T0 = 1_750_000_000.0  # 2025-06-15T15:06:40Z
OTHER_PROJECT = "0123456789abcdef0123456789abcdef"
AK = "AKSIMULATORTEST00000"
SK = "SKSIMULATORTEST0000000000000000000000000"
BASE = f"/v1/{DEFAULT_PROJECT_ID}/services"


class FakeClock:
    """A settable epoch-seconds clock."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Simulation:
    return Simulation(seed=11, services=12, clock=clock, dynamic=False)


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, sim: Simulation) -> TestClient[Any, Any]:
    return await aiohttp_client(create_app(sim))


async def get_json(
    client: TestClient[Any, Any], path: str, expect: int = 200, **params: Any
) -> Any:
    response = await client.get(path, params={k: str(v) for k, v in params.items()})
    assert response.status == expect, await response.text()
    assert response.headers["X-Request-Id"]
    return await response.json()


# ----- list ---------------------------------------------------------------------------------


async def test_list_pages_by_record_offset_and_caps_limit(
    client: TestClient[Any, Any], sim: Simulation
) -> None:
    sim.max_page_size = 5
    first = await get_json(client, BASE, limit=100)
    assert (first["total_count"], first["count"], len(first["services"])) == (12, 5, 5)
    seen: list[str] = []
    offset = 0
    while True:
        page = await get_json(client, BASE, offset=offset, limit=100)
        if not page["services"]:
            break
        assert page["total_count"] == 12
        seen += [item["service_id"] for item in page["services"]]
        offset += page["count"]
    assert len(seen) == len(set(seen)) == 12
    assert set(seen) == set(sim.services)
    # Default order: publish_at descending; asc is its exact reverse.
    published = [sim.services[sid].publish_at for sid in seen]
    assert published == sorted(published, reverse=True)
    ascending = await get_json(client, BASE, order="asc", limit=12)
    sim.max_page_size = 1000
    ascending = await get_json(client, BASE, order="asc")
    assert [item["service_id"] for item in ascending["services"]] == seen[::-1]


async def test_list_offset_past_the_end_is_empty(client: TestClient[Any, Any]) -> None:
    page = await get_json(client, BASE, offset=50, limit=10)
    assert page == {"total_count": 12, "count": 0, "services": []}


async def test_list_sorts_by_name_and_transition(
    client: TestClient[Any, Any], sim: Simulation
) -> None:
    by_name = await get_json(client, BASE, sort_by="service_name", order="asc")
    names = [item["service_name"] for item in by_name["services"]]
    assert names == sorted(names)
    by_transition = await get_json(client, BASE, sort_by="transition_at")
    times = [item["transition_at"] for item in by_transition["services"]]
    assert times == sorted(times, reverse=True)


async def test_list_filters(client: TestClient[Any, Any], sim: Simulation) -> None:
    target = sim.services[next(iter(sim.services))]
    assert (await get_json(client, BASE, service_id=target.service_id))["total_count"] == 1
    named = await get_json(client, BASE, service_name=target.service_name)
    assert [s["service_id"] for s in named["services"]] == [target.service_id]
    by_model = await get_json(client, BASE, model_id=target.models[0].model_id)
    assert [s["service_id"] for s in by_model["services"]] == [target.service_id]
    for status in ("running", "failed", "stopped", "concerning", "deploying"):
        page = await get_json(client, BASE, status=status)
        expected = {sid for sid, svc in sim.services.items() if svc.status == status}
        assert {s["service_id"] for s in page["services"]} == expected
        assert expected, f"the initial fleet has a {status} service"
    assert (await get_json(client, BASE, infer_type="batch"))["total_count"] == 0
    assert (await get_json(client, BASE, workspace_id="0"))["total_count"] == 12
    unknown = await get_json(client, f"/v1/{OTHER_PROJECT}/services")
    assert unknown == {"total_count": 0, "count": 0, "services": []}


async def test_list_item_fields(client: TestClient[Any, Any], sim: Simulation) -> None:
    page = await get_json(client, BASE)
    for item in page["services"]:
        svc = sim.services[item["service_id"]]
        assert item["project"] == DEFAULT_PROJECT_ID
        assert item["status"] == svc.status
        assert ("progress" in item) == (svc.status == "deploying")
        for key in ("publish_at", "transition_at", "invocation_times", "failed_times"):
            assert isinstance(item[key], int)
        assert isinstance(item["is_shared"], bool)


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "abc"},
        {"limit": "0"},
        {"offset": "-1"},
        {"offset": "1.5"},
        {"order": "up"},
        {"sort_by": "name"},
    ],
)
async def test_list_rejects_invalid_parameters(
    client: TestClient[Any, Any], params: dict[str, str]
) -> None:
    body = await get_json(client, BASE, expect=400, **params)
    assert body["error_code"] == "ModelArts.0101"


# ----- details ------------------------------------------------------------------------------


async def test_details_match_ground_truth(client: TestClient[Any, Any], sim: Simulation) -> None:
    for sid, svc in sim.services.items():
        body = await get_json(client, f"{BASE}/{sid}")
        assert body == sim.details_json(sid)
        assert body["status"] == svc.status
        assert sum(item["weight"] for item in body["config"]) == 100
        for item in body["config"]:
            assert {"model_id", "model_name", "model_version", "specification"} <= item.keys()
            assert item["instance_count"] >= 1
        assert ("progress" in body) == (svc.status == "deploying")
        assert ("error_msg" in body) == (svc.status == "failed")
        assert ("pool_name" in body) == (svc.cluster_id is not None)


async def test_details_optional_fields_vary_across_a_fleet() -> None:
    sim = Simulation(seed=2, services=60, dynamic=False)
    bodies = [sim.details_json(sid) for sid in sim.services]
    assert any("cluster_id" in b for b in bodies) and not all("cluster_id" in b for b in bodies)
    assert any("due_time" in b for b in bodies) and not all("due_time" in b for b in bodies)
    assert {b["infer_type"] for b in bodies} == {"real-time", "batch", "edge"}


async def test_unknown_service_is_404_3502(client: TestClient[Any, Any], sim: Simulation) -> None:
    for suffix in ("", "/events", "/logs"):
        body = await get_json(client, f"{BASE}/missing-id{suffix}", expect=404)
        assert body == {
            "error_code": "ModelArts.3502",
            "error_msg": "Service missing-id does not exist.",
        }
    sid = next(iter(sim.services))
    # A service is only visible under its own project.
    await get_json(client, f"/v1/{OTHER_PROJECT}/services/{sid}", expect=404)


async def test_deleted_service_disappears(client: TestClient[Any, Any], sim: Simulation) -> None:
    sid = next(iter(sim.services))
    sim.delete_service(sid)
    await get_json(client, f"{BASE}/{sid}", expect=404)
    await get_json(client, f"{BASE}/{sid}/events", expect=404)
    listed = await get_json(client, BASE)
    assert listed["total_count"] == 11
    assert sid not in {s["service_id"] for s in listed["services"]}


async def test_set_status_and_invocations(
    client: TestClient[Any, Any], sim: Simulation, clock: FakeClock
) -> None:
    sid = next(iter(sim.services))
    before = await get_json(client, f"{BASE}/{sid}")
    clock.advance(5)
    sim.set_status(sid, "deploying", progress=40)
    sim.add_invocations(sid, 10, 3)
    after = await get_json(client, f"{BASE}/{sid}")
    assert (after["status"], after["progress"]) == ("deploying", 40)
    assert after["transition_at"] == int(clock.now * 1000)
    assert after["invocation_times"] == before["invocation_times"] + 10
    assert after["failed_times"] == before["failed_times"] + 3
    sim.set_status(sid, "failed")
    failed = await get_json(client, f"{BASE}/{sid}")
    assert "progress" not in failed and failed["error_msg"]


async def test_add_service_in_another_project(
    client: TestClient[Any, Any], sim: Simulation
) -> None:
    sid = sim.add_service(name="prod-new", project_id=OTHER_PROJECT, status="running", models=3)
    body = await get_json(client, f"/v1/{OTHER_PROJECT}/services/{sid}")
    assert body["service_name"] == "prod-new" and len(body["config"]) == 3
    assert sim.events_of(sid) == [] and sim.updates_of(sid) == []
    listed = await get_json(client, f"/v1/{OTHER_PROJECT}/services")
    assert [s["service_id"] for s in listed["services"]] == [sid]


# ----- events -------------------------------------------------------------------------------


@pytest.fixture
def quiet_service(sim: Simulation) -> str:
    return sim.add_service(name="events-under-test")


async def test_events_window_is_inclusive_and_identical_rows_count_twice(
    client: TestClient[Any, Any], sim: Simulation, quiet_service: str
) -> None:
    sid = quiet_service
    rows = [
        (1000, "normal", "start to deploy service"),
        (2000, "normal", "preparing environment"),
        (2000, "normal", "preparing environment"),
        (2000, "abnormal", "[m 1] health check failed"),
        (3000, "normal", "[m 1] starting model"),
    ]
    sim.add_events(sid, rows)
    path = f"{BASE}/{sid}/events"
    exact = await get_json(client, path, start_time=2000, end_time=2000)
    assert exact["total_count"] == 3
    assert [e["event_info"] for e in exact["events"]] == [
        "preparing environment",
        "preparing environment",
        "[m 1] health check failed",
    ]
    span = await get_json(client, path, start_time=1000, end_time=3000, order="asc")
    assert [(e["occur_time"], e["event_type"], e["event_info"]) for e in span["events"]] == rows
    assert (await get_json(client, path, start_time=1001))["total_count"] == 4
    assert (await get_json(client, path, end_time=2999))["total_count"] == 4
    assert sim.event_counts(sid) == {"normal": 4, "abnormal": 1}
    assert body_keys(exact) == {"service_id", "service_name", "total_count", "count", "events"}
    assert exact["service_name"] == "events-under-test"


def body_keys(body: dict[str, Any]) -> set[str]:
    return set(body)


async def test_events_desc_keeps_insertion_order_among_ties(
    client: TestClient[Any, Any], sim: Simulation, quiet_service: str
) -> None:
    sim.add_events(quiet_service, [(5, "normal", "a"), (7, "normal", "b"), (7, "normal", "c")])
    sim.add_events(quiet_service, [(7, "normal", "d"), (6, "normal", "e")])
    body = await get_json(client, f"{BASE}/{quiet_service}/events")
    assert [e["event_info"] for e in body["events"]] == ["b", "c", "d", "e", "a"]
    asc = await get_json(client, f"{BASE}/{quiet_service}/events", order="asc")
    assert [e["event_info"] for e in asc["events"]] == ["a", "e", "b", "c", "d"]


async def test_events_pagination_with_server_cap(
    client: TestClient[Any, Any], sim: Simulation, quiet_service: str
) -> None:
    sim.max_page_size = 7
    sim.add_random_events(quiet_service, 30, occur_time=123_456)  # one burst, one timestamp
    sim.add_random_events(quiet_service, 10)
    collected: list[dict[str, Any]] = []
    while True:
        page = await get_json(
            client, f"{BASE}/{quiet_service}/events", offset=len(collected), limit=1000
        )
        assert page["count"] <= 7 and page["total_count"] == 40
        if not page["events"]:
            break
        collected += page["events"]
    truth = sorted(sim.events_of(quiet_service), key=lambda e: -e.occur_time)
    assert [SimEvent(e["occur_time"], e["event_type"], e["event_info"]) for e in collected] == truth
    assert sum(e["occur_time"] == 123_456 for e in collected) == 30


async def test_events_filters(
    client: TestClient[Any, Any], sim: Simulation, quiet_service: str
) -> None:
    sim.add_events(
        quiet_service,
        [
            (1, "normal", "pull image success"),
            (2, "abnormal", "pull image failed"),
            (3, "normal", "x"),
        ],
    )
    path = f"{BASE}/{quiet_service}/events"
    abnormal = await get_json(client, path, event_type="abnormal")
    assert [e["event_info"] for e in abnormal["events"]] == ["pull image failed"]
    pulled = await get_json(client, path, event_info="pull image")
    assert pulled["total_count"] == 2
    both = await get_json(client, path, event_info="pull", event_type="normal")
    assert [e["occur_time"] for e in both["events"]] == [1]
    for bad in ({"event_info": "a(b"}, {"event_type": "warning"}, {"start_time": "x"}):
        body = await get_json(client, path, expect=400, **bad)
        assert body["error_code"] == "ModelArts.0101"


async def test_events_of_a_5000_event_service_answer_fast(
    client: TestClient[Any, Any], sim: Simulation, quiet_service: str
) -> None:
    sim.add_events(quiet_service, [(t * 10, "normal", f"event {t}") for t in range(5000)])
    started = time.perf_counter()
    for _ in range(20):
        page = await get_json(
            client, f"{BASE}/{quiet_service}/events", start_time=49_900, limit=1000
        )
    assert page["total_count"] == 10
    assert [e["occur_time"] for e in page["events"]] == list(range(49_990, 49_890, -10))
    assert time.perf_counter() - started < 2.0


async def test_initial_events_follow_the_deployment_sequence(sim: Simulation) -> None:
    texts = [e.event_info for sid in sim.services for e in sim.events_of(sid)]
    assert any(t == "start to deploy service" for t in texts)
    assert any(re.fullmatch(r"building image for model \[\S+ [\d.]+\]", t) for t in texts)
    assert any(t.endswith("build image success") for t in texts)
    assert any(t.endswith("pull image success") for t in texts)
    assert any(t.endswith("starting model") for t in texts)
    for sid in sim.services:
        events = sim.events_of(sid)
        assert len(events) == 20
        assert [e.occur_time for e in events] == sorted(e.occur_time for e in events)
        assert all(e.occur_time <= int(T0 * 1000) for e in events)
    abnormal = {
        e.event_info
        for sid, svc in sim.services.items()
        if svc.status in ("concerning", "failed")
        for e in sim.events_of(sid)
        if e.event_type == "abnormal"
    }
    assert abnormal, "concerning and failed services carry abnormal events"


# ----- update logs --------------------------------------------------------------------------


async def test_update_logs_newest_first_and_filter(
    client: TestClient[Any, Any], sim: Simulation, quiet_service: str
) -> None:
    sid = quiet_service
    path = f"{BASE}/{sid}/logs"
    assert (await get_json(client, path))["logs"] == []
    first = sim.add_update(sid, "SUCCESS", update_time=1_000)
    running = sim.start_update(sid, update_time=3_000)
    sim.add_update(sid, "FAIL", update_time=2_000)
    body = await get_json(client, path)
    assert set(body) == {"service_id", "service_name", "logs"}
    assert [(r["update_time"], r["result"]) for r in body["logs"]] == [
        (3_000, "RUNNING"),
        (2_000, "FAIL"),
        (1_000, "SUCCESS"),
    ]
    assert body["logs"][0]["config"][0].keys() >= {"model_id", "weight", "instance_count"}
    assert (await get_json(client, f"{BASE}/{sid}"))["update_time"] == running
    sim.finish_update(sid, running, "SUCCESS")
    since = await get_json(client, path, update_time=2_000)
    assert [(r["update_time"], r["result"]) for r in since["logs"]] == [
        (3_000, "SUCCESS"),
        (2_000, "FAIL"),
    ]
    assert first == 1_000
    sim.set_update_time(sid, 9_999)
    assert (await get_json(client, f"{BASE}/{sid}"))["update_time"] == 9_999
    assert len(sim.updates_of(sid)) == 3


def test_initial_fleet_has_update_records(sim: Simulation) -> None:
    for sid, svc in sim.services.items():
        if svc.service_name == "events-under-test":
            continue
        updates = sim.updates_of(sid)
        assert 1 <= len(updates) <= 3
        assert sim.details_json(sid)["update_time"] == max(u.update_time for u in updates)


# ----- string numbers -----------------------------------------------------------------------


def leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for item in value.values():
            yield from leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from leaves(item)
    else:
        yield value


async def test_string_numbers(client: TestClient[Any, Any], sim: Simulation) -> None:
    sim.string_numbers = True
    sid = next(iter(sim.services))
    for path in (BASE, f"{BASE}/{sid}", f"{BASE}/{sid}/events", f"{BASE}/{sid}/logs"):
        body = await get_json(client, path)
        assert all(isinstance(leaf, str) for leaf in leaves(body)), path
    details = await get_json(client, f"{BASE}/{sid}")
    expected = sim.details_json(sid)
    assert details["invocation_times"] == str(expected["invocation_times"])
    assert details["is_shared"] in ("true", "false")


# ----- IAM and authentication ---------------------------------------------------------------


def password_body(password: str = "s3cret", **scope: str) -> dict[str, Any]:
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": "alice", "password": password, "domain": {"name": "acme"}}
                },
            },
            "scope": {"project": scope or {"id": DEFAULT_PROJECT_ID}},
        }
    }


@pytest.fixture
def secured(sim: Simulation) -> Simulation:
    sim.require_auth = True
    sim.token_ttl = 3600.0
    sim.add_iam_user(domain_name="acme", user_name="alice", password="s3cret")
    sim.add_access_key(AK, SK)
    return sim


async def test_iam_token_flow_and_expiry(
    client: TestClient[Any, Any], secured: Simulation, clock: FakeClock
) -> None:
    response = await client.post("/v3/auth/tokens?nocatalog=true", json=password_body())
    assert response.status == 201
    token = response.headers["X-Subject-Token"]
    assert len(token) > 1000
    body = (await response.json())["token"]
    iso = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"
    assert re.fullmatch(iso, body["issued_at"]) and re.fullmatch(iso, body["expires_at"])
    issued = datetime.strptime(body["issued_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    expires = datetime.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert expires - issued == timedelta(seconds=3600)
    assert issued.replace(tzinfo=UTC).timestamp() == pytest.approx(T0)
    assert body["methods"] == ["password"]
    assert body["project"]["id"] == DEFAULT_PROJECT_ID
    assert body["project"]["name"] == "cn-north-4"
    assert body["user"]["name"] == "alice"
    assert "catalog" not in body

    ok = await client.get(BASE, headers={"X-Auth-Token": token})
    assert ok.status == 200
    clock.advance(3599)
    assert (await client.get(BASE, headers={"X-Auth-Token": token})).status == 200
    clock.advance(1)
    expired = await client.get(BASE, headers={"X-Auth-Token": token})
    assert expired.status == 401
    assert (await expired.json())["error_code"] == "ModelArts.0202"
    assert secured.stats.count("token") == 1
    assert secured.stats.auth_failures == 1


async def test_iam_scope_by_project_name(client: TestClient[Any, Any], secured: Simulation) -> None:
    response = await client.post("/v3/auth/tokens", json=password_body(name="cn-north-4"))
    assert response.status == 201
    token = response.headers["X-Subject-Token"]
    assert (await response.json())["token"]["project"]["id"] == DEFAULT_PROJECT_ID
    assert (
        await client.get(f"{BASE}/{next(iter(secured.services))}", headers={"X-Auth-Token": token})
    ).status == 200


async def test_domain_scoped_token_is_refused_by_modelarts(
    client: TestClient[Any, Any], secured: Simulation
) -> None:
    body = password_body()
    body["auth"]["scope"] = {"domain": {"name": "acme"}}
    response = await client.post("/v3/auth/tokens", json=body)
    assert response.status == 201
    assert "project" not in (await response.json())["token"]
    refused = await client.get(BASE, headers={"X-Auth-Token": response.headers["X-Subject-Token"]})
    assert (refused.status, (await refused.json())["error_code"]) == (401, "ModelArts.0207")


async def test_faults_can_target_the_token_endpoint(
    client: TestClient[Any, Any], secured: Simulation
) -> None:
    secured.faults.rate_429 = 1.0
    secured.faults.endpoints = frozenset({"token"})
    assert (await client.post("/v3/auth/tokens", json=password_body())).status == 429
    assert (await client.get(BASE)).status == 401  # ModelArts endpoints untouched


async def test_iam_rejects_wrong_password_and_bad_bodies(
    client: TestClient[Any, Any], secured: Simulation
) -> None:
    wrong = await client.post("/v3/auth/tokens", json=password_body("guess"))
    assert wrong.status == 401
    assert "X-Subject-Token" not in wrong.headers
    text = await wrong.text()
    assert json.loads(text) == {
        "error": {
            "code": 401,
            "message": "The username or password is wrong.",
            "title": "Unauthorized",
        }
    }
    assert "guess" not in text
    for bad in (b"not json", b"{}", json.dumps({"auth": {"identity": {"methods": []}}}).encode()):
        response = await client.post("/v3/auth/tokens", data=bad)
        assert response.status == 400
        assert (await response.json())["error"]["code"] == 400
    unknown_project = await client.post("/v3/auth/tokens", json=password_body(id=OTHER_PROJECT))
    assert unknown_project.status == 400


async def test_modelarts_auth_errors(
    client: TestClient[Any, Any], secured: Simulation, clock: FakeClock
) -> None:
    async def code_of(headers: dict[str, str], path: str = BASE) -> tuple[int, str]:
        response = await client.get(path, headers=headers)
        body = await response.json()
        assert response.headers["X-Request-Id"]
        for value in headers.values():
            assert value not in json.dumps(body)
        return response.status, body["error_code"]

    assert await code_of({}) == (401, "ModelArts.0201")
    assert await code_of({"X-Auth-Token": "MIInotissued"}) == (401, "ModelArts.0203")
    secured.add_static_token("static-token-1", DEFAULT_PROJECT_ID, T0 + 60)
    assert (await client.get(BASE, headers={"X-Auth-Token": "static-token-1"})).status == 200
    other = await code_of({"X-Auth-Token": "static-token-1"}, f"/v1/{OTHER_PROJECT}/services")
    assert other == (403, "ModelArts.0210")
    clock.advance(61)
    assert await code_of({"X-Auth-Token": "static-token-1"}) == (401, "ModelArts.0202")
    secured.add_static_token("static-token-2", DEFAULT_PROJECT_ID, T0 + 3600)
    secured.revoke_tokens()
    assert await code_of({"X-Auth-Token": "static-token-2"}) == (401, "ModelArts.0203")
    assert secured.stats.auth_failures == 5


async def test_auth_is_checked_before_faults(
    client: TestClient[Any, Any], secured: Simulation
) -> None:
    secured.faults.error_rate = 1.0
    assert (await client.get(BASE)).status == 401


async def test_iam_open_door_without_require_auth(client: TestClient[Any, Any]) -> None:
    response = await client.post("/v3/auth/tokens", json=password_body("anything"))
    assert response.status == 201
    assert (await client.get(BASE, headers={"X-Auth-Token": "whatever"})).status == 200


def signed_get(
    client: TestClient[Any, Any],
    path: str,
    query: list[tuple[str, object]],
    *,
    secret_key: str = SK,
    access_key: str = AK,
    at: float = T0,
    project_header: str = DEFAULT_PROJECT_ID,
) -> tuple[yarl.URL, dict[str, str]]:
    assert client.port is not None
    signed = sign_request(
        method="GET",
        host=f"{client.host}:{client.port}",
        path=path,
        query=query,
        headers={"Content-Type": "application/json", "X-Project-Id": project_header},
        body=None,
        access_key=access_key,
        secret_key=secret_key,
        now=datetime.fromtimestamp(at, UTC),
    )
    base = client.make_url(path)
    url = yarl.URL(
        f"{base}?{signed.query_string}" if signed.query_string else str(base), encoded=True
    )
    return url, signed.headers


async def test_aksk_signature_verification(
    client: TestClient[Any, Any], secured: Simulation
) -> None:
    sid = next(iter(secured.services))
    name = secured.services[sid].service_name
    query: list[tuple[str, object]] = [("service_name", name), ("limit", 5), ("offset", 0)]
    url, headers = signed_get(client, BASE, query)
    async with client.session.get(url, headers=headers) as response:
        assert response.status == 200, await response.text()
        assert [s["service_id"] for s in (await response.json())["services"]] == [sid]
    url, headers = signed_get(client, f"{BASE}/{sid}/events", [("event_info", "deploy service")])
    async with client.session.get(url, headers=headers) as response:
        assert response.status == 200, await response.text()
    assert secured.stats.signature_verified == 2

    # A query that differs from the signed one.
    url, headers = signed_get(client, BASE, [("limit", 5)])
    tampered = yarl.URL(str(url).replace("limit=5", "limit=6"), encoded=True)
    async with client.session.get(tampered, headers=headers) as response:
        assert response.status == 401
        body = await response.json()
        assert body["error_code"] == "APIGW.0301"
        assert body["error_msg"] == (
            "Incorrect IAM authentication information: verify aksk signature fail"
        )
        assert body["request_id"] == response.headers["X-Request-Id"]
        assert SK not in json.dumps(body) and headers["Authorization"] not in json.dumps(body)
    for kwargs in ({"secret_key": SK[:-1] + "X"}, {"access_key": "AKUNKNOWN0000000000"}):
        url, headers = signed_get(client, BASE, [], **kwargs)  # type: ignore[arg-type]
        async with client.session.get(url, headers=headers) as response:
            assert (response.status, (await response.json())["error_code"]) == (401, "APIGW.0301")
    url, headers = signed_get(client, BASE, [], at=T0 - 16 * 60)
    async with client.session.get(url, headers=headers) as response:
        assert (response.status, (await response.json())["error_code"]) == (401, "APIGW.0303")
    assert secured.stats.signature_verified == 2
    assert secured.stats.auth_failures == 4
    url, headers = signed_get(client, BASE, [], project_header=OTHER_PROJECT)
    async with client.session.get(url, headers=headers) as response:
        assert (response.status, (await response.json())["error_code"]) == (403, "ModelArts.0210")


# ----- faults -------------------------------------------------------------------------------


async def test_error_rate_is_roughly_honoured(
    client: TestClient[Any, Any], sim: Simulation
) -> None:
    sim.faults.error_rate = 0.3
    statuses = [(await client.get(BASE, params={"limit": "1"})).status for _ in range(300)]
    errors = [s for s in statuses if s >= 500]
    assert 0.2 < len(errors) / len(statuses) < 0.4
    assert set(errors) == {500, 503}
    assert set(statuses) - {500, 503} == {200}


async def test_faults_replay_for_a_seed(aiohttp_client: AiohttpClient) -> None:
    runs = []
    for _ in range(2):
        sim = Simulation(seed=5, services=2, dynamic=False)
        sim.faults.error_rate = 0.5
        client = await aiohttp_client(create_app(sim))
        runs.append([(await client.get(BASE)).status for _ in range(40)])
    assert runs[0] == runs[1]
    assert 200 in runs[0] and (500 in runs[0] or 503 in runs[0])


async def test_429_carries_retry_after(client: TestClient[Any, Any], sim: Simulation) -> None:
    sim.faults.rate_429 = 1.0
    sim.faults.retry_after = 2.5
    response = await client.get(BASE)
    assert response.status == 429
    assert response.headers["Retry-After"] == "2.5"
    assert (await response.json())["error_code"] == "ModelArts.2799"
    assert response.headers["X-Request-Id"]


async def test_malformed_bodies(client: TestClient[Any, Any], sim: Simulation) -> None:
    sim.faults.malformed_rate = 1.0
    sid = next(iter(sim.services))
    kinds = set()
    for path in [BASE, f"{BASE}/{sid}", f"{BASE}/{sid}/events", f"{BASE}/{sid}/logs"] * 6:
        response = await client.get(path)
        assert response.status == 200
        text = await response.text()
        try:
            body = json.loads(text)
        except ValueError:
            kinds.add("html" if text.startswith("<html") else "truncated")
            continue
        kinds.add("types")
        if path == BASE:
            assert not isinstance(body["services"], list)
        elif path.endswith("/events"):
            events = body["events"]
            assert not isinstance(events, list) or events[0]["occur_time"] == "abc"
        elif path.endswith("/logs"):
            assert not isinstance(body["logs"], list)
        else:
            assert not isinstance(body["invocation_times"], int)
    assert kinds == {"html", "truncated", "types"}


async def test_dropped_connections(client: TestClient[Any, Any], sim: Simulation) -> None:
    sim.faults.drop_rate = 1.0
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.get(BASE)
    sim.faults.clear()
    assert (await client.get(BASE)).status == 200


async def test_faults_only_hit_the_chosen_endpoints(
    client: TestClient[Any, Any], sim: Simulation
) -> None:
    sim.faults.error_rate = 1.0
    sim.faults.endpoints = frozenset({"events"})
    sid = next(iter(sim.services))
    assert (await client.get(f"{BASE}/{sid}")).status == 200
    assert (await client.get(f"{BASE}/{sid}/events")).status >= 500
    sim.faults.clear()
    assert (await client.get(f"{BASE}/{sid}/events")).status == 200
    assert sim.faults.endpoints == MODELARTS_ENDPOINTS


# ----- statistics ---------------------------------------------------------------------------


async def test_in_flight_peak_and_counts(client: TestClient[Any, Any], sim: Simulation) -> None:
    sim.faults.slow_rate = 1.0
    sim.faults.slow_seconds = 0.3
    sid = next(iter(sim.services))
    started = time.monotonic()
    responses = await asyncio.gather(*(client.get(f"{BASE}/{sid}") for _ in range(5)))
    assert all(r.status == 200 for r in responses)
    assert time.monotonic() - started < 1.2  # they were concurrent, not queued
    assert sim.stats.in_flight_peak == 5
    assert sim.stats.in_flight == 0
    sim.faults.clear()
    await client.get(f"{BASE}/{sid}/events")
    await client.get(BASE)
    assert sim.stats.count("details") == 5
    assert sim.stats.count("details", sid) == 5
    assert sim.stats.count(service_id=sid) == 6
    assert sim.stats.by_endpoint() == {"details": 5, "events": 1, "list": 1}
    assert sim.stats.max_in_any_window(10.0) == 7
    sim.stats.reset()
    assert sim.stats.count() == 0 and sim.stats.in_flight_peak == 0


def test_max_in_any_window_is_an_exact_sliding_window() -> None:
    now = [0.0]
    stats = RequestStats(clock=lambda: now[0])
    for t in (0.0, 1.0, 2.0, 2.0, 3.0, 10.0):
        now[0] = t
        stats.begin("list", None)
        stats.end()
    stats.begin("events", None)  # also at 10.0
    stats.end()
    # Half-open windows: [1, 3) holds 1, 2, 2; a closed [1, 3] would hold four.
    assert stats.max_in_any_window(2.0) == 3
    assert stats.max_in_any_window(1.0) == 2
    assert stats.max_in_any_window(100.0) == 7
    assert stats.max_in_any_window(1.0, endpoints={"list"}) == 2
    assert stats.max_in_any_window(1.0, endpoints={"events"}) == 1


# ----- determinism and evolution ------------------------------------------------------------


def test_same_seed_same_fleet() -> None:
    a = Simulation(seed=42, services=30, clock=FakeClock(), dynamic=False)
    b = Simulation(seed=42, services=30, clock=FakeClock(), dynamic=False)
    c = Simulation(seed=43, services=30, clock=FakeClock(), dynamic=False)
    assert list(a.services) == list(b.services)
    for sid in a.services:
        assert a.details_json(sid) == b.details_json(sid)
        assert a.events_of(sid) == b.events_of(sid)
    assert set(a.services).isdisjoint(c.services)


def test_initial_fleet_mix_and_projects() -> None:
    projects = (DEFAULT_PROJECT_ID, OTHER_PROJECT)
    sim = Simulation(seed=1, services=10, project_ids=projects, clock=FakeClock(), dynamic=False)
    statuses = [svc.status for svc in sim.services.values()]
    for status in ("concerning", "failed", "stopped", "deploying"):
        assert status in statuses
    assert statuses.count("running") >= 4
    assert {svc.project_id for svc in sim.services.values()} == set(projects)


def test_dynamic_fleet_evolves_with_the_clock() -> None:
    clock = FakeClock()
    sim = Simulation(seed=7, services=5, clock=clock)
    deploying = [sid for sid, svc in sim.services.items() if svc.status == "deploying"]
    assert deploying
    sid = deploying[0]
    progress = [sim.details_json(sid)["progress"]]
    counters: dict[str, tuple[int, int]] = {}
    events_before = sum(len(sim.events_of(s)) for s in sim.services)
    reached_running = False
    statuses_seen = set()
    for _ in range(600):  # ten minutes, one read per second
        clock.advance(1)
        body = sim.details_json(sid)
        if not reached_running:
            if body["status"] == "deploying":
                progress.append(body["progress"])
            else:
                reached_running = body["status"] == "running"
                assert reached_running, body["status"]
        for other in sim.services:
            details = sim.details_json(other)
            statuses_seen.add(details["status"])
            now = (details["invocation_times"], details["failed_times"])
            before = counters.get(other, (0, 0))
            assert now[0] >= before[0] and now[1] >= before[1]
            counters[other] = now
    assert reached_running
    assert progress == sorted(progress) and progress[-1] > progress[0]
    assert sum(len(sim.events_of(s)) for s in sim.services) > events_before
    assert len(statuses_seen) >= 3
    running = [s for s in sim.services if sim.services[s].status == "running"]
    first = counters[running[0]][0]
    clock.advance(60)
    assert sim.details_json(running[0])["invocation_times"] > first or (
        sim.details_json(running[0])["status"] != "running"
    )


def test_dynamic_evolution_does_not_depend_on_read_pattern() -> None:
    eager_clock, lazy_clock = FakeClock(), FakeClock()
    eager = Simulation(seed=9, services=6, clock=eager_clock)
    lazy = Simulation(seed=9, services=6, clock=lazy_clock)
    for _ in range(300):
        eager_clock.advance(2)
        eager.evolve()
    lazy_clock.advance(600)
    for sid in eager.services:
        assert eager.details_json(sid) == lazy.details_json(sid)
        assert eager.events_of(sid) == lazy.events_of(sid)
        assert [vars(u) for u in eager.updates_of(sid)] == [vars(u) for u in lazy.updates_of(sid)]
        results = {u.result for u in eager.updates_of(sid)}
        assert results <= {"SUCCESS", "FAIL", "RUNNING"}


def test_dynamic_updates_produce_logs_and_events() -> None:
    clock = FakeClock()
    sim = Simulation(seed=3, services=5, clock=clock)
    updates_before = sum(len(sim.updates_of(s)) for s in sim.services)
    clock.advance(1800)
    sim.evolve()
    updates_after = [u for s in sim.services for u in sim.updates_of(s)]
    assert len(updates_after) > updates_before
    assert {"SUCCESS", "FAIL"} <= {u.result for u in updates_after}
    for sid in sim.services:
        details = sim.details_json(sid)
        assert details["update_time"] == max(u.update_time for u in sim.updates_of(sid))
        assert sum(item["weight"] for item in details["config"]) == 100


def test_happening_interval_sets_the_pace() -> None:
    calm_clock, busy_clock = FakeClock(), FakeClock()
    calm = Simulation(seed=4, services=5, clock=calm_clock, happening_interval=1e9)
    busy = Simulation(seed=4, services=5, clock=busy_clock, happening_interval=10.0)
    running = [sid for sid, svc in calm.services.items() if svc.status == "running"]
    assert running
    calm_before = {sid: (len(calm.events_of(sid)), len(calm.updates_of(sid))) for sid in running}
    busy_before = sum(len(busy.events_of(sid)) for sid in running)
    calm_clock.advance(900)
    busy_clock.advance(900)
    for sid in running:
        assert calm.details_json(sid)["status"] == "running"
        assert (len(calm.events_of(sid)), len(calm.updates_of(sid))) == calm_before[sid]
    assert sum(len(busy.events_of(sid)) for sid in running) > busy_before


def test_large_fleet_builds_quickly() -> None:
    started = time.perf_counter()
    sim = Simulation(seed=1, services=5000, events_per_service=20)
    assert time.perf_counter() - started < 8.0
    assert len(sim.services) == 5000
    assert sum(len(svc.events) for svc in sim.services.values()) == 100_000


async def test_large_fleet_lists_in_pages(aiohttp_client: AiohttpClient) -> None:
    sim = Simulation(seed=1, services=5000, max_page_size=1000)
    client = await aiohttp_client(create_app(sim))
    started = time.perf_counter()
    ids: set[str] = set()
    while True:
        page = await get_json(client, BASE, offset=len(ids), limit=5000)
        if not page["services"]:
            break
        assert page["count"] <= 1000
        ids.update(s["service_id"] for s in page["services"])
    assert len(ids) == 5000
    assert time.perf_counter() - started < 10.0


# ----- serve and the command line -----------------------------------------------------------


async def test_serve_yields_a_working_url() -> None:
    sim = Simulation(seed=1, services=2, dynamic=False)
    async with serve(sim) as url, aiohttp.ClientSession() as session:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        async with session.get(f"{url}{BASE}") as response:
            assert (await response.json())["total_count"] == 2


def test_cli_reports_a_busy_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert simulator_main(["--listen", f"127.0.0.1:{port}", "--services", "1"]) == 2


def test_cli_rejects_bad_flags() -> None:
    with pytest.raises(SystemExit) as raised:
        simulator_main(["--error-rate", "1.5"])
    assert raised.value.code == 2


@pytest.mark.e2e
def test_cli_serves_until_sigterm() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = "from exporter.simulator.cli import main; raise SystemExit(main())"
    args = ["--listen", f"127.0.0.1:{port}", "--services", "3", "--seed", "4", "--strings"]
    with subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    ) as process:
        try:
            assert process.stderr is not None
            line = process.stderr.readline()
            assert f"url=http://127.0.0.1:{port}" in line, line
            body = asyncio.run(_fetch(f"http://127.0.0.1:{port}{BASE}"))
            assert body["total_count"] == "3"
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()


async def _fetch(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.json()
