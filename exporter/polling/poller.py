"""The polling loop: one task per project, cycles that never overlap, one snapshot per cycle.

Per watched service and cycle: one details call and one events call (from the newest seen event
minus the lookback); the update log only on the first poll, when the details' update_time or status
changed, every logs_interval as a safety net, and at most once a minute while the newest update
record is still RUNNING.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from exporter.modelarts.errors import ModelArtsError, NotFoundError
from exporter.modelarts.models import EventRead, ServiceDetails, ServiceSummary, UpdateRecord
from exporter.polling.events import EventCursor, UpdateTracker
from exporter.polling.snapshot import EMPTY_SNAPSHOT, EndpointState, ServiceSnapshot, Snapshot

log = logging.getLogger("exporter.poller")


class ServiceSource(Protocol):
    """What the poller needs from the cloud client of one project."""

    project_id: str

    async def get_details(self, service_id: str) -> ServiceDetails: ...

    async def list_events(
        self, service_id: str, start_time: int | None, *, previous: bytes | None = None
    ) -> EventRead: ...

    async def get_update_logs(self, service_id: str) -> tuple[UpdateRecord, ...]: ...

    async def list_services(self, workspace_id: str | None = None) -> list[ServiceSummary]: ...


@dataclass(frozen=True)
class DiscoveryRule:
    enabled: bool = False
    workspace_id: str | None = None
    infer_types: tuple[str, ...] = ()
    name_pattern: re.Pattern[str] | None = None
    statuses: tuple[str, ...] = ()

    def accepts(self, item: ServiceSummary) -> bool:
        if self.infer_types and item.infer_type not in self.infer_types:
            return False
        if self.statuses and item.status not in self.statuses:
            return False
        return self.name_pattern is None or bool(self.name_pattern.search(item.service_name))


@dataclass(frozen=True)
class ProjectPlan:
    """What to watch in one project and through which source."""

    source: ServiceSource
    services: tuple[str, ...] = ()
    discovery: DiscoveryRule = DiscoveryRule()


@dataclass(frozen=True)
class PollSettings:
    interval: float = 30.0
    logs_interval: float = 600.0
    discovery_interval: float = 300.0
    stale_after: float = 300.0
    events_lookback: float = 600.0
    # While the newest update record is RUNNING its log is re-read at most this often, so a
    # finished update is counted promptly even when the details do not change with it.
    running_update_recheck: float = 60.0
    workers: int = 16  # services polled at the same time (the client caps requests in flight)
    shard: int = 0
    total_shards: int = 1


def in_shard(service_id: str, shard: int, total_shards: int) -> bool:
    """Stable across processes and Python versions (unlike hash())."""
    if total_shards <= 1:
        return True
    digest = hashlib.sha256(service_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % total_shards == shard


@dataclass
class ServiceState:
    """The poller's private, mutable memory of one service."""

    project_id: str
    service_id: str
    lookback_ms: int
    name: str = ""
    details: ServiceDetails | None = None
    cursor: EventCursor = field(init=False)
    events_polled: bool = False
    events_fingerprint: bytes | None = None  # of the last one-page events read
    updates: UpdateTracker = field(default_factory=UpdateTracker)
    logs_polled: bool = False
    logs_fetched_at: float = 0.0  # monotonic
    logs_for: tuple[float | None, str] | None = None  # (update_time, status) seen at the last fetch
    collect: dict[str, EndpointState] = field(default_factory=dict)
    snapshot: ServiceSnapshot | None = None

    def __post_init__(self) -> None:
        self.cursor = EventCursor(self.lookback_ms)

    def mark(self, endpoint: str, ok: bool, now: float) -> None:
        previous = self.collect.get(endpoint)
        last = now if ok else (previous.last_success if previous else None)
        self.collect[endpoint] = EndpointState(success=ok, last_success=last)
        self.snapshot = None


Publish = Callable[[Snapshot], None]


class Poller:
    """Runs the cycles and publishes snapshots; owns all mutable polling state."""

    def __init__(
        self,
        plans: Mapping[str, ProjectPlan],
        settings: PollSettings,
        *,
        on_cycle: Callable[[str, float], None] = lambda project_id, seconds: None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._plans = dict(plans)
        self._settings = settings
        self._on_cycle = on_cycle
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._states: dict[tuple[str, str], ServiceState] = {}
        self._discovered: dict[str, tuple[str, ...]] = {}
        self._discovered_at: dict[str, float] = {}
        self._gone: set[tuple[str, str]] = set()
        self._cycles_done: set[str] = set()
        self._snapshot: Snapshot = EMPTY_SNAPSHOT
        self._subscribers: list[Publish] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._cycle_failures: dict[str, Counter[str]] = {}
        self._cycle_example: dict[str, dict[str, str]] = {}

    # -- public ---------------------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def project_ids(self) -> tuple[str, ...]:
        return tuple(self._plans)

    @property
    def ready(self) -> bool:
        """True once every project finished its first cycle, successful or not."""
        return set(self._plans) <= self._cycles_done

    def subscribe(self, callback: Publish) -> None:
        self._subscribers.append(callback)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(project_id), name=f"poll:{project_id}")
            for project_id in self._plans
        ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def replace(self, plans: Mapping[str, ProjectPlan], settings: PollSettings) -> None:
        """Apply a new configuration; state of services that stay watched is kept."""
        running = bool(self._tasks)
        await self.stop()
        self._plans = dict(plans)
        self._settings = settings
        for key in [k for k in self._states if k[0] not in self._plans]:
            del self._states[key]
        self._discovered = {k: v for k, v in self._discovered.items() if k in self._plans}
        self._discovered_at = {}
        self._cycles_done &= set(self._plans)
        self._publish()
        if running:
            self.start()

    async def run_cycle(self, project_id: str) -> None:
        """One full poll of a project (tests call this directly instead of waiting)."""
        plan = self._plans[project_id]
        started = self._monotonic()
        self._cycle_failures[project_id] = Counter()
        try:
            await self._maybe_discover(project_id, plan)
            watched = self._watched(project_id, plan)
            keep = set(watched)
            for key in [k for k in self._states if k[0] == project_id and k[1] not in keep]:
                del self._states[key]
            self._gone = {g for g in self._gone if g[0] != project_id or g[1] in keep}
            await self._poll_all(plan, watched)
        finally:
            self._report_failures(project_id)
            self._cycles_done.add(project_id)
            self._on_cycle(project_id, self._monotonic() - started)
            self._publish()

    def _report_failures(self, project_id: str) -> None:
        failures = self._cycle_failures.pop(project_id, None)
        example = self._cycle_example.pop(project_id, {})
        if failures:
            log.warning(
                "poll cycle had failures",
                extra={
                    "project_id": project_id,
                    **{f"failed_{endpoint}": n for endpoint, n in sorted(failures.items())},
                    "example_service_id": example.get("service_id", ""),
                    "example_endpoint": example.get("endpoint", ""),
                    "example_error": example.get("error", ""),
                },
            )

    async def _poll_all(self, plan: ProjectPlan, watched: Sequence[str]) -> None:
        """A fixed pool of workers walks the services: a handful of tasks per cycle instead of
        several per service, which at thousands of services is most of the event loop's work."""
        pending = iter(watched)

        async def worker() -> None:
            for service_id in pending:  # the iterator is shared: each service is taken once
                try:
                    await self._poll_service(plan, service_id)
                except Exception:  # a bug in one service's poll must not stop the others
                    log.exception("polling a service crashed", extra={"service_id": service_id})

        workers = max(1, min(self._settings.workers, len(watched)))
        await asyncio.gather(*(worker() for _ in range(workers)))

    # -- loop -----------------------------------------------------------------------------------

    async def _run(self, project_id: str) -> None:
        while True:
            started = self._monotonic()
            try:
                await self.run_cycle(project_id)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not end polling for good; it is logged with its trace
                log.exception("poll cycle crashed", extra={"project_id": project_id})
            # Cycles never overlap: a slow cycle delays the next one instead of piling up.
            await self._sleep(max(0.0, self._settings.interval - (self._monotonic() - started)))

    # -- discovery ------------------------------------------------------------------------------

    def _watched(self, project_id: str, plan: ProjectPlan) -> tuple[str, ...]:
        ids = dict.fromkeys(plan.services)
        ids.update(dict.fromkeys(self._discovered.get(project_id, ())))
        s = self._settings
        return tuple(sid for sid in ids if in_shard(sid, s.shard, s.total_shards))

    async def _maybe_discover(self, project_id: str, plan: ProjectPlan) -> None:
        rule = plan.discovery
        if not rule.enabled:
            self._discovered.pop(project_id, None)
            return
        last = self._discovered_at.get(project_id)
        now = self._monotonic()
        if last is not None and now - last < self._settings.discovery_interval:
            return
        try:
            items = await plan.source.list_services(rule.workspace_id)
        except ModelArtsError as err:
            log.warning(
                "discovery failed; keeping the previous service list",
                extra={"project_id": project_id, "endpoint": "list", "error": str(err)},
            )
            return
        self._discovered_at[project_id] = now
        self._discovered[project_id] = tuple(i.service_id for i in items if rule.accepts(i))
        log.debug(
            "discovery done",
            extra={"project_id": project_id, "services": len(self._discovered[project_id])},
        )

    # -- one service ----------------------------------------------------------------------------

    def _state(self, project_id: str, service_id: str) -> ServiceState:
        key = (project_id, service_id)
        state = self._states.get(key)
        if state is None:
            lookback_ms = int(self._settings.events_lookback * 1000)
            state = ServiceState(project_id, service_id, lookback_ms)
            self._states[key] = state
        return state

    async def _poll_service(self, plan: ProjectPlan, service_id: str) -> None:
        project_id = plan.source.project_id
        key = (project_id, service_id)
        if key in self._gone:
            # A 404'd service is only asked for its details until it comes back.
            try:
                details = await plan.source.get_details(service_id)
            except ModelArtsError:
                return
            self._gone.discard(key)
            state = self._state(project_id, service_id)
            self._take_details(state, details)
        state = self._state(project_id, service_id)
        details_ok = await self._poll_details(plan.source, state)
        if key in self._gone:
            return
        await self._poll_events(plan.source, state)
        if key in self._gone:
            return
        if details_ok and self._logs_due(state):
            await self._poll_logs(plan.source, state)

    def _take_details(self, state: ServiceState, details: ServiceDetails) -> None:
        state.details = details
        if details.service_name:
            state.name = details.service_name
        state.mark("details", True, self._clock())

    async def _poll_details(self, source: ServiceSource, state: ServiceState) -> bool:
        try:
            details = await source.get_details(state.service_id)
        except NotFoundError:
            log.info(
                "service not found; dropping its series",
                extra={"project_id": state.project_id, "service_id": state.service_id},
            )
            key = (state.project_id, state.service_id)
            self._gone.add(key)
            self._states.pop(key, None)
            return False
        except ModelArtsError as err:
            self._failed(state, "details", err)
            return False
        self._take_details(state, details)
        return True

    async def _poll_events(self, source: ServiceSource, state: ServiceState) -> None:
        try:
            read = await source.list_events(
                state.service_id, state.cursor.query_start(), previous=state.events_fingerprint
            )
        except ModelArtsError as err:
            self._failed(state, "events", err)
            return
        if read.events is not None:
            state.cursor.apply(read.events)
        state.events_fingerprint = read.fingerprint
        state.events_polled = True
        state.mark("events", True, self._clock())

    def _logs_due(self, state: ServiceState) -> bool:
        if not state.logs_polled:
            return True
        details = state.details
        if details is not None and state.logs_for != (details.update_time, details.status):
            return True
        age = self._monotonic() - state.logs_fetched_at
        if state.updates.newest_is_running:
            return age >= min(self._settings.running_update_recheck, self._settings.logs_interval)
        return age >= self._settings.logs_interval

    async def _poll_logs(self, source: ServiceSource, state: ServiceState) -> None:
        details = state.details
        try:
            records = await source.get_update_logs(state.service_id)
        except NotFoundError:
            return  # the next details call decides whether the service is gone
        except ModelArtsError as err:
            self._failed(state, "logs", err)
            return
        state.updates.apply(records)
        state.logs_polled = True
        state.logs_fetched_at = self._monotonic()
        if details is not None:
            state.logs_for = (details.update_time, details.status)
        state.mark("logs", True, self._clock())

    def _failed(self, state: ServiceState, endpoint: str, err: ModelArtsError) -> None:
        state.mark(endpoint, False, self._clock())
        fields = {
            "project_id": state.project_id,
            "service_id": state.service_id,
            "endpoint": endpoint,
            "error": str(err),
        }
        # One line per failure at debug; the cycle summary at warning keeps an outage of
        # thousands of services to one line per cycle.
        log.debug("poll failed", extra=fields)
        failures = self._cycle_failures.setdefault(state.project_id, Counter())
        if not failures:
            self._cycle_example[state.project_id] = fields
        failures[endpoint] += 1

    # -- publishing -----------------------------------------------------------------------------

    def _fresh(self, state: ServiceState, endpoint: str, now: float) -> bool:
        collected = state.collect.get(endpoint)
        last = collected.last_success if collected else None
        return last is not None and now - last <= self._settings.stale_after

    def _service_snapshot(self, state: ServiceState, now: float) -> ServiceSnapshot:
        details_fresh = state.details is not None and self._fresh(state, "details", now)
        events_fresh = state.events_polled and self._fresh(state, "events", now)
        updates_ok = state.logs_polled and details_fresh
        previous = state.snapshot
        if (
            previous is not None
            and (previous.details is not None) == details_fresh
            and (previous.events is not None) == events_fresh
            and (previous.updates is not None) == updates_ok
        ):
            return previous
        snap = ServiceSnapshot(
            project_id=state.project_id,
            service_id=state.service_id,
            service_name=state.name,
            details=state.details if details_fresh else None,
            events=state.cursor.totals() if events_fresh else None,
            updates=state.updates.totals() if updates_ok else None,
            collect=MappingProxyType(dict(state.collect)),
        )
        state.snapshot = snap
        return snap

    def _publish(self) -> None:
        now = self._clock()
        services = tuple(self._service_snapshot(s, now) for s in self._states.values())
        watched: Counter[str] = Counter()
        for project_id, plan in self._plans.items():
            ids = self._watched(project_id, plan)
            watched[project_id] = sum(1 for sid in ids if (project_id, sid) not in self._gone)
        self._snapshot = Snapshot(services=services, watched=MappingProxyType(dict(watched)))
        for callback in self._subscribers:
            callback(self._snapshot)


__all__: Sequence[str] = ["DiscoveryRule", "PollSettings", "Poller", "ProjectPlan", "in_shard"]
