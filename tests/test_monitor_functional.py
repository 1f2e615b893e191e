"""Resource usage from the v1 monitor API, end to end (issue 14's acceptance)."""

from __future__ import annotations

from exporter.simulator import Simulation, serve, wire
from tests.harness import Samples, exposed, manual_poller, one, pick, sim_config

MB = 1024 * 1024
# SPEC §4 family -> (monitor field, scale)
PER_MODEL = {
    "modelarts_service_model_cpu_cores_used": ("cpu_core_usage", 1),
    "modelarts_service_model_cpu_cores": ("cpu_core_total", 1),
    "modelarts_service_model_memory_used_bytes": ("cpu_memory_usage", MB),
    "modelarts_service_model_memory_bytes": ("cpu_memory_total", MB),
    "modelarts_service_model_gpus_used": ("gpu_usage", 1),
    "modelarts_service_model_gpus": ("gpu_total", 1),
    "modelarts_service_model_gpu_memory_used_bytes": ("gpu_memory_usage", MB),
    "modelarts_service_model_gpu_memory_bytes": ("gpu_memory_total", MB),
    "modelarts_service_model_npus_used": ("npu_usage", 1),
    "modelarts_service_model_npus": ("npu_total", 1),
    "modelarts_service_model_npu_memory_used_bytes": ("npu_memory_usage", MB),
    "modelarts_service_model_npu_memory_bytes": ("npu_memory_total", MB),
    "modelarts_service_model_running_instances": ("model_running_instance_count", 1),
}
PER_SERVICE = {
    "modelarts_service_running_instances": ("service_running_instance_count", 1),
    "modelarts_service_requests_last_minute": ("req_count_per_min", 1),
}


def _sim() -> Simulation:
    # a still clock: usage wobbles with time, and the test compares with the API at one moment
    sim = Simulation(seed=31, services=12, dynamic=False, clock=lambda: 1_790_000_000.0)
    # NPU flavors exist only for some fleets: give two models one, so every family is exercised.
    serving = [s for s in sim.services.values() if s.status == "running"]
    serving[0].models[0].specification = "modelarts.vm.npu.snt3"
    serving[1].models[-1].specification = "modelarts.vm.gpu.t4"
    return sim


def _serving(sim: Simulation) -> list[str]:
    return [sid for sid, svc in sim.services.items() if svc.status in ("running", "concerning")]


def assert_monitor_truth(samples: Samples, sim: Simulation, sid: str) -> int:
    """Every family equals the API's value; returns how many series were checked."""
    svc = sim.service(sid)
    body = wire.monitor(sim, svc, sim.now_ms())
    body = {k: v for k, v in body.items() if k not in sim.monitor_omit}
    checked = 0
    for family, (field, scale) in PER_SERVICE.items():
        found = pick(samples, family, service_id=sid)
        if field in body:
            assert found == [body[field] * scale], (family, sid)
            checked += 1
        else:
            assert found == [], (family, sid)
    for sent in body["monitors"]:
        entry = {k: v for k, v in sent.items() if k not in sim.monitor_omit}
        labels = {"service_id": sid, "model_id": entry["model_id"]}
        for family, (field, scale) in PER_MODEL.items():
            found = pick(samples, family, **labels)
            if field in entry:
                assert found == [entry[field] * scale], (family, sid)
                checked += 1
            else:
                assert found == [], (family, sid, "a field left out gives no series")
    return checked


async def test_every_monitor_family_carries_the_api_value() -> None:
    sim = _sim()
    async with serve(sim) as url, manual_poller(sim_config(url)) as (poller, exporter):
        await poller.run_cycle(poller.project_ids[0])
        samples = exposed(exporter)
        checked = sum(assert_monitor_truth(samples, sim, sid) for sid in _serving(sim))
        assert checked > 50
        for family in (*PER_MODEL, *PER_SERVICE):
            assert pick(samples, family), f"{family} never exported"
        # bytes are MB x 1,048,576 exactly
        sid = _serving(sim)[0]
        entry = wire.monitor(sim, sim.service(sid), sim.now_ms())["monitors"][0]
        assert (
            one(
                samples,
                "modelarts_service_model_memory_bytes",
                service_id=sid,
                model_id=entry["model_id"],
            )
            == entry["cpu_memory_total"] * 1_048_576
        )


async def test_a_field_left_out_gives_no_series() -> None:
    sim = _sim()
    sim.monitor_omit = {"gpu_memory_usage", "npu_total", "req_count_per_min"}
    async with serve(sim) as url, manual_poller(sim_config(url)) as (poller, exporter):
        await poller.run_cycle(poller.project_ids[0])
        samples = exposed(exporter)
        for sid in _serving(sim):
            assert_monitor_truth(samples, sim, sid)
        assert not pick(samples, "modelarts_service_model_gpu_memory_used_bytes")
        assert not pick(samples, "modelarts_service_model_npus")
        assert not pick(samples, "modelarts_service_requests_last_minute")
        assert pick(samples, "modelarts_service_model_gpu_memory_bytes")


async def test_a_stopped_service_loses_its_monitor_series_at_the_next_poll() -> None:
    sim = _sim()
    async with serve(sim) as url, manual_poller(sim_config(url)) as (poller, exporter):
        project = poller.project_ids[0]
        await poller.run_cycle(project)
        sid = _serving(sim)[0]
        assert pick(exposed(exporter), "modelarts_service_model_cpu_cores", service_id=sid)
        sim.set_status(sid, "stopped")
        await poller.run_cycle(project)
        samples = exposed(exporter)
        for family in (*PER_MODEL, *PER_SERVICE):
            assert not pick(samples, family, service_id=sid), family
        assert one(samples, "modelarts_service_status", service_id=sid, status="stopped") == 1


async def test_one_monitor_call_per_interval_and_none_for_services_not_serving() -> None:
    sim = _sim()
    async with serve(sim) as url:
        config = sim_config(url, monitor_interval=3600.0)
        async with manual_poller(config) as (poller, _):
            project = poller.project_ids[0]
            for _ in range(5):
                await poller.run_cycle(project)
            serving = set(_serving(sim))
            for sid in sim.services:
                assert sim.stats.count("monitor", sid) == (1 if sid in serving else 0), sid
        # with the harness's every-cycle interval, one per cycle: the interval is what limits it
        sim.stats.reset()
        async with manual_poller(sim_config(url)) as (poller, _):
            for _ in range(3):
                await poller.run_cycle(poller.project_ids[0])
            assert sim.stats.count("monitor") == 3 * len(serving)


async def test_monitor_off_makes_no_call() -> None:
    sim = _sim()
    async with (
        serve(sim) as url,
        manual_poller(sim_config(url, monitor_interval=0.0)) as (
            poller,
            exporter,
        ),
    ):
        await poller.run_cycle(poller.project_ids[0])
        assert sim.stats.count("monitor") == 0
        assert not pick(exposed(exporter), "modelarts_service_model_cpu_cores")


async def test_a_failing_monitor_endpoint_touches_nothing_else() -> None:
    sim = _sim()
    async with serve(sim) as url, manual_poller(sim_config(url)) as (poller, exporter):
        project = poller.project_ids[0]
        await poller.run_cycle(project)
        before = exposed(exporter)
        sim.faults.endpoints = frozenset({"monitor"})
        for rate in ("error_rate", "malformed_rate"):
            sim.faults.clear()
            sim.faults.endpoints = frozenset({"monitor"})
            setattr(sim.faults, rate, 1.0)
            await poller.run_cycle(project)
            after = exposed(exporter)
            for sid in _serving(sim):
                assert (
                    one(
                        after,
                        "modelarts_exporter_collect_success",
                        service_id=sid,
                        endpoint="monitor",
                    )
                    == 0
                ), rate
                for endpoint in ("details", "events"):
                    assert (
                        one(
                            after,
                            "modelarts_exporter_collect_success",
                            service_id=sid,
                            endpoint=endpoint,
                        )
                        == 1
                    )
            # the other families of the services are untouched (the sim is static)
            others = {
                key: value
                for key, value in before.items()
                if key[0].startswith("modelarts_service_")
                and key[0] not in ("modelarts_service_requests_last_minute",)
            }
            for key, value in others.items():
                assert after.get(key) == value, key
