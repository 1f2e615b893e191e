"""HTTP endpoints. Knows nothing of ModelArts: it is handed the exposition body, a readiness
check and a reload action."""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from exporter import __version__
from exporter.metrics.collector import coalesce

CONTENT_TYPE_LATEST = "text/plain; version=0.0.4; charset=utf-8"
MAX_BODY = 64 * 1024

ReloadAction = Callable[[], Awaitable[tuple[bool, str]]]


@dataclass(frozen=True)
class WebHandlers:
    metrics_body: Callable[[bool], Sequence[bytes]]  # gzipped? -> body, in chunks
    ready: Callable[[], bool]
    reload: ReloadAction
    telemetry_path: str = "/metrics"
    # The operator status page (exporter/status.py): query parameters -> HTML / JSON body.
    status_html: Callable[[Mapping[str, str]], str] | None = None
    status_json: Callable[[Mapping[str, str]], bytes] | None = None
    summary_html: Callable[[], str] = lambda: ""
    lifecycle: bool = False  # whether POST /-/reload may act (--web.enable-lifecycle)


def _wants_gzip(request: web.Request) -> bool:
    for part in request.headers.get("Accept-Encoding", "").split(","):
        token, _, params = part.strip().partition(";")
        if token.strip().lower() == "gzip":
            q = params.strip()
            return not (q.startswith("q=") and q[2:].strip() in ("0", "0.0", "0.00", "0.000"))
    return False


def create_web_app(
    handlers: WebHandlers, *, middlewares: Iterable[Middleware] = ()
) -> web.Application:
    """The exporter's aiohttp application."""
    app = web.Application(middlewares=list(middlewares), client_max_size=MAX_BODY)
    path = handlers.telemetry_path

    async def metrics(request: web.Request) -> web.StreamResponse:
        gz = _wants_gzip(request)
        chunks = handlers.metrics_body(gz)
        # Streamed in chunks: at thousands of services the cached part is tens of megabytes,
        # and joining it with the live part would copy it at every scrape.
        resp = web.StreamResponse(
            headers={"Content-Type": CONTENT_TYPE_LATEST, "Vary": "Accept-Encoding"}
        )
        if gz:
            resp.headers["Content-Encoding"] = "gzip"
        resp.content_length = sum(len(c) for c in chunks)
        await resp.prepare(request)
        for piece in coalesce(chunks):
            await resp.write(piece)
        await resp.write_eof()
        return resp

    async def landing(request: web.Request) -> web.Response:
        link = html.escape(path)
        page = (
            "<!DOCTYPE html><html><head><title>ModelArts Exporter</title></head><body>"
            f"<h1>ModelArts Exporter</h1><p>Version {html.escape(__version__)}</p><ul>"
            f'<li><a href="{link}">Metrics</a></li>'
            '<li><a href="-/healthy">Health</a></li><li><a href="-/ready">Readiness</a></li>'
            f"</ul>{handlers.summary_html()}</body></html>"
        )
        return web.Response(text=page, content_type="text/html")

    async def healthy(request: web.Request) -> web.Response:
        return web.Response(text="Healthy.\n")

    async def ready(request: web.Request) -> web.Response:
        if handlers.ready():
            return web.Response(text="Ready.\n")
        return web.Response(status=503, text="Not ready: first poll cycle not finished.\n")

    async def reload(request: web.Request) -> web.Response:
        if not handlers.lifecycle:
            # Prometheus' answer and default: a reload over HTTP is opt-in.
            return web.Response(
                status=403, text="Lifecycle API is not enabled (--web.enable-lifecycle).\n"
            )
        ok, message = await handlers.reload()
        return web.Response(status=200 if ok else 500, text=message.rstrip("\n") + "\n")

    app.router.add_get(path, metrics)
    if path != "/":
        app.router.add_get("/", landing)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    if handlers.status_html is not None and handlers.status_json is not None:
        status_html, status_json = handlers.status_html, handlers.status_json

        async def status(request: web.Request) -> web.Response:
            return web.Response(text=status_html(request.query), content_type="text/html")

        async def status_api(request: web.Request) -> web.Response:
            return web.Response(body=status_json(request.query), content_type="application/json")

        app.router.add_get("/status", status)
        app.router.add_get("/api/v1/status", status_api)
    return app


__all__ = ["CONTENT_TYPE_LATEST", "WebHandlers", "create_web_app"]
