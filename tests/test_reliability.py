"""The reliability suite (issue 17): long runs and hostile peers, each test printing its figures.

`make test` runs the short form; `make soak` the full one (SOAK_SECONDS=600: ten minutes of
churn). The exporter and the simulator run as processes of their own (bench.budget.Run), so the
RSS measured is the exporter's alone.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from pathlib import Path

import pytest

from bench import procs
from bench.budget import Run, _compare, series, total
from exporter.cli import SERVER_LIMITS

pytestmark = [pytest.mark.reliability, pytest.mark.e2e]

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "90"))
STABLE_V1, STABLE_V2 = 400, 100
CHURN_PER_SECOND = 3.5  # created, and deleted: 2,100 of each in ten minutes
CHURN_LIFETIME = 20.0  # seconds a churned service lives: four cycles
INTERVAL = 5.0
SAFETY_NET = 20.0


def _service_ids(body: bytes) -> set[str]:
    return {labels["service_id"] for labels, _ in series(body, "modelarts_service_status")}


@pytest.mark.timeout(SOAK_SECONDS + 300)
async def test_churn_leaves_no_series_behind_and_memory_flat(tmp_path: Path) -> None:
    sim_args = [
        f"--services={STABLE_V1}",
        f"--v2-services={STABLE_V2}",
        "--static",  # the stable fleet changes only when the test says so
        "--seed=23",
        f"--churn-per-second={CHURN_PER_SECOND}",
        f"--churn-lifetime={CHURN_LIFETIME}",
    ]
    # Event and detail changes show in no list: the safety nets find them (SPEC §4).
    polling = {
        "interval": f"{INTERVAL:g}s",
        "events_interval": f"{SAFETY_NET:g}s",
        "details_interval": f"{SAFETY_NET:g}s",
        "max_requests_per_second": "200",
    }
    run = Run("churn", tmp_path, sim_args, polling)
    rng = random.Random(5)
    try:
        await run.start(STABLE_V1 + STABLE_V2)
        stable = set(await run.sim("/_bench/truth"))  # before churn: the services that stay
        stable -= set((await run.sim("/_bench/churn"))["alive"])
        assert len(stable) >= STABLE_V1 + STABLE_V2 - 10

        async def watching() -> bool:
            return total(await run.metrics(), "modelarts_exporter_watched_services") >= len(stable)

        await run.wait("the fleet watched", watching, within=120)
        stable_v1 = sorted(
            sid
            for sid, t in (await run.sim("/_bench/truth")).items()
            if sid in stable and t["invocations"] is not None
        )
        warm_at = min(60.0, SOAK_SECONDS / 3)
        started = time.monotonic()
        rss_warm = 0.0
        rss_samples: list[float] = []
        late_series: set[str] = set()
        changes = 0
        for _ in range(int(SOAK_SECONDS / INTERVAL) + 1):
            elapsed = time.monotonic() - started
            if elapsed >= SOAK_SECONDS:
                break
            for sid in rng.sample(stable_v1, 3):  # the survivors' counters keep moving
                await run.sim(
                    "/_bench/change",
                    {"service_id": sid, "kind": rng.choice(["events", "invocations"])},
                )
                changes += 1
            body = await run.metrics()
            churn = await run.sim("/_bench/churn")
            # deleted more than a cycle (and its duration) ago: must be gone from /metrics
            gone = {s for s, ago in churn["deleted_ago"].items() if ago > INTERVAL + 3.0}
            late_series |= _service_ids(body) & gone
            rss = procs.memory_mib(run.exporter.pid)[0]
            rss_samples.append(rss)
            if not rss_warm and elapsed >= warm_at:
                rss_warm = rss
            await asyncio.sleep(INTERVAL)
        rss_end = procs.memory_mib(run.exporter.pid)[0]
        churn = await run.sim("/_bench/churn", {"paused": True})
        alive = set(churn["alive"])

        differences: list[str] = []

        async def settled() -> bool:
            body = await run.metrics()
            everything = await run.sim("/_bench/truth")
            truth = {sid: t for sid, t in everything.items() if sid in stable}
            seen = _service_ids(body)
            differences[:] = [
                f"not exposed: {sorted((stable | alive) - seen)[:5]}",
                f"exposed, not in the API: {sorted(seen - stable - alive)[:5]}",
                *_compare(body, truth)[:5],
            ]
            return seen == stable | alive and not _compare(body, truth)

        try:
            await run.wait(
                "the survivors exact, the deleted gone", settled, SAFETY_NET + 4 * INTERVAL + 30
            )
        except TimeoutError:
            raise AssertionError("\n".join(differences)) from None
        growth = (rss_end - rss_warm) / rss_warm
        print(
            f"\nchurn {SOAK_SECONDS:.0f} s: {churn['created']} created, {churn['deleted']} "
            f"deleted beside {len(stable)} stable; RSS {rss_warm:.1f} MiB after "
            f"{warm_at:.0f} s, {rss_end:.1f} MiB at the end ({growth:+.1%}), peak "
            f"{max(rss_samples):.1f} MiB; series of deleted services seen after one cycle: "
            f"{len(late_series)}; {changes} changes to survivors, all exact"
        )
        assert churn["created"] >= 0.9 * CHURN_PER_SECOND * SOAK_SECONDS
        assert churn["deleted"] >= churn["created"] - CHURN_PER_SECOND * CHURN_LIFETIME - 5
        assert not late_series
        assert growth <= 0.10
    finally:
        await run.close()


SCRAPERS = 50
SLOW_CLIENTS = 200
ATTACK_SECONDS = 20.0
# the server closes an unfinished head this many seconds after the connection opened
KEEPALIVE = SERVER_LIMITS["keepalive_timeout"]
SLOWLORIS_LINES = 20  # 60 s of dripping, twice the keep-alive timeout


async def _slowloris(port: int, opened: list[float]) -> float | None:
    """A request head that never ends: a header line every 3 s until the server hangs up.

    Returns how many seconds after opening the server closed the connection (EOF or reset), or
    None if it still held it after SLOWLORIS_LINES lines. The socket is always closed here, so a
    later test's gc.collect() finds nothing of ours (CI once failed test_reload on these)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    opened_at = time.monotonic()
    opened.append(opened_at)
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for i in range(SLOWLORIS_LINES):
            try:
                data = await asyncio.wait_for(reader.read(4096), 3.0)
            except TimeoutError:
                writer.write(b"X-Slow-%d: 1\r\n" % i)
                await writer.drain()
                continue
            if not data:
                return time.monotonic() - opened_at
        return None
    except ConnectionError:
        return time.monotonic() - opened_at
    finally:
        writer.close()


async def _huge_head(port: int, head: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n" + head + b"\r\n")
        return await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()


@pytest.mark.timeout(300)
async def test_hostile_scrapers_do_not_slow_a_normal_scrape(tmp_path: Path) -> None:
    run = Run(
        "scrapers", tmp_path, ["--services=1000", "--static", "--seed=31"], {"interval": "5s"}
    )
    try:
        await run.start(1000)

        async def watching() -> bool:
            return total(await run.metrics(), "modelarts_exporter_watched_services") >= 1000

        await run.wait("the fleet watched", watching, within=120)
        assert run.session is not None
        url = run.metrics_urls[0]
        port = int(url.split(":")[2].split("/")[0])
        rss_steady = procs.memory_mib(run.exporter.pid)[0]

        async def timed_scrape(gzip: bool) -> float:
            assert run.session is not None
            started = time.monotonic()
            headers = {"Accept-Encoding": "gzip" if gzip else "identity"}
            async with run.session.get(url, headers=headers) as resp:
                assert resp.status == 200
                await resp.read()
            return time.monotonic() - started

        quiet = [await timed_scrape(False) for _ in range(5)]
        stop = time.monotonic() + ATTACK_SECONDS
        hammer = procs.spawn(
            "hammer",
            procs.python_module(
                "bench.hammer", url, f"--clients={SCRAPERS}", f"--seconds={ATTACK_SECONDS:g}"
            ),
            tmp_path / "hammer.log",
        )
        run.children.append(hammer)
        slow: list[float] = []
        attackers = [asyncio.create_task(_slowloris(port, slow)) for _ in range(SLOW_CLIENTS)]
        normal: list[float] = []
        rss_peak = rss_steady
        huge = []
        many = b"".join(b"X-H%d: 1\r\n" % i for i in range(1000))
        while time.monotonic() < stop:
            await asyncio.sleep(1.0)
            normal.append(await timed_scrape(False))
            huge.append(await _huge_head(port, b"X-Big: " + b"a" * 65536 + b"\r\n"))
            huge.append(await _huge_head(port, many))
            rss_peak = max(rss_peak, procs.memory_mib(run.exporter.pid)[0])
        await asyncio.to_thread(hammer.proc.wait, 60)
        hostile_scrapes = int(hammer.log_tail(1).split()[-1])
        assert len(slow) == SLOW_CLIENTS
        # each unfinished head is dropped by the server KEEPALIVE s after it opened: wait for
        # every one to see its EOF (bounded by SLOWLORIS_LINES inside, and here)
        try:
            closed_after = await asyncio.wait_for(asyncio.gather(*attackers), 3 * KEEPALIVE)
        finally:
            for task in attackers:
                task.cancel()
            await asyncio.gather(*attackers, return_exceptions=True)
        held = [c for c in closed_after if c is None]
        closed = [c for c in closed_after if c is not None]
        normal.sort()
        print(
            f"\nhostile scrapers at 1,000 services: {SCRAPERS} concurrent (half gzip, "
            f"{hostile_scrapes} scrapes in {ATTACK_SECONDS:.0f} s), {SLOW_CLIENTS} slowloris, "
            f"heads of 64 KiB and of 1,000 headers: normal scrape median "
            f"{normal[len(normal) // 2] * 1000:.0f} ms, max {normal[-1] * 1000:.0f} ms (quiet "
            f"{min(quiet) * 1000:.0f} ms); RSS {rss_steady:.1f} MiB steady, peak "
            f"{rss_peak:.1f} MiB; huge heads answered {sorted({h[:12].decode() for h in huge})}; "
            f"slowloris closed by the server: {len(closed)}/{SLOW_CLIENTS}, "
            f"{min(closed, default=0):.1f}-{max(closed, default=0):.1f} s after opening"
        )
        assert normal[-1] < 1.0
        assert rss_peak - rss_steady < 50
        assert all(re.match(rb"HTTP/1\.[01] (400|431) ", h) for h in huge), huge
        assert not held, (
            f"{len(held)} slowloris connections still open after {SLOWLORIS_LINES * 3} s"
        )
        assert max(closed) < KEEPALIVE + 15
    finally:
        await run.close()
