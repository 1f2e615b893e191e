"""The request limiter, on a fake clock: no window ever sees more starts than allowed."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.modelarts.limits import SERVER_SKEW_MARGIN, RequestLimiter


@settings(max_examples=50, deadline=None)
@given(rate=st.sampled_from([0.5, 1.0, 3.0, 10.0]), n=st.integers(1, 40), cap=st.integers(1, 4))
def test_no_window_sees_more_than_the_rate(rate: float, n: int, cap: int) -> None:
    now = [0.0]
    starts: list[float] = []
    in_flight = [0, 0]  # current, peak

    async def sleep(seconds: float) -> None:
        # Whatever is ready now runs now (as on a real loop); then the sleeper's time passes.
        for _ in range(5):
            await asyncio.sleep(0)
        now[0] += max(0.0, seconds)

    limiter = RequestLimiter(cap, rate, clock=lambda: now[0], sleep=sleep)

    async def request() -> None:
        async with limiter.slot():
            starts.append(now[0])
            in_flight[0] += 1
            in_flight[1] = max(in_flight[1], in_flight[0])
            await asyncio.sleep(0)
            in_flight[0] -= 1

    async def main() -> None:
        await asyncio.gather(*(request() for _ in range(n)))

    asyncio.run(main())
    assert len(starts) == n
    assert in_flight[1] <= cap
    _assert_spaced(starts, rate)


@settings(max_examples=100, deadline=None)
@given(
    rate=st.sampled_from([1.0, 3.0, 10.0]),
    n=st.integers(2, 40),
    pauses=st.lists(st.sampled_from([0.0, 0.04, 0.2]), max_size=20),
)
def test_a_pause_between_admission_and_start_does_not_open_the_window_early(
    rate: float, n: int, pauses: list[float]
) -> None:
    # On a busy event loop (a garbage collection, a big parse) the requests let through may
    # start a while after they were admitted. The window must count from when they started,
    # or the next batch, admitted on time, lands in the same second as the late one.
    now = [0.0]
    starts: list[float] = []
    pending = list(pauses)

    async def sleep(seconds: float) -> None:
        wake = now[0] + max(0.0, seconds)
        now[0] += pending.pop() if pending else 0.0  # the loop is held before anyone resumes
        for _ in range(5):
            await asyncio.sleep(0)
        now[0] = max(now[0], wake)

    limiter = RequestLimiter(n, rate, clock=lambda: now[0], sleep=sleep)

    async def request() -> None:
        async with limiter.slot():
            starts.append(now[0])

    async def main() -> None:
        await asyncio.gather(*(request() for _ in range(n)))

    asyncio.run(main())
    assert len(starts) == n
    _assert_spaced(starts, rate)


def _assert_spaced(starts: list[float], rate: float) -> None:
    # Windows widened by the margin: a server that sees each request up to the margin after
    # it was stamped still counts no more than the rate in any window of its own.
    allowed = max(1, int(rate))
    span = allowed / rate + SERVER_SKEW_MARGIN
    for i, t in enumerate(starts):
        assert sum(1 for u in starts[i:] if u - t < span) <= allowed


@settings(max_examples=100, deadline=None)
@given(
    rate=st.sampled_from([1.0, 3.0, 10.0]),
    gaps=st.lists(st.sampled_from([0.0, 0.01, 0.1, 0.33, 1.0]), min_size=2, max_size=40),
)
def test_requests_that_find_room_at_once_keep_the_margin_too(
    rate: float, gaps: list[float]
) -> None:
    # Requests that come one by one, with the limiter idle between them, take the fast path
    # (no queue, no pacer): one sent on the dot of the window's end must wait out the margin
    # like a queued one, or it shares the server's second with one that arrived a little late.
    now = [0.0]
    starts: list[float] = []

    async def sleep(seconds: float) -> None:
        for _ in range(5):
            await asyncio.sleep(0)
        now[0] += max(0.0, seconds)

    limiter = RequestLimiter(1, rate, clock=lambda: now[0], sleep=sleep)

    async def request() -> None:
        async with limiter.slot():
            starts.append(now[0])

    async def main() -> None:
        for gap in gaps:
            now[0] += gap
            await request()

    asyncio.run(main())
    assert len(starts) == len(gaps)
    _assert_spaced(starts, rate)
