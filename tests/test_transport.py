"""The outbound transport (aiohttp's client with the exporter's checks), against real servers on
loopback: aiohttp servers for the well-behaved cases, scripted asyncio servers writing bytes by
hand for the edge cases, a CONNECT proxy for tunnels, a private CA for TLS."""

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

from exporter.modelarts.transport import (
    MAX_BODY,
    MAX_HEAD_LINE,
    HttpFailure,
    Response,
    Transport,
    decode,
    origin_for,
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
async def client(context: ssl.SSLContext | None = None) -> AsyncIterator[Transport]:
    http = Transport(context)
    try:
        yield http
    finally:
        await http.close()


async def get(http: Transport, url: str, target: str = "/x", timeout: float = 5.0) -> Response:
    return await http.request(origin_for(url), "GET", target, {}, timeout=timeout)


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
            resp = await http.request(
                origin_for(url), "GET", target, {"X-Echo": f"v{i}"}, timeout=5
            )
            assert resp.status == 200
            assert resp.body == (target * 200).encode()
            if kind == "plain":
                assert resp.headers["X-ECHO"] == f"v{i}"  # names are case-insensitive
            if kind in ("gzip", "deflate"):
                assert resp.headers["content-encoding"] == kind
    assert len(peers) == 20
    assert len(set(peers)) == 1  # every request on the same connection


async def test_post_sends_the_body_and_headers_are_case_insensitive() -> None:
    async with aiohttp_server(echo_app([])) as url, client() as http:
        resp = await http.request(
            origin_for(url),
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
            with pytest.raises(HttpFailure, match=r"TLS certificate not trusted \(.+\)"):
                await get(http, url, "/echo")
        async with client(trusting) as http:
            resp = await get(http, url, "/echo?tls=1")
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
        client(trusting) as http,
    ):
        route = origin_for(url, proxy)
        for i in range(3):
            resp = await http.request(route, "GET", f"/echo?i={i}", {}, timeout=5)
            assert resp.body == f"/echo?i={i}".encode() * 200
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
        resp = await http.request(origin_for(url, proxy), "GET", "/echo?p=1", {}, timeout=5)
    assert resp.body == b"/echo?p=1" * 200
    assert log.heads[0].startswith(f"GET {url}/echo?p=1 HTTP/1.1\r\n".encode())
    assert b"Proxy-Authorization: Basic dXNlcjpwQHNz\r\n" in log.heads[0]


async def test_a_refused_tunnel_is_an_error_with_the_proxy_status() -> None:
    async with connect_proxy(refuse=True) as (proxy, _), client() as http:
        with pytest.raises(HttpFailure, match="proxy refused the tunnel: HTTP 407"):
            await http.request(origin_for("https://127.0.0.1:9", proxy), "GET", "/", {}, timeout=5)


async def test_only_http_proxies_and_http_urls() -> None:
    bad = [
        origin_for("https://x.example.com", "socks5://user:secret@127.0.0.1:1080"),
        origin_for("https://x.example.com", "http://user:secret@127.0.0.1:99999"),
        origin_for("https://x.example.com", "http://user:secret@127.0.0.1:port"),
    ]
    async with client() as http:
        for origin in bad:  # a poll failure that says why, not a crash at start-up
            with pytest.raises(HttpFailure, match=r"unusable proxy \S+127.0.0.1 ") as err:
                await http.request(origin, "GET", "/", {}, timeout=5)
            assert "secret" not in str(err.value)
    with pytest.raises(ValueError, match="not an http"):
        origin_for("ftp://x.example.com")
    origin = origin_for("https://[::1]:8443/base")
    assert (origin.base, origin.host_header) == ("https://[::1]:8443", "[::1]:8443")


# -- scripted servers: what real servers do now and then ----------------------------------------


async def test_a_kept_alive_connection_the_server_closed_is_replaced_transparently() -> None:
    # The server answers one request per connection without saying so (no Connection: close),
    # then closes: the idle connection dies between requests, as with a gateway's idle timeout.
    async with scripted_with(answering(ok(b"one"), then_close=True)) as srv, client() as http:
        for _ in range(3):
            assert (await get(http, srv.url)).body == b"one"
            await asyncio.sleep(0.05)
    assert srv.connections == 3


def closing_after_reading_the_second_request(state: Scripted) -> Handler:
    """First connection: answers one request, then reads the next and closes unanswered."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.requests.append(await read_request(reader))
        writer.write(ok(b"first"))
        await writer.drain()
        if state.connections == 1:
            state.requests.append(await read_request(reader))  # dropped unanswered
            return
        await reader.read()

    return handler


async def test_a_get_the_server_dropped_on_a_reused_connection_is_sent_once_more() -> None:
    async with scripted_with(closing_after_reading_the_second_request) as srv, client() as http:
        assert (await get(http, srv.url)).body == b"first"
        assert (await get(http, srv.url)).body == b"first"  # a new connection's first answer
    assert srv.connections == 2
    assert len(srv.requests) == 3


async def test_a_post_the_server_dropped_is_never_sent_again() -> None:
    # The IAM token request: the server may have processed it; sending it again is not ours to do.
    async with scripted_with(closing_after_reading_the_second_request) as srv, client() as http:
        assert (await get(http, srv.url)).body == b"first"
        with pytest.raises(HttpFailure, match="connection closed before the response"):
            await http.request(origin_for(srv.url), "POST", "/token", {}, b"{}", timeout=5)
    assert srv.connections == 1
    assert [r.split(b" ", 1)[0] for r in srv.requests] == [b"GET", b"POST"]


async def test_a_response_cut_short_is_an_error() -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part"
    async with scripted_with(answering(cut, then_close=True)) as srv, client() as http:
        with pytest.raises(HttpFailure, match="response body incomplete"):
            await get(http, srv.url)


async def test_closing_answers_and_http_1_0_are_read_but_unframed_bodies_are_refused() -> None:
    responses = (
        ok(b"closing", "Connection: close"),
        b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nold!",
    )
    for response, body in zip(responses, (b"closing", b"old!"), strict=True):
        async with scripted_with(answering(response, then_close=True)) as srv, client() as http:
            assert (await get(http, srv.url)).body == body
            assert (await get(http, srv.url)).body == body
        assert srv.connections == 2  # never reused
    unframed = b"HTTP/1.1 200 OK\r\n\r\nuntil the end"
    async with scripted_with(answering(unframed, then_close=True)) as srv, client() as http:
        with pytest.raises(HttpFailure, match="not framed"):
            await get(http, srv.url)


async def test_a_head_of_bare_lf_line_ends_is_read_as_rfc_9112_allows() -> None:
    wire = b"HTTP/1.1 200 OK\nContent-Length: 2\n\nab"
    async with scripted_with(answering(wire)) as srv, client() as http:
        assert (await get(http, srv.url)).body == b"ab"


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


def chunked(*pieces: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n{extra}\r\n".encode() + b"".join(
        pieces
    )


GZ = gzip.compress(b'{"services": []}')


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (b"HTTP/2 200 OK\r\n\r\n", "invalid HTTP response"),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", "invalid HTTP response"),
        ("HTTP/1.1 2²0 OK\r\nContent-Length: 0\r\n\r\n".encode(), "invalid HTTP response"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "invalid HTTP response"),
        (b"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n", "invalid HTTP response"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 0\r\n\r\n", "invalid HTTP response"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\ncontent-length: 4\r\n\r\nabcd",
            "invalid HTTP response",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n", "invalid HTTP response"),
        ("HTTP/1.1 200 OK\r\nContent-Length: ²\r\n\r\nab".encode(), "invalid HTTP response"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc",
            "invalid HTTP response",
        ),
        # a bare LF inside a CRLF head: refused, whichever way it would have framed the body
        (b"HTTP/1.1 200 OK\r\nX-Note: a\nContent-Length: 3\r\n\r\nabcdef", "invalid HTTP response"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 6\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n",
            "invalid HTTP response",
        ),
        (chunked(b"zz\r\n"), r"invalid HTTP response \(Invalid character in chunk size\)"),
        (
            chunked(b"0x3\r\nabc\r\n0\r\n\r\n"),
            r"invalid HTTP response \(Invalid character in chunk size\)",
        ),
        (
            chunked(b"+3\r\nabc\r\n0\r\n\r\n"),
            r"invalid HTTP response \(Invalid character in chunk size\)",
        ),
        (
            chunked(b"1_0\r\n0123456789abcdef\r\n0\r\n\r\n"),
            r"invalid HTTP response \(Invalid character in chunk size\)",
        ),
        (chunked(b"3\r\nabcX\r\n"), r"invalid HTTP response \(Expected LF after chunk data\)"),
        (
            chunked(b"%x\r\n" % len(GZ), GZ, b"\r\n0\r\n\r\n").replace(
                b"chunked", b"gzip, chunked", 1
            ),
            "unsupported transfer coding",
        ),
        (ok(b"not gzip", "Content-Encoding: gzip"), "does not decompress"),
        (ok(GZ[:-6], "Content-Encoding: gzip"), "gzip body truncated"),
        (ok(b"x", "Content-Encoding: br"), "unsupported content encoding"),
        (
            b"HTTP/1.1 200 OK\r\nX: " + b"a" * (MAX_HEAD_LINE + 10) + b"\r\n\r\n",
            "invalid HTTP response",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n", "too large"),
    ],
)
async def test_malformed_responses_are_errors(response: bytes, message: str) -> None:
    async with scripted_with(answering(response, then_close=True)) as srv, client() as http:
        with pytest.raises(HttpFailure, match=message) as failure:
            await get(http, srv.url)
        assert "\n" not in str(failure.value) and len(str(failure.value)) < 160
        # The connection that carried garbage is not reused.
        with pytest.raises(HttpFailure):
            await get(http, srv.url)
    assert srv.connections == 2


async def test_a_multi_kb_token_header_is_accepted() -> None:
    token = "MII" + "x" * (20 * 1024)  # IAM tokens are several KB; aiohttp's default is 8,190
    wire = ok(b"{}", f"X-Subject-Token: {token}")
    async with scripted_with(answering(wire)) as srv, client() as http:
        resp = await get(http, srv.url)
    assert resp.headers["x-subject-token"] == token


async def test_bodies_over_the_cap_are_refused_while_streaming() -> None:
    sent = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b"%x\r\n%s\r\n" % (65536, b"a" * 65536)
        for _ in range(2 * MAX_BODY // 65536):
            writer.write(piece)
            sent += 65536
            await writer.drain()

    async with scripted(handler) as srv, client() as http:
        with pytest.raises(HttpFailure, match="response body too large"):
            await get(http, srv.url, timeout=20)
    assert sent < 2 * MAX_BODY  # the client stopped reading; the server did not finish


async def test_timeout_covers_the_whole_exchange_and_drops_the_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nslow")  # never finished
        await writer.drain()
        await reader.read()

    async with scripted(handler) as srv, client() as http:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(HttpFailure, match=r"^timed out after 0.3 s$") as failure:
            await get(http, srv.url, timeout=0.3)
        assert failure.value.timed_out
        assert 0.25 <= loop.time() - started < 2.0
        with pytest.raises(HttpFailure):
            await get(http, srv.url, timeout=0.3)
    assert srv.connections == 2


async def test_header_injection_is_refused_before_anything_is_sent() -> None:
    async with scripted_with(answering(ok(b"x"))) as srv, client() as http:
        with pytest.raises(HttpFailure) as failure:
            await http.request(
                origin_for(srv.url), "GET", "/", {"X-Auth-Token": "t\r\nX-Evil: 1"}, timeout=5
            )
        assert "X-Evil" not in str(failure.value) and "t\r" not in str(failure.value)
        assert (await get(http, srv.url)).body == b"x"
    assert len(srv.requests) == 1 and b"X-Evil" not in srv.requests[0]


async def test_the_target_goes_out_as_signed_with_host_agent_and_no_cookies() -> None:
    set_cookie = ok(b"a", "Set-Cookie: session=1; Path=/")
    async with scripted_with(answering(set_cookie, ok(b"b"))) as srv, client() as http:
        # Already percent-encoded as the signature saw it: not re-quoted, not re-ordered.
        await get(http, srv.url, "/p?z=1&a=%2F%20x&b=")
        await http.request(origin_for(srv.url), "GET", "/p", {"Host": "signed.example"}, timeout=5)
    first, second = (r.decode() for r in srv.requests)
    host = srv.url.split("//")[1]
    assert first.startswith("GET /p?z=1&a=%2F%20x&b= HTTP/1.1\r\n")
    assert f"Host: {host}\r\n" in first
    assert "User-Agent: modelarts-exporter" in first
    assert second.count("Host:") == 1 and "Host: signed.example\r\n" in second
    assert "Cookie" not in second


async def test_a_closed_client_refuses_requests() -> None:
    async with scripted_with(answering(ok(b"1"))) as srv:
        http = Transport()
        await get(http, srv.url)
        await http.close()
        with pytest.raises(HttpFailure, match="closed"):
            await get(http, srv.url)


# -- content codings ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    members=st.lists(st.binary(max_size=2000), min_size=1, max_size=4),
    cut=st.integers(1, 40),
)
def test_gzip_members_decode_whole_and_any_truncation_is_refused(
    members: list[bytes], cut: int
) -> None:
    parts = [gzip.compress(m) for m in members]
    wire = b"".join(parts)
    assert decode("gzip", wire) == b"".join(members)
    with pytest.raises(HttpFailure, match="gzip body"):  # cut inside the last member
        decode("gzip", wire[: len(wire) - min(cut, len(parts[-1]) - 1)])


def test_deflate_is_accepted_zlib_wrapped_or_raw() -> None:
    data = b"events " * 100
    raw = zlib.compressobj(6, zlib.DEFLATED, -15)
    assert decode("deflate", zlib.compress(data)) == data
    assert decode("deflate", raw.compress(data) + raw.flush()) == data
    assert decode("identity", data) == data
    with pytest.raises(HttpFailure, match="trailing data"):
        decode("deflate", zlib.compress(data) + b"junk")


def test_a_gzip_bomb_stops_at_the_cap() -> None:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    bomb = b"".join(squeeze.compress(zeros) for _ in range(64)) + squeeze.flush()
    assert len(bomb) < 100_000
    with pytest.raises(HttpFailure, match="decompressed body too large"):
        decode("gzip", bomb, limit=8 << 20)


# -- under uvloop -------------------------------------------------------------------------------


def test_tls_proxies_timeouts_and_refusals_hold_under_uvloop(ca: trustme.CA) -> None:
    # The own client could not run under uvloop (it asserted asyncio's transport class).
    uvloop = pytest.importorskip("uvloop")
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)

    async def scenario() -> list[str]:
        seen: list[str] = []
        async with (
            aiohttp_server(echo_app([]), server_context(ca)) as url,
            connect_proxy() as (proxy, log),
            client(trusting) as http,
        ):
            resp = await http.request(origin_for(url, proxy), "GET", "/echo?u=1", {}, timeout=5)
            seen.append(resp.body.decode()[:8])
            seen.append(log.heads[0].split(b" ", 1)[0].decode())
        truncated = ok(GZ[:-6], "Content-Encoding: gzip")
        async with scripted_with(answering(truncated, then_close=True)) as srv, client() as http:
            with pytest.raises(HttpFailure, match="gzip body truncated"):
                await get(http, srv.url)
            seen.append("truncated refused")

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            await reader.read()

        async with scripted(silent) as srv, client() as http:
            with pytest.raises(HttpFailure, match=r"timed out after 0\.2 s"):
                await get(http, srv.url, timeout=0.2)
            seen.append(type(asyncio.get_running_loop()).__module__.split(".")[0])
        return seen

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        seen = runner.run(scenario())
    assert seen == ["/echo?u=", "CONNECT", "truncated refused", "uvloop"]
