"""The latency floor: the exporter's own /metrics bytes, captured once, served as they are.

A handler as small as aiohttp allows: no rendering, no live part, no compression per request.
`GET /metrics` answers the gzip file when the request accepts gzip, the plain file otherwise,
with the same headers the exporter sends. Prints `LISTENING <url>` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from pathlib import Path

from aiohttp import web

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def build_app(plain: bytes, gzipped: bytes) -> web.Application:
    app = web.Application()

    async def metrics(request: web.Request) -> web.Response:
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            return web.Response(
                body=gzipped,
                headers={
                    "Content-Type": CONTENT_TYPE,
                    "Content-Encoding": "gzip",
                    "Vary": "Accept-Encoding",
                },
            )
        return web.Response(
            body=plain, headers={"Content-Type": CONTENT_TYPE, "Vary": "Accept-Encoding"}
        )

    app.router.add_get("/metrics", metrics)
    return app


async def _serve(app: web.Application, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        print(f"LISTENING http://{bound_host}:{bound_port}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.static_server")
    parser.add_argument("--plain", type=Path, required=True)
    parser.add_argument("--gzip", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    app = build_app(args.plain.read_bytes(), args.gzip.read_bytes())
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(app, args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
