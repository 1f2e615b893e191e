"""The simulator in a process of its own, so its CPU is never counted as the exporter's.

Prints one line `LISTENING <url>` on stdout once it accepts connections, then serves until
SIGTERM/SIGINT. Besides the ModelArts API it answers the driver's control routes:

- `GET /_bench/stats`: requests received per endpoint, all requests and those the quota refused;
- `POST /_bench/reset`: forget the statistics;
- `GET /_bench/running?n=K`: K running v1 services (the first K in id order);
- `POST /_bench/change` `{"kind": "status"|"invocations"|"events", "service_id": ...}`: make one
  change in the API (stop the service, add a million calls, add five events);
- `GET /_bench/truth?ids=a,b`: what the API says now about those services (all when no ids);
- `GET /_bench/churn`: with `--churn-per-second R`, services are created (every fourth a v2
  one when the fleet has v2) and deleted R per second each, each living `--churn-lifetime`
  seconds, the initial fleet untouched: counts, the churned services alive, and those deleted
  with how long ago; `POST /_bench/churn {"paused": true|false}` stops and resumes it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from bench.serving import serve_until_signalled
from exporter.simulator import DEFAULT_PROJECT_ID, Simulation, create_app
from exporter.simulator.faults import MODELARTS_ENDPOINTS

EVENTS_PER_CHANGE = 5
CALLS_PER_CHANGE = 1_000_000


def truth(sim: Simulation, service_id: str) -> dict[str, Any]:
    """Status, invocation counter and event total of one service, as the API has them now."""
    svc = sim.service(service_id)
    if svc.generation == "v2":
        events = sum(sim.v2_event_totals(service_id).values())
        calls = None
    else:
        events = sum(sim.event_counts(service_id).values())
        calls = sim.invocations_at(svc, sim.now_ms())[0]
    return {"status": svc.status, "invocations": calls, "events": events}


class Churn:
    """Services created and deleted at a steady rate beside a fleet that stays."""

    TICK = 0.25  # seconds

    def __init__(self, sim: Simulation, per_second: float, lifetime: float) -> None:
        self.sim = sim
        self.per_second = per_second
        self.lifetime = lifetime
        self.paused = False
        self.created = 0
        self.deleted = 0
        self.alive: deque[tuple[float, str]] = deque()  # (created at, service_id)
        self.gone: dict[str, float] = {}  # service_id -> deleted at (monotonic)
        self._due = 0.0
        self._v2 = any(svc.generation == "v2" for svc in sim.services.values())

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.TICK)
            if not self.paused:
                self.step(time.monotonic())

    def step(self, now: float) -> None:
        self._due += self.per_second * self.TICK
        while self._due >= 1:
            self._due -= 1
            generation = "v2" if self._v2 and self.created % 4 == 3 else "v1"
            sid = self.sim.add_service(name=f"churn-{self.created}", generation=generation)
            self.alive.append((now, sid))
            self.created += 1
        while self.alive and now - self.alive[0][0] >= self.lifetime:
            _, sid = self.alive.popleft()
            self.sim.delete_service(sid)
            self.gone[sid] = now
            self.deleted += 1

    def report(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "created": self.created,
            "deleted": self.deleted,
            "paused": self.paused,
            "alive": [sid for _, sid in self.alive],
            "deleted_ago": {sid: now - at for sid, at in self.gone.items()},
        }


BROKEN = {"v1": ("details", "events", "logs", "monitor"), "v2": ("v2_details", "v2_events")}


def break_services(sim: Simulation, n: int) -> None:
    """The first `n` services in id order fail one endpoint each (500), in turn."""
    for index, sid in enumerate(sorted(sim.services)[:n]):
        routes = BROKEN[sim.services[sid].generation]
        route = routes[index % len(routes)]
        if route == "monitor":
            sim.set_status(sid, "running")  # the monitor API is read while a service serves
        sim.service_faults[(sid, route)] = "error"


def build_app(sim: Simulation, churn: Churn | None = None) -> web.Application:
    app = create_app(sim)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "by_endpoint": sim.stats.by_endpoint(),
                "services": len(sim.services),
                "started": sim.stats.started(),
                "throttled": sim.stats.throttled(),
            }
        )

    async def reset(request: web.Request) -> web.Response:
        sim.stats.reset()
        return web.json_response({"ok": True})

    async def peak(request: web.Request) -> web.Response:
        seconds = float(request.query["seconds"])
        started = sum(n for ep, n in sim.stats.by_endpoint().items() if ep in MODELARTS_ENDPOINTS)
        return web.json_response(
            {
                "peak": sim.stats.max_in_any_window(1.0, endpoints=MODELARTS_ENDPOINTS),
                "requests": started,
                "mean": started / seconds,
            }
        )

    async def running(request: web.Request) -> web.Response:
        n = int(request.query.get("n", "10"))
        sim.evolve()
        ids = sorted(
            sid
            for sid, svc in sim.services.items()
            if svc.status == "running" and svc.generation == "v1"
        )
        return web.json_response(ids[:n])

    async def change(request: web.Request) -> web.Response:
        body = await request.json()
        sid, kind = body["service_id"], body["kind"]
        if kind == "status":
            sim.set_status(sid, "stopped")
        elif kind == "invocations":
            sim.add_invocations(sid, CALLS_PER_CHANGE)
        elif kind == "events":
            sim.add_random_events(sid, EVENTS_PER_CHANGE)
        else:
            raise web.HTTPBadRequest(text=f"unknown change {kind!r}")
        return web.json_response(truth(sim, sid))

    async def truths(request: web.Request) -> web.Response:
        wanted = request.query.get("ids")
        ids = wanted.split(",") if wanted else list(sim.services)
        sim.evolve()
        return web.json_response({sid: truth(sim, sid) for sid in ids})

    app.router.add_get("/_bench/stats", stats)
    app.router.add_post("/_bench/reset", reset)
    app.router.add_get("/_bench/peak", peak)
    app.router.add_get("/_bench/running", running)
    app.router.add_post("/_bench/change", change)
    app.router.add_get("/_bench/truth", truths)
    if churn is not None:

        async def churn_report(request: web.Request) -> web.Response:
            return web.json_response(churn.report())

        async def churn_control(request: web.Request) -> web.Response:
            churn.paused = bool((await request.json())["paused"])
            return web.json_response(churn.report())

        async def churning(_: web.Application) -> AsyncIterator[None]:
            task = asyncio.create_task(churn.run())
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        app.router.add_get("/_bench/churn", churn_report)
        app.router.add_post("/_bench/churn", churn_control)
        app.cleanup_ctx.append(churning)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.simserver")
    parser.add_argument("--services", type=int, required=True)
    parser.add_argument("--v2-services", type=int, default=0)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--events-per-service", type=int, default=20)
    parser.add_argument("--models-per-service", type=int, default=2)
    parser.add_argument("--happening-interval", type=float, default=600.0)
    parser.add_argument("--static", action="store_true", help="nothing changes by itself")
    parser.add_argument("--quota-per-second", type=int, default=None)
    parser.add_argument("--quota-per-minute", type=int, default=None)
    parser.add_argument("--forbid", default="", help="endpoints answering 403, comma-separated")
    parser.add_argument("--churn-per-second", type=float, default=0.0)
    parser.add_argument("--churn-lifetime", type=float, default=60.0)
    parser.add_argument(
        "--broken", type=int, default=0, help="the first N services fail one endpoint each"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    sim = Simulation(
        seed=args.seed,
        services=args.services,
        v2_services=args.v2_services,
        events_per_service=args.events_per_service,
        models_per_service=args.models_per_service,
        dynamic=not args.static,
        happening_interval=args.happening_interval,
    )
    sim.set_quota(args.quota_per_second, args.quota_per_minute)
    break_services(sim, args.broken)
    if args.forbid:
        sim.forbid(DEFAULT_PROJECT_ID, args.forbid.split(","))
    with contextlib.suppress(KeyboardInterrupt):
        churn = None
        if args.churn_per_second > 0:
            churn = Churn(sim, args.churn_per_second, args.churn_lifetime)
        asyncio.run(serve_until_signalled(build_app(sim, churn), args.host, args.port))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
