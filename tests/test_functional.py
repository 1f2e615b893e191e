"""The real exporter against the real simulator, over loopback: details metrics (SPEC §4)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from exporter.metrics import catalogue as cat
from exporter.simulator import Simulation, serve
from tests.harness import (
    Samples,
    free_port,
    one,
    parse_samples,
    pick,
    running_exporter,
    scrape,
    sim_config,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[1]


def assert_details_match(samples: Samples, api: dict[str, Any]) -> None:
    """Every details metric of one service equals the API's value."""
    sid = api["service_id"]
    labels = {"service_id": sid, "service_name": api["service_name"]}
    status = api["status"]
    for known in cat.KNOWN_STATUSES:
        assert one(samples, "modelarts_service_status", status=known, **labels) == (known == status)
    assert one(samples, "modelarts_service_progress_ratio", **labels) == pytest.approx(
        float(api.get("progress", 0)) / 100
    )
    assert one(samples, "modelarts_service_invocations_total", **labels) == float(
        api["invocation_times"]
    )
    assert one(samples, "modelarts_service_invocation_failures_total", **labels) == float(
        api["failed_times"]
    )
    for model in api["config"]:
        m = {
            "model_id": model["model_id"],
            "model_name": model["model_name"],
            "model_version": str(model["model_version"]),
        }
        assert one(
            samples,
            "modelarts_service_model_instances",
            specification=model["specification"],
            **m,
            **labels,
        ) == float(model["instance_count"])
        assert one(
            samples, "modelarts_service_model_traffic_ratio", **m, **labels
        ) == pytest.approx(float(model["weight"]) / 100)
    for name, key in (
        ("modelarts_service_published_timestamp_seconds", "publish_at"),
        ("modelarts_service_config_updated_timestamp_seconds", "update_time"),
        ("modelarts_service_status_changed_timestamp_seconds", "transition_at"),
        ("modelarts_service_auto_stop_timestamp_seconds", "due_time"),
    ):
        if key in api:
            assert one(samples, name, **labels) == pytest.approx(float(api[key]) / 1000)
        else:
            assert pick(samples, name, **labels) == []
    assert (
        one(
            samples,
            "modelarts_service_info",
            infer_type=api["infer_type"],
            workspace_id=str(api.get("workspace_id", "")),
            cluster_id=api.get("cluster_id", ""),
            pool_name=api.get("pool_name", ""),
            owner=api.get("owner", ""),
            **labels,
        )
        == 1
    )


@pytest.mark.parametrize("string_numbers", [False, True])
async def test_details_metrics_equal_api_values(string_numbers: bool) -> None:
    sim = Simulation(seed=7, services=8, dynamic=False)
    sim.string_numbers = string_numbers
    async with serve(sim) as api_url, running_exporter(sim_config(api_url)) as (url, exporter):
        await wait_until(exporter.ready, what="first cycle")
        samples = await scrape(url)
        assert len(pick(samples, "modelarts_service_info")) == 8
        for sid in sim.services:
            assert_details_match(samples, sim.details_json(sid))
        assert one(samples, "modelarts_exporter_watched_services") == 8
        assert all(v == 1 for v in pick(samples, "modelarts_exporter_collect_success"))


async def test_status_change_shows_within_one_interval() -> None:
    sim = Simulation(seed=3, services=3, dynamic=False)
    sid = next(iter(sim.services))
    interval = 0.5
    async with (
        serve(sim) as api_url,
        running_exporter(sim_config(api_url, interval=interval)) as (url, exporter),
    ):
        await wait_until(exporter.ready, what="first cycle")
        sim.set_status(sid, "concerning")
        changed_at = time.monotonic()

        async def concerning() -> bool:
            return pick(
                await scrape(url), "modelarts_service_status", service_id=sid, status="concerning"
            ) == [1]

        await wait_until(concerning, timeout=5, what="status change")
        # one interval, plus the cycle's own duration and a scrape
        assert time.monotonic() - changed_at <= interval + 0.5


async def test_metrics_served_from_memory_while_api_unreachable() -> None:
    sim = Simulation(seed=5, services=4, dynamic=False)
    async with serve(sim) as api_url:
        config = sim_config(api_url, interval=0.2, retries=0, timeout=1.0)
        async with running_exporter(config) as (url, exporter):
            await wait_until(exporter.ready, what="first cycle")
            before = await scrape(url)
            assert len(pick(before, "modelarts_service_info")) == 4
            sim.faults.drop_rate = 1.0  # every API request now fails at the transport level

            async def failing() -> bool:
                s = await scrape(url)
                return any(
                    v == 0
                    for v in pick(s, "modelarts_exporter_collect_success", endpoint="details")
                )

            await wait_until(failing, timeout=10, what="collect_success to drop")
            started = time.monotonic()
            after = await scrape(url)
            assert time.monotonic() - started < 1.0
            # last known values stay while not stale
            for sid in sim.services:
                assert pick(after, "modelarts_service_invocations_total", service_id=sid) == pick(
                    before, "modelarts_service_invocations_total", service_id=sid
                )
            # the list is the heartbeat: its failure is what shows, for every service it covers
            assert pick(
                after, "modelarts_exporter_api_requests_total", endpoint="list", code="error"
            )
            assert all(
                v == 0
                for v in pick(after, "modelarts_exporter_collect_success", endpoint="details")
            )


async def test_endpoints_health_ready_landing() -> None:
    sim = Simulation(seed=1, services=1, dynamic=False)
    sim.faults.slow_rate = 1.0
    sim.faults.slow_seconds = 1.0
    async with (
        serve(sim) as api_url,
        running_exporter(sim_config(api_url)) as (url, exporter),
        aiohttp.ClientSession() as http,
    ):
        async with http.get(url + "/-/ready") as resp:
            assert resp.status == 503  # first cycle still waiting on the slow API
        async with http.get(url + "/-/healthy") as resp:
            assert resp.status == 200
        async with http.get(url + "/") as resp:
            assert resp.status == 200
            assert "/metrics" in await resp.text()
        await wait_until(exporter.ready, what="first cycle")
        async with http.get(url + "/-/ready") as resp:
            assert resp.status == 200
        async with http.get(url + "/metrics", headers={"Accept-Encoding": "gzip"}) as resp:
            assert resp.headers["Content-Encoding"] == "gzip"
            assert "modelarts_service_info" in await resp.text()


async def test_demo_mode_shows_every_details_metric_for_five_services() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--demo", f"--web.listen-address=127.0.0.1:{port}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        async def ready() -> bool:
            try:
                async with aiohttp.ClientSession() as http, http.get(url + "/-/ready") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await wait_until(ready, timeout=20, interval=0.2, what="demo ready")
        async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as resp:
            text = await resp.text()
        samples = parse_samples(text)
        promtool = shutil.which("promtool")
        assert promtool, "promtool (Debian package prometheus) is required: run `make tools`"
        lint = subprocess.run(
            [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60
        )
        assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout + lint.stderr
        services = {dict(ls)["service_id"] for (n, ls) in samples if n == "modelarts_service_info"}
        assert len(services) >= 5
        for spec in cat.SERVICE_METRICS[:11]:  # the "Service details" table of SPEC §4
            assert pick(samples, spec.name), f"{spec.name} missing in demo output"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err
