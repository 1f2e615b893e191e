"""The reliability suite, hostile upstream (issue 17): the exporter polls through a server of the
test's own that answers the service list (the heartbeat) the way a broken or hostile peer would.

Each case must be exactly one failed poll with a clear reason in the exporter's log, the
exporter's RSS within 50 MB of its steady state while the case runs, and the next poll fine. The
exporter runs as a process of its own, so the RSS measured is its alone; the hostile server
forwards everything else to the simulator. Each case prints its figures (`pytest -s`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import re
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from bench import procs
from bench.budget import series
from exporter.modelarts.transport import MAX_BODY
from exporter.simulator import DEFAULT_PROJECT_ID, Simulation, serve

pytestmark = [pytest.mark.reliability, pytest.mark.e2e]

LIST_PATH = f"/v1/{DEFAULT_PROJECT_ID}/services"
TIMEOUT = 5.0  # the exporter's per-request timeout here
RSS_BOUND_MB = 50.0
Writer = asyncio.StreamWriter
Case = Callable[[asyncio.StreamReader, Writer, bytes], Awaitable[None]]


def _head(*lines: str) -> bytes:
    return (
        "\r\n".join(("HTTP/1.1 200 OK", "Content-Type: application/json", *lines)) + "\r\n\r\n"
    ).encode()


async def _send(writer: Writer, *parts: bytes) -> None:
    for part in parts:
        writer.write(part)
        await writer.drain()


def _reset(writer: Writer) -> None:
    """Abort: an RST instead of a FIN."""
    writer.transport.abort()


# -- the cases: each answers one list request; `good` is the simulator's real answer ----------


async def tiny_chunks(_r: asyncio.StreamReader, w: Writer, good: bytes) -> None:
    batch = b"1\r\nx\r\n" * 65536  # 384 KiB on the wire, 64 KiB of payload
    await _send(w, _head("Transfer-Encoding: chunked"))
    for _ in range(61):  # 4 million chunks, 23 MiB on the wire
        await _send(w, batch)
    await _send(w, b"0\r\n\r\n")


async def gzip_bomb(_r: asyncio.StreamReader, w: Writer, good: bytes) -> None:
    await _send(w, _head(f"Content-Encoding: gzip\r\nContent-Length: {len(BOMB)}"), BOMB)


async def endless_headers(_r: asyncio.StreamReader, w: Writer, good: bytes) -> None:
    await _send(w, b"HTTP/1.1 200 OK\r\n")
    for i in range(200_000):  # bounded: the exporter hangs up long before
        await _send(w, b"X-More-%d: %s\r\n" % (i, b"v" * 40))


async def over_cap_length(_r: asyncio.StreamReader, w: Writer, good: bytes) -> None:
    size = MAX_BODY + 1
    await _send(w, _head(f"Content-Length: {size}"))
    block = b" " * 65536
    for _ in range(size // len(block) + 1):
        await _send(w, block)


async def over_cap_chunked(_r: asyncio.StreamReader, w: Writer, good: bytes) -> None:
    block = b" " * 65536
    await _send(w, _head("Transfer-Encoding: chunked"))
    for _ in range(MAX_BODY // len(block) + 2):
        await _send(w, b"%x\r\n%s\r\n" % (len(block), block))
    await _send(w, b"0\r\n\r\n")


async def reset_mid_body(_r: asyncio.StreamReader, w: Writer, good: bytes) -> None:
    await _send(w, _head(f"Content-Length: {len(good)}"), good[: len(good) // 2])
    _reset(w)


async def never_answers(r: asyncio.StreamReader, _w: Writer, good: bytes) -> None:
    with contextlib.suppress(TimeoutError, ConnectionError):
        await asyncio.wait_for(r.read(), 3 * TIMEOUT)  # until the exporter gives up


def raw(response: bytes) -> Case:
    async def case(_r: asyncio.StreamReader, w: Writer, good: bytes) -> None:
        await _send(w, response.replace(b"{good}", good))

    return case


async def truncated_gzip(_r: asyncio.StreamReader, w: Writer, good: bytes) -> None:
    body = gzip.compress(good)[:-6]
    await _send(w, _head(f"Content-Encoding: gzip\r\nContent-Length: {len(body)}"), body)


async def te_gzip_chunked(_r: asyncio.StreamReader, w: Writer, good: bytes) -> None:
    body = gzip.compress(good)
    await _send(
        w, _head("Transfer-Encoding: gzip, chunked"), b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    )


async def unframed_then_reset(_r: asyncio.StreamReader, w: Writer, good: bytes) -> None:
    await _send(w, _head(), good)
    _reset(w)


async def multi_member_gzip(_r: asyncio.StreamReader, w: Writer, good: bytes) -> None:
    half = len(good) // 2
    body = gzip.compress(good[:half]) + gzip.compress(good[half:])
    await _send(w, _head(f"Content-Encoding: gzip\r\nContent-Length: {len(body)}"), body)


def big_header(size: int) -> Case:
    async def case(_r: asyncio.StreamReader, w: Writer, good: bytes) -> None:
        await _send(
            w, _head(f"X-Subject-Token: {'t' * size}", f"Content-Length: {len(good)}"), good
        )

    return case


def _bomb() -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    zeros = b"\0" * (1 << 20)
    parts = [packer.compress(zeros) for _ in range(1024)]  # 1 GiB of zeros
    return b"".join(parts) + packer.flush()


BOMB = _bomb()
CL = "Content-Length"

# (name, case, the reason the exporter must log; "": the answer is good and the poll succeeds)
PARSER = r"invalid HTTP response"  # the framing cases fail in aiohttp's parser
CASES: list[tuple[str, Case, str]] = [
    ("4 million 1-byte chunks", tiny_chunks, r"not JSON|timed out"),
    ("gzip bomb (1 GiB of zeros)", gzip_bomb, r"decompressed body too large"),
    ("endless headers", endless_headers, PARSER),
    ("body over the cap, Content-Length", over_cap_length, r"response body too large"),
    ("body over the cap, chunked", over_cap_chunked, r"response body too large"),
    ("reset mid-body", reset_mid_body, r"incomplete|closed before the response was complete"),
    ("server never answers", never_answers, rf"timed out after {TIMEOUT:g} s"),
    (
        "Content-Length: ²",
        raw("HTTP/1.1 200 OK\r\nContent-Length: ²\r\n\r\n{good}".encode()),
        PARSER,
    ),
    ("status 2²0", raw("HTTP/1.1 2²0 OK\r\nContent-Length: 0\r\n\r\n".encode()), PARSER),
    (
        "chunk size 0x3",
        raw(_head("Transfer-Encoding: chunked") + b"0x3\r\nabc\r\n0\r\n\r\n"),
        PARSER,
    ),
    ("chunk size +3", raw(_head("Transfer-Encoding: chunked") + b"+3\r\nabc\r\n0\r\n\r\n"), PARSER),
    (
        "chunk size 1_0",
        raw(_head("Transfer-Encoding: chunked") + b"1_0\r\n" + b"a" * 10 + b"\r\n0\r\n\r\n"),
        PARSER,
    ),
    (
        "bare LF hiding a Content-Length",
        raw(b"HTTP/1.1 200 OK\r\nX-Note: a\nContent-Length: 3\r\n\r\n{good}"),
        PARSER,
    ),
    ("truncated gzip body", truncated_gzip, r"gzip body truncated"),
    ("Transfer-Encoding: gzip, chunked", te_gzip_chunked, r"unsupported transfer coding"),
    ("unframed body ended by a reset", unframed_then_reset, r"not framed"),
    ("body not JSON", raw(_head(f"{CL}: 8") + b"<html>hi"), r"not JSON"),
    (
        "JSON of the wrong shape",
        raw(_head(f"{CL}: 18") + b'{"services": "no"}'),
        r"malformed response",
    ),
    ("a 100 KiB header", big_header(100 * 1024), PARSER),
    # positives: what a well-behaved server may do must keep working
    ("multi-member gzip", multi_member_gzip, ""),
    ("a 12 KiB token header", big_header(12 * 1024), ""),
]


@dataclass
class Front:
    """Forwards to the simulator; answers the next list request with `case` when one is set."""

    sim_url: str
    session: aiohttp.ClientSession
    case: Case | None = None
    served: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: Writer) -> None:
        try:
            for _ in range(10_000):  # requests on one kept-alive connection, bounded
                head = await reader.readuntil(b"\r\n\r\n")
                line, *header_lines = head.decode("latin-1").split("\r\n")
                method, target, _ = line.split(" ", 2)
                headers = dict(h.split(": ", 1) for h in header_lines if h)
                length = int(headers.get("Content-Length", headers.get("content-length", "0")))
                body = await reader.readexactly(length) if length else b""
                status, answer = await self.forward(method, target, headers, body)
                is_list = method == "GET" and target.split("?", 1)[0] == LIST_PATH
                if is_list and self.case is not None:
                    case, self.case = self.case, None
                    try:
                        await case(reader, writer, answer)
                    finally:
                        self.served.set()
                    return  # a hostile answer ends the connection
                writer.write(
                    b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                    % (status, len(answer))
                    + answer
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def forward(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        keep = {k: v for k, v in headers.items() if k.lower().startswith("x-")}
        url = URL(self.sim_url + target, encoded=True)
        async with self.session.request(method, url, headers=keep, data=body or None) as resp:
            return resp.status, await resp.read()


@contextlib.asynccontextmanager
async def hostile_front(sim_url: str) -> AsyncIterator[tuple[Front, int]]:
    async with aiohttp.ClientSession() as session:
        front = Front(sim_url, session)
        server = await asyncio.start_server(front.handle, "127.0.0.1", 0)
        try:
            yield front, server.sockets[0].getsockname()[1]
        finally:
            server.close()
            await server.wait_closed()


def _list_requests(body: bytes) -> dict[str, float]:
    out: dict[str, float] = {}
    for labels, value in series(body, "modelarts_exporter_api_requests_total"):
        if labels.get("endpoint") == "list":
            out[labels["code"]] = value
    return out


def _failure_reasons(log_path: Path) -> list[str]:
    reasons = []
    for line in log_path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if record.get("msg") == "poll cycle had failures":
                reasons.append(str(record.get("example_error", "")))
    return reasons


@pytest.mark.timeout(600)
async def test_each_hostile_answer_is_one_failed_poll_and_the_next_is_fine(tmp_path: Path) -> None:
    sim = Simulation(seed=17, services=20, dynamic=False)
    async with (
        serve(sim) as sim_url,
        hostile_front(sim_url) as (front, front_port),
        aiohttp.ClientSession() as session,
    ):
        port = procs.free_port()
        config = tmp_path / "exporter.yaml"
        config.write_text(
            "auth:\n  method: token\n  token: hostile-test\n"
            f"projects:\n  - project_id: {DEFAULT_PROJECT_ID}\n    region: cn-north-4\n"
            f"    endpoint: http://127.0.0.1:{front_port}\n    discovery:\n      enabled: true\n"
            f"polling:\n  interval: 1s\n  timeout: {TIMEOUT:g}s\n  retries: 0\n"
            "  details_interval: 10m\n  events_interval: 10m\n  monitor_interval: 10m\n"
            "  logs_interval: 10m\n  max_requests_per_second: 200\n"
        )
        exporter = procs.spawn(
            "exporter",
            procs.python_module(
                "exporter",
                f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
                "--log.format=json",
            ),
            tmp_path / "exporter.log",
        )
        url = f"http://127.0.0.1:{port}/metrics"

        async def requests() -> dict[str, float]:
            async with session.get(url) as resp:
                return _list_requests(await resp.read())

        async def until(what: str, check: Callable[[], Awaitable[bool]], within: float) -> float:
            started = time.monotonic()
            for _ in range(int(within / 0.1) + 1):
                assert exporter.proc.poll() is None, exporter.log_tail()
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    if await check():
                        return time.monotonic() - started
                if time.monotonic() - started > within:
                    break
                await asyncio.sleep(0.1)
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")

        try:
            await until("ten good polls", lambda: _ok(requests(), 10), 60)
            rss_steady = procs.memory_mib(exporter.pid)[0]
            figures, wrong = [], []
            for name, case, reason in CASES:
                before = await requests()
                reasons_before = len(_failure_reasons(exporter.log_path))
                front.served.clear()
                front.case = case
                peak = rss_steady
                started = time.monotonic()
                for _ in range(int((3 * TIMEOUT + 20) / 0.05)):  # bounded: the case ends
                    peak = max(peak, procs.memory_mib(exporter.pid)[0])
                    if front.served.is_set():
                        break
                    await asyncio.sleep(0.05)

                async def settled(before: dict[str, float] = before) -> bool:
                    now = await requests()
                    done = now.get("error", 0) + now.get("200", 0) - sum(before.values())
                    # the case's poll, then one more that must be good
                    return done >= 2 and now.get("200", 0) > before.get("200", 0)

                await until(f"{name}: the poll after", settled, 3 * TIMEOUT + 20)
                peak = max(peak, procs.memory_mib(exporter.pid)[0])
                recovery = time.monotonic() - started
                after = await requests()
                failed = after.get("error", 0) - before.get("error", 0)
                logged = _failure_reasons(exporter.log_path)[reasons_before:]
                got = logged[0] if logged else ""
                if reason:
                    ok = failed <= 1 and len(logged) == 1 and re.search(reason, got) is not None
                else:
                    ok = failed == 0 and not logged
                growth = peak - rss_steady
                ok = ok and growth < RSS_BOUND_MB
                figures.append(
                    f"  {name:36} {'ok  ' if ok else 'FAIL'} failed polls {len(logged)} "
                    f"({failed:.0f} as a request error), "
                    f"RSS {growth:+5.1f} MB, next good poll after {recovery:4.1f} s: "
                    f"{got or 'a good poll'}"
                )
                if not ok:
                    wrong.append(name)
            print(
                "\nhostile upstream, one exporter process polling every 1 s:\n" + "\n".join(figures)
            )
            assert not wrong, wrong
            assert exporter.proc.poll() is None
        finally:
            await procs.stop(exporter)


async def _ok(counts: Awaitable[dict[str, float]], n: int) -> bool:
    return (await counts).get("200", 0) >= n
