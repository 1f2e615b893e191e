"""The simulator in a process of its own, so its CPU is never counted as the exporter's.

Prints one line `LISTENING <url>` on stdout once it accepts connections, then serves until
SIGTERM/SIGINT. Besides the ModelArts API it answers `GET /_bench/stats` (requests received per
endpoint) and `POST /_bench/reset`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from aiohttp import web

from bench.serving import serve_until_signalled
from exporter.simulator import Simulation, create_app


def build_app(sim: Simulation) -> web.Application:
    app = create_app(sim)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(
            {"by_endpoint": sim.stats.by_endpoint(), "services": len(sim.services)}
        )

    async def reset(request: web.Request) -> web.Response:
        sim.stats.reset()
        return web.json_response({"ok": True})

    app.router.add_get("/_bench/stats", stats)
    app.router.add_post("/_bench/reset", reset)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.simserver")
    parser.add_argument("--services", type=int, required=True)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--events-per-service", type=int, default=20)
    parser.add_argument("--models-per-service", type=int, default=2)
    parser.add_argument("--happening-interval", type=float, default=600.0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    sim = Simulation(
        seed=args.seed,
        services=args.services,
        events_per_service=args.events_per_service,
        models_per_service=args.models_per_service,
        dynamic=True,
        happening_interval=args.happening_interval,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_until_signalled(build_app(sim), args.host, args.port))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
