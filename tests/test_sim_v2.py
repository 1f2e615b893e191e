"""The simulator's v2 API, monitor API, account quota and project policies."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from exporter.simulator import Simulation, create_app
from exporter.simulator.scenario import DEFAULT_PROJECT_ID

V1 = f"/v1/{DEFAULT_PROJECT_ID}/services"
V2 = f"/v2/{DEFAULT_PROJECT_ID}/services"
MB = 1024 * 1024


class Clock:
    def __init__(self, start: float = 1_790_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sim() -> Simulation:
    return Simulation(seed=11, services=5, v2_services=23)


@pytest.fixture
async def client(aiohttp_client: Any, sim: Simulation) -> TestClient[Any, Any]:
    return await aiohttp_client(create_app(sim))  # type: ignore[no-any-return]


async def _json(client: TestClient[Any, Any], path: str, **params: str) -> Any:
    response = await client.get(path, params=params)
    assert response.status == 200, await response.text()
    return await response.json()


def _v2_ids(sim: Simulation) -> list[str]:
    return [sid for sid, svc in sim.services.items() if svc.generation == "v2"]


async def test_each_generation_sees_only_its_services(
    client: TestClient[Any, Any], sim: Simulation
) -> None:
    v1 = await _json(client, V1)
    v2 = await _json(client, V2, limit="500")
    v1_ids = {item["service_id"] for item in v1["services"]}
    v2_ids = {item["id"] for item in v2["data"]}
    assert v1_ids | v2_ids == set(sim.services) and not v1_ids & v2_ids
    assert v2_ids == set(_v2_ids(sim)) and len(v2_ids) == 23
    a_v2, a_v1 = next(iter(v2_ids)), next(iter(v1_ids))
    assert (await client.get(f"{V1}/{a_v2}")).status == 404
    assert (await client.get(f"{V1}/{a_v2}/monitor")).status == 404
    assert (await client.get(f"{V2}/{a_v1}")).status == 404
    assert (await client.get(f"{V2}/{a_v1}/events")).status == 404


async def test_v2_paging_rules(client: TestClient[Any, Any]) -> None:
    assert (await client.get(V2, params={"limit": "501"})).status == 400
    assert (await client.get(V2, params={"limit": "5", "offset": "3"})).status == 400
    assert (await client.get(V2, params={"sort_dir": "sideways"})).status == 400
    default = await _json(client, V2)
    assert default["size"] == 10 and default["total"] == 23 and default["pages"] == 3
    seen: list[str] = []
    created: list[int] = []
    for page in range(4):
        body = await _json(
            client, V2, limit="7", offset=str(7 * page), sort_key="create_at", sort_dir="ASC"
        )
        assert body["current"] == page and body["pages"] == 4
        seen += [item["id"] for item in body["data"]]
        created += [item["create_at"] for item in body["data"]]
    assert len(seen) == len(set(seen)) == 23
    assert created == sorted(created)
    # the default order: update_at, newest first
    updated = [item["update_at"] for item in (await _json(client, V2, limit="500"))["data"]]
    assert updated == sorted(updated, reverse=True)


async def test_v2_status_filter_is_upper_case(
    client: TestClient[Any, Any], sim: Simulation
) -> None:
    body = await _json(client, V2, limit="500", status="RUNNING")
    expected = {sid for sid in _v2_ids(sim) if sim.service(sid).status == "running"}
    assert {item["id"] for item in body["data"]} == expected and expected


def test_v2_instances_lag_while_deploying_and_upgrades_bump_the_version() -> None:
    clock = Clock()
    sim = Simulation(seed=5, services=0, v2_services=0, clock=clock, happening_interval=1e9)
    sid = sim.add_service(generation="v2", models=2)
    sim.set_status(sid, "deploying")
    svc = sim.service(sid)
    from exporter.simulator import wire

    desired = [m.instance_count for m in svc.models]
    early = [
        g["running_count"]
        for g in wire.v2_details(sim, svc, sim.now_ms())["version"]["instance_groups"]
    ]
    assert all(r < d for r, d in zip(early, desired, strict=True))
    clock.now += 200  # every deployment ends within 120 s
    svc = sim.service(sid)
    assert svc.status == "running"
    body = wire.v2_details(sim, svc, sim.now_ms())
    assert body["status"] == "RUNNING"
    assert [g["running_count"] for g in body["version"]["instance_groups"]] == desired
    assert [g["count"] for g in body["version"]["instance_groups"]] == desired


def test_v2_events_aggregate_and_grow() -> None:
    sim = Simulation(seed=5, services=0, v2_services=0, dynamic=False)
    sid = sim.add_service(generation="v2")
    sim.add_events(sid, [(1000, "normal", "start to deploy service")] * 3)
    sim.add_events(sid, [(2000, "abnormal", "[m 1] health check failed")])
    records = sim.v2_events_of(sid)
    assert [(r.event_type, r.event_count) for r in records] == [("normal", 3), ("warning", 1)]
    assert records[0].create_at == 1000 and records[0].update_at == 1000
    event_id = sim.add_v2_event(sid, "abnormal", "pull image failed", count=2, at=3000)
    sim.grow_v2_event(sid, event_id, 5, at=4000)
    assert sim.v2_event_totals(sid) == {"normal": 3, "abnormal": 7, "warning": 1}
    grown = next(r for r in sim.v2_events_of(sid) if r.id == event_id)
    assert (grown.create_at, grown.update_at, grown.event_count) == (3000, 4000, 7)
    with pytest.raises(ValueError):
        sim.grow_v2_event(sid, event_id, -1)


async def test_v2_events_endpoint_pages_and_filters(
    client: TestClient[Any, Any], sim: Simulation
) -> None:
    sid = _v2_ids(sim)[0]
    sim.add_v2_event(sid, "warning", "instance restarted", count=4)
    body = await _json(client, f"{V2}/{sid}/events", limit="500")
    assert body["total"] == len(sim.v2_events_of(sid))
    assert sum(item["event_count"] for item in body["data"]) == sum(
        sim.v2_event_totals(sid).values()
    )
    warnings = await _json(client, f"{V2}/{sid}/events", limit="500", event_type="WARNING")
    assert {item["event_type"] for item in warnings["data"]} == {"WARNING"}
    assert (
        sum(item["event_count"] for item in warnings["data"]) == sim.v2_event_totals(sid)["warning"]
    )
    assert (await client.get(f"{V2}/{sid}/events", params={"event_type": "warning"})).status == 400


async def test_monitor_follows_the_flavor_and_omits_what_it_is_told(
    client: TestClient[Any, Any], sim: Simulation
) -> None:
    running = [
        sid
        for sid, svc in sim.services.items()
        if svc.generation == "v1" and svc.status == "running"
    ]
    sid = running[0]
    body = await _json(client, f"{V1}/{sid}/monitor")
    svc = sim.service(sid)
    assert body["service_instance_count"] == sum(m.instance_count for m in svc.models)
    assert body["service_running_instance_count"] == body["service_instance_count"]
    assert body["req_count_per_min"] > 0
    for entry, model in zip(body["monitors"], svc.models, strict=True):
        assert entry["model_id"] == model.model_id
        assert 0 < entry["cpu_core_usage"] <= entry["cpu_core_total"]
        assert 0 < entry["cpu_memory_usage"] <= entry["cpu_memory_total"]
        has_gpu = "gpu" in model.specification
        assert ("gpu_memory_total" in entry) == has_gpu
        if has_gpu:
            assert 0 < entry["gpu_memory_usage"] <= entry["gpu_memory_total"]
    sim.monitor_omit = {"gpu_memory_usage", "req_count_per_min"}
    body = await _json(client, f"{V1}/{sid}/monitor")
    assert "req_count_per_min" not in body
    assert all("gpu_memory_usage" not in entry for entry in body["monitors"])
    sim.set_status(sid, "stopped")
    body = await _json(client, f"{V1}/{sid}/monitor")
    assert body["service_running_instance_count"] == 0


async def test_quota_answers_the_gateways_429(
    client: TestClient[Any, Any], sim: Simulation
) -> None:
    sim.set_quota(per_minute=3, retry_after=2)
    answers = [await client.get(V1) for _ in range(5)]
    assert [a.status for a in answers] == [200, 200, 200, 429, 429]
    body = await answers[3].json()
    assert body["error_code"] == "APIG.0308"
    assert "limit:3,time:1 minute" in body["error_msg"]
    assert answers[3].headers["Retry-After"] == "2"
    assert sim.stats.throttled() == 2
    token = await client.post("/v3/auth/tokens", json={})
    assert token.status != 429  # IAM is not behind the ModelArts quota
    sim.set_quota(None, None)
    assert (await client.get(V1)).status == 200


async def test_quota_per_second(client: TestClient[Any, Any], sim: Simulation) -> None:
    sim.set_quota(per_second=4)
    statuses = [(await client.get(V2)).status for _ in range(6)]
    assert statuses.count(200) == 4 and statuses[-1] == 429


async def test_forbid_and_allow_whole_endpoints(
    client: TestClient[Any, Any], sim: Simulation
) -> None:
    sim.forbid(DEFAULT_PROJECT_ID, ["list"])
    sim.forbid(DEFAULT_PROJECT_ID, ["v2_list", "v2_details", "v2_events"], status=404)
    refused = await client.get(V1)
    assert refused.status == 403
    assert (await refused.json())["error_code"] == "ModelArts.0204"
    missing = await client.get(V2)
    assert missing.status == 404 and (await missing.json())["error_code"] == "APIG.0101"
    v1_sid = next(sid for sid, svc in sim.services.items() if svc.generation == "v1")
    assert (await client.get(f"{V1}/{v1_sid}")).status == 200  # details still allowed
    sim.allow(DEFAULT_PROJECT_ID, ["list"])
    assert (await client.get(V1)).status == 200
    assert (await client.get(V2)).status == 404
    sim.allow(DEFAULT_PROJECT_ID)
    assert (await client.get(V2)).status == 200
    with pytest.raises(ValueError):
        sim.forbid(DEFAULT_PROJECT_ID, ["list"], status=500)
