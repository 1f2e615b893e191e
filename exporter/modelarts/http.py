"""A small HTTP/1.1 client for the cloud APIs: keep-alive connections, verified TLS, HTTP proxies
(CONNECT tunnels for https), chunked and gzip bodies, one total timeout per request.

Why not aiohttp's client: a poll cycle at 5,000 services is 10,000 small GETs, and aiohttp's
general-purpose request path (cookies, redirects, tracing, multidicts, URL objects, stream
readers) cost about three times the CPU of this one for the same requests (bench/RESULTS.md).
The exporter needs far less of HTTP: GET and one POST, JSON in, no redirects, no cookies.

Failures are `HttpError` (protocol, closed connection, proxy refusal), `OSError` (connect, reset,
TLS) or `TimeoutError`; callers translate them into their own exception tree. Messages never
contain header values, so credentials cannot leak through them.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
import zlib
from base64 import b64encode
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024
_MAX_CHUNK_LINE = 4096

# One header field line (after the CRLF that ends the previous line); obsolete line folding and
# names with spaces do not match, and a head with a line that does not match is refused.
_FIELD = re.compile(r"\r\n([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\r\n]*)")

# How the end of a response body is found.
_LENGTH, _CHUNKED, _UNTIL_CLOSE = 0, 1, 2
# Where a chunked body is.
_SIZE, _DATA, _TRAILER = 0, 1, 2


class HttpError(Exception):
    """The exchange failed before a complete, well-formed response arrived."""


class _Closed(HttpError):
    def __init__(self, received: bool) -> None:
        super().__init__("connection closed before the response was complete")
        self.received = received  # any byte of the response arrived


def describe(err: BaseException) -> str:
    """A short reason for a failed exchange, safe to log (no addresses, no header values)."""
    if isinstance(err, HttpError):
        return str(err)
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({err.verify_message})"
    if isinstance(err, OSError) and err.strerror:
        return f"{type(err).__name__}: {err.strerror}"
    return type(err).__name__


class Response(NamedTuple):
    status: int
    headers: Mapping[str, str]  # names in lower case; repeated fields joined with ", "
    body: bytes  # decoded (gzip/deflate undone)


@dataclass(frozen=True)
class Route:
    """How requests reach one origin, worked out once per endpoint."""

    tls: bool
    host: str  # to connect to and to verify the certificate of
    port: int
    host_header: str
    proxy: tuple[str, int] | None = None
    proxy_auth: str = ""  # a complete "Proxy-Authorization: ...\r\n" line, or ""
    prefix: str = ""  # before the path: the origin, for plain HTTP through a proxy
    problem: str = ""  # why no request can take this route (every request fails with it)

    def __post_init__(self) -> None:
        # The connection pool's key, looked up twice per request.
        object.__setattr__(self, "key", (self.tls, self.host, self.port, self.proxy))

    key: tuple[bool, str, int, tuple[str, int] | None] = field(init=False, compare=False)

    @property
    def tunnel(self) -> bool:
        return self.tls and self.proxy is not None


def route_for(url: str, proxy: str | None = None) -> Route:
    """The route to the origin of `url` (scheme, host, port), direct or through `proxy`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    host_header = parts.netloc.rpartition("@")[2]
    if proxy is None:
        return Route(tls, parts.hostname, port, host_header)
    p = urlsplit(proxy if "://" in proxy else "http://" + proxy)
    if p.scheme != "http" or not p.hostname:
        # The proxy comes from the environment: a poll failure that says why, not a crash.
        problem = f"unsupported proxy {p.scheme}://{p.hostname or ''} (only http:// proxies)"
        return Route(tls, parts.hostname, port, host_header, problem=problem)
    auth = ""
    if p.username is not None:
        credentials = f"{unquote(p.username)}:{unquote(p.password or '')}".encode()
        auth = f"Proxy-Authorization: Basic {b64encode(credentials).decode()}\r\n"
    prefix = "" if tls else f"http://{host_header}"
    return Route(tls, parts.hostname, port, host_header, (p.hostname, p.port or 80), auth, prefix)


def _decode_body(encoding: str, body: bytes) -> bytes:
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return body
    if coding in ("gzip", "x-gzip"):
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif coding == "deflate":
        # "deflate" is zlib-wrapped by the RFC, raw in some servers: accept both.
        decoder = zlib.decompressobj(zlib.MAX_WBITS if body[:1] == b"\x78" else -zlib.MAX_WBITS)
    else:
        raise HttpError(f"unsupported content encoding {coding[:40]!r}")
    try:
        out = decoder.decompress(body, MAX_BODY)
    except zlib.error:
        raise HttpError(f"{coding} body does not decompress") from None
    if decoder.unconsumed_tail:
        raise HttpError("decompressed body too large")
    return out


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one exchange at a time. The response is parsed as it arrives."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.keep_alive = False
        self.idle_since = 0.0
        self._buf = bytearray()
        self._waiter: asyncio.Future[Response] | None = None
        self._no_body = False
        self._received = False
        self._status = 0
        self._headers: dict[str, str] | None = None
        self._mode = _LENGTH
        self._need = 0
        self._chunk_state = _SIZE
        self._chunks: list[bytes] = []
        self._chunked_size = 0

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            # Bytes nobody asked for: this connection cannot be trusted with another request.
            self.abort()
            return
        self._received = True
        self._buf += data
        try:
            self._parse()
        except HttpError as err:
            self._fail(err)
            self.abort()

    def eof_received(self) -> bool:
        self._end_of_stream()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._end_of_stream()

    # -- use --------------------------------------------------------------------------------------

    def send(self, data: bytes, *, no_body: bool = False) -> asyncio.Future[Response]:
        assert self.transport is not None
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        self._buf.clear()
        self._no_body = no_body
        self._received = False
        self._headers = None
        self.keep_alive = False
        self.transport.write(data)
        return waiter

    def expire(self) -> None:
        self._fail(TimeoutError())
        self.abort()

    def abort(self) -> None:
        self.closed = True
        self.keep_alive = False
        if self.transport is not None:
            self.transport.abort()

    # -- parsing ----------------------------------------------------------------------------------

    def _end_of_stream(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._headers is not None and self._mode == _UNTIL_CLOSE:
            self._finish(bytes(self._buf))
        else:
            self._fail(_Closed(self._received))

    def _fail(self, err: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(err)

    def _parse(self) -> None:
        buf = self._buf
        while self._headers is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise HttpError("response head too large")
                return
            self._read_head(bytes(buf[:end]))
            del buf[: end + 4]
        mode = self._mode
        if mode == _LENGTH:
            if len(buf) >= self._need:
                if len(buf) > self._need:
                    self.keep_alive = False  # more than the response: stray bytes
                self._finish(bytes(buf[: self._need]))
        elif mode == _CHUNKED:
            self._parse_chunks()
        elif len(buf) > MAX_BODY:
            raise HttpError("response body too large")

    def _read_head(self, head: bytes) -> None:
        text = head.decode("latin-1")
        version = text[:8]
        code = text[9:12]
        if (
            not version.startswith("HTTP/1.")
            or text[8:9] != " "
            or not code.isdigit()
            or text[12:13] not in ("", " ", "\r")
        ):
            raise HttpError("malformed status line")
        status = int(code)
        fields = _FIELD.findall(text)
        if len(fields) != text.count("\r\n"):
            raise HttpError("malformed header line")
        headers = {name.lower(): value.rstrip(" \t") for name, value in fields}
        if len(headers) != len(fields):  # repeated fields: joined, in order
            headers = {}
            for name, raw in fields:
                key, value = name.lower(), raw.rstrip(" \t")
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if 100 <= status < 200:
            return  # interim response (e.g. 100 Continue): the real one follows
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.0":
            self.keep_alive = "keep-alive" in connection
        else:
            self.keep_alive = "close" not in connection
        self._status = status
        self._headers = headers
        if self._no_body or status in (204, 304):
            self._mode, self._need = _LENGTH, 0
        elif "transfer-encoding" in headers:
            codings = headers["transfer-encoding"].lower()
            if codings.rsplit(",", 1)[-1].strip() == "chunked":
                self._mode = _CHUNKED
                self._chunk_state, self._chunks, self._chunked_size = _SIZE, [], 0
            else:
                self._mode = _UNTIL_CLOSE
        elif "content-length" in headers:
            values = {v.strip() for v in headers["content-length"].split(",")}
            value = values.pop()
            if values or not value.isdigit():
                raise HttpError("malformed Content-Length")
            self._mode, self._need = _LENGTH, int(value)
            if self._need > MAX_BODY:
                raise HttpError("response body too large")
        else:
            self._mode = _UNTIL_CLOSE
        if self._mode == _UNTIL_CLOSE:
            self.keep_alive = False

    def _parse_chunks(self) -> None:
        buf = self._buf
        while True:
            state = self._chunk_state
            if state == _DATA:
                if len(buf) < self._need:
                    return
                if buf[self._need - 2 : self._need] != b"\r\n":
                    raise HttpError("malformed chunk")
                self._chunks.append(bytes(buf[: self._need - 2]))
                del buf[: self._need]
                self._chunk_state = _SIZE
                continue
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > _MAX_CHUNK_LINE:
                    raise HttpError("malformed chunk")
                return
            line = bytes(buf[:end])
            del buf[: end + 2]
            if state == _TRAILER:
                if not line:
                    if buf:
                        self.keep_alive = False
                    self._finish(b"".join(self._chunks))
                    return
                continue  # trailer fields are not used
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise HttpError("malformed chunk size") from None
            if size < 0:
                raise HttpError("malformed chunk size")
            if size == 0:
                self._chunk_state = _TRAILER
                continue
            self._chunked_size += size
            if self._chunked_size > MAX_BODY:
                raise HttpError("response body too large")
            self._chunk_state, self._need = _DATA, size + 2

    def _finish(self, body: bytes) -> None:
        waiter = self._waiter
        assert waiter is not None and self._headers is not None
        headers = self._headers
        encoding = headers.get("content-encoding")
        if encoding:
            try:
                body = _decode_body(encoding, body)
            except HttpError as err:
                self.keep_alive = False
                waiter.set_exception(err)
                return
        waiter.set_result(Response(self._status, headers, body))


class HttpClient:
    """Connections kept per route and reused (most recently used first); idle ones expire."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None = None,
        *,
        user_agent: str = "modelarts-exporter",
        idle_timeout: float = 15.0,
        max_idle: int = 64,
    ) -> None:
        self._ssl = ssl_context
        self._idle_timeout = idle_timeout
        self._max_idle = max_idle
        self._idle: dict[tuple[bool, str, int, tuple[str, int] | None], list[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self._closed = False
        self._fixed = (
            f"User-Agent: {user_agent}\r\nAccept: application/json\r\n"
            "Accept-Encoding: gzip, deflate\r\n"
        )

    async def request(
        self,
        route: Route,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes = b"",
        *,
        timeout: float,  # noqa: ASYNC109 - one budget for connect, tunnel, TLS and exchange
    ) -> Response:
        """One exchange, within `timeout` seconds from the first step to the last byte."""
        if self._closed:
            raise HttpError("client is closed")
        if route.problem:
            raise HttpError(route.problem)
        head = self._head(route, method, target, headers, body)
        deadline = asyncio.get_running_loop().time() + timeout
        conn = self._take_idle(route)
        if conn is not None:
            try:
                return await self._exchange(route, conn, head, deadline)
            except _Closed as err:
                # The server closed a kept-alive connection before answering (a race with
                # its idle timeout): the request was not processed, so it is sent again.
                if err.received:
                    raise
        async with asyncio.timeout_at(deadline):
            conn = await self._open(route)
        return await self._exchange(route, conn, head, deadline)

    async def close(self) -> None:
        self._closed = True
        conns = [c for idle in self._idle.values() for c in idle] + list(self._busy)
        self._idle.clear()
        self._busy.clear()
        for conn in conns:
            conn.abort()
        if conns:
            await asyncio.sleep(0)  # let the transports run their connection_lost

    # -- internals --------------------------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()  # verification on, the system's roots
        return self._ssl

    def _head(
        self, route: Route, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> bytes:
        # A signed request carries its own Host (it is part of the signature).
        host = "" if "Host" in headers or "host" in headers else f"Host: {route.host_header}\r\n"
        lines = [f"{method} {route.prefix}{target} HTTP/1.1\r\n{host}", self._fixed]
        if route.proxy is not None and not route.tls:
            lines.append(route.proxy_auth)
        for name, value in headers.items():
            if "\n" in value or "\r" in value:
                raise HttpError(f"header {name} contains a line break")
            lines.append(f"{name}: {value}\r\n")
        if body or method not in ("GET", "HEAD"):
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        try:
            return "".join(lines).encode("latin-1") + body
        except UnicodeEncodeError:
            raise HttpError("request head is not latin-1") from None

    def _take_idle(self, route: Route) -> _Connection | None:
        idle = self._idle.get(route.key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            transport = conn.transport
            if (
                conn.closed
                or transport is None
                or transport.is_closing()
                or now - conn.idle_since > self._idle_timeout
            ):
                conn.abort()
                continue
            return conn
        return None

    async def _exchange(
        self, route: Route, conn: _Connection, head: bytes, deadline: float
    ) -> Response:
        self._busy.add(conn)
        waiter = conn.send(head, no_body=head.startswith(b"HEAD "))
        # A plain timer rather than asyncio.timeout(): a third of the cost, once per request.
        timer = asyncio.get_running_loop().call_at(deadline, conn.expire)
        try:
            response = await waiter
        except BaseException:
            conn.abort()  # a half-read response (or a timeout) leaves the connection unusable
            raise
        finally:
            timer.cancel()
            self._busy.discard(conn)
        if conn.keep_alive and not conn.closed and not self._closed:
            conn.idle_since = time.monotonic()
            idle = self._idle.setdefault(route.key, [])
            idle.append(conn)
            if len(idle) > self._max_idle:
                idle.pop(0).abort()
        else:
            conn.abort()
        return response

    async def _open(self, route: Route) -> _Connection:
        loop = asyncio.get_running_loop()
        context = self._context() if route.tls else None
        if route.proxy is None:
            _, conn = await loop.create_connection(
                _Connection,
                route.host,
                route.port,
                ssl=context,
                server_hostname=route.host if context else None,
            )
            return conn
        _, conn = await loop.create_connection(_Connection, *route.proxy)
        if context is None:
            return conn  # plain HTTP: requests go to the proxy in absolute form
        self._busy.add(conn)
        try:
            authority = f"{route.host}:{route.port}"
            if ":" in route.host:
                authority = f"[{route.host}]:{route.port}"
            connect = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{route.proxy_auth}\r\n"
            answer = await conn.send(connect.encode("latin-1"), no_body=True)
            if not 200 <= answer.status < 300:
                raise HttpError(f"proxy refused the tunnel: HTTP {answer.status}")
            assert conn.transport is not None
            tls = await loop.start_tls(conn.transport, conn, context, server_hostname=route.host)
        except BaseException:
            conn.abort()
            raise
        finally:
            self._busy.discard(conn)
        if tls is None:
            raise HttpError("TLS through the proxy could not start")
        conn.transport = tls
        return conn


__all__ = ["HttpClient", "HttpError", "Response", "Route", "describe", "route_for"]
