"""`python -m bench.ab OLD_TREE`: the steady cycle's CPU of two exporter trees side by side.

Two exporters, one from OLD_TREE (a checkout of another commit, e.g. made with `git worktree
add`) and one from this tree, watch the same simulated fleet (bench/simserver.py, as in the
steady scenario of bench.budget: 5,000 services by default, 30 s cycle, budget 200/s each) at
the same time, so a slow or noisy machine slows both alike. After a warm-up that covers the
first read of the fleet, each one's CPU (user + system, from /proc) is taken over the same
window and divided by the cycles it completed. For A/B comparisons of a change; bench.budget
gives the published figure of one tree alone.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import aiohttp

from bench import procs
from bench.budget import _defaults, total
from exporter.simulator import DEFAULT_PROJECT_ID

HERE = Path(__file__).resolve().parent


# Runs the exporter package of the tree given as argv[1] (first on sys.path) as `python -m`.
_FROM_TREE = (
    "import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); "
    "runpy.run_module('exporter', run_name='__main__')"
)


async def run(old_tree: str, services: int, warmup: float, cycles: int, work: Path) -> None:
    sim = procs.spawn(
        "simulator",
        procs.python_module(
            "bench.simserver", f"--services={services}", "--happening-interval=21600", "--seed=15"
        ),
        work / "ab-simulator.log",
    )
    exporters: dict[str, tuple[procs.Child, str]] = {}
    try:
        url = await procs.wait_listening(sim, within=60 + services * 0.02)
        polling = "\n".join(f"  {k}: {v}" for k, v in _defaults(budget=200.0).items())
        config = work / "ab-exporter.yaml"
        config.write_text(
            "# written by bench.ab\nauth:\n  method: token\n  token: bench\n"
            f"projects:\n  - project_id: {DEFAULT_PROJECT_ID}\n    region: cn-north-4\n"
            f"    endpoint: {url}\n    discovery:\n      enabled: true\npolling:\n{polling}\n"
        )
        for name, tree in (("old", old_tree), ("new", str(HERE.parent))):
            port = procs.free_port()
            argv = [
                sys.executable,
                "-c",
                _FROM_TREE,
                tree,
                f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ]
            child = procs.spawn(f"exporter ({name})", argv, work / f"ab-{name}.log")
            exporters[name] = (child, f"http://127.0.0.1:{port}/metrics")
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def done(metrics_url: str) -> float:
                async with session.get(metrics_url) as resp:
                    resp.raise_for_status()
                    body = await resp.read()
                return total(body, "modelarts_exporter_poll_duration_seconds_count")

            await asyncio.sleep(warmup)
            start = {
                n: (await done(u), procs.cpu_seconds(p.pid)) for n, (p, u) in exporters.items()
            }
            await asyncio.sleep(30.0 * cycles)
            for name, (child, metrics_url) in exporters.items():
                n = await done(metrics_url) - start[name][0]
                cpu = procs.cpu_seconds(child.pid) - start[name][1]
                rss = procs.memory_mib(child.pid)[0]
                per = cpu / max(n, 1)
                print(f"{name}: {n:.0f} cycles, {per:.3f} s CPU per cycle, RSS {rss:.0f} MiB")
    finally:
        for child, _ in exporters.values():
            await procs.stop(child)
        await procs.stop(sim)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n")[0])
    p.add_argument("old_tree", type=Path, help="a checkout of the commit to compare with")
    p.add_argument("--services", type=int, default=5000)
    p.add_argument("--warmup", type=float, default=150.0, help="seconds before the window")
    p.add_argument("--cycles", type=int, default=6, help="the window, in 30 s cycles")
    p.add_argument("--out", type=Path, default=HERE / "results" / "work")
    args = p.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    old_tree = str(args.old_tree.resolve())
    asyncio.run(run(old_tree, args.services, args.warmup, args.cycles, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
