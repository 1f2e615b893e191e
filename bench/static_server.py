"""The latency floor: the exporter's own /metrics bytes, captured once, served as they are.

Two minimal aiohttp handlers, because neither is fastest at every size and the floor should be
the best aiohttp can do with those bytes:

- `GET /file`: a static file (`web.FileResponse`, sendfile). With `Accept-Encoding: gzip` it
  serves the precompressed sibling `<file>.gz` with `Content-Encoding: gzip`, as static file
  servers do.
- `GET /memory`: the bytes held in memory, written in one write after the headers.

Neither renders, adds a live part or compresses per request. Prints `LISTENING <url>` once it
accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path

from aiohttp import web

from bench.serving import serve_until_signalled

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def build_app(plain_path: Path) -> web.Application:
    gzip_path = plain_path.with_name(plain_path.name + ".gz")
    plain, gzipped = plain_path.read_bytes(), gzip_path.read_bytes()
    app = web.Application()

    async def from_file(request: web.Request) -> web.FileResponse:
        return web.FileResponse(plain_path, headers={"Content-Type": CONTENT_TYPE})

    async def from_memory(request: web.Request) -> web.StreamResponse:
        gz = "gzip" in request.headers.get("Accept-Encoding", "")
        body = gzipped if gz else plain
        resp = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE, "Vary": "Accept-Encoding"})
        if gz:
            resp.headers["Content-Encoding"] = "gzip"
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body)
        await resp.write_eof()
        return resp

    app.router.add_get("/file", from_file)
    app.router.add_get("/memory", from_memory)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.static_server")
    parser.add_argument(
        "--file", type=Path, required=True, help="the plain body; FILE.gz must sit next to it"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    app = build_app(args.file.resolve())
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_until_signalled(app, args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
