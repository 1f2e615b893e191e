"""One benchmark size: simulator, exporter and static floor as separate processes, measured.

Order of a run:
1. Start the simulator, write the exporter's configuration, start the exporter, wait until it
   is ready (its first cycle, which reads the whole event history, is done).
2. Wait until one more cycle has finished, then align on a cycle end: the window starts in the
   idle part of a cycle, right after a cycle finished, and lasts exactly `cycles` poll intervals,
   so it holds `cycles` whole cycles. Exporter CPU, simulator requests and the poll-duration
   histogram are read at both ends; the driver's own reads of /metrics fall outside the window.
   Meanwhile `scrapers` Prometheus-like clients fetch /metrics (gzip) once per interval each.
3. Capture one body (plain and gzip) from the exporter, serve exactly those bytes from the static
   server, and fetch both alternately, spread over one poll interval so that busy and idle parts
   of the cycle are both sampled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench import procs
from exporter.simulator import DEFAULT_PROJECT_ID

API_ENDPOINTS = ("list", "details", "events", "logs")
POLL_COUNT = b"modelarts_exporter_poll_duration_seconds_count"
POLL_SUM = b"modelarts_exporter_poll_duration_seconds_sum"
WATCHED = b"modelarts_exporter_watched_services"


@dataclass(frozen=True)
class Settings:
    interval: float = 15.0
    max_requests_per_second: float = 2000.0
    max_concurrency: int = 16
    cycles: int = 3
    fetches: int = 40
    scrapers: int = 2
    happening_interval: float = 600.0
    events_per_service: int = 20
    models_per_service: int = 2
    seed: int = 9
    profile: bool = False
    profile_gil: bool = False
    memprofile: bool = False
    exporter_module: str = "exporter"


@dataclass
class Latency:
    samples_ms: list[float] = field(default_factory=list)
    # Whether the simulator received requests while the fetch ran, i.e. a cycle was under way.
    busy: list[bool] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p99(self) -> float:
        return p99(self.samples_ms)

    def as_json(self) -> dict[str, Any]:
        return {
            "median_ms": self.median,
            "p99_ms": self.p99,
            "samples_ms": self.samples_ms,
            "busy": self.busy,
            **self.split(),
        }

    def split(self) -> dict[str, Any]:
        """Median and p99 of the fetches made while a poll cycle ran, and of the others."""
        out: dict[str, Any] = {}
        for name, flag in (("busy", True), ("idle", False)):
            part = [ms for ms, b in zip(self.samples_ms, self.busy, strict=True) if b is flag]
            out[name] = {
                "n": len(part),
                "median_ms": statistics.median(part) if part else None,
                "p99_ms": p99(part) if part else None,
            }
        return out


def p99(samples: list[float]) -> float:
    # Nearest rank: below 100 samples p99 is the slowest one, which is the honest reading.
    ordered = sorted(samples)
    rank = max(1, -(-99 * len(ordered) // 100))
    return ordered[rank - 1]


@dataclass
class SizeResult:
    services: int
    watched: int
    plain_bytes: int
    gzip_bytes: int
    metrics_plain: Latency
    metrics_gzip: Latency
    floor_plain: Latency
    floor_gzip: Latency
    # Which static handler was the floor ("file" or "memory"), and both handlers' figures.
    floor_plain_source: str
    floor_gzip_source: str
    floor_variants: dict[str, Latency]
    rss_mib: float
    rss_max_mib: float
    hwm_mib: float
    cpu_per_cycle: float
    cycles: int
    cycle_seconds: float
    first_cycle_seconds: float | None
    calls_per_service_cycle: float
    calls_by_endpoint: dict[str, int]
    sim_cpu_per_cycle: float
    load_before: float
    window_seconds: float
    scrapes_in_window: int
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("metrics_plain", "metrics_gzip", "floor_plain", "floor_gzip"):
            out[key] = getattr(self, key).as_json()
        out["floor_variants"] = {k: v.as_json() for k, v in self.floor_variants.items()}
        return out


def exporter_config(sim_url: str, s: Settings) -> str:
    return f"""# written by the benchmark
auth:
  method: token
  token: bench
projects:
  - project_id: {DEFAULT_PROJECT_ID}
    region: cn-north-4
    endpoint: {sim_url}
    discovery:
      enabled: true
polling:
  interval: {s.interval:g}s
  logs_interval: 10m
  discovery_interval: 10m
  timeout: 10s
  max_concurrency: {s.max_concurrency}
  max_requests_per_second: {s.max_requests_per_second:g}
  retries: 3
  stale_after: 5m
  events_lookback: 10m
"""


def sample_value(body: bytes, name: bytes) -> float | None:
    """The value of the first series of `name` (the exporter's own families are few and small,
    so a find is enough; parsing the whole 40 MB body would cost the driver seconds)."""
    for sep in (b"{", b" "):
        at = body.find(b"\n" + name + sep)
        if at >= 0:
            end = body.find(b"\n", at + 1)
            line = body[at + 1 : end if end >= 0 else len(body)]
            return float(line.rsplit(b" ", 1)[1])
    return None


class Client:
    """One aiohttp client for everything the driver fetches, bytes read raw (no decompression),
    so that both the exporter and the floor are timed doing exactly the same client work."""

    def __init__(self) -> None:
        self.session = aiohttp.ClientSession(
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=60)
        )

    async def close(self) -> None:
        await self.session.close()

    async def fetch(self, url: str, *, gzip: bool) -> tuple[float, bytes]:
        headers = {"Accept-Encoding": "gzip" if gzip else "identity"}
        started = time.perf_counter()
        async with self.session.get(url, headers=headers) as resp:
            body = await resp.read()
            elapsed = time.perf_counter() - started
            if resp.status != 200:
                raise RuntimeError(f"GET {url}: HTTP {resp.status}")
            encoding = resp.headers.get("Content-Encoding", "")
            if (encoding == "gzip") != gzip:
                raise RuntimeError(f"GET {url}: unexpected Content-Encoding {encoding!r}")
        return elapsed * 1000.0, body

    async def own_metrics(self, url: str) -> dict[bytes, float | None]:
        _, raw = await self.fetch(url, gzip=True)
        body = zlib.decompress(raw, 16 + zlib.MAX_WBITS)
        return {name: sample_value(body, name) for name in (POLL_COUNT, POLL_SUM, WATCHED)}

    async def status(self, url: str) -> int:
        try:
            async with self.session.get(url) as resp:
                await resp.read()
                return resp.status
        except (aiohttp.ClientError, OSError):
            return 0

    async def json(self, url: str) -> Any:
        async with self.session.get(url) as resp:
            resp.raise_for_status()
            return await resp.json()


class MemorySampler:
    """VmRSS of the exporter every half second while it runs (the steady-state figure is the
    median of the samples in the measurement window)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        for _ in range(100_000):
            with contextlib.suppress(OSError, KeyError):
                self.samples.append((time.monotonic(), procs.memory_mib(self.pid)[0]))
            await asyncio.sleep(0.5)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def between(self, start: float, end: float) -> list[float]:
        return [rss for t, rss in self.samples if start <= t <= end]


async def _wait(
    what: str, check: Callable[[], Any], within: float, every: float, child: procs.Child
) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited while waiting for {what}:\n{child.log_tail()}")
        await asyncio.sleep(every)
    raise TimeoutError(f"timed out after {within:.0f}s waiting for {what}")


async def _scraper(
    client: Client, url: str, interval: float, *, offset: float, until: float, done: list[int]
) -> None:
    """A Prometheus replica: one gzip scrape per interval until `until` (monotonic)."""
    await asyncio.sleep(offset)
    for _ in range(10_000):
        if time.monotonic() >= until:
            return
        started = time.monotonic()
        await client.fetch(url, gzip=True)
        done[0] += 1
        now = time.monotonic()
        await asyncio.sleep(max(0.0, min(interval - (now - started), until - now)))


async def _latency_rounds(
    client: Client, exporter_url: str, floor_url: str, sim_url: str, s: Settings
) -> dict[str, Latency]:
    targets = {
        "metrics_plain": (exporter_url, False),
        "file_plain": (f"{floor_url}/file", False),
        "memory_plain": (f"{floor_url}/memory", False),
        "metrics_gzip": (exporter_url, True),
        "file_gzip": (f"{floor_url}/file", True),
        "memory_gzip": (f"{floor_url}/memory", True),
    }
    out = {k: Latency() for k in targets}
    order = list(targets)
    spacing = s.interval / max(1, s.fetches)
    started = time.monotonic()
    for i in range(s.fetches):
        await asyncio.sleep(max(0.0, started + i * spacing - time.monotonic()))
        # Rotate who goes first so that no one always follows the same transfer.
        shift = i % len(order)
        for key in order[shift:] + order[:shift]:
            url, gz = targets[key]
            before = await _sim_requests(client, sim_url)
            ms, _ = await client.fetch(url, gzip=gz)
            after = await _sim_requests(client, sim_url)
            out[key].samples_ms.append(ms)
            out[key].busy.append(after > before)
    return out


async def _sim_requests(client: Client, sim_url: str) -> int:
    by_endpoint = (await client.json(f"{sim_url}/_bench/stats"))["by_endpoint"]
    return sum(by_endpoint.get(ep, 0) for ep in API_ENDPOINTS)


async def _profile(pid: int, seconds: float, out: Path, *, gil: bool) -> procs.Child:
    """py-spy on the exporter for `seconds` (raw collapsed stacks); with `gil`, only samples of
    the thread holding the GIL, i.e. Python work, without threads merely waiting for it."""
    argv = [
        str(Path(sys.executable).parent / "py-spy"),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(round(seconds)),
        "--rate",
        "200",
        "--nonblocking",
        "--format",
        "raw",
        "--output",
        str(out),
        *(["--gil"] if gil else []),
    ]
    return procs.spawn("py-spy", argv, out.with_suffix(".log"))


async def run_size(services: int, s: Settings, workdir: Path, log: Callable[[str], None]) -> Any:
    """Measure one fleet size; every child is ended in `finally`."""
    children: list[procs.Child] = []
    client = Client()
    sampler: MemorySampler | None = None
    notes: list[str] = []
    # Other work on the machine skews every figure; the 1-minute load at the start shows it.
    load_before = os.getloadavg()[0]
    try:
        sim = procs.spawn(
            "simulator",
            procs.python_module(
                "bench.simserver",
                f"--services={services}",
                f"--seed={s.seed}",
                f"--events-per-service={s.events_per_service}",
                f"--models-per-service={s.models_per_service}",
                f"--happening-interval={s.happening_interval:g}",
            ),
            workdir / f"simulator-{services}.log",
        )
        children.append(sim)
        sim_url = await procs.wait_listening(sim, within=60 + services * 0.02)
        log(f"  simulator ready at {sim_url}")

        config = workdir / f"exporter-{services}.yaml"
        config.write_text(exporter_config(sim_url, s))
        port = procs.free_port()
        base = f"http://127.0.0.1:{port}"
        exporter_argv = [
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ]
        memdump = workdir / f"memory-{services}.txt"
        if s.memprofile:
            argv = procs.python_module("bench.traced_exporter", f"--dump={memdump}", *exporter_argv)
        else:
            argv = procs.python_module(s.exporter_module, *exporter_argv)
        exporter = procs.spawn("exporter", argv, workdir / f"exporter-{services}.log")
        children.append(exporter)
        sampler = MemorySampler(exporter.pid)
        sampler.start()
        metrics_url = f"{base}/metrics"

        ready_timeout = 60 + services * 0.06
        await _wait(
            "the exporter's first cycle",
            lambda: _is(client.status(f"{base}/-/ready"), 200),
            ready_timeout,
            0.25,
            exporter,
        )
        first = await client.own_metrics(metrics_url)
        first_cycle = first[POLL_SUM] if first[POLL_COUNT] == 1 else None
        log(f"  exporter ready (first cycle {_fmt(first_cycle)} s)")

        # Steady state: one more whole cycle, then catch the end of the next one.
        async def count_at_least(n: float) -> dict[bytes, float | None] | None:
            m = await client.own_metrics(metrics_url)
            return m if (m[POLL_COUNT] or 0) >= n else None

        cycle_wait = s.interval * 2 + 60 + services * 0.02
        m = await _wait("a steady cycle", lambda: count_at_least(2), cycle_wait, 1.0, exporter)
        seen = m[POLL_COUNT] or 0
        start_metrics = await _wait(
            "a cycle end", lambda: count_at_least(seen + 1), cycle_wait, 0.5, exporter
        )
        detected = time.monotonic()
        # Start in the middle of the idle part of the cycle: cycles start one interval apart,
        # so the window's end falls mid-idle too, and a cycle a little longer or shorter than
        # the last one cannot move a cycle end across either edge of the window.
        last = (start_metrics[POLL_SUM] or 0) - (m[POLL_SUM] or 0)
        if (start_metrics[POLL_COUNT] or 0) - seen != 1:
            last = (start_metrics[POLL_SUM] or 0) / max(1.0, start_metrics[POLL_COUNT] or 1)
        idle = s.interval - last
        if idle < 1.0:
            notes.append(f"cycles ({last:.1f} s) leave no idle time in a {s.interval:g} s interval")
        await asyncio.sleep(max(0.0, idle / 2 - (time.monotonic() - detected)))

        cpu0 = procs.cpu_seconds(exporter.pid)
        sim_cpu0 = procs.cpu_seconds(sim.pid)
        calls0 = (await client.json(f"{sim_url}/_bench/stats"))["by_endpoint"]
        t0 = time.monotonic()
        window = s.interval * s.cycles
        profiler = None
        if s.profile or s.profile_gil:
            name = f"profile{'-gil' if s.profile_gil else ''}-{services}.txt"
            profiler = await _profile(exporter.pid, window, workdir / name, gil=s.profile_gil)
            children.append(profiler)
        scrapes = [0]
        scrapers = [
            asyncio.create_task(
                _scraper(
                    client,
                    metrics_url,
                    s.interval,
                    offset=i * s.interval / s.scrapers,
                    until=t0 + window - 0.5,
                    done=scrapes,
                )
            )
            for i in range(s.scrapers)
        ]
        await asyncio.sleep(window)
        cpu1 = procs.cpu_seconds(exporter.pid)
        sim_cpu1 = procs.cpu_seconds(sim.pid)
        calls1 = (await client.json(f"{sim_url}/_bench/stats"))["by_endpoint"]
        t1 = time.monotonic()
        for task in scrapers:
            task.cancel()
        await asyncio.gather(*scrapers, return_exceptions=True)
        end_metrics = await client.own_metrics(metrics_url)
        if s.memprofile:
            await _memdump(exporter, memdump)
        if profiler is not None:
            for _ in range(300):
                if profiler.proc.poll() is not None:
                    break
                await asyncio.sleep(0.1)

        cycles = int((end_metrics[POLL_COUNT] or 0) - (start_metrics[POLL_COUNT] or 0))
        if cycles != s.cycles:
            notes.append(f"window held {cycles} cycles instead of {s.cycles}")
        cycles = max(cycles, 1)
        cycle_seconds = ((end_metrics[POLL_SUM] or 0) - (start_metrics[POLL_SUM] or 0)) / cycles
        calls = {ep: calls1.get(ep, 0) - calls0.get(ep, 0) for ep in API_ENDPOINTS}
        rss_window = sampler.between(t0, t1)
        log(
            f"  window: {cycles} cycles, {cycle_seconds:.2f} s each, "
            f"CPU {(cpu1 - cpu0) / cycles:.2f} s/cycle, calls {calls}"
        )

        # Latency: the exporter against exactly its own bytes served statically.
        _, plain = await client.fetch(metrics_url, gzip=False)
        _, gzipped = await client.fetch(metrics_url, gzip=True)
        (workdir / "body.txt").write_bytes(plain)
        (workdir / "body.txt.gz").write_bytes(gzipped)
        floor = procs.spawn(
            "static server",
            procs.python_module("bench.static_server", f"--file={workdir / 'body.txt'}"),
            workdir / f"static-{services}.log",
        )
        children.append(floor)
        floor_url = await procs.wait_listening(floor, within=30)
        # One untimed fetch each, so both sides start with an open connection.
        for url in (metrics_url, f"{floor_url}/file", f"{floor_url}/memory"):
            await client.fetch(url, gzip=True)
        latencies = await _latency_rounds(client, metrics_url, floor_url, sim_url, s)
        floors = {}
        for kind in ("plain", "gzip"):
            source = min(("file", "memory"), key=lambda v: latencies[f"{v}_{kind}"].median)
            floors[kind] = (source, latencies[f"{source}_{kind}"])
        rss_end, hwm = procs.memory_mib(exporter.pid)
        await sampler.stop()
        if exporter.proc.poll() is not None:
            raise RuntimeError(f"exporter exited during the run:\n{exporter.log_tail()}")

        return SizeResult(
            services=services,
            watched=int(end_metrics[WATCHED] or 0),
            plain_bytes=len(plain),
            gzip_bytes=len(gzipped),
            metrics_plain=latencies["metrics_plain"],
            metrics_gzip=latencies["metrics_gzip"],
            floor_plain=floors["plain"][1],
            floor_gzip=floors["gzip"][1],
            floor_plain_source=floors["plain"][0],
            floor_gzip_source=floors["gzip"][0],
            floor_variants={
                k: v for k, v in latencies.items() if k.startswith(("file_", "memory_"))
            },
            rss_mib=statistics.median(rss_window) if rss_window else rss_end,
            rss_max_mib=max((rss for _, rss in sampler.samples), default=rss_end),
            hwm_mib=hwm,
            cpu_per_cycle=(cpu1 - cpu0) / cycles,
            cycles=cycles,
            cycle_seconds=cycle_seconds,
            first_cycle_seconds=first_cycle,
            calls_per_service_cycle=sum(calls.values()) / (services * cycles),
            calls_by_endpoint=calls,
            sim_cpu_per_cycle=(sim_cpu1 - sim_cpu0) / cycles,
            load_before=load_before,
            window_seconds=t1 - t0,
            scrapes_in_window=scrapes[0],
            notes=notes,
        )
    finally:
        if sampler is not None:
            await sampler.stop()
        await client.close()
        for child in reversed(children):
            await procs.stop(child)


async def _is(awaitable: Any, expected: Any) -> bool:
    return bool(await awaitable == expected)


async def _memdump(exporter: procs.Child, out: Path) -> None:
    """Ask the traced exporter for its allocation statistics and wait for the file."""
    _remove(out)
    os.kill(exporter.pid, signal.SIGUSR1)
    for _ in range(600):
        if _has_content(out):
            return
        await asyncio.sleep(0.1)


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def _has_content(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


def _fmt(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"
