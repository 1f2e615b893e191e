"""Composition root: builds the HTTP client, credentials, clients, poller, metrics and web app,
and owns their lifecycle (aiohttp cleanup_ctx) and configuration reloads."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from exporter import __version__
from exporter.config import Config, ConfigError
from exporter.metrics.collector import Exposition
from exporter.metrics.own import ExporterMetrics
from exporter.modelarts.auth import build_auth
from exporter.modelarts.client import ModelArtsClient, RetryPolicy
from exporter.modelarts.limits import RequestLimiter
from exporter.modelarts.proxy import proxy_for
from exporter.modelarts.transport import Transport
from exporter.polling.poller import DiscoveryRule, Poller, PollSettings, ProjectPlan
from exporter.polling.snapshot import EMPTY_SNAPSHOT
from exporter.polling.sources import ServiceSource, V1Source, V2Source
from exporter.status import RateView, StatusBoard
from exporter.web import WebHandlers, create_web_app

log = logging.getLogger("exporter")

ConfigLoader = Callable[[], Config]


@dataclass(frozen=True)
class RunOptions:
    telemetry_path: str = "/metrics"
    shard: int = 0
    total_shards: int = 1
    enable_lifecycle: bool = False  # POST /-/reload (SIGHUP always reloads)


def client_ssl_context(config: Config) -> ssl.SSLContext:
    """Verification is always on; tls.ca_file adds a private CA to the system roots."""
    context = ssl.create_default_context()
    if config.tls.ca_file:
        context.load_verify_locations(cafile=config.tls.ca_file)
    return context


class Exporter:
    """Everything that runs between configuration and the HTTP layer."""

    def __init__(
        self,
        config: Config,
        options: RunOptions,
        *,
        loader: ConfigLoader | None = None,
        metrics: ExporterMetrics | None = None,
    ) -> None:
        self.config = config
        self.options = options
        self._loader = loader
        self.metrics = metrics or ExporterMetrics()
        self.exposition = Exposition(self.metrics.render)
        self._http: Transport | None = None
        self.poller: Poller | None = None
        self._reload_lock = asyncio.Lock()
        self._limiters: list[RequestLimiter] = []
        self.status = StatusBoard(
            lambda: self.poller.snapshot if self.poller else EMPTY_SNAPSHOT, rate=self._rate_view
        )

    # -- building -------------------------------------------------------------------------------

    def create_http(self, config: Config) -> Transport:
        # Proxies come from the environment once per endpoint (modelarts.proxy), not per request.
        # Connections: the limiter's concurrency, plus one IAM login per project.
        return Transport(
            client_ssl_context(config),
            user_agent=f"modelarts-exporter/{__version__}",
            connections=config.polling.max_concurrency + len(config.projects),
        )

    def _plans(
        self, config: Config, http: Transport
    ) -> tuple[dict[str, ProjectPlan], RequestLimiter]:
        """Everything a poller needs for `config`; no side effect on the running exporter."""
        p = config.polling
        # The budget is the account's: each of N shards allows itself a share of it.
        limiter = RequestLimiter(
            p.max_concurrency,
            p.max_requests_per_second / max(1, self.options.total_shards),
            quiet_period=p.interval,
        )
        retry = RetryPolicy(retries=p.retries)
        plans = {}
        for project in config.projects:
            auth = build_auth(
                config.auth, project, http=http, timeout=p.timeout, observer=self.metrics
            )
            client = ModelArtsClient(
                http,
                endpoint=project.endpoint,
                proxy=proxy_for(project.endpoint),
                project_id=project.project_id,
                auth=auth,
                limiter=limiter,
                observer=self.metrics,
                timeout=p.timeout,
                retry=retry,
            )
            d = project.discovery
            sources: list[ServiceSource] = []
            if "v1" in project.generations:
                sources.append(V1Source(client))
            if "v2" in project.generations:
                sources.append(V2Source(client))
            plans[project.project_id] = ProjectPlan(
                sources=tuple(sources),
                services=project.services,
                discovery=DiscoveryRule(
                    enabled=d.enabled,
                    workspace_id=project.workspace_id,
                    infer_types=d.infer_types,
                    name_pattern=d.name_pattern,
                    statuses=d.statuses,
                ),
            )
        return plans, limiter

    def _settings(self, config: Config) -> PollSettings:
        p = config.polling
        return PollSettings(
            interval=p.interval,
            details_interval=p.details_interval,
            events_interval=p.events_interval,
            monitor_interval=p.monitor_interval,
            logs_interval=p.logs_interval,
            discovery_interval=p.discovery_interval,
            stale_after=p.stale_after,
            events_lookback=p.events_lookback,
            # Twice the request cap, so workers waiting in a retry backoff do not idle the budget.
            workers=max(4, 2 * p.max_concurrency),
            shard=self.options.shard,
            total_shards=self.options.total_shards,
        )

    # -- lifecycle ------------------------------------------------------------------------------

    def create_poller(self, config: Config, http: Transport) -> Poller:
        """A poller for `config` whose snapshots feed this exporter's exposition (not started)."""
        plans, limiter = self._plans(config, http)
        self._limiters.append(limiter)
        poller = Poller(
            plans,
            self._settings(config),
            on_cycle=self.metrics.poll_cycle,
            budget=lambda: limiter.rate,
        )
        self.metrics.rate_limit = lambda: limiter.rate
        poller.subscribe(self.exposition.update)
        return poller

    async def start(self) -> None:
        self._http = self.create_http(self.config)
        self.poller = self.create_poller(self.config, self._http)
        self.poller.start()
        log.info(
            "polling started",
            extra={
                "projects": len(self.config.projects),
                "interval": self.config.polling.interval,
                "shard": f"{self.options.shard}/{self.options.total_shards}",
            },
        )

    def _close_limiters(self, keep: int = 0) -> None:
        """Close all but the `keep` newest limiters."""
        old = self._limiters[: len(self._limiters) - keep] if keep else self._limiters
        for limiter in old:
            limiter.close()
        self._limiters = self._limiters[len(old) :]

    async def stop(self) -> None:
        if self.poller is not None:
            await self.poller.stop()
        self._close_limiters()
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _rate_view(self) -> RateView | None:
        if not self._limiters:
            return None
        limiter = self._limiters[-1]
        return RateView(limiter.rate, limiter.budget, self.metrics.throttled_total)

    def ready(self) -> bool:
        return self.poller is not None and self.poller.ready

    async def reload(self) -> tuple[bool, str]:
        """Re-read the configuration and apply it whole, or not at all.

        Every new part (HTTP client, credentials, clients, limiter, plans) is built before
        anything running is touched; if any of it fails, what was built is closed and the
        running configuration carries on."""
        if self._loader is None:
            return False, "reload not available: no configuration file"
        async with self._reload_lock:
            try:
                config = self._loader()
            except ConfigError as err:
                return self._reload_failed("invalid configuration", str(err))
            http: Transport | None = None
            try:
                http = self.create_http(config)
                plans, limiter = self._plans(config, http)
                settings = self._settings(config)
            except Exception as err:  # whatever building raises, the old parts stay
                if http is not None:
                    await http.close()
                return self._reload_failed("cannot apply the configuration", _reason(err))
            assert self.poller is not None
            old_http = self._http
            self._http = http
            self._limiters.append(limiter)
            await self.poller.replace(plans, settings, budget=lambda: limiter.rate)
            self.metrics.rate_limit = lambda: limiter.rate
            self._close_limiters(keep=1)
            self.config = config
            if old_http is not None:
                await old_http.close()
            self.metrics.reload_result(True)
            log.info("configuration reloaded", extra={"projects": len(config.projects)})
            return True, "configuration reloaded"

    def _reload_failed(self, what: str, reason: str) -> tuple[bool, str]:
        self.metrics.reload_result(False)
        log.error(
            "reload failed; keeping the running configuration",
            extra={"stage": what, "problems": reason},
        )
        return False, f"{what}:\n{reason}"

    def handlers(self) -> WebHandlers:
        return WebHandlers(
            metrics_body=lambda gz: self.exposition.chunks(gzipped=gz),
            ready=self.ready,
            reload=self.reload,
            telemetry_path=self.options.telemetry_path,
            status_html=self.status.html,
            status_json=self.status.json,
            summary_html=self.status.summary,
            lifecycle=self.options.enable_lifecycle,
        )


def _reason(err: Exception) -> str:
    if isinstance(err, ssl.SSLError):
        return f"TLS: {err.reason or err.strerror or err}"
    if isinstance(err, OSError) and err.strerror:
        return f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    return f"{type(err).__name__}: {err}"


EXPORTER_KEY: web.AppKey[Exporter] = web.AppKey("exporter")


def build_app(exporter: Exporter, *, middlewares: tuple[Middleware, ...] = ()) -> web.Application:
    """The web application with the exporter's lifecycle attached."""
    app = create_web_app(exporter.handlers(), middlewares=middlewares)
    app[EXPORTER_KEY] = exporter

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await exporter.start()
        try:
            yield
        finally:
            await exporter.stop()

    app.cleanup_ctx.append(lifecycle)
    return app
