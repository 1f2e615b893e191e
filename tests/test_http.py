"""The HTTP/1.1 client of the cloud boundary, against real servers on loopback: aiohttp for the
well-behaved cases, scripted asyncio servers for the edge cases, a CONNECT proxy for tunnels."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import trustme
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.modelarts.http import (
    MAX_HEAD,
    HttpClient,
    HttpError,
    Response,
    _Connection,
    describe,
    route_for,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Scripted:
    url: str
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            head += await reader.readexactly(int(line.split(b":", 1)[1]))
    return head


@asynccontextmanager
async def scripted(handler: Handler) -> AsyncIterator[Scripted]:
    """A raw TCP server: `handler` reads requests and writes whatever bytes the test wants."""
    state = Scripted("")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


def answering(*responses: bytes, then_close: bool = False) -> Callable[[Scripted], Handler]:
    """Per connection: read a request, send the next response; repeat."""

    def make(state: Scripted) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for response in responses:
                state.requests.append(await read_request(reader))
                writer.write(response)
                await writer.drain()
            if not then_close:
                await reader.read()

        return handler

    return make


@asynccontextmanager
async def scripted_with(make: Callable[[Scripted], Handler]) -> AsyncIterator[Scripted]:
    holder: list[Scripted] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await make(holder[0])(reader, writer)

    async with scripted(handler) as state:
        holder.append(state)
        yield state


@asynccontextmanager
async def client(**kwargs: float) -> AsyncIterator[HttpClient]:
    http = HttpClient(**kwargs)  # type: ignore[arg-type]
    try:
        yield http
    finally:
        await http.close()


async def get(http: HttpClient, url: str, target: str = "/x", timeout: float = 5.0) -> Response:
    return await http.request(route_for(url), "GET", target, {}, timeout=timeout)


def ok(body: bytes, *extra: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in extra)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body


# -- with a real aiohttp server ---------------------------------------------------------------


@asynccontextmanager
async def aiohttp_server(
    app: web.Application, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        scheme = "https" if ssl_context else "http"
        yield f"{scheme}://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def echo_app(peers: list[object]) -> web.Application:
    async def echo(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        kind = request.query.get("kind", "plain")
        body = (request.path_qs * 200).encode()
        if kind == "chunked":
            resp = web.StreamResponse()
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for i in range(0, len(body), 777):
                await resp.write(body[i : i + 777])
            await resp.write_eof()
            return resp
        resp = web.Response(body=body, headers={"X-Echo": request.headers.get("X-Echo", "")})
        if kind == "gzip":
            resp.enable_compression(web.ContentCoding.gzip)
        elif kind == "deflate":
            resp.enable_compression(web.ContentCoding.deflate)
        return resp

    async def post(request: web.Request) -> web.Response:
        return web.Response(status=201, body=await request.read(), headers={"X-Subject": "abc"})

    app = web.Application()
    app.router.add_get("/echo", echo)
    app.router.add_post("/post", post)
    return app


@pytest.mark.parametrize("kind", ["plain", "chunked", "gzip", "deflate"])
async def test_bodies_arrive_whole_over_one_kept_alive_connection(kind: str) -> None:
    peers: list[object] = []
    async with aiohttp_server(echo_app(peers)) as url, client() as http:
        for i in range(20):
            target = f"/echo?kind={kind}&i={i}"
            resp = await http.request(route_for(url), "GET", target, {"X-Echo": f"v{i}"}, timeout=5)
            assert resp.status == 200
            assert resp.body == (target * 200).encode()
            if kind == "plain":
                assert resp.headers["x-echo"] == f"v{i}"
            if kind in ("gzip", "deflate"):
                assert resp.headers["content-encoding"] == kind
    assert len(peers) == 20
    assert len(set(peers)) == 1  # every request on the same connection


async def test_post_sends_the_body_and_headers_are_case_insensitive() -> None:
    async with aiohttp_server(echo_app([])) as url, client() as http:
        resp = await http.request(
            route_for(url),
            "POST",
            "/post",
            {"Content-Type": "application/json"},
            b'{"a": 1}',
            timeout=5,
        )
    assert (resp.status, resp.body, resp.headers["x-subject"]) == (201, b'{"a": 1}', "abc")


async def test_concurrent_requests_open_one_connection_each_and_reuse_them() -> None:
    peers: list[object] = []
    async with aiohttp_server(echo_app(peers)) as url, client() as http:
        for _ in range(3):
            bodies = await asyncio.gather(*(get(http, url, f"/echo?i={i}") for i in range(8)))
            assert [b.body for b in bodies] == [(f"/echo?i={i}" * 200).encode() for i in range(8)]
    assert len(peers) == 24
    assert len(set(peers)) == 8


# -- TLS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


async def test_tls_is_verified_against_the_given_roots(ca: trustme.CA) -> None:
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    async with aiohttp_server(echo_app([]), server_context(ca)) as url:
        async with client() as http:  # system roots only
            with pytest.raises(ssl.SSLCertVerificationError) as failure:
                await get(http, url, "/echo")
            assert "TLS certificate not trusted" in describe(failure.value)
        http = HttpClient(trusting)
        try:
            resp = await get(http, url, "/echo?tls=1")
        finally:
            await http.close()
    assert resp.body == b"/echo?tls=1" * 200


# -- proxies ------------------------------------------------------------------------------------


@dataclass
class ProxyLog:
    heads: list[bytes] = field(default_factory=list)


@asynccontextmanager
async def connect_proxy(*, refuse: bool = False) -> AsyncIterator[tuple[str, ProxyLog]]:
    """A forward proxy: CONNECT tunnels, and plain requests in absolute form."""
    log = ProxyLog()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        log.heads.append(head)
        method, target, _ = head.split(b"\r\n", 1)[0].split(b" ")
        if refuse:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        if method == b"CONNECT":
            host, port = target.decode().rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
        else:
            rest = target.decode().split("//", 1)[1]
            authority, _, path = rest.partition("/")
            host, port = authority.rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            up_writer.write(head.replace(target, b"/" + path.encode(), 1))
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://user:p%40ss@127.0.0.1:{server.sockets[0].getsockname()[1]}", log
    finally:
        server.close()
        await server.wait_closed()


async def test_https_goes_through_a_connect_tunnel_with_proxy_credentials(ca: trustme.CA) -> None:
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    peers: list[object] = []
    async with (
        aiohttp_server(echo_app(peers), server_context(ca)) as url,
        connect_proxy() as (proxy, log),
    ):
        http = HttpClient(trusting)
        try:
            route = route_for(url, proxy)
            for i in range(3):
                resp = await http.request(route, "GET", f"/echo?i={i}", {}, timeout=5)
                assert resp.body == f"/echo?i={i}".encode() * 200
        finally:
            await http.close()
    port = url.rsplit(":", 1)[1]
    assert len(log.heads) == 1  # one tunnel, kept alive for the three requests
    assert log.heads[0].startswith(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n".encode())
    assert b"Proxy-Authorization: Basic dXNlcjpwQHNz\r\n" in log.heads[0]  # user:p@ss
    assert len(set(peers)) == 1


async def test_plain_http_through_a_proxy_uses_the_absolute_form() -> None:
    async with (
        aiohttp_server(echo_app([])) as url,
        connect_proxy() as (proxy, log),
        client() as http,
    ):
        resp = await http.request(route_for(url, proxy), "GET", "/echo?p=1", {}, timeout=5)
    assert resp.body == b"/echo?p=1" * 200
    assert log.heads[0].startswith(f"GET {url}/echo?p=1 HTTP/1.1\r\n".encode())
    assert b"Proxy-Authorization: Basic dXNlcjpwQHNz\r\n" in log.heads[0]


async def test_a_refused_tunnel_is_an_error_with_the_proxy_status() -> None:
    async with connect_proxy(refuse=True) as (proxy, _), client() as http:
        with pytest.raises(HttpError, match="proxy refused the tunnel: HTTP 407"):
            await http.request(route_for("https://127.0.0.1:9", proxy), "GET", "/", {}, timeout=5)


async def test_only_http_proxies_and_http_urls() -> None:
    route = route_for("https://x.example.com", "socks5://user:secret@127.0.0.1:1080")
    async with client() as http:
        with pytest.raises(
            HttpError, match=r"unsupported proxy socks5://127.0.0.1 \(only http"
        ) as err:
            await http.request(route, "GET", "/", {}, timeout=5)
    assert "secret" not in str(err.value)
    with pytest.raises(ValueError, match="not an http"):
        route_for("ftp://x.example.com")
    route = route_for("https://[::1]:8443/base")
    assert (route.host, route.port, route.host_header, route.tls) == (
        "::1",
        8443,
        "[::1]:8443",
        True,
    )


# -- scripted servers: what real servers do now and then ----------------------------------------


async def test_a_kept_alive_connection_the_server_closed_is_replaced_transparently() -> None:
    # The server answers one request per connection without saying so (no Connection: close),
    # then closes: the idle connection dies between requests, as with a gateway's idle timeout.
    async with scripted_with(answering(ok(b"one"), then_close=True)) as srv, client() as http:
        for _ in range(3):
            assert (await get(http, srv.url)).body == b"one"
            await asyncio.sleep(0.05)
    assert srv.connections == 3


async def test_close_racing_the_next_request_is_retried_once_on_a_new_connection() -> None:
    # The server closes only after reading the second request, without answering it.
    def make(state: Scripted) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            state.requests.append(await read_request(reader))
            writer.write(ok(b"first"))
            await writer.drain()
            if state.connections == 1:
                state.requests.append(await read_request(reader))  # dropped unanswered
                return
            state.requests.append(await read_request(reader))
            writer.write(ok(b"second"))
            await writer.drain()
            await reader.read()

        return handler

    async with scripted_with(make) as srv, client() as http:
        assert (await get(http, srv.url)).body == b"first"
        assert (await get(http, srv.url)).body == b"first"  # a new connection's first answer
    assert srv.connections == 2
    assert len(srv.requests) == 3


async def test_a_fresh_connection_closed_without_an_answer_is_an_error_not_a_loop() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with scripted(handler) as srv, client() as http:
        with pytest.raises(HttpError, match="closed before the response"):
            await get(http, srv.url)
    assert srv.connections == 1


async def test_a_response_cut_short_is_an_error_and_is_not_retried() -> None:
    async with (
        scripted_with(
            answering(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part", then_close=True)
        ) as srv,
        client() as http,
    ):
        with pytest.raises(HttpError, match="closed before the response"):
            await get(http, srv.url)
        with pytest.raises(HttpError):
            await get(http, srv.url)
    assert srv.connections == 2


async def test_connection_close_and_read_until_close_bodies() -> None:
    responses = (
        ok(b"closing", "Connection: close"),
        b"HTTP/1.1 200 OK\r\n\r\nuntil the end",
        b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nold!",
    )
    for response, body in zip(responses, (b"closing", b"until the end", b"old!"), strict=True):
        async with scripted_with(answering(response, then_close=True)) as srv, client() as http:
            assert (await get(http, srv.url)).body == body
            assert (await get(http, srv.url)).body == body
        assert srv.connections == 2  # never reused


async def test_repeated_fields_are_joined_in_order() -> None:
    wire = ok(b"x", "Set-Thing: a", "X-Other: b ", "set-thing: c")
    async with scripted_with(answering(wire)) as srv, client() as http:
        resp = await get(http, srv.url)
    assert resp.headers == {"content-length": "1", "set-thing": "a, c", "x-other": "b"}


async def test_interim_responses_are_skipped_and_empty_bodies_end_at_the_head() -> None:
    async with (
        scripted_with(
            answering(
                b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"after"),
                b"HTTP/1.1 204 No Content\r\n\r\n",
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
                ok(b"still one connection"),
            )
        ) as srv,
        client() as http,
    ):
        assert (await get(http, srv.url)).body == b"after"
        assert (await get(http, srv.url)).status == 204
        assert (await get(http, srv.url)).status == 304
        assert (await get(http, srv.url)).body == b"still one connection"
    assert srv.connections == 1


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (b"HTTP/2 200 OK\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nX: 1\r\n folded\r\n\r\n", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\ncontent-length: 4\r\n\r\nabcd",
            "Content-Length",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", "malformed chunk"),
        (ok(b"not gzip", "Content-Encoding: gzip"), "does not decompress"),
        (ok(b"x", "Content-Encoding: br"), "unsupported content encoding"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * (MAX_HEAD + 10), "head too large"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n", "too large"),
    ],
)
async def test_malformed_responses_are_errors(response: bytes, message: str) -> None:
    async with scripted_with(answering(response)) as srv, client() as http:
        with pytest.raises(HttpError, match=message):
            await get(http, srv.url)
        # The connection that carried garbage is not reused.
        with pytest.raises(HttpError):
            await get(http, srv.url)
    assert srv.connections == 2


async def test_timeout_covers_the_whole_exchange_and_drops_the_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nslow")  # never finished
        await writer.drain()
        await reader.read()

    async with scripted(handler) as srv, client() as http:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await get(http, srv.url, timeout=0.3)
        assert 0.25 <= loop.time() - started < 2.0
        with pytest.raises(TimeoutError):
            await get(http, srv.url, timeout=0.3)
    assert srv.connections == 2


async def test_header_injection_is_refused_before_anything_is_sent() -> None:
    async with scripted_with(answering(ok(b"x"))) as srv, client() as http:
        with pytest.raises(HttpError, match="header X-Auth-Token contains a line break"):
            await http.request(
                route_for(srv.url), "GET", "/", {"X-Auth-Token": "t\r\nX-Evil: 1"}, timeout=5
            )
        assert (await get(http, srv.url)).body == b"x"
    assert len(srv.requests) == 1 and b"X-Evil" not in srv.requests[0]


async def test_request_head_carries_host_agent_and_a_signed_host_wins() -> None:
    async with scripted_with(answering(ok(b"a"), ok(b"b"))) as srv, client() as http:
        await get(http, srv.url, "/p?q=1")
        await http.request(route_for(srv.url), "GET", "/p", {"Host": "signed.example"}, timeout=5)
    first, second = (r.decode() for r in srv.requests)
    host = srv.url.split("//")[1]
    assert first.startswith(f"GET /p?q=1 HTTP/1.1\r\nHost: {host}\r\n")
    assert "User-Agent: modelarts-exporter" in first
    assert second.count("Host:") == 1 and "Host: signed.example\r\n" in second


async def test_closed_client_refuses_requests_and_idle_connections_expire() -> None:
    async with scripted_with(answering(ok(b"1"), ok(b"2"), ok(b"3"))) as srv:
        http = HttpClient(idle_timeout=0.1)
        await get(http, srv.url)
        await asyncio.sleep(0.2)
        await get(http, srv.url)  # the idle connection was too old: a new one
        await http.close()
        with pytest.raises(HttpError, match="closed"):
            await get(http, srv.url)
    assert srv.connections == 2


# -- the parser, fed any segmentation -----------------------------------------------------------


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.aborted


def encode_chunked(body: bytes, sizes: list[int]) -> bytes:
    out, i = [], 0
    for size in sizes:
        if i >= len(body):
            break
        piece = body[i : i + size]
        out.append(f"{len(piece):x};ext=1\r\n".encode() + piece + b"\r\n")
        i += size
    if i < len(body):
        out.append(f"{len(body) - i:X}\r\n".encode() + body[i:] + b"\r\n")
    return b"".join(out) + b"0\r\nTrailer: x\r\n\r\n"


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=3000),
    framing=st.sampled_from(["length", "chunked", "gzip-chunked"]),
    chunk_sizes=st.lists(st.integers(1, 700), min_size=1, max_size=12),
    cuts=st.lists(st.integers(0, 4000), max_size=15),
)
def test_any_segmentation_of_any_framing_yields_the_body(
    body: bytes, framing: str, chunk_sizes: list[int], cuts: list[int]
) -> None:
    if framing == "length":
        wire = ok(body)
    else:
        payload = gzip.compress(body) if framing == "gzip-chunked" else body
        extra = "Content-Encoding: gzip\r\n" if framing == "gzip-chunked" else ""
        wire = (
            f"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n{extra}\r\n".encode()
            + encode_chunked(payload, chunk_sizes)
        )

    async def run() -> Response:
        conn = _Connection()
        transport = FakeTransport()
        conn.connection_made(transport)
        waiter = conn.send(b"GET / HTTP/1.1\r\n\r\n")
        points = sorted({c for c in cuts if 0 < c < len(wire)})
        for start, end in zip([0, *points], [*points, len(wire)], strict=True):
            conn.data_received(wire[start:end])
        assert waiter.done()
        assert conn.keep_alive and not transport.aborted
        return waiter.result()

    resp = asyncio.run(run())
    assert (resp.status, resp.body) == (200, body)


def test_deflate_is_accepted_zlib_wrapped_or_raw() -> None:
    from exporter.modelarts.http import _decode_body

    data = b"events " * 100
    raw = zlib.compressobj(6, zlib.DEFLATED, -15)
    assert _decode_body("deflate", zlib.compress(data)) == data
    assert _decode_body("deflate", raw.compress(data) + raw.flush()) == data
    assert _decode_body("identity", data) == data
