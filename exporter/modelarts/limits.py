"""Process-wide request budget: a concurrency cap and a sliding one-second rate window whose rate
adapts to throttling (AIMD: halved on a "slow down" answer, raised by a tenth of the budget per
quiet period, never above the budget)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

# A start stays in the window this long past the window itself: the server counts a request
# when it arrives, a little after it was stamped here (a connection to open, a busy event loop,
# the network), and by a varying amount. Without it, a request stamped late in one window and
# one sent on the dot of the next can land in the same second of the server's count.
SERVER_SKEW_MARGIN = 0.03
ADMITTED_POLL = 0.001  # seconds between looks while admitted requests have yet to start
MIN_RATE = 0.1  # requests per second: throttling never stops polling altogether


class RequestLimiter:
    """At most `max_concurrency` requests in flight and at most `max_per_second` request starts
    in any one-second window (bursts included: a plain token bucket would allow a full bucket
    plus the refill inside one window, so this keeps the last N start times instead)."""

    def __init__(
        self,
        max_concurrency: int,
        max_per_second: float,
        *,
        quiet_period: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._semaphore = asyncio.Semaphore(max(1, max_concurrency))
        self.budget = max_per_second
        self._quiet_period = quiet_period
        self._rate = max_per_second
        self._per_window = 1
        self._window = 1.0
        self._set_rate(max_per_second)
        self._last_throttled = -float("inf")
        self._last_change = -float("inf")
        self.throttle_count = 0
        self._starts: deque[float] = deque()
        self._admitted = 0  # let through, not yet started (stamped)
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._pacer: asyncio.Task[None] | None = None
        self._clock = clock
        self._sleep = sleep

    def _set_rate(self, rate: float) -> None:
        # A fractional rate (0.5/s) becomes "1 start per 1/rate seconds".
        self._rate = rate
        self._per_window = max(1, int(rate))
        self._window = self._per_window / rate

    @property
    def rate(self) -> float:
        """The rate allowed now (requests per second)."""
        self._recover(self._clock())
        return self._rate

    def throttled(self) -> None:
        """The API said "slow down": halve the rate, at most once per window (requests in
        flight when the first answer came would otherwise halve it again and again)."""
        now = self._clock()
        self.throttle_count += 1
        self._last_throttled = now
        if now - self._last_change >= max(1.0, self._window):
            self._set_rate(max(MIN_RATE, self._rate / 2))
            self._last_change = now

    def _recover(self, now: float) -> None:
        if self._rate >= self.budget:
            return
        if now - self._last_throttled >= self._quiet_period and (
            now - self._last_change >= self._quiet_period
        ):
            self._set_rate(min(self.budget, self._rate + self.budget / 10))
            self._last_change = now

    def _has_room(self) -> bool:
        now = self._clock()
        if self._rate < self.budget:
            self._recover(now)
        starts = self._starts
        span = self._window + SERVER_SKEW_MARGIN
        while starts and now - starts[0] >= span:
            starts.popleft()
        return len(starts) + self._admitted < self._per_window

    async def _reserve_start(self) -> None:
        # Fast path with nobody queued: nothing awaits between the check and the stamp, so
        # this is atomic on the event loop.
        if not self._waiters and self._has_room():
            self._starts.append(self._clock())
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if self._pacer is None or self._pacer.done():
            self._pacer = asyncio.create_task(self._pace())
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._admitted -= 1  # admitted, then cancelled before it could start
            raise
        # Stamped when the request really goes, not when it was admitted: on a busy loop the
        # admitted ones resume one after another, and a stamp taken at admission would let the
        # next window open early by that lag.
        self._admitted -= 1
        self._starts.append(self._clock())

    async def _pace(self) -> None:
        """Admit queued requests as slots free up, in order, as many at once as are free: the
        admitted ones all resume in the same event-loop pass instead of one per pass."""
        waiters = self._waiters
        while waiters:
            while waiters and waiters[0].done():  # cancelled while waiting
                waiters.popleft()
            while waiters and self._has_room():
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    self._admitted += 1
            if waiters:
                if len(self._starts) < self._per_window:
                    # The window is full of admitted requests that have not run yet: let them.
                    await self._sleep(ADMITTED_POLL)
                    continue
                # (at least a poll's length: a wake-up a rounding error early must not spin)
                due = self._starts[0] + self._window + SERVER_SKEW_MARGIN - self._clock()
                await self._sleep(max(ADMITTED_POLL, due))

    def close(self) -> None:
        """Stop admitting queued requests (at shutdown: their tasks are being cancelled)."""
        if self._pacer is not None:
            self._pacer.cancel()
        for waiter in self._waiters:
            waiter.cancel()
        self._waiters.clear()

    def slot(self) -> _Slot:
        """Hold one concurrency slot; the rate reservation is the last step before sending."""
        return _Slot(self)


class _Slot:
    """`async with limiter.slot():` without a generator per request."""

    __slots__ = ("_limiter",)

    def __init__(self, limiter: RequestLimiter) -> None:
        self._limiter = limiter

    async def __aenter__(self) -> None:
        semaphore = self._limiter._semaphore
        await semaphore.acquire()
        try:
            await self._limiter._reserve_start()
        except BaseException:
            semaphore.release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._limiter._semaphore.release()
