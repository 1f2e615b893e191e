"""The API budget end to end: shards share it, an account quota slows the exporter down instead
of breaking it, and every value still converges to the API's truth (issue 15)."""

from __future__ import annotations

import asyncio
import time

from exporter.app import Exporter, RunOptions
from exporter.simulator import Simulation, serve
from exporter.simulator.faults import MODELARTS_ENDPOINTS
from tests.harness import exposed, one, pick, sim_config


async def _run_for(exporters: list[Exporter], seconds: float) -> None:
    for exporter in exporters:
        await exporter.start()
    try:
        await asyncio.sleep(seconds)
    finally:
        for exporter in exporters:
            await exporter.stop()


async def test_two_shards_together_stay_within_the_budget() -> None:
    sim = Simulation(seed=41, services=60, v2_services=20, dynamic=False)
    budget = 20.0
    async with serve(sim) as url:
        # every safety net each cycle: far more work than the budget admits
        config = sim_config(url, max_requests_per_second=budget, interval=0.3)
        shards = [Exporter(config, RunOptions(shard=i, total_shards=2)) for i in range(2)]
        started = time.monotonic()
        await _run_for(shards, 4.0)
        elapsed = time.monotonic() - started
    peak = sim.stats.max_in_any_window(1.0, endpoints=MODELARTS_ENDPOINTS)
    total = sum(n for ep, n in sim.stats.by_endpoint().items() if ep in MODELARTS_ENDPOINTS)
    print(f"two shards, budget {budget:g}/s: peak {peak} in any second, {total / elapsed:.1f}/s")
    assert peak <= budget
    # the budget was the limit (the work would need far more): both shards used their half
    assert total >= 0.7 * budget * elapsed
    watched = [sum(pick(exposed(s), "modelarts_exporter_watched_services")) for s in shards]
    assert sum(watched) == len(sim.services) and all(w > 0 for w in watched)


async def test_a_quota_slows_the_exporter_down_and_nothing_is_lost() -> None:
    sim = Simulation(seed=42, services=8, v2_services=4, dynamic=False)
    sim.set_quota(per_second=4)
    async with serve(sim) as url:
        # the list-driven schedule (safety nets far away): the first poll of every service is
        # the work that does not fit, carried over cycle to cycle
        config = sim_config(
            url,
            max_requests_per_second=10.0,
            interval=1.0,
            details_interval=3600.0,
            events_interval=3600.0,
            monitor_interval=3600.0,
        )
        exporter = Exporter(config, RunOptions())
        await exporter.start()
        try:
            warm = time.monotonic() + 4.0
            seen: set[str] = set()
            checkpoints: list[float] = []
            deadline = time.monotonic() + 16.0
            while time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                samples = exposed(exporter)
                ids = {
                    dict(labels)["service_id"]
                    for (name, labels) in samples
                    if name == "modelarts_service_info"
                }
                if seen:
                    # no series disappears while throttled: older data, never holes
                    assert seen <= ids
                seen |= ids
                if time.monotonic() >= warm and not checkpoints:
                    checkpoints = [time.monotonic(), sim.stats.started(), sim.stats.throttled()]
            _, requests_at_warm, throttled_at_warm = checkpoints
            requests = sim.stats.started() - requests_at_warm
            throttled = sim.stats.throttled() - throttled_at_warm
            samples = exposed(exporter)
        finally:
            await exporter.stop()
    share = throttled / max(requests, 1)
    print(
        f"quota 4/s, budget 10/s: {requests} requests after warm-up, {throttled} answered 429 "
        f"({share:.1%}); rate now {one(samples, 'modelarts_exporter_api_rate_limit'):.2f}/s"
    )
    assert seen == set(sim.services)
    assert sum(pick(samples, "modelarts_exporter_api_throttled_total")) > 0
    # Without adapting, 10/s against 4/s would be refused 60 % of the time. With a quiet period
    # of one 1 s cycle the rate climbs back within two seconds and touches the quota again (about
    # one refusal in four); at the default 30 s a climb takes minutes and the share falls under
    # 2 % (the benchmark measures it at the SPEC's quota).
    assert share < 0.4
    # every value converged to the API's truth (a static fleet: the first full read is final)
    for sid, svc in sim.services.items():
        assert one(samples, "modelarts_service_status", service_id=sid, status=svc.status) == 1
        for event_type, count in sim.event_counts(sid).items():
            assert (
                sum(
                    pick(
                        samples,
                        "modelarts_service_events_total",
                        service_id=sid,
                        event_type=event_type,
                    )
                )
                == count
            ), (sid, event_type)
