"""Process-wide request budget: a concurrency cap and a sliding one-second rate window."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

SERVER_SKEW_MARGIN = 0.03


class RequestLimiter:
    """At most `max_concurrency` requests in flight and at most `max_per_second` request starts
    in any one-second window (bursts included: a plain token bucket would allow a full bucket
    plus the refill inside one window, so this keeps the last N start times instead)."""

    def __init__(
        self,
        max_concurrency: int,
        max_per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._semaphore = asyncio.Semaphore(max(1, max_concurrency))
        # A fractional rate (0.5/s) becomes "1 start per 1/rate seconds".
        self._per_window = max(1, int(max_per_second))
        self._window = self._per_window / max_per_second
        self._starts: deque[float] = deque()
        self._lock = asyncio.Lock()
        self._clock = clock
        self._sleep = sleep

    async def _reserve_start(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                while self._starts and now - self._starts[0] >= self._window:
                    self._starts.popleft()
                if len(self._starts) < self._per_window:
                    self._starts.append(now)
                    return
                # Past the boundary by a margin: the server sees a start when the request
                # arrives, a little after we let it go, and arrival delays vary.
                await self._sleep(self._starts[0] + self._window - now + SERVER_SKEW_MARGIN)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one concurrency slot; the rate reservation is the last step before sending."""
        async with self._semaphore:
            await self._reserve_start()
            yield
