"""Fault settings and request statistics of the simulator; both are changed and read at runtime."""

from __future__ import annotations

import bisect
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

# Route names of the ModelArts API; RequestStats counts by these (plus "token" and "other").
MODELARTS_ENDPOINTS = frozenset(
    {"list", "details", "events", "logs", "monitor", "v2_list", "v2_details", "v2_events"}
)
ALL_FAULT_ENDPOINTS = MODELARTS_ENDPOINTS


@dataclass
class Quota:
    """The account's API Gateway flow control: at most `per_second` requests in any second and
    `per_minute` in any minute (sliding windows); answered requests count, refused ones do not."""

    per_second: int | None = None
    per_minute: int | None = None
    retry_after: float | None = None
    clock: Callable[[], float] = time.monotonic
    _accepted: deque[float] = field(default_factory=deque, init=False, repr=False)

    def admit(self) -> str | None:
        """None when the request may pass, else the Gateway's error message."""
        now = self.clock()
        accepted = self._accepted
        while accepted and now - accepted[0] >= 60.0:
            accepted.popleft()
        if self.per_minute is not None and len(accepted) >= self.per_minute:
            return f"policy user over ratelimit,limit:{self.per_minute},time:1 minute"
        if self.per_second is not None:
            recent = len(accepted) - bisect.bisect_right(accepted, now - 1.0)
            if recent >= self.per_second:
                return f"policy user over ratelimit,limit:{self.per_second},time:1 second"
        accepted.append(now)
        return None


@dataclass
class Faults:
    """Probabilities (0..1) of each fault per request; drawn from a generator seeded by `seed`."""

    error_rate: float = 0.0
    rate_429: float = 0.0
    retry_after: float = 1.0
    slow_rate: float = 0.0
    slow_seconds: float = 2.0
    malformed_rate: float = 0.0
    drop_rate: float = 0.0
    endpoints: frozenset[str] = ALL_FAULT_ENDPOINTS
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"faults:{self.seed}")

    def clear(self) -> None:
        """Switch every fault off and apply faults to the default endpoints again."""
        self.error_rate = self.rate_429 = self.slow_rate = 0.0
        self.malformed_rate = self.drop_rate = 0.0
        self.endpoints = ALL_FAULT_ENDPOINTS

    def draw(self) -> FaultDraw:
        """One uniform number per fault kind, always all five so a seed replays exactly."""
        rng = self._rng
        return FaultDraw(
            slow=rng.random() < self.slow_rate,
            drop=rng.random() < self.drop_rate,
            throttle=rng.random() < self.rate_429,
            error=rng.random() < self.error_rate,
            malformed=rng.random() < self.malformed_rate,
            variant=rng.randrange(1 << 16),
        )


@dataclass(frozen=True)
class FaultDraw:
    """Which faults hit one request; `variant` picks among the flavours of a fault."""

    slow: bool
    drop: bool
    throttle: bool
    error: bool
    malformed: bool
    variant: int


class RequestStats:
    """What the simulator received: counts per endpoint and service, concurrency, start times."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        """Forget everything recorded so far (requests still in flight stay counted as such)."""
        self._counts: Counter[tuple[str, str | None]] = Counter()
        self._starts: list[tuple[float, str]] = []
        self.in_flight_peak: int = self.in_flight
        self.auth_failures: int = 0
        self.signature_verified: int = 0
        self.throttled_starts: list[float] = []  # when each 429 of the quota was answered

    def throttle(self) -> None:
        """Record that the quota refused the request being served."""
        self.throttled_starts.append(self._clock())

    def throttled(self, since: float | None = None) -> int:
        """Requests the quota refused (since a monotonic time, when given)."""
        if since is None:
            return len(self.throttled_starts)
        return len(self.throttled_starts) - bisect.bisect_left(self.throttled_starts, since)

    def started(self, since: float | None = None) -> int:
        """Requests received (since a monotonic time, when given)."""
        if since is None:
            return len(self._starts)
        return len(self._starts) - bisect.bisect_left(self._starts, (since, ""))

    def begin(self, endpoint: str, service_id: str | None) -> None:
        """Record the start of one request."""
        self._counts[(endpoint, service_id)] += 1
        # Starts arrive in clock order on one event loop; insort keeps it true for any clock.
        bisect.insort(self._starts, (self._clock(), endpoint))
        self.in_flight += 1
        self.in_flight_peak = max(self.in_flight_peak, self.in_flight)

    def end(self) -> None:
        """Record that one request finished (answered, failed or dropped)."""
        self.in_flight -= 1

    def count(self, endpoint: str | None = None, service_id: str | None = None) -> int:
        """Requests received, optionally only for one endpoint and/or one service."""
        return sum(
            n
            for (ep, sid), n in self._counts.items()
            if (endpoint is None or ep == endpoint) and (service_id is None or sid == service_id)
        )

    def by_endpoint(self) -> dict[str, int]:
        """Requests received per endpoint (list, details, events, logs, token, other)."""
        totals: Counter[str] = Counter()
        for (endpoint, _), n in self._counts.items():
            totals[endpoint] += n
        return dict(totals)

    def max_in_any_window(
        self, seconds: float = 1.0, *, endpoints: Collection[str] | None = None
    ) -> int:
        """Most request starts within any half-open window [t, t+seconds) of monotonic time."""
        times = [t for t, ep in self._starts if endpoints is None or ep in endpoints]
        best = 0
        first = 0
        for last, t in enumerate(times):
            while t - times[first] >= seconds:
                first += 1
            best = max(best, last - first + 1)
        return best
