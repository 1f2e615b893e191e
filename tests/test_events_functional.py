"""Events and update logs against the simulator: exact counters, call budget, restart safety."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
import yaml

from exporter.simulator import Simulation, serve
from tests.harness import (
    Samples,
    exposed,
    free_port,
    manual_poller,
    one,
    parse_samples,
    pick,
    sim_config,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[1]


def events_by_type(samples: Samples, service_id: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (name, labels), v in samples.items():
        ls = dict(labels)
        if name == "modelarts_service_events_total" and ls["service_id"] == service_id:
            out[ls["event_type"]] = out.get(ls["event_type"], 0) + v
    return out


def assert_exact(samples: Samples, sim: Simulation) -> None:
    for sid in sim.services:
        truth = sim.event_counts(sid)
        got = events_by_type(samples, sid)
        assert got == {k: float(truth.get(k, 0)) for k in ("normal", "abnormal")}, sid


async def test_history_of_3000_events_with_page_size_100_is_exact() -> None:
    sim = Simulation(seed=11, services=3, events_per_service=20, dynamic=False, max_page_size=100)
    big = next(iter(sim.services))
    base = sim.events_of(big)[-1].occur_time
    sim.add_events(
        big,
        [(base + i // 7, "normal" if i % 5 else "abnormal", f"e{i % 13}") for i in range(3_100)],
    )
    async with serve(sim) as url, manual_poller(sim_config(url)) as (poller, exporter):
        await poller.run_cycle(poller.project_ids[0])
        samples = exposed(exporter)
        assert_exact(samples, sim)
        assert sum(events_by_type(samples, big).values()) >= 3_100
        # every event_type x phase combination is present for every service
        for sid in sim.services:
            assert len(pick(samples, "modelarts_service_events_total", service_id=sid)) == 14
        # 3,120 events in pages of at most 100 for the big service
        assert sim.stats.count("events", big) >= 32


async def test_bursts_sharing_the_newest_timestamp_stay_exact() -> None:
    sim = Simulation(seed=12, services=2, dynamic=False, max_page_size=100)
    sid = next(iter(sim.services))
    async with serve(sim) as url, manual_poller(sim_config(url)) as (poller, exporter):
        project = poller.project_ids[0]
        await poller.run_cycle(project)
        newest = sim.events_of(sid)[-1].occur_time
        for round_ in range(5):
            # identical rows at the very timestamp the cursor already saw, then a later burst
            sim.add_events(sid, [(newest, "abnormal", "health check failed")] * 3)
            sim.add_random_events(sid, 40 + round_, occur_time=newest + 1_000 * round_)
            await poller.run_cycle(project)
            assert_exact(exposed(exporter), sim)
        # nothing new: counters do not move
        before = exposed(exporter)
        await poller.run_cycle(project)
        assert events_by_type(exposed(exporter), sid) == events_by_type(before, sid)


async def test_late_events_inside_the_lookback_are_counted_once() -> None:
    sim = Simulation(seed=13, services=1, dynamic=False)
    sid = next(iter(sim.services))
    async with (
        serve(sim) as url,
        manual_poller(sim_config(url, events_lookback=600)) as (poller, exporter),
    ):
        project = poller.project_ids[0]
        await poller.run_cycle(project)
        newest = sim.events_of(sid)[-1].occur_time
        sim.add_events(sid, [(newest - 300_000, "abnormal", "late: container failed to start")])
        await poller.run_cycle(project)
        await poller.run_cycle(project)
        assert_exact(exposed(exporter), sim)


async def test_steady_state_call_budget_and_update_logs() -> None:
    """The list is the heartbeat: in steady state a cycle costs one list call, plus events for
    services in a transitional status; a change in a list entry costs that service one details
    and one events call; counters from the list reach /metrics in the same cycle."""
    sim = Simulation(seed=14, services=10, dynamic=False)
    async with serve(sim) as api_url:
        config = sim_config(
            api_url, logs_interval=3600, details_interval=3600, events_interval=3600
        )
        async with manual_poller(config) as (poller, exporter):
            project = poller.project_ids[0]
            await poller.run_cycle(project)  # first poll: list, details, events, logs
            n = len(sim.services)
            settled = {"running", "stopped", "failed", "finished"}
            moving = [sid for sid, svc in sim.services.items() if svc.status not in settled]
            sim.stats.reset()
            cycles = 5
            for _ in range(cycles):
                await poller.run_cycle(project)
            per_endpoint = sim.stats.by_endpoint()
            assert per_endpoint.get("list", 0) == cycles
            assert per_endpoint.get("details", 0) == 0
            assert per_endpoint.get("events", 0) == cycles * len(moving)
            assert per_endpoint.get("logs", 0) == 0
            assert len(moving) < n
            # a status change: that service alone gets details and events, in the next cycle
            steady = next(
                sid
                for sid, svc in sim.services.items()
                if svc.status == "running" and sid not in moving
            )
            sim.set_status(steady, "concerning")
            sim.add_invocations(steady, 7, 2)
            sim.stats.reset()
            await poller.run_cycle(project)
            assert sim.stats.count("details") == 1 and sim.stats.count("details", steady) == 1
            assert sim.stats.count("events", steady) == 1
            samples = exposed(exporter)
            assert (
                one(samples, "modelarts_service_status", service_id=steady, status="concerning")
                == 1
            )
            truth = sim.invocations_at(sim.service(steady), sim.now_ms())
            assert (
                one(samples, "modelarts_service_invocations_total", service_id=steady) == truth[0]
            )
            # an update is an operation (the list entry moves): that service alone has its
            # details and then, as its update_time changed, its log read once
            sid = next(iter(sim.services))
            t = sim.add_update(sid, "FAIL")
            sim.stats.reset()
            await poller.run_cycle(project)
            await poller.run_cycle(project)
            assert sim.stats.count("logs") == 1 and sim.stats.count("logs", sid) == 1
            samples = exposed(exporter)
            truth = sim.updates_of(sid)
            for result in ("SUCCESS", "FAIL"):
                expected = sum(1 for u in truth if u.result == result)
                assert (
                    one(
                        samples,
                        "modelarts_service_updates_total",
                        service_id=sid,
                        result=result.lower(),
                    )
                    == expected
                )
            assert (
                one(samples, "modelarts_service_last_update_timestamp_seconds", service_id=sid)
                == t / 1000
            )
            assert (
                one(samples, "modelarts_service_last_update_result", service_id=sid, result="fail")
                == 1
            )
            assert (
                one(
                    samples,
                    "modelarts_service_last_update_result",
                    service_id=sid,
                    result="success",
                )
                == 0
            )


async def test_running_update_is_counted_once_when_it_finishes() -> None:
    sim = Simulation(seed=15, services=1, dynamic=False)
    sid = next(iter(sim.services))
    async with serve(sim) as url, manual_poller(sim_config(url)) as (poller, exporter):
        poller._settings = replace(poller._settings, running_update_recheck=0.0)
        project = poller.project_ids[0]
        await poller.run_cycle(project)
        before = one(
            exposed(exporter), "modelarts_service_updates_total", service_id=sid, result="success"
        )
        t = sim.start_update(sid)
        await poller.run_cycle(project)
        samples = exposed(exporter)
        assert (
            one(samples, "modelarts_service_last_update_result", service_id=sid, result="running")
            == 1
        )
        assert (
            one(samples, "modelarts_service_updates_total", service_id=sid, result="success")
            == before
        )
        sim.finish_update(
            sid, t, "SUCCESS"
        )  # update_time unchanged: found because RUNNING is re-read
        for _ in range(3):
            await poller.run_cycle(project)
        samples = exposed(exporter)
        assert (
            one(samples, "modelarts_service_updates_total", service_id=sid, result="success")
            == before + 1
        )
        assert (
            one(samples, "modelarts_service_last_update_result", service_id=sid, result="success")
            == 1
        )


async def _scrape(url: str) -> Samples | None:
    try:
        async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as resp:
            return parse_samples(await resp.text())
    except aiohttp.ClientError:
        return None


async def test_exact_across_sigkill_and_restart(tmp_path: Path) -> None:
    sim = Simulation(seed=16, services=3, events_per_service=20, dynamic=False, max_page_size=100)
    big = next(iter(sim.services))
    base = sim.events_of(big)[-1].occur_time
    sim.add_events(
        big,
        [
            (base + i, "normal" if i % 3 else "abnormal", "pulling model image")
            for i in range(3_000)
        ],
    )
    async with serve(sim) as api_url:
        config = {
            "auth": {"method": "token", "token": "t"},
            "projects": [
                {
                    "project_id": next(iter(sim.services.values())).project_id,
                    "region": "cn-north-4",
                    "endpoint": api_url,
                    "discovery": {"enabled": True},
                }
            ],
            "polling": {
                "interval": "300ms",
                "discovery_interval": "1s",
                "max_requests_per_second": 1000,
            },
        }
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [
            sys.executable,
            "-m",
            "exporter",
            f"--config.file={path}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]

        async def exact() -> bool:
            samples = await _scrape(url)
            if samples is None:
                return False
            try:
                assert_exact(samples, sim)
            except AssertionError:
                return False
            return True

        first = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.DEVNULL)
        try:
            await wait_until(exact, timeout=30, interval=0.2, what="exact counts (first run)")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        # while the exporter is down: more events, a burst on an identical timestamp
        newest = sim.events_of(big)[-1].occur_time
        sim.add_events(big, [(newest, "abnormal", "pulling model image")] * 4)
        for sid in sim.services:
            sim.add_random_events(sid, 25)
        second = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.DEVNULL)
        try:
            await wait_until(exact, timeout=30, interval=0.2, what="exact counts after restart")
            await asyncio.sleep(1.0)  # several more cycles: still exact, nothing double counted
            assert await exact()
        finally:
            second.send_signal(signal.SIGTERM)
            try:
                second.wait(timeout=15)
            except subprocess.TimeoutExpired:
                second.kill()
                second.wait()


async def test_unchanged_event_windows_are_not_parsed_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import exporter.modelarts.client as client_module

    parsed: list[str] = []
    original = client_module.parse_event_page

    def counting(raw: object) -> object:
        parsed.append(raw["service_id"])  # type: ignore[index]
        return original(raw)

    monkeypatch.setattr(client_module, "parse_event_page", counting)
    sim = Simulation(seed=17, services=6, dynamic=False)
    async with serve(sim) as url, manual_poller(sim_config(url)) as (poller, exporter):
        project = poller.project_ids[0]
        await poller.run_cycle(project)
        await poller.run_cycle(project)  # the window after the first read
        parsed.clear()
        await poller.run_cycle(project)
        assert parsed == []  # six identical bodies, none parsed
        sid = next(iter(sim.services))
        sim.add_random_events(sid, 2)
        await poller.run_cycle(project)
        assert parsed == [sid]
        assert_exact(exposed(exporter), sim)
        assert sim.stats.count("events") == 6 * 4  # still one events call per service per cycle
