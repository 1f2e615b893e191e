"""Faults, budget, lifecycle of series, discovery and sharding, against the simulator."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import replace

import aiohttp
import pytest

from exporter.app import RunOptions
from exporter.polling.poller import in_shard
from exporter.simulator import DEFAULT_PROJECT_ID, Simulation, serve
from tests.harness import (
    Samples,
    exposed,
    manual_poller,
    one,
    parse_samples,
    pick,
    running_exporter,
    scrape,
    sim_config,
    wait_until,
)


def service_ids(samples: Samples, metric: str = "modelarts_service_info") -> set[str]:
    return {dict(ls)["service_id"] for (n, ls) in samples if n == metric}


def converged(samples: Samples, sim: Simulation) -> bool:
    for sid in sim.services:
        api = sim.details_json(sid)
        if pick(samples, "modelarts_service_status", service_id=sid, status=api["status"]) != [1]:
            return False
        if pick(samples, "modelarts_service_invocations_total", service_id=sid) != [
            float(api["invocation_times"])
        ]:
            return False
        counts = sim.event_counts(sid)
        for event_type in ("normal", "abnormal"):
            got = sum(
                pick(
                    samples, "modelarts_service_events_total", service_id=sid, event_type=event_type
                )
            )
            if got != counts.get(event_type, 0):
                return False
    return True


@pytest.mark.e2e
async def test_a_minute_of_faults_then_convergence() -> None:
    sim = Simulation(seed=31, services=6, dynamic=False, max_page_size=5)
    interval = 5.0
    config = sim_config("", interval=interval, timeout=2.0, retries=2, discovery_interval=5.0)
    async with serve(sim) as api_url:
        config = sim_config(
            api_url, interval=interval, timeout=2.0, retries=2, discovery_interval=5.0
        )
        async with running_exporter(config) as (url, exporter):
            await wait_until(exporter.ready, what="first cycle")
            f = sim.faults
            f.error_rate, f.rate_429, f.slow_rate, f.malformed_rate = 0.30, 0.10, 0.10, 0.05
            f.slow_seconds, f.retry_after = 1.0, 1.0
            worst = 0.0
            sids = list(sim.services)
            deadline = time.monotonic() + 60
            step = 0
            async with aiohttp.ClientSession() as http:
                while time.monotonic() < deadline:
                    step += 1
                    if step % 10 == 0:  # events keep arriving, bursts on one timestamp included
                        sid = sids[step % len(sids)]
                        sim.add_random_events(sid, 7, occur_time=sim.now_ms())
                        sim.add_invocations(sid, 100, 3)
                        sim.set_status(sids[(step // 10) % len(sids)], "concerning")
                    started = time.monotonic()
                    async with http.get(url + "/metrics") as resp:
                        assert resp.status == 200
                        await resp.read()
                    worst = max(worst, time.monotonic() - started)
                    await asyncio.sleep(0.5)
            assert worst < 1.0, f"slowest scrape {worst:.3f}s"
            requests = await scrape(url)
            assert sum(pick(requests, "modelarts_exporter_api_retries_total")) > 0
            assert pick(requests, "modelarts_exporter_api_requests_total", code="429")
            f.clear()
            stopped = time.monotonic()

            async def is_converged() -> bool:
                # Values and the exporter's own collect status: a cycle still in flight when
                # the faults stopped may match the values yet have failed a request.
                samples = await scrape(url)
                ok = pick(samples, "modelarts_exporter_collect_success", endpoint="details")
                return converged(samples, sim) and bool(ok) and all(v == 1 for v in ok)

            await wait_until(is_converged, timeout=4 * interval, interval=0.2, what="convergence")
            assert time.monotonic() - stopped <= 2 * interval
            final = await scrape(url)
            assert all(
                v == 1
                for v in pick(final, "modelarts_exporter_collect_success", endpoint="details")
            )


async def test_rate_limit_and_concurrency_cap_hold_at_the_server() -> None:
    sim = Simulation(seed=32, services=12, dynamic=False)
    sim.faults.slow_rate, sim.faults.slow_seconds = 0.3, 0.2
    # interval 10 s: the whole first poll fits one cycle's budget (5/s x 10 s)
    config = sim_config("", max_requests_per_second=5, max_concurrency=2, interval=10.0)
    async with (
        serve(sim) as api_url,
        manual_poller(replace(config, projects=sim_config(api_url).projects)) as (poller, _),
    ):
        sim.stats.reset()
        await poller.run_cycle(poller.project_ids[0])  # 1 list + 12 x (details, events, logs)
    assert sum(sim.stats.by_endpoint().values()) >= 37
    assert sim.stats.in_flight_peak <= 2
    assert sim.stats.max_in_any_window(1.0) <= 5


async def test_deleted_service_disappears_and_stale_series_drop() -> None:
    sim = Simulation(seed=33, services=4, dynamic=False)
    gone, flaky, *_ = list(sim.services)
    async with serve(sim) as api_url:
        config = sim_config(api_url, interval=0.2, stale_after=1.0, retries=0)
        async with running_exporter(config) as (url, exporter):
            await wait_until(exporter.ready, what="first cycle")
            assert {gone, flaky} <= service_ids(await scrape(url))
            sim.delete_service(gone)
            deleted_at = time.monotonic()

            async def gone_everywhere() -> bool:
                s = await scrape(url)
                return all(dict(ls).get("service_id") != gone for (_, ls) in s)

            await wait_until(gone_everywhere, timeout=5, what="deleted service to disappear")
            assert time.monotonic() - deleted_at <= 0.2 + 0.5


async def test_stale_service_keeps_only_collect_series() -> None:
    sim = Simulation(seed=34, services=2, dynamic=False)
    sid = next(iter(sim.services))
    async with (
        serve(sim) as api_url,
        manual_poller(sim_config(api_url, stale_after=1.0, retries=0)) as (poller, exporter),
    ):
        project = poller.project_ids[0]
        await poller.run_cycle(project)
        assert one(exposed(exporter), "modelarts_service_invocations_total", service_id=sid) >= 0
        sim.faults.error_rate = 1.0
        await poller.run_cycle(project)
        s = exposed(exporter)  # failed but not yet stale: last values stay
        assert pick(s, "modelarts_service_info", service_id=sid)
        assert one(s, "modelarts_exporter_collect_success", service_id=sid, endpoint="details") == 0
        await asyncio.sleep(1.1)
        await poller.run_cycle(project)
        s = exposed(exporter)
        assert pick(s, "modelarts_service_info", service_id=sid) == []
        assert pick(s, "modelarts_service_events_total", service_id=sid) == []
        assert one(s, "modelarts_exporter_collect_success", service_id=sid, endpoint="details") == 0
        assert pick(
            s,
            "modelarts_exporter_last_success_timestamp_seconds",
            service_id=sid,
            endpoint="details",
        )
        sim.faults.clear()
        await poller.run_cycle(project)
        assert pick(exposed(exporter), "modelarts_service_info", service_id=sid)


async def test_discovery_follows_services_across_pages_with_filters() -> None:
    sim = Simulation(seed=35, services=9, dynamic=False, max_page_size=2)
    config = sim_config("")
    async with serve(sim) as api_url:
        project = replace(
            sim_config(api_url).projects[0],
            discovery=replace(
                config.projects[0].discovery,
                enabled=True,
                name_pattern=re.compile("^keep-"),
                statuses=("running", "concerning"),
            ),
        )
        for i in range(5):
            sim.add_service(name=f"keep-{i}", status="running")
        sim.add_service(name="keep-stopped", status="stopped")
        sim.add_service(name="other", status="running")
        async with manual_poller(replace(config, projects=(project,))) as (poller, exporter):
            pid = poller.project_ids[0]
            await poller.run_cycle(pid)
            names = {
                dict(ls)["service_name"]
                for (n, ls) in exposed(exporter)
                if n == "modelarts_service_info"
            }
            assert names == {f"keep-{i}" for i in range(5)}
            added = sim.add_service(name="keep-new", status="concerning")
            removed = next(s for s in sim.services if sim.services[s].service_name == "keep-0")
            sim.delete_service(removed)
            await poller.run_cycle(pid)
            ids = service_ids(exposed(exporter))
            assert added in ids and removed not in ids
            assert (
                one(exposed(exporter), "modelarts_exporter_watched_services", project_id=pid) == 5
            )


async def test_two_shards_watch_every_service_exactly_once() -> None:
    sim = Simulation(seed=36, services=30, dynamic=False)
    async with serve(sim) as api_url:
        seen: list[set[str]] = []
        for shard in (0, 1):
            options = RunOptions(shard=shard, total_shards=2)
            async with running_exporter(sim_config(api_url), options) as (url, exporter):
                await wait_until(exporter.ready, what="first cycle")
                samples = await scrape(url)
                seen.append(service_ids(samples))
                assert one(samples, "modelarts_exporter_watched_services") == len(seen[-1])
    assert seen[0].isdisjoint(seen[1])
    assert seen[0] | seen[1] == set(sim.services)
    assert 5 <= len(seen[0]) <= 25  # the hash spreads services over both shards
    assert all(in_shard(s, 0, 2) for s in seen[0])


def test_shard_hash_is_stable() -> None:
    # the same id always lands on the same shard, in every process and Python version
    assert [in_shard("195c1f2d-136d-40af-a0f3-db5717d2634a", i, 3) for i in range(3)].count(
        True
    ) == 1
    assert in_shard("anything", 0, 1)
    assert parse_samples("") == {}
    assert DEFAULT_PROJECT_ID


async def test_an_outage_logs_one_warning_per_cycle(caplog: pytest.LogCaptureFixture) -> None:
    sim = Simulation(seed=37, services=20, dynamic=False)
    async with serve(sim) as api_url, manual_poller(sim_config(api_url, retries=0)) as (poller, _):
        project = poller.project_ids[0]
        await poller.run_cycle(project)
        sim.faults.error_rate = 1.0
        sim.faults.endpoints = frozenset({"details", "events"})
        caplog.clear()
        with caplog.at_level("INFO", logger="exporter.poller"):
            await poller.run_cycle(project)
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert warnings[0].failed_details == 20 and warnings[0].failed_events == 20  # type: ignore[attr-defined]
    assert warnings[0].example_endpoint in ("details", "events")  # type: ignore[attr-defined]
