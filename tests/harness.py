"""Running the real exporter against the real simulator on loopback, for the functional tests."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import Exporter, RunOptions, build_app
from exporter.config import (
    AuthConfig,
    Config,
    DiscoveryConfig,
    PollingConfig,
    ProjectConfig,
    Secret,
)
from exporter.polling.poller import Poller
from exporter.simulator import DEFAULT_PROJECT_ID

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def sim_config(
    url: str,
    *,
    project_ids: tuple[str, ...] = (DEFAULT_PROJECT_ID,),
    services: tuple[str, ...] = (),
    discovery: bool = True,
    auth: AuthConfig | None = None,
    **polling: float,
) -> Config:
    """A configuration watching the simulator at `url`, polling fast."""
    base = PollingConfig(
        interval=0.3,
        # Safety nets every cycle: most functional tests check exactness per cycle. Tests of
        # the list-driven schedule pass real intervals.
        details_interval=0.0001,
        events_interval=0.0001,
        monitor_interval=0.0001,
        logs_interval=60.0,
        discovery_interval=0.3,
        timeout=5.0,
        max_concurrency=8,
        max_requests_per_second=1000.0,
        retries=2,
        stale_after=60.0,
        events_lookback=600.0,
    )
    return Config(
        auth=auth or AuthConfig(method="token", token=Secret("test-token")),
        projects=tuple(
            ProjectConfig(
                project_id=pid,
                region="cn-north-4",
                endpoint=url,
                services=services,
                discovery=DiscoveryConfig(enabled=discovery),
            )
            for pid in project_ids
        ),
        polling=replace(base, **polling),  # type: ignore[arg-type]
    )


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def running_exporter(
    config: Config, options: RunOptions | None = None, **kwargs: object
) -> AsyncIterator[tuple[str, Exporter]]:
    """Start the exporter's web app on a free loopback port; yields (base URL, exporter)."""
    exporter = Exporter(config, options or RunOptions(), **kwargs)  # type: ignore[arg-type]
    runner = web.AppRunner(build_app(exporter), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}", exporter
    finally:
        await runner.cleanup()


@asynccontextmanager
async def manual_poller(config: Config) -> AsyncIterator[tuple[Poller, Exporter]]:
    """The exporter's real client and poller, not started: the test runs each cycle itself."""
    exporter = Exporter(config, RunOptions())
    http = exporter.create_http(config)
    try:
        yield exporter.create_poller(config, http), exporter
    finally:
        await http.close()


def exposed(exporter: Exporter) -> Samples:
    """What /metrics would serve right now."""
    return parse_samples(exporter.exposition.body(gzipped=False).decode())


async def scrape(url: str, path: str = "/metrics") -> Samples:
    async with aiohttp.ClientSession() as session, session.get(url + path) as resp:
        assert resp.status == 200, resp.status
        text = await resp.text()
    return parse_samples(text)


def parse_samples(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def pick(samples: Samples, name: str, **labels: str) -> list[float]:
    want = set(labels.items())
    return [v for (n, ls), v in samples.items() if n == name and want <= ls]


def one(samples: Samples, name: str, **labels: str) -> float:
    found = pick(samples, name, **labels)
    assert len(found) == 1, (name, labels, found)
    return found[0]


async def wait_until(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout: float = 15.0,
    interval: float = 0.05,
    what: str = "condition",
) -> None:
    """Poll `check` until true; fails after `timeout` seconds (bounded in time and count)."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 1):
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
