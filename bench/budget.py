"""`python -m bench.budget`: what the API budget costs and what it buys (issue 15).

Each scenario runs the real exporter (`python -m exporter`) against the simulator in a process of
its own (`bench/simserver.py`), both on loopback, and measures from outside:

- steady: a large fleet at the default intervals; API calls per service per cycle by endpoint
  over a window of whole cycles, then the time from a change made in the API (a service stopped,
  a million calls added, five events added to a steady running service) to the change on
  /metrics, and whether the event counter then equals the API's total exactly;
- quota: the simulator's account quota (per second and per minute) against the default budget
  and against a budget set too high; the share of requests answered 429 per 30 s bucket, whether
  any service's series ever disappeared, and whether every value converged to the API's truth;
- shards: two processes with `--total-shards=2` sharing one budget; the most requests the
  simulator saw start in any one second;
- list forbidden: a project whose list answers 403; details calls per service per cycle.

Writes `bench/results/budget.json` and `budget.md` (and `budget.png`); `--publish` also writes the
committed copies `bench/BUDGET.md` and `bench/budget.png`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import shutil
import signal
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench import procs
from bench.measure import _profile
from bench.run import _commit, _cpu_model
from exporter.simulator import DEFAULT_PROJECT_ID
from exporter.simulator.faults import MODELARTS_ENDPOINTS

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ENDPOINTS = ("list", "details", "events", "logs", "monitor", "v2_list", "v2_details", "v2_events")
assert set(ENDPOINTS) == MODELARTS_ENDPOINTS

_SERIES = re.compile(rb"^([a-z_]+)\{([^}\n]*)\} (\S+)$", re.M)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def series(body: bytes, family: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of one family in an exposition (labels, value)."""
    out: list[tuple[dict[str, str], float]] = []
    prefix = family.encode() + b"{"
    start = 0
    while True:
        at = body.find(b"\n" + prefix, start)
        if at < 0:
            return out
        end = body.find(b"\n", at + 1)
        line = body[at + 1 : end if end >= 0 else len(body)]
        start = at + 1
        m = _SERIES.match(line)
        if m:
            labels = dict(_LABEL.findall(m.group(2).decode()))
            out.append((labels, float(m.group(3))))


def per_service(
    body: bytes, family: str, ids: set[str] | None = None, **match: str
) -> dict[str, float]:
    """The family summed per service_id (only samples whose labels include `match`)."""
    out: dict[str, float] = {}
    for labels, value in series(body, family):
        sid = labels.get("service_id")
        if sid is None or (ids is not None and sid not in ids):
            continue
        if all(labels.get(k) == v for k, v in match.items()):
            out[sid] = out.get(sid, 0.0) + value
    return out


def total(body: bytes, family: str) -> float:
    """A family of the exporter's own summed over its labels (with or without labels)."""
    plain = re.findall(rb"^" + family.encode() + rb"(?:\{[^}\n]*\})? (\S+)$", body, re.M)
    return sum(float(v) for v in plain)


# Extra flags for every exporter the scenarios start (--event-loop of this module's command line).
EXPORTER_FLAGS: list[str] = []


@dataclass
class Run:
    """One simulator and one or more exporters (shards), ended by PID in `close`."""

    name: str
    workdir: Path
    sim_args: list[str]
    polling: dict[str, str]
    shards: int = 1
    children: list[procs.Child] = field(default_factory=list)
    sim_url: str = ""
    metrics_urls: list[str] = field(default_factory=list)
    session: aiohttp.ClientSession | None = None

    async def start(self, services: int) -> None:
        await self.start_simulator(services)
        await self.start_exporters()

    async def start_simulator(self, services: int) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        sim = procs.spawn(
            f"simulator ({self.name})",
            procs.python_module("bench.simserver", *self.sim_args),
            self.workdir / f"{self.name}-simulator.log",
        )
        self.children.append(sim)
        self.sim_url = await procs.wait_listening(sim, within=60 + services * 0.02)

    async def start_exporters(self, explicit: list[str] | None = None) -> None:
        polling = "\n".join(f"  {k}: {v}" for k, v in self.polling.items())
        if explicit is None:
            watch = "    discovery:\n      enabled: true\n"
        else:
            watch = "    services:\n" + "".join(f"      - {sid}\n" for sid in explicit)
        config = self.workdir / f"{self.name}-exporter.yaml"
        config.write_text(
            "# written by bench.budget\nauth:\n  method: token\n  token: bench\n"
            f"projects:\n  - project_id: {DEFAULT_PROJECT_ID}\n    region: cn-north-4\n"
            f"    endpoint: {self.sim_url}\n{watch}polling:\n{polling}\n"
        )
        for shard in range(self.shards):
            port = procs.free_port()
            argv = procs.python_module(
                "exporter",
                f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
                f"--shard={shard}",
                f"--total-shards={self.shards}",
                *EXPORTER_FLAGS,
            )
            child = procs.spawn(
                f"exporter {shard} ({self.name})", argv, self.workdir / f"{self.name}-{shard}.log"
            )
            self.children.append(child)
            self.metrics_urls.append(f"http://127.0.0.1:{port}/metrics")

    @property
    def exporter(self) -> procs.Child:
        return self.children[1]

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
        for child in reversed(self.children):
            await procs.stop(child)

    async def metrics(self, shard: int = 0) -> bytes:
        assert self.session is not None
        url = self.metrics_urls[shard]
        async with self.session.get(url, headers={"Accept-Encoding": "gzip"}) as resp:
            resp.raise_for_status()
            return await resp.read()  # aiohttp decompresses

    async def sim(self, path: str, payload: Any = None) -> Any:
        assert self.session is not None
        method = "GET" if payload is None else "POST"
        async with self.session.request(method, self.sim_url + path, json=payload) as resp:
            resp.raise_for_status()
            return await resp.json()

    async def wait(self, what: str, check: Callable[[], Awaitable[Any]], within: float) -> Any:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for child in self.children:
                if child.proc.poll() is not None:
                    raise RuntimeError(f"{child.name} exited:\n{child.log_tail()}")
            try:
                result = await check()
            except (aiohttp.ClientError, OSError):
                result = None
            if result:
                return result
            await asyncio.sleep(1.0)
        raise TimeoutError(f"{self.name}: timed out after {within:.0f} s waiting for {what}")

    async def cycles(self) -> float:
        return total(await self.metrics(), "modelarts_exporter_poll_duration_seconds_count")


def _calls(stats: dict[str, Any]) -> dict[str, int]:
    return {ep: int(stats["by_endpoint"].get(ep, 0)) for ep in ENDPOINTS}


def _defaults(interval: str = "30s", budget: float = 10.0) -> dict[str, str]:
    return {"interval": interval, "max_requests_per_second": f"{budget:g}", "monitor_interval": "0"}


# -- steady state at scale ---------------------------------------------------------------------


async def steady(
    workdir: Path, services: int, budget: float, window_cycles: int, profile: Path | None = None
) -> dict[str, Any]:
    """Default intervals (30 s cycle, 5 m details and events, 10 m logs), monitor off; a budget
    large enough for the first read of the whole fleet; a service changes every 6 h on average."""
    run = Run(
        "steady",
        workdir,
        [f"--services={services}", "--happening-interval=21600", "--seed=15"],
        _defaults(budget=budget),
    )
    interval = 30.0
    try:
        await run.start(services)
        log(f"steady: {services:,} services, budget {budget:g}/s")
        first_read = time.monotonic()

        async def fully_read() -> bool:
            body = await run.metrics()
            read = per_service(body, "modelarts_exporter_last_success_timestamp_seconds")
            events = per_service(
                body, "modelarts_exporter_last_success_timestamp_seconds", endpoint="events"
            )
            return len(read) == services and len(events) == services

        await run.wait("the first read of every service", fully_read, 60 + services * 0.5)
        first_read = time.monotonic() - first_read
        log(f"  every service read after {first_read:.0f} s")
        # the safety nets are spread over their interval from the first read on: wait for a
        # cycle end, then measure whole cycles
        seen = await run.cycles()
        await run.wait("a cycle end", lambda: _more(run, seen), interval * 3)
        await asyncio.sleep(interval / 2)
        c0, s0 = await run.cycles(), _calls(await run.sim("/_bench/stats"))
        cpu0, t0 = procs.cpu_seconds(run.exporter.pid), time.monotonic()
        if profile is not None:
            run.children.append(
                await _profile(run.exporter.pid, window_cycles * interval, profile, gil=False)
            )
        await asyncio.sleep(window_cycles * interval)
        c1, s1 = await run.cycles(), _calls(await run.sim("/_bench/stats"))
        cpu1, t1 = procs.cpu_seconds(run.exporter.pid), time.monotonic()
        cycles = c1 - c0
        calls = {ep: s1[ep] - s0[ep] for ep in ENDPOINTS}
        per = {ep: n / (services * cycles) for ep, n in calls.items() if n}
        log(
            f"  {cycles:.0f} cycles in {t1 - t0:.0f} s: {sum(per.values()):.3f} calls/service/cycle"
        )
        changes = await _changes(run, interval)
        return {
            "services": services,
            "budget": budget,
            "first_read_s": first_read,
            "window_s": t1 - t0,
            "cycles": cycles,
            "calls": calls,
            "per_service_cycle": per,
            "per_service_cycle_total": sum(per.values()),
            "cpu_per_cycle": (cpu1 - cpu0) / cycles,
            "rss_mib": procs.memory_mib(run.exporter.pid)[0],
            **changes,
        }
    finally:
        await run.close()


async def _more(run: Run, seen: float) -> bool:
    return await run.cycles() > seen


async def _changes(run: Run, interval: float, per_kind: int = 8) -> dict[str, Any]:
    """Make changes in the API at random moments of one interval and time their arrival on
    /metrics: status and invocation counters (the list's), events (the safety net's)."""
    ids = await run.sim(f"/_bench/running?n={per_kind * 3}")
    kinds = {"status": ids[:per_kind], "invocations": ids[per_kind : 2 * per_kind]}
    kinds["events"] = ids[2 * per_kind :]
    made: dict[str, tuple[str, float, dict[str, Any]]] = {}
    spacing = interval / (3 * per_kind)
    order = [(k, sid) for i in range(per_kind) for k in kinds if (sid := kinds[k][i])]
    for i, (kind, sid) in enumerate(order):
        await asyncio.sleep(spacing if i else 0)
        made[sid] = (
            kind,
            time.monotonic(),
            await run.sim("/_bench/change", {"kind": kind, "service_id": sid}),
        )
    latency: dict[str, list[float]] = {k: [] for k in kinds}
    exact: list[bool] = []
    pending = dict(made)
    deadline = time.monotonic() + 300 + 3 * interval  # events_interval and some cycles
    while pending and time.monotonic() < deadline:
        body = await run.metrics()
        now = time.monotonic()
        want = set(pending)
        status = per_service(body, "modelarts_service_status", want, status="stopped")
        calls = per_service(body, "modelarts_service_invocations_total", want)
        events = per_service(body, "modelarts_service_events_total", want)
        for sid, (kind, at, truth) in list(pending.items()):
            if kind == "status":
                arrived = status.get(sid) == 1
            elif kind == "invocations":
                arrived = calls.get(sid, 0) >= truth["invocations"]
            else:
                arrived = events.get(sid, 0) >= truth["events"]
                if arrived:
                    now_truth = (await run.sim(f"/_bench/truth?ids={sid}"))[sid]["events"]
                    exact.append(events[sid] == now_truth)
            if arrived:
                latency[kind].append(now - at)
                del pending[sid]
        await asyncio.sleep(1.0)
    out: dict[str, Any] = {"missed_changes": len(pending), "events_exact": exact}
    for kind, values in latency.items():
        out[f"{kind}_latency"] = sorted(values)
    log(
        "  change to /metrics: "
        + ", ".join(f"{k} max {max(v):.0f} s" for k, v in latency.items() if v)
        + f"; events exact {sum(exact)}/{len(exact)}; missed {len(pending)}"
    )
    return out


# -- quota ----------------------------------------------------------------------------------------


async def quota(
    workdir: Path,
    *,
    name: str,
    services: int,
    v2: int,
    budget: float,
    per_second: int,
    per_minute: int,
    seconds: float,
) -> dict[str, Any]:
    """A static fleet against the account quota: throttled share per 30 s, series never lost,
    every value equal to the API's at the end."""
    run = Run(
        name,
        workdir,
        [
            f"--services={services}",
            f"--v2-services={v2}",
            "--static",
            "--seed=16",
            f"--quota-per-second={per_second}",
            f"--quota-per-minute={per_minute}",
        ],
        _defaults(budget=budget),
    )
    try:
        await run.start(services + v2)
        log(f"{name}: {services} v1 + {v2} v2 services, budget {budget:g}/s")
        started = time.monotonic()
        # the simulator has received nothing before the exporter started
        samples: list[tuple[float, int, int, float]] = [(0.0, 0, 0, budget)]
        seen: set[str] = set()
        lost: set[str] = set()
        await run.wait("the exporter", run.metrics, 60)
        for _ in range(int(seconds / 5) + 1):
            stats = await run.sim("/_bench/stats")
            body = await run.metrics()
            ids = set(per_service(body, "modelarts_service_info"))
            lost |= seen - ids
            seen |= ids
            rate = total(body, "modelarts_exporter_api_rate_limit")
            samples.append((time.monotonic() - started, stats["started"], stats["throttled"], rate))
            if time.monotonic() - started >= seconds:
                break
            await asyncio.sleep(max(0.0, 5.0 - (time.monotonic() - started) % 5.0))
        truth = await run.sim("/_bench/truth")
        body = await run.metrics()
        wrong = _compare(body, truth)
        buckets = _buckets(samples, 30.0)
        after = [(t, s, th) for t, s, th, _ in samples if t >= 60.0]
        requests = after[-1][1] - after[0][1] if len(after) > 1 else 0
        throttled = after[-1][2] - after[0][2] if len(after) > 1 else 0
        share = throttled / requests if requests else 0.0
        log(
            f"  after the first minute: {throttled}/{requests} answered 429 ({share:.2%}); "
            f"lost series: {len(lost)}; values not converged: {len(wrong)}"
        )
        return {
            "name": name,
            "services": services,
            "v2_services": v2,
            "budget": budget,
            "quota_per_second": per_second,
            "quota_per_minute": per_minute,
            "seconds": seconds,
            "requests_after_first_minute": requests,
            "throttled_after_first_minute": throttled,
            "share_after_first_minute": share,
            "total_requests": samples[-1][1],
            "total_throttled": samples[-1][2],
            "lost_series": sorted(lost),
            "watched_at_end": len(seen),
            "not_converged": wrong[:20],
            "not_converged_count": len(wrong),
            "buckets": buckets,
            "rate_limit": [(t, r) for t, _, _, r in samples],
        }
    finally:
        await run.close()


def _buckets(samples: list[tuple[float, int, int, float]], width: float) -> list[dict[str, float]]:
    out = []
    edge = width
    prev = samples[0]
    for sample in samples[1:]:
        if sample[0] >= edge or sample is samples[-1]:
            requests, throttled = sample[1] - prev[1], sample[2] - prev[2]
            out.append(
                {
                    "end_s": round(sample[0]),
                    "requests": requests,
                    "throttled": throttled,
                    "share": throttled / requests if requests else 0.0,
                }
            )
            prev = sample
            edge += width
    return out


def _compare(body: bytes, truth: dict[str, dict[str, Any]]) -> list[str]:
    """Services whose status, invocation counter or event total differ from the API's."""
    status = {
        labels["service_id"]: labels["status"]
        for labels, value in series(body, "modelarts_service_status")
        if value == 1
    }
    calls = per_service(body, "modelarts_service_invocations_total")
    events = per_service(body, "modelarts_service_events_total")
    wrong = []
    for sid, t in truth.items():
        if status.get(sid) != t["status"]:
            wrong.append(f"{sid}: status {status.get(sid)} != {t['status']}")
        elif t["invocations"] is not None and calls.get(sid) != t["invocations"]:
            wrong.append(f"{sid}: invocations {calls.get(sid)} != {t['invocations']}")
        elif events.get(sid, 0) != t["events"]:
            wrong.append(f"{sid}: events {events.get(sid)} != {t['events']}")
    return wrong


# -- shards, list forbidden ----------------------------------------------------------------------


async def shards(workdir: Path, services: int, budget: float, seconds: float) -> dict[str, Any]:
    """Two processes, one budget: every safety net due each cycle, far more work than fits."""
    polling = _defaults(interval="5s", budget=budget)
    polling |= {"details_interval": "5s", "events_interval": "5s"}
    run = Run("shards", workdir, [f"--services={services}", "--seed=17"], polling, shards=2)
    try:
        await run.start(services)
        log(f"shards: 2 processes, {services} services, budget {budget:g}/s")
        await run.wait("both shards", lambda: _all_answer(run), 60)
        await run.sim("/_bench/reset", {})
        await asyncio.sleep(seconds)
        stats = await run.sim(f"/_bench/peak?seconds={seconds:g}")
        watched = [
            total(await run.metrics(i), "modelarts_exporter_watched_services") for i in (0, 1)
        ]
        log(f"  peak {stats['peak']} requests in any second, mean {stats['mean']:.1f}/s")
        return {
            "services": services,
            "budget": budget,
            "seconds": seconds,
            "watched": watched,
            **stats,
        }
    finally:
        await run.close()


async def _all_answer(run: Run) -> bool:
    for i in range(run.shards):
        await run.metrics(i)
    return True


async def list_forbidden(workdir: Path, services: int, cycles: int) -> dict[str, Any]:
    """A project whose credentials may not list: explicit services (nothing can be discovered),
    one details call per service per cycle, one warning per cycle."""
    interval = 10.0
    run = Run(
        "list-forbidden",
        workdir,
        [f"--services={services}", "--seed=18", "--static", "--forbid=list,v2_list"],
        _defaults(interval=f"{interval:g}s", budget=200),
    )
    try:
        await run.start_simulator(services)
        truth = await run.sim("/_bench/truth")
        await run.start_exporters(sorted(truth))
        log(f"list forbidden: {services} explicit services")
        await run.wait("the first cycle", lambda: _more(run, 0), 120)
        seen = await run.cycles()
        await run.wait("a cycle end", lambda: _more(run, seen), interval * 3)
        await asyncio.sleep(interval / 2)
        c0, s0 = await run.cycles(), _calls(await run.sim("/_bench/stats"))
        warnings0 = _count_lines(run, "service list unavailable")
        await asyncio.sleep(cycles * interval)
        c1, s1 = await run.cycles(), _calls(await run.sim("/_bench/stats"))
        warnings = _count_lines(run, "service list unavailable") - warnings0
        n = c1 - c0
        body = await run.metrics()
        wrong = _compare(body, await run.sim("/_bench/truth"))
        per = {ep: (s1[ep] - s0[ep]) / (services * n) for ep in ENDPOINTS if s1[ep] - s0[ep]}
        log(f"  {n:.0f} cycles: {per} per service per cycle, {warnings} warnings")
        return {
            "services": services,
            "cycles": n,
            "per_service_cycle": per,
            "warnings": warnings,
            "not_converged_count": len(wrong),
        }
    finally:
        await run.close()


def _count_lines(run: Run, text: str) -> int:
    return sum(text in line for line in run.exporter.log_path.read_text().splitlines())


def log(message: str) -> None:
    print(message, flush=True)


# -- the report -----------------------------------------------------------------------------------


def _ms(values: list[float]) -> str:
    if not values:
        return "none arrived"
    return f"median {statistics.median(values):.0f} s, max {max(values):.0f} s (n={len(values)})"


def markdown(results: dict[str, Any], meta: dict[str, Any], plot: str | None) -> str:
    lines = [
        "# API budget benchmark",
        "",
        f"Generated by `python -m bench.budget` on {meta['date']} at commit `{meta['commit']}`; "
        f"{meta['cpus']} CPUs ({meta['cpu_model']}); exporter event loop: "
        f"{meta.get('event_loop', 'default')}. The exporter and the simulator are separate "
        "processes on loopback; every figure is measured at the simulator (requests received) "
        "or on the exporter's /metrics.",
        "",
    ]
    st = results.get("steady")
    if st:
        per = st["per_service_cycle"]
        lines += [
            f"## Steady state: {st['services']:,} services, defaults, monitor off",
            "",
            "Interval 30 s, details and events safety nets 5 m, logs 10 m, a change per service "
            f"every 6 h on average; budget {st['budget']:g}/s (the default 10/s does not cover "
            f"{st['services']:,} services: see the cost arithmetic in the README). First read of "
            f"the whole fleet: {st['first_read_s']:.0f} s. Window: {st['cycles']:.0f} whole "
            f"cycles ({st['window_s']:.0f} s).",
            "",
            "| endpoint | calls in the window | per service per cycle |",
            "|---|---:|---:|",
        ]
        for ep in ENDPOINTS:
            if st["calls"].get(ep):
                lines.append(f"| {ep} | {st['calls'][ep]:,} | {per[ep]:.4f} |")
        lines += [
            f"| **all** | {sum(st['calls'].values()):,} "
            f"| **{st['per_service_cycle_total']:.3f}** |",
            "",
            f"Exporter CPU {st['cpu_per_cycle']:.2f} s per cycle, RSS {st['rss_mib']:.0f} MiB.",
            "",
            "From a change in the API to the change on /metrics (the driver reads /metrics "
            "every second; changes made at spread moments of one interval):",
            "",
            f"- a service stopped (status, from the list): {_ms(st['status_latency'])}",
            f"- a million calls added (invocation counter, from the list): "
            f"{_ms(st['invocations_latency'])}",
            f"- five events added to a steady running service (events safety net, 5 m): "
            f"{_ms(st['events_latency'])}; the counter equal to the API's total when they "
            f"arrived: {sum(st['events_exact'])} of {len(st['events_exact'])}",
            f"- changes that never arrived: {st['missed_changes']}",
            "",
        ]
    for q in results.get("quota", []):
        lines += [
            f"## Quota {q['quota_per_second']}/s and {q['quota_per_minute']}/min, budget "
            f"{q['budget']:g}/s",
            "",
            f"{q['services']} v1 and {q['v2_services']} v2 services (nothing changes by itself, "
            "so the API's truth is fixed), interval 30 s, defaults otherwise, "
            f"{q['seconds']:.0f} s from start. Requests received {q['total_requests']:,}, "
            "answered 429 "
            f"{q['total_throttled']:,}; after the first minute "
            f"{q['throttled_after_first_minute']:,} of {q['requests_after_first_minute']:,} "
            f"(**{q['share_after_first_minute']:.2%}**). Services whose series disappeared at "
            f"any 5 s sample: {len(q['lost_series'])}. Services whose status, invocation "
            f"counter or event total differ from the API's at the end: "
            f"{q['not_converged_count']} (of {q['watched_at_end']} watched).",
            "",
            "| 30 s bucket ending at | requests | answered 429 | share |",
            "|---:|---:|---:|---:|",
        ]
        for b in q["buckets"]:
            lines.append(
                f"| {b['end_s']} s | {b['requests']} | {b['throttled']} | {b['share']:.1%} |"
            )
        lines.append("")
    sh = results.get("shards")
    if sh:
        lines += [
            "## Two shards, one budget",
            "",
            f"`--total-shards=2`, {sh['services']} services, budget {sh['budget']:g}/s, every "
            f"safety net due each 5 s cycle (far more work than the budget admits), "
            f"{sh['seconds']:.0f} s: the simulator saw at most **{sh['peak']}** requests start in "
            f"any one second, {sh['mean']:.1f}/s on average; services watched by the shards: "
            f"{' + '.join(f'{w:.0f}' for w in sh['watched'])}.",
            "",
        ]
    lf = results.get("list_forbidden")
    if lf:
        per = ", ".join(f"{ep} {v:.3f}" for ep, v in lf["per_service_cycle"].items())
        lines += [
            "## A project whose list answers 403",
            "",
            f"{lf['services']} explicit services, interval 10 s, {lf['cycles']:.0f} cycles: "
            f'calls per service per cycle: {per}; warnings "service list unavailable": '
            f"{lf['warnings']} (one per cycle and generation); values differing from the "
            f"API's: {lf['not_converged_count']}.",
            "",
        ]
    if plot:
        lines += [f"![throttled share and allowed rate under the quota]({plot})", ""]
    return "\n".join(lines)


def plot_quota(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_share, ax_rate) = plt.subplots(1, 2, figsize=(13, 4.5))
    for q in results.get("quota", []):
        label = f"budget {q['budget']:g}/s"
        ends = [b["end_s"] for b in q["buckets"]]
        ax_share.plot(ends, [100 * b["share"] for b in q["buckets"]], "o-", label=label)
        ts, rates = zip(*q["rate_limit"], strict=True) if q["rate_limit"] else ((), ())
        ax_rate.plot(ts, rates, "-", label=label)
    if results.get("quota"):
        q = results["quota"][0]
        ax_rate.axhline(
            q["quota_per_minute"] / 60, color="grey", linestyle=":", label="quota per minute / 60"
        )
    ax_share.axhline(2, color="grey", linestyle=":", label="2 %")
    ax_share.axvline(60, color="lightgrey", linestyle="--")
    ax_share.set(title="requests answered 429 per 30 s", xlabel="s since start", ylabel="%")
    ax_rate.set(
        title="modelarts_exporter_api_rate_limit", xlabel="s since start", ylabel="requests/s"
    )
    for ax in (ax_share, ax_rate):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


SCENARIOS = ("steady", "quota", "shards", "list-forbidden")


async def _run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if "steady" in args.scenarios:
        # alone: its CPU figure must not share the machine with the others
        results["steady"] = await steady(
            work, args.services, args.steady_budget, args.window_cycles, args.profile
        )
    jobs: dict[str, Callable[[], Awaitable[Any]]] = {}
    if "quota" in args.scenarios:
        # the default budget, and one set too high (twice the per-second quota)
        jobs["quota"] = lambda: asyncio.gather(
            *(
                quota(
                    work,
                    name=f"quota-{b:g}",
                    services=args.quota_services,
                    v2=args.quota_v2,
                    budget=b,
                    per_second=20,
                    per_minute=600,
                    seconds=args.quota_seconds,
                )
                for b in (10.0, 40.0)
            )
        )
    if "shards" in args.scenarios:
        jobs["shards"] = lambda: shards(work, args.shards_services, 20.0, args.shards_seconds)
    if "list-forbidden" in args.scenarios:
        jobs["list_forbidden"] = lambda: list_forbidden(work, 200, 3)
    # the others are light (tens of requests per second): side by side
    names = list(jobs)
    values = await asyncio.gather(*(jobs[name]() for name in names))
    for name, value in zip(names, values, strict=True):
        results[name] = list(value) if name == "quota" else value
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.budget", description=__doc__.split("\n")[0])
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    p.add_argument("--services", type=int, default=5000, help="steady scenario's fleet")
    p.add_argument("--steady-budget", type=float, default=200.0)
    p.add_argument("--window-cycles", type=int, default=11, help="covers events_interval")
    p.add_argument(
        "--profile",
        type=Path,
        help="py-spy (raw stacks) on the steady exporter during the window, written here "
        "(perturbs its CPU figure); read with python -m bench.profile_summary",
    )
    p.add_argument("--quota-services", type=int, default=600)
    p.add_argument("--quota-v2", type=int, default=150)
    p.add_argument("--quota-seconds", type=float, default=420.0)
    p.add_argument("--shards-services", type=int, default=400)
    p.add_argument("--shards-seconds", type=float, default=60.0)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--publish", action="store_true", help="write bench/BUDGET.md and budget.png")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument(
        "--event-loop",
        choices=("auto", "asyncio", "uvloop"),
        default=None,
        help="the exporters' --event-loop (default: theirs)",
    )
    args = p.parse_args(argv)
    if args.event_loop:
        EXPORTER_FLAGS.append(f"--event-loop={args.event_loop}")
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    out: Path = args.out
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "event_loop": args.event_loop or "default",
    }
    # Backgrounded shells ignore SIGINT: SIGTERM ends the run the same way, every child by PID.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    results = asyncio.run(_run(args, work))
    (out / "budget.json").write_text(json.dumps({"meta": meta, **results}, indent=1) + "\n")
    plot = None
    if results.get("quota") and not args.no_plot:
        plot_quota(results, out / "budget.png")
        plot = "budget.png"
    text = markdown(results, meta, plot)
    (out / "budget.md").write_text(text)
    if args.publish:
        (HERE / "BUDGET.md").write_text(text)
        if plot:
            shutil.copyfile(out / "budget.png", HERE / "budget.png")
    print()
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
