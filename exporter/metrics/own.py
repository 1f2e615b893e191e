"""The exporter's own process-wide metrics, on a private registry (never the global one)."""

from __future__ import annotations

import platform
from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector

from exporter import __version__
from exporter.metrics import catalogue as cat
from exporter.metrics.catalogue import MetricSpec

API_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
POLL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def _base(spec: MetricSpec) -> str:
    # prometheus_client appends "_total" to counters itself.
    return spec.name.removesuffix("_total") if spec.type == "counter" else spec.name


class ExporterMetrics:
    """Implements the client's ApiObserver and the poller's cycle hook."""

    def __init__(self) -> None:
        # *_created series double the output for no use here.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        build = Gauge(_base(cat.BUILD_INFO), cat.BUILD_INFO.help, cat.BUILD_INFO.labels, registry=r)
        build.labels(__version__, platform.python_version()).set(1)
        self._requests = Counter(
            _base(cat.API_REQUESTS), cat.API_REQUESTS.help, cat.API_REQUESTS.labels, registry=r
        )
        self._duration = Histogram(
            _base(cat.API_DURATION),
            cat.API_DURATION.help,
            cat.API_DURATION.labels,
            buckets=API_BUCKETS,
            registry=r,
        )
        self._retries = Counter(
            _base(cat.API_RETRIES), cat.API_RETRIES.help, cat.API_RETRIES.labels, registry=r
        )
        self._poll = Histogram(
            _base(cat.POLL_DURATION),
            cat.POLL_DURATION.help,
            cat.POLL_DURATION.labels,
            buckets=POLL_BUCKETS,
            registry=r,
        )
        self._refreshes = Counter(_base(cat.TOKEN_REFRESHES), cat.TOKEN_REFRESHES.help, registry=r)
        self._refresh_failures = Counter(
            _base(cat.TOKEN_REFRESH_FAILURES), cat.TOKEN_REFRESH_FAILURES.help, registry=r
        )
        self._reload_ok = Gauge(_base(cat.CONFIG_RELOAD_OK), cat.CONFIG_RELOAD_OK.help, registry=r)
        self._reload_ok.set(1)
        self._throttled = Counter(
            _base(cat.API_THROTTLED), cat.API_THROTTLED.help, cat.API_THROTTLED.labels, registry=r
        )
        self.throttled_total = 0  # for the landing page
        self.rate_limit: Callable[[], float] | None = None  # set by the app: the limiter's rate
        rate = Gauge(_base(cat.API_RATE_LIMIT), cat.API_RATE_LIMIT.help, registry=r)
        rate.set_function(lambda: self.rate_limit() if self.rate_limit else float("nan"))
        self._request_children: dict[tuple[str, str], Counter] = {}
        self._duration_children: dict[str, Histogram] = {}

    # ApiObserver
    def request_done(self, endpoint: str, code: str, seconds: float) -> None:
        # labels() locks and hashes on every call; the children are looked up once.
        counter = self._request_children.get((endpoint, code))
        if counter is None:
            counter = self._request_children[(endpoint, code)] = self._requests.labels(
                endpoint, code
            )
        histogram = self._duration_children.get(endpoint)
        if histogram is None:
            histogram = self._duration_children[endpoint] = self._duration.labels(endpoint)
        counter.inc()
        histogram.observe(seconds)

    def retried(self, endpoint: str) -> None:
        self._retries.labels(endpoint).inc()

    def throttled(self, endpoint: str) -> None:
        self._throttled.labels(endpoint).inc()
        self.throttled_total += 1

    def token_refreshed(self, ok: bool) -> None:
        (self._refreshes if ok else self._refresh_failures).inc()

    # poller hook
    def poll_cycle(self, project_id: str, seconds: float) -> None:
        self._poll.labels(project_id).observe(seconds)

    def reload_result(self, ok: bool) -> None:
        self._reload_ok.set(1 if ok else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
