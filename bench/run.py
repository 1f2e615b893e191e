"""`python -m bench`: run the sizes, write results.json, results.md and scaling.png."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp

from bench import report
from bench.measure import Settings, run_size
from bench.procs import REPO

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: want e.g. 100,1000,5000") from None
    if not sizes or any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the exporter against the simulator at several fleet sizes.",
    )
    d = Settings()
    add = p.add_argument
    add("--sizes", type=_sizes, default=[100, 1000, 5000], help="default 100,1000,5000")
    add("--interval", type=float, default=d.interval, help="poll interval, seconds")
    add("--rps", type=float, default=d.max_requests_per_second, help="max_requests_per_second")
    add("--concurrency", type=int, default=d.max_concurrency, help="max_concurrency")
    add("--cycles", type=int, default=d.cycles, help="steady cycles in the measurement window")
    add("--fetches", type=int, default=d.fetches, help="timed fetches of each kind per size")
    add("--scrapers", type=int, default=d.scrapers, help="Prometheus-like scrapers in the window")
    add("--happening-interval", type=float, default=d.happening_interval)
    add("--seed", type=int, default=d.seed)
    add("--out", type=Path, default=RESULTS, help="output directory (default bench/results)")
    add(
        "--publish",
        action="store_true",
        help="also write the committed copies bench/RESULTS.md and bench/scaling.png",
    )
    add(
        "--profile",
        action="store_true",
        help="run py-spy on the exporter during the window (perturbs the CPU figures)",
    )
    add("--profile-gil", action="store_true", help="like --profile, GIL holder only")
    add(
        "--memprofile",
        action="store_true",
        help="run the exporter under tracemalloc and dump live allocations (perturbs everything)",
    )
    add(
        "--exporter-module",
        default="exporter",
        help="run this module instead of `exporter` (A/B experiments with a patched copy)",
    )
    add("--no-plot", action="store_true", help="skip the PNG (no matplotlib needed)")
    return p


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _commit() -> str:
    """HEAD, marked when the exporter's code differs from it (the numbers are of the tree)."""
    head = _git("rev-parse", "--short", "HEAD") or "unknown"
    if _git("status", "--porcelain", "--untracked-files=no", "--", "exporter"):
        head += " + uncommitted changes in exporter/"
    return head


def calibrate(rounds: int = 5) -> float:
    """CPU seconds of a fixed pure-Python loop, best of `rounds`: how fast this machine runs
    Python right now. On shared VMs it drifts by tens of percent, and every CPU figure with it."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        total = 0
        for i in range(2_000_000):
            total += i * i
        best = min(best, time.process_time() - started)
    return round(best, 3)


def _meta(settings: Settings) -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "settings": asdict(settings),
    }


async def _run_all(sizes: list[int], settings: Settings, out: Path) -> list[dict[str, Any]]:
    rows = []
    (out / "work").mkdir(parents=True, exist_ok=True)
    for n in sizes:
        started = time.monotonic()
        print(f"== {n:,} services", flush=True)
        result = await run_size(n, settings, out / "work", lambda m: print(m, flush=True))
        rows.append(result.as_json())
        print(f"   done in {time.monotonic() - started:.0f} s", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings(
        interval=args.interval,
        max_requests_per_second=args.rps,
        max_concurrency=args.concurrency,
        cycles=args.cycles,
        fetches=args.fetches,
        scrapers=args.scrapers,
        happening_interval=args.happening_interval,
        seed=args.seed,
        profile=args.profile,
        profile_gil=args.profile_gil,
        memprofile=args.memprofile,
        exporter_module=args.exporter_module,
    )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    meta = _meta(settings)
    meta["calibration_before"] = calibrate()
    rows = asyncio.run(_run_all(args.sizes, settings, out))
    meta["calibration_after"] = calibrate()
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    plot_name = None
    if not args.no_plot:
        report.plot(rows, out / "scaling.png")
        plot_name = "scaling.png"
    text = report.markdown(rows, meta, plot_name)
    (out / "results.md").write_text(text)
    if args.publish:
        # Keep the section bench.status_page publishes there (between its markers).
        previous = (HERE / "RESULTS.md").read_text() if (HERE / "RESULTS.md").exists() else ""
        kept = previous[previous.find("<!-- status-page -->") :]
        if "<!-- status-page -->" in previous:
            text = text.rstrip("\n") + "\n\n" + kept
        (HERE / "RESULTS.md").write_text(text)
        if plot_name:
            shutil.copyfile(out / "scaling.png", HERE / "scaling.png")
    print()
    print(text)
    print(f"written: {out / 'results.md'}" + ("" if args.no_plot else f", {out / 'scaling.png'}"))
    sys.stdout.flush()
    return 0
