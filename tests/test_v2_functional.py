"""New-generation (v2) services, end to end: the real exporter against the real simulator."""

from __future__ import annotations

import logging

import pytest

from exporter.simulator import Simulation, serve, wire
from exporter.simulator.scenario import DEFAULT_PROJECT_ID
from tests.harness import Samples, exposed, manual_poller, one, pick, sim_config

V2_ENDPOINTS = ("v2_list", "v2_details", "v2_events")


def _v2(sim: Simulation) -> list[str]:
    return [sid for sid, svc in sim.services.items() if svc.generation == "v2"]


def _events(samples: Samples, sid: str, event_type: str) -> float:
    return sum(
        pick(samples, "modelarts_service_events_total", service_id=sid, event_type=event_type)
    )


def assert_v2_truth(samples: Samples, sim: Simulation, sid: str) -> None:
    svc = sim.service(sid)
    assert one(samples, "modelarts_service_info", service_id=sid, generation="v2") == 1
    assert one(samples, "modelarts_service_status", service_id=sid, status=svc.status) == 1
    assert sum(pick(samples, "modelarts_service_status", service_id=sid)) == 1
    groups = wire.v2_details(sim, svc, sim.now_ms())["version"]["instance_groups"]
    for group in groups:
        labels = {"service_id": sid, "model_id": group["id"]}
        assert one(samples, "modelarts_service_model_instances", **labels) == group["count"]
        assert (
            one(samples, "modelarts_service_model_running_instances", **labels)
            == group["running_count"]
        )
    for event_type, total in sim.v2_event_totals(sid).items():
        assert _events(samples, sid, event_type) == total, (sid, event_type)


async def test_v2_families_carry_the_api_values_beside_v1() -> None:
    sim = Simulation(seed=21, services=4, v2_services=6, dynamic=False)
    for sid in _v2(sim)[:3]:
        sim.add_v2_event(sid, "warning", "instance restarted", count=2)
    async with serve(sim) as url, manual_poller(sim_config(url)) as (poller, exporter):
        await poller.run_cycle(poller.project_ids[0])
        samples = exposed(exporter)
        for sid in _v2(sim):
            assert_v2_truth(samples, sim, sid)
        v1 = [sid for sid, svc in sim.services.items() if svc.generation == "v1"]
        for sid in v1:
            assert one(samples, "modelarts_service_info", service_id=sid, generation="v1") == 1
        statuses = {sim.service(sid).status for sid in _v2(sim)}
        assert len(statuses) >= 3  # running, deploying, concerning, failed, stopped ...
        # v2 exposes no progress, invocation counters or update logs
        for sid in _v2(sim):
            assert not pick(samples, "modelarts_service_invocations_total", service_id=sid)
            assert not pick(samples, "modelarts_service_updates_total", service_id=sid)


async def test_v2_event_counters_exact_through_growth_late_records_and_restart() -> None:
    sim = Simulation(seed=22, services=0, v2_services=3, dynamic=False)
    sid = _v2(sim)[0]
    async with serve(sim) as url:
        config = sim_config(url)
        async with manual_poller(config) as (poller, exporter):
            project = poller.project_ids[0]
            await poller.run_cycle(project)
            assert_v2_truth(exposed(exporter), sim, sid)
            records = sim.v2_events_of(sid)
            sim.grow_v2_event(sid, records[0].id, 4)  # an old record happens again
            sim.add_v2_event(sid, "abnormal", "pull image failed", count=3)
            # a record first seen late, dated before what was already read
            sim.add_v2_event(sid, "warning", "health probe slow", at=records[0].create_at - 5)
            for _ in range(2):
                await poller.run_cycle(project)
            before_restart = exposed(exporter)
            assert_v2_truth(before_restart, sim, sid)
        # a new process: it reads the whole history again, and the counter is the same truth
        async with manual_poller(config) as (poller, exporter):
            await poller.run_cycle(poller.project_ids[0])
            after = exposed(exporter)
            assert_v2_truth(after, sim, sid)
            for event_type in ("normal", "abnormal", "warning"):
                assert _events(after, sid, event_type) == _events(before_restart, sid, event_type)


async def test_an_explicit_v2_id_is_found_in_the_v2_list() -> None:
    sim = Simulation(seed=23, services=2, v2_services=2, dynamic=False)
    sid = _v2(sim)[0]
    async with serve(sim) as url:
        config = sim_config(url, services=(sid,), discovery=False)
        async with manual_poller(config) as (poller, exporter):
            await poller.run_cycle(poller.project_ids[0])
            # the lists are read anyway (the heartbeat): no v1 details call to find it
            assert sim.stats.count("details") == 0
            assert sim.stats.count("v2_details", sid) == 1
            samples = exposed(exporter)
            assert one(samples, "modelarts_service_info", service_id=sid, generation="v2") == 1
            assert len(pick(samples, "modelarts_service_info")) == 1


async def test_without_lists_an_explicit_v2_id_is_found_after_a_v1_404_and_remembered() -> None:
    sim = Simulation(seed=23, services=2, v2_services=2, dynamic=False)
    sim.forbid(DEFAULT_PROJECT_ID, ["list", "v2_list"])
    sid = _v2(sim)[0]
    async with serve(sim) as url:
        config = sim_config(url, services=(sid,), discovery=False)
        async with manual_poller(config) as (poller, exporter):
            project = poller.project_ids[0]
            await poller.run_cycle(project)
            assert sim.stats.count("details", sid) == 1  # v1 first: 404
            assert sim.stats.count("v2_details", sid) == 1
            assert_v2_truth(exposed(exporter), sim, sid)
            sim.stats.reset()
            cycles = 3
            for _ in range(cycles):
                await poller.run_cycle(project)
            assert sim.stats.count("details", sid) == 0  # the generation found is kept
            # no list: one details call per service per cycle
            assert sim.stats.count("v2_details", sid) == cycles


async def test_a_project_without_v2_is_logged_and_counted_and_v1_keeps_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = Simulation(seed=24, services=3, v2_services=2, dynamic=False)
    sim.forbid(DEFAULT_PROJECT_ID, V2_ENDPOINTS, status=404)
    async with serve(sim) as url, manual_poller(sim_config(url)) as (poller, exporter):
        project = poller.project_ids[0]
        caplog.set_level(logging.WARNING, logger="exporter.poller")
        cycles = 3
        for _ in range(cycles):
            await poller.run_cycle(project)
        unavailable = [
            r for r in caplog.records if r.getMessage().startswith("service list unavailable")
        ]
        assert len(unavailable) == cycles
        assert {getattr(r, "generation", "") for r in unavailable} == {"v2"}
        samples = exposed(exporter)
        assert (
            one(samples, "modelarts_exporter_api_requests_total", endpoint="v2_list", code="404")
            == cycles
        )
        v1 = [s for s, svc in sim.services.items() if svc.generation == "v1"]
        assert {
            dict(labels)["service_id"]
            for (name, labels), _ in samples.items()
            if name == "modelarts_service_info"
        } == set(v1)
        for sid in v1:
            assert (
                one(
                    samples,
                    "modelarts_exporter_collect_success",
                    service_id=sid,
                    endpoint="details",
                )
                == 1
            )
        # v2 offered again: its services appear in the next cycle
        sim.allow(DEFAULT_PROJECT_ID)
        await poller.run_cycle(project)
        samples = exposed(exporter)
        for sid in _v2(sim):
            assert_v2_truth(samples, sim, sid)


async def test_a_live_v2_fleet_converges_to_the_api() -> None:
    """Dynamic services deploy, upgrade, fail and grow events; after each cycle every v2 family
    equals what the API says at that moment."""

    class Clock:
        now = 1_790_000_000.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    sim = Simulation(seed=25, services=0, v2_services=12, clock=clock, happening_interval=20.0)
    async with serve(sim) as url, manual_poller(sim_config(url)) as (poller, exporter):
        project = poller.project_ids[0]
        seen: set[str] = set()
        for _ in range(12):
            clock.now += 15.0
            sim.evolve()
            await poller.run_cycle(project)
            samples = exposed(exporter)
            for sid in _v2(sim):
                assert_v2_truth(samples, sim, sid)
                seen.add(sim.service(sid).status)
        assert {"running", "deploying"} <= seen and len(seen) >= 3, seen
