"""Outbound HTTP for the cloud APIs (ModelArts and IAM): one aiohttp client session per process.

aiohttp does the protocol (keep-alive pool, llhttp parsing, CONNECT tunnels, Happy Eyeballs);
this module adds what the exporter needs on top and aiohttp leaves to its users:

- the target goes out byte-for-byte as it was signed (`yarl.URL(..., encoded=True)`);
- response heads up to 64 KiB per line (IAM tokens are multi-KB header values);
- one total timeout per request, from connect to the last body byte;
- bodies read with a cap, framed or refused: a body that is neither `Content-Length` nor
  chunked (read-until-close) cannot be told apart from a cut one, so it is refused, as is any
  transfer coding but `chunked`;
- gzip and deflate undone here, with a cap on the decoded size and a check that the stream
  really ended (aiohttp's decoder returns a truncated gzip body as if it were whole); a gzip
  body of several members is decoded whole, as RFC 1952 defines it;
- proxies from the environment resolved once per origin (`modelarts.proxy`), not per request;
- no cookies, no redirects; a stale kept-alive connection is retried by aiohttp only for
  idempotent methods, so the IAM token POST is never sent twice.

Every failure is an `HttpFailure` whose message is safe to log: no header values, no addresses.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from base64 import b64encode
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

import aiohttp
from yarl import URL

MAX_BODY = 16 * 1024 * 1024  # raw and decoded; a page of 1,000 services is about 2 MiB
MAX_HEAD_LINE = 64 * 1024  # one header line (Huawei's "Header Overflow" page: tokens of KBs)
MAX_HEADERS = 256
_READ = 256 * 1024


class HttpFailure(Exception):
    """No complete, well-formed response. `str()` is the reason, safe to log."""

    def __init__(self, reason: str, *, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.timed_out = timed_out


class Response(NamedTuple):
    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: bytes  # decoded (gzip/deflate undone)


@dataclass(frozen=True)
class Origin:
    """Where requests for one endpoint go: scheme, host and port, and the proxy if any."""

    base: str  # scheme://host[:port], as the URL spelled it
    host_header: str  # what a signature covers as the Host
    proxy: URL | None = None
    proxy_headers: Mapping[str, str] | None = None  # Proxy-Authorization, for the proxy only
    problem: str = ""  # why no request can take this route (each one fails with it)


def origin_for(url: str, proxy: str | None = None) -> Origin:
    """The origin of `url`, reached directly or through the HTTP proxy `proxy`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    host_header = parts.netloc.rpartition("@")[2]
    base = f"{parts.scheme}://{host_header}"
    if proxy is None:
        return Origin(base, host_header)
    p = urlsplit(proxy if "://" in proxy else "http://" + proxy)
    try:
        port = p.port
    except ValueError:
        port = -1
    if p.scheme != "http" or not p.hostname or port == -1:
        # The proxy comes from the environment: every poll fails saying why, start-up goes on.
        shown = f"{p.scheme}://{p.hostname or ''}"
        return Origin(base, host_header, problem=f"unusable proxy {shown} (http://host:port)")
    headers = None
    if p.username is not None:
        pair = f"{unquote(p.username)}:{unquote(p.password or '')}".encode()
        headers = {"Proxy-Authorization": f"Basic {b64encode(pair).decode()}"}
    netloc = p.hostname if ":" not in p.hostname else f"[{p.hostname}]"
    proxy_url = URL(f"http://{netloc}:{port or 80}")
    return Origin(base, host_header, proxy_url, headers)


class Transport:
    """The process's one client session; created on first use (it needs a running loop)."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None = None,
        *,
        user_agent: str = "modelarts-exporter",
        connections: int = 100,
        max_body: int = MAX_BODY,
    ) -> None:
        self._ssl = ssl_context
        self._connections = connections
        self._max_body = max_body
        self._headers = {
            "User-Agent": user_agent,
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",
        }
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            ssl=self._ssl if self._ssl is not None else True,
            limit=self._connections,
            ttl_dns_cache=60,
            keepalive_timeout=15,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None),  # ours wraps the whole exchange
            max_line_size=MAX_HEAD_LINE,
            max_field_size=MAX_HEAD_LINE,
            max_headers=MAX_HEADERS,
            read_bufsize=_READ,
            trust_env=False,  # proxies: resolved once per origin, passed per request
            raise_for_status=False,
        )
        return self._session

    async def request(
        self,
        origin: Origin,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes = b"",
        *,
        timeout: float,  # noqa: ASYNC109 - one budget for connect, tunnel, TLS and exchange
    ) -> Response:
        """One exchange within `timeout` seconds; `target` is the path and query, as signed."""
        if self._closed:
            raise HttpFailure("client is closed")
        if origin.problem:
            raise HttpFailure(origin.problem)
        session = self._session or self._open()
        url = URL(origin.base + target, encoded=True)
        if origin.proxy is not None and origin.proxy_headers and url.scheme == "http":
            headers = {**headers, **origin.proxy_headers}  # plain HTTP: the proxy reads them
        try:
            async with (
                asyncio.timeout(timeout),
                session.request(
                    method,
                    url,
                    headers=headers,
                    data=body or None,
                    proxy=origin.proxy,
                    proxy_headers=origin.proxy_headers,
                    allow_redirects=False,
                ) as resp,
            ):
                raw = await self._read(resp, method)
                status, resp_headers = resp.status, resp.headers
        except HttpFailure:
            raise
        except TimeoutError:
            raise HttpFailure(f"timed out after {timeout:g} s", timed_out=True) from None
        except (aiohttp.ClientError, OSError, ValueError) as err:
            raise HttpFailure(describe(err)) from None
        encoding = resp_headers.get("Content-Encoding")
        return Response(status, resp_headers, decode(encoding, raw, self._max_body))

    async def _read(self, resp: aiohttp.ClientResponse, method: str) -> bytes:
        codings = resp.headers.get("Transfer-Encoding")
        if codings is not None and codings.strip().lower() != "chunked":
            raise HttpFailure(f"unsupported transfer coding {_short(codings)!r}")
        if method == "HEAD" or resp.status in (204, 304):
            return b""
        if codings is None and resp.content_length is None:
            # read-until-close: its end cannot be told from a connection cut in the middle
            raise HttpFailure("response body not framed (no Content-Length, not chunked)")
        if resp.content_length is not None and resp.content_length > self._max_body:
            raise HttpFailure("response body too large")
        parts: list[bytes] = []
        size = 0
        content = resp.content
        while chunk := await content.read(_READ):
            size += len(chunk)
            if size > self._max_body:
                raise HttpFailure("response body too large")
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


def decode(encoding: str | None, body: bytes, limit: int = MAX_BODY) -> bytes:
    """`body` with its content coding undone, at most `limit` bytes, refused if incomplete."""
    coding = (encoding or "").strip().lower()
    if coding in ("", "identity"):
        return body
    if coding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif coding == "deflate":
        # zlib-wrapped by the RFC, raw in some servers: accept both.
        wbits = zlib.MAX_WBITS if body[:1] == b"\x78" else -zlib.MAX_WBITS
    else:
        raise HttpFailure(f"unsupported content encoding {_short(coding)!r}")
    out: list[bytes] = []
    size = 0
    rest = body
    while True:
        decoder = zlib.decompressobj(wbits)
        try:
            piece = decoder.decompress(rest, limit - size + 1)
        except zlib.error:
            raise HttpFailure(f"{coding} body does not decompress") from None
        size += len(piece)
        if size > limit:
            raise HttpFailure("decompressed body too large")
        out.append(piece)
        if not decoder.eof:
            raise HttpFailure(f"{coding} body truncated")
        rest = decoder.unused_data
        if not rest:
            return b"".join(out)
        if wbits != 16 + zlib.MAX_WBITS:
            raise HttpFailure(f"{coding} body has trailing data")


def describe(err: BaseException) -> str:
    """A short reason for a failed exchange, safe to log (no addresses, no header values)."""
    if isinstance(err, aiohttp.ClientConnectorCertificateError):
        cert_error = err.certificate_error
        detail = getattr(cert_error, "verify_message", "") or type(cert_error).__name__
        return f"TLS certificate not trusted ({detail})"
    if isinstance(err, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError):
        return "TLS handshake failed"
    if isinstance(err, aiohttp.ClientHttpProxyError):
        return f"proxy refused the tunnel: HTTP {err.status}"
    if isinstance(err, aiohttp.ClientProxyConnectionError):
        return f"cannot connect to the proxy: {_os_reason(err.os_error)}"
    if isinstance(err, aiohttp.ClientConnectorError):
        return f"cannot connect: {_os_reason(err.os_error)}"
    if isinstance(err, aiohttp.ServerDisconnectedError):
        return "connection closed before the response was complete"
    if isinstance(err, aiohttp.ClientPayloadError):
        cause = err.__cause__ or err.__context__
        detail = _message(cause).translate(_NO_PARENS) if cause is not None else ""
        return "response body incomplete or malformed" + (f" ({detail})" if detail else "")
    if isinstance(err, aiohttp.ClientResponseError):
        return f"invalid HTTP response ({_message(err)})"
    if isinstance(err, ssl.SSLError):
        return "TLS error"
    if isinstance(err, OSError):
        return _os_reason(err)
    if isinstance(err, aiohttp.ClientError):
        return type(err).__name__
    return f"bad request: {type(err).__name__}"


def _os_reason(err: OSError) -> str:
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({err.verify_message})"
    if isinstance(err, ssl.SSLError):
        return "TLS error"
    return f"{type(err).__name__}: {err.strerror}" if err.strerror else type(err).__name__


def _message(err: BaseException) -> str:
    """The first clause of a parser's message: the bytes it quotes after it are the peer's."""
    text = str(getattr(err, "message", "") or err)
    return _short(text.split("\n", 1)[0].split(":", 1)[0].strip("'\" ")) or type(err).__name__


_NO_PARENS = str.maketrans("", "", "()")


def _short(text: str) -> str:
    return text[:80]


__all__ = ["HttpFailure", "Origin", "Response", "Transport", "decode", "describe", "origin_for"]
