"""The polling loop: one task per project, cycles that never overlap, one snapshot per cycle.

The service list of each API generation is the heartbeat (SPEC §6): read once per cycle, it
brings every watched service's status (and, for v1, progress and invocation counters). Calls per
service follow change: details when the list entry changed, on the first poll and every
details_interval; events on the first poll, on a change, every cycle while the status is
transitional and every events_interval; v1 update logs as before; the v1 monitor every
monitor_interval while the service serves. A cycle spends at most what the request budget allows
in one interval; the rest waits for the next cycle, oldest data first.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from exporter.modelarts.errors import ApiError, ModelArtsError, NotFoundError
from exporter.modelarts.models import MonitorReading, ServiceDetails, ServiceSummary
from exporter.polling.events import UpdateTracker
from exporter.polling.snapshot import (
    EMPTY_SNAPSHOT,
    EndpointState,
    ProjectSummary,
    ServiceSnapshot,
    Snapshot,
    build,
)
from exporter.polling.sources import EventState, ServiceSource

log = logging.getLogger("exporter.poller")


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

    sources: tuple[ServiceSource, ...]  # the generations to use, v1 first
    services: tuple[str, ...] = ()
    discovery: DiscoveryRule = DiscoveryRule()

    @property
    def project_id(self) -> str:
        return self.sources[0].project_id


@dataclass(frozen=True)
class PollSettings:
    interval: float = 30.0
    details_interval: float = 300.0
    events_interval: float = 300.0
    monitor_interval: float = 60.0  # 0: off
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


def phase_of(service_id: str, salt: str) -> float:
    """A stable fraction in [0, 1) per service, to spread safety-net calls over their interval
    instead of making every service due in the same cycle."""
    digest = hashlib.sha256(f"{salt}:{service_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# Statuses after which nothing happens by itself: events are then only read on a change or by the
# safety net; in any other status (deploying, concerning, stopping...) every cycle (SPEC §6).
SETTLED = frozenset({"running", "stopped", "failed", "finished", "error"})
SERVING = frozenset({"running", "concerning"})


def _details_from_row(row: ServiceSummary) -> ServiceDetails:
    """What the list alone says about a service whose details were never read."""
    return ServiceDetails(
        service_id=row.service_id,
        service_name=row.service_name,
        infer_type=row.infer_type,
        workspace_id=row.workspace_id,
        cluster_id="",
        pool_name="",
        owner=row.owner,
        status=row.status,
        progress=row.progress,
        invocation_times=row.invocation_times,
        failed_times=row.failed_times,
        publish_at=row.publish_at,
        update_time=None,
        transition_at=row.transition_at,
        due_time=None,
        models=(),
        generation=row.generation,
    )


_V1_LISTED = ("progress", "invocation_times", "failed_times", "transition_at", "publish_at")


def _merge(details: ServiceDetails, row: ServiceSummary) -> ServiceDetails:
    """The details with what the (newer) list row says overlaid."""
    return _overlay(details, _changes(details, row))


def _changes(details: ServiceDetails, row: ServiceSummary) -> dict[str, object]:
    """The fields where the (newer) list row says something other than the details."""
    changes: dict[str, object] = {}
    status = row.status or details.status
    if status != details.status:
        changes["status"] = status
    if row.generation == "v2":
        if row.owner and row.owner != details.owner:
            changes["owner"] = row.owner
    else:
        for name in _V1_LISTED:
            value = getattr(row, name)
            if value is not None and value != getattr(details, name):
                changes[name] = value
    return changes


def _overlay(details: ServiceDetails, changes: Mapping[str, object]) -> ServiceDetails:
    """dataclasses.replace(details, **changes) without its per-field loop: the list's counters
    move at every cycle, so this runs for most of a fleet each cycle, and replace costs seven
    times as much. ServiceDetails is a plain frozen dataclass (no slots, no __post_init__): its
    state is its __dict__."""
    if not changes:
        return details
    merged = object.__new__(ServiceDetails)
    merged.__dict__.update(details.__dict__)
    merged.__dict__.update(changes)
    return merged


def _details_key(d: ServiceDetails) -> tuple[object, ...]:
    """A change key for a service no list covers (compared like a list row's change_key)."""
    return ("details", d.status, d.transition_at, d.publish_at, d.update_time)


_SUCCEEDED: list[EndpointState] = [EndpointState(True, None)]


def _succeeded(now: float) -> EndpointState:
    """A success at `now`: one object for every service that succeeded at that moment (every
    service a list covered shares its time), so the collector renders the time once."""
    outcome = _SUCCEEDED[0]
    if outcome.last_success != now:
        outcome = _SUCCEEDED[0] = build(
            EndpointState, success=True, last_success=now, last_attempt=now, error=""
        )
    return outcome


@dataclass
class ServiceState:
    """The poller's private, mutable memory of one service."""

    project_id: str
    service_id: str
    lookback_ms: int
    generation: str | None = None
    name: str = ""
    row: ServiceSummary | None = None  # its entry in the last list that covered it
    details: ServiceDetails | None = None  # from the last details call
    merged: ServiceDetails | None = None  # what is published: details overlaid with the row
    # what `merged` was made from: the row and the details, and what the row overlaid on them
    merged_row: ServiceSummary | None = None
    merged_base: ServiceDetails | None = None
    merged_changes: dict[str, object] | None = None
    details_key: tuple[object, ...] | None = None  # change key when details were last read
    details_due: float = 0.0  # monotonic: the next safety-net read
    events: EventState | None = None
    events_polled: bool = False
    events_key: tuple[object, ...] | None = None
    events_due: float = 0.0
    updates: UpdateTracker = field(default_factory=UpdateTracker)
    logs_polled: bool = False
    logs_fetched_at: float = 0.0  # monotonic
    logs_due: float = 0.0
    logs_for: tuple[float | None, str] | None = None  # (update_time, status) at the last fetch
    monitor: MonitorReading | None = None
    monitor_due: float = 0.0
    collect: dict[str, EndpointState] = field(default_factory=dict)
    snapshot: ServiceSnapshot | None = None

    def mark(self, endpoint: str, ok: bool, now: float, error: str = "") -> None:
        previous = self.collect.get(endpoint)
        if ok and previous is not None and previous.success and previous.last_success == now:
            return
        if ok:
            self.collect[endpoint] = _succeeded(now)
        else:
            self.collect[endpoint] = build(
                EndpointState,
                success=False,
                last_success=previous.last_success if previous else None,
                last_attempt=now,
                error=error,
            )
        self.snapshot = None

    @property
    def status(self) -> str:
        if self.merged is not None:
            return self.merged.status
        return self.row.status if self.row is not None else ""

    @property
    def change_key(self) -> tuple[object, ...] | None:
        if self.row is not None:
            return self.row.change_key
        return None if self.details is None else _details_key(self.details)

    def publish_details(self) -> None:
        """Recompute the published details from the last details and the last row."""
        row, details = self.row, self.details
        if self.merged is not None and row is self.merged_row and details is self.merged_base:
            return
        changes = None
        if details is None:
            merged = None if row is None else _details_from_row(row)
        elif row is None:
            merged = details
        else:
            changes = _changes(details, row)
            if (
                details is self.merged_base
                and changes == self.merged_changes
                and self.merged is not None
            ):
                # the same details overlaid with the same values: what is published, identity
                # kept (cheaper than comparing the merged dataclasses field by field)
                merged = self.merged
            else:
                merged = _overlay(details, changes)
        self.merged_row, self.merged_base, self.merged_changes = row, details, changes
        if merged is not self.merged:
            self.merged = merged
            self.snapshot = None
        if merged is not None and merged.service_name:
            self.name = merged.service_name


@dataclass
class _Cycle:
    """What one cycle of one project learnt from its lists."""

    sources: dict[str, ServiceSource]
    rows: dict[str, dict[str, ServiceSummary]] = field(default_factory=dict)  # listed gens
    failed: dict[str, str] = field(default_factory=dict)  # gen -> why its list read failed
    unavailable: dict[str, str] = field(default_factory=dict)  # gen -> 403/404 for the project


Publish = Callable[[Snapshot], None]


def _describe(err: ModelArtsError) -> str:
    """Plain words: "HTTP 503 ModelArts.3505: ...", "throttled (HTTP 429 APIG.0308)",
    "timed out after 10 s", "malformed response: ..."."""
    return err.reason


class Poller:
    """Runs the cycles and publishes snapshots; owns all mutable polling state."""

    def __init__(
        self,
        plans: Mapping[str, ProjectPlan],
        settings: PollSettings,
        *,
        on_cycle: Callable[[str, float], None] = lambda project_id, seconds: None,
        budget: Callable[[], float] = lambda: math.inf,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._plans = dict(plans)
        self._settings = settings
        self._on_cycle = on_cycle
        self._budget = budget  # requests per second the process allows itself now
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._states: dict[tuple[str, str], ServiceState] = {}
        self._discovered: dict[str, dict[str, tuple[str, ...]]] = {}
        self._gone: set[tuple[str, str]] = set()
        self._cycles_done: set[str] = set()
        self._summaries: dict[str, ProjectSummary] = {}
        self._snapshot: Snapshot = EMPTY_SNAPSHOT
        self._subscribers: list[Publish] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._cycle_failures: dict[str, Counter[str]] = {}
        self._cycle_example: dict[str, dict[str, str]] = {}
        self.carried_over: dict[str, int] = {}  # project -> services left for the next cycle

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

    async def replace(
        self,
        plans: Mapping[str, ProjectPlan],
        settings: PollSettings,
        *,
        budget: Callable[[], float] | None = None,
    ) -> None:
        """Apply a new configuration; state of services that stay watched is kept."""
        running = bool(self._tasks)
        await self.stop()
        if budget is not None:
            self._budget = budget
        self._plans = dict(plans)
        self._settings = settings
        for key in [k for k in self._states if k[0] not in self._plans]:
            del self._states[key]
        self._discovered = {k: v for k, v in self._discovered.items() if k in self._plans}
        self._summaries = {k: v for k, v in self._summaries.items() if k in self._plans}
        self._cycles_done &= set(self._plans)
        self._publish()
        if running:
            self.start()

    async def run_cycle(self, project_id: str) -> None:
        """One full poll of a project (tests call this directly instead of waiting)."""
        plan = self._plans[project_id]
        started = self._monotonic()
        self._cycle_failures[project_id] = Counter()
        cycle = _Cycle(sources={s.generation: s for s in plan.sources})
        try:
            await self._read_lists(project_id, plan, cycle)
            watched = self._watched(project_id, plan)
            keep = set(watched)
            for key in [k for k in self._states if k[0] == project_id and k[1] not in keep]:
                del self._states[key]
            self._gone = {g for g in self._gone if g[0] != project_id or g[1] in keep}
            await self._poll_all(project_id, cycle, watched)
        finally:
            self._report_failures(project_id)
            self._cycles_done.add(project_id)
            seconds = self._monotonic() - started
            previous = self._summaries.get(project_id)
            self._summaries[project_id] = ProjectSummary(
                project_id=project_id,
                generations=tuple(cycle.sources),
                cycles=(previous.cycles if previous else 0) + 1,
                last_cycle_seconds=seconds,
                last_cycle_finished=self._clock(),
                list_errors=MappingProxyType({**cycle.failed, **cycle.unavailable}),
            )
            self._on_cycle(project_id, seconds)
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

    # -- the heartbeat --------------------------------------------------------------------------

    async def _read_lists(self, project_id: str, plan: ProjectPlan, cycle: _Cycle) -> None:
        discovered = self._discovered.setdefault(project_id, {})
        rule = plan.discovery
        for source in plan.sources:
            generation = source.generation
            try:
                items = await source.list_services(rule.workspace_id)
            except ApiError as err:
                if err.status in (403, 404):
                    # No permission to list, or the generation is not offered here: its
                    # services (explicit ones, or those found before) are polled one details
                    # call each instead.
                    cycle.unavailable[generation] = _describe(err)
                    log.warning(
                        "service list unavailable; polling its services one by one",
                        extra={
                            "project_id": project_id,
                            "generation": generation,
                            "endpoint": source.list_endpoint,
                            "code": err.status,
                            "error": _describe(err),
                        },
                    )
                else:
                    self._list_failed(project_id, source, cycle, err)
                continue
            except ModelArtsError as err:
                self._list_failed(project_id, source, cycle, err)
                continue
            rows = {item.service_id: item for item in items}
            cycle.rows[generation] = rows
            discovered[generation] = (
                tuple(sid for sid, item in rows.items() if rule.accepts(item))
                if rule.enabled
                else ()
            )

    def _list_failed(
        self, project_id: str, source: ServiceSource, cycle: _Cycle, err: ModelArtsError
    ) -> None:
        cycle.failed[source.generation] = _describe(err)
        failures = self._cycle_failures.setdefault(project_id, Counter())
        if not failures:
            self._cycle_example[project_id] = {
                "endpoint": source.list_endpoint,
                "error": _describe(err),
            }
        failures[source.list_endpoint] += 1

    def _watched(self, project_id: str, plan: ProjectPlan) -> tuple[str, ...]:
        ids = dict.fromkeys(plan.services)
        for generation_ids in self._discovered.get(project_id, {}).values():
            ids.update(dict.fromkeys(generation_ids))
        s = self._settings
        return tuple(sid for sid in ids if in_shard(sid, s.shard, s.total_shards))

    # -- planning -------------------------------------------------------------------------------

    def _state(self, project_id: str, service_id: str) -> ServiceState:
        key = (project_id, service_id)
        state = self._states.get(key)
        if state is None:
            lookback_ms = int(self._settings.events_lookback * 1000)
            state = ServiceState(project_id, service_id, lookback_ms)
            self._states[key] = state
        return state

    def _take_row(self, state: ServiceState, cycle: _Cycle, now: float) -> bool:
        """Give the service what its generation's list said; True when a list covered it."""
        found = None
        if state.generation is not None:
            rows = cycle.rows.get(state.generation)
            found = None if rows is None else rows.get(state.service_id)
        if found is None:
            for generation, rows in cycle.rows.items():
                row = rows.get(state.service_id)
                if row is not None:
                    found = row
                    if state.generation != generation:
                        state.generation = generation
                        state.events = None
                        state.events_polled = False
                    break
        if found is None:
            if state.generation in cycle.failed:
                state.mark("details", False, now, f"list: {cycle.failed[state.generation]}")
            return False
        if found is not state.row:
            state.row = found
        state.mark("details", True, now)
        state.publish_details()
        return True

    def _due(self, state: ServiceState, cycle: _Cycle, covered: bool, now: float) -> list[str]:
        """The calls this service needs this cycle."""
        s = self._settings
        generation = state.generation
        if generation is None:
            return ["resolve"]
        due: list[str] = []
        key = state.change_key
        listing_failed = generation in cycle.failed
        if (
            state.details is None
            or (not covered and not listing_failed)
            or (covered and key != state.details_key)
            or now >= state.details_due
        ):
            due.append("details")
        status = state.status
        if (
            not state.events_polled
            or (covered and key != state.events_key)
            or status not in SETTLED
            or now >= state.events_due
        ):
            due.append("events")
        source = cycle.sources.get(generation)
        if source is not None and source.has_logs and self._logs_due(state, now):
            due.append("logs")
        if source is not None and source.has_monitor and s.monitor_interval > 0:
            if status in SERVING:
                if now >= state.monitor_due:
                    due.append("monitor")
            elif state.monitor is not None:
                state.monitor = None  # a service that stopped serving has no usage
                state.snapshot = None
        return due

    def _age(self, state: ServiceState, due: Sequence[str]) -> float:
        """When the oldest of the due data was last fetched (never: -inf), to serve it first."""
        oldest = math.inf
        for endpoint in due:
            collected = state.collect.get(endpoint)
            last = collected.last_success if collected else None
            if last is None:
                return -math.inf
            oldest = min(oldest, last)
        return oldest

    async def _poll_all(self, project_id: str, cycle: _Cycle, watched: Sequence[str]) -> None:
        """Plan the cycle's calls, oldest data first, within what the budget allows in one
        interval; a fixed pool of workers makes them (a handful of tasks per cycle instead of
        several per service, which at thousands of services is most of the event loop's work).
        """
        now = self._monotonic()
        clock = self._clock()
        work: list[tuple[float, int, ServiceState, list[str]]] = []
        states, gone = self._states, self._gone
        for index, service_id in enumerate(watched):
            key = (project_id, service_id)
            state = states.get(key) or self._state(project_id, service_id)
            covered = self._take_row(state, cycle, clock)
            if gone and key in gone:
                if covered:
                    gone.discard(key)
                elif state.generation is not None:
                    state.generation = None  # probe again: v1 first, then v2
            due = self._due(state, cycle, covered, now)
            if due:
                work.append((self._age(state, due), index, state, due))
        work.sort(key=lambda item: (item[0], item[1]))
        rate = self._budget()
        allowance = math.inf
        if math.isfinite(rate):
            listed = sum(max(1, math.ceil(len(rows) / 500)) for rows in cycle.rows.values())
            allowance = max(1.0, rate * self._settings.interval - listed)
        planned: list[tuple[ServiceState, list[str]]] = []
        spent = 0.0
        for _, _, state, due in work:
            cost = len(due) + (1 if due == ["resolve"] else 0)
            if planned and spent + cost > allowance:
                break
            planned.append((state, due))
            spent += cost
        self.carried_over[project_id] = len(work) - len(planned)
        pending = iter(planned)

        async def worker() -> None:
            for state, due in pending:  # the iterator is shared: each service is taken once
                try:
                    await self._poll_service(cycle, state, due)
                except Exception:  # a bug in one service's poll must not stop the others
                    log.exception(
                        "polling a service crashed", extra={"service_id": state.service_id}
                    )

        workers = max(1, min(self._settings.workers, len(planned)))
        if planned:
            await asyncio.gather(*(worker() for _ in range(workers)))

    # -- one service ----------------------------------------------------------------------------

    async def _poll_service(self, cycle: _Cycle, state: ServiceState, due: list[str]) -> None:
        key = (state.project_id, state.service_id)
        if due == ["resolve"]:
            if not await self._resolve(cycle, state):
                return
            due = [d for d in self._due(state, cycle, False, self._monotonic()) if d != "details"]
        source = cycle.sources.get(state.generation or "")
        if source is None:
            return
        if "details" in due:
            await self._poll_details(source, state)
        if key in self._gone:
            return
        if "events" in due:
            await self._poll_events(source, state)
        if key in self._gone:
            return
        # Details just read may show a new update_time: the log is then read in this cycle.
        if (
            source.has_logs
            and state.details is not None
            and ("logs" in due or self._logs_due(state, self._monotonic()))
        ):
            await self._poll_logs(source, state)
        if "monitor" in due:
            await self._poll_monitor(source, state)

    async def _resolve(self, cycle: _Cycle, state: ServiceState) -> bool:
        """Find the generation of a service no list shows: v1 first, then v2 on a 404."""
        error: ModelArtsError | None = None
        for generation, source in cycle.sources.items():
            try:
                details = await source.get_details(state.service_id)
            except NotFoundError:
                continue
            except ModelArtsError as err:
                error = err
                continue
            state.generation = generation
            state.events = None
            state.events_polled = False
            self._gone.discard((state.project_id, state.service_id))
            self._take_details(source, state, details)
            return True
        if error is not None:
            self._failed(state, "details", error)
            return False
        self._lost(state)
        return False

    def _lost(self, state: ServiceState) -> None:
        key = (state.project_id, state.service_id)
        if key not in self._gone:
            log.info(
                "service not found; dropping its series",
                extra={"project_id": state.project_id, "service_id": state.service_id},
            )
        self._gone.add(key)
        self._states.pop(key, None)

    def _take_details(self, source: ServiceSource, state: ServiceState, d: ServiceDetails) -> None:
        now = self._monotonic()
        first = state.details is None
        state.details = d
        state.details_key = state.change_key
        interval = self._settings.details_interval
        spread = phase_of(state.service_id, "details") if first else 1.0
        state.details_due = now + interval * spread
        state.mark("details", True, self._clock())
        state.publish_details()

    async def _poll_details(self, source: ServiceSource, state: ServiceState) -> None:
        try:
            details = await source.get_details(state.service_id)
        except NotFoundError:
            self._lost(state)
            return
        except ModelArtsError as err:
            self._failed(state, "details", err)
            return
        self._take_details(source, state, details)

    async def _poll_events(self, source: ServiceSource, state: ServiceState) -> None:
        if state.events is None:
            state.events = source.new_events(state.lookback_ms)
        key = state.change_key
        try:
            await source.poll_events(state.service_id, state.events)
        except ModelArtsError as err:
            self._failed(state, "events", err)
            return
        first = not state.events_polled
        state.events_polled = True
        state.events_key = key
        spread = phase_of(state.service_id, "events") if first else 1.0
        state.events_due = self._monotonic() + self._settings.events_interval * spread
        state.mark("events", True, self._clock())
        state.snapshot = None

    def _logs_due(self, state: ServiceState, now: float) -> bool:
        if not state.logs_polled:
            return True
        details = state.merged or state.details
        if details is not None and state.logs_for != (details.update_time, details.status):
            return True
        if state.updates.newest_is_running:
            recheck = min(self._settings.running_update_recheck, self._settings.logs_interval)
            return now - state.logs_fetched_at >= recheck
        return now >= state.logs_due

    async def _poll_logs(self, source: ServiceSource, state: ServiceState) -> None:
        details = state.merged or state.details
        try:
            records = await source.get_update_logs(state.service_id)
        except NotFoundError:
            return  # the next details call decides whether the service is gone
        except ModelArtsError as err:
            self._failed(state, "logs", err)
            return
        first = not state.logs_polled
        state.updates.apply(records)
        state.logs_polled = True
        now = self._monotonic()
        state.logs_fetched_at = now
        spread = phase_of(state.service_id, "logs") if first else 1.0
        state.logs_due = now + self._settings.logs_interval * spread
        if details is not None:
            state.logs_for = (details.update_time, details.status)
        state.mark("logs", True, self._clock())
        state.snapshot = None

    async def _poll_monitor(self, source: ServiceSource, state: ServiceState) -> None:
        try:
            reading = await source.get_monitor(state.service_id)
        except NotFoundError:
            return
        except ModelArtsError as err:
            self._failed(state, "monitor", err)
            return
        state.monitor = reading
        state.monitor_due = self._monotonic() + self._settings.monitor_interval
        state.mark("monitor", True, self._clock())
        state.snapshot = None

    def _failed(self, state: ServiceState, endpoint: str, err: ModelArtsError) -> None:
        state.mark(endpoint, False, self._clock(), _describe(err))
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
        """Data is served until its endpoint has failed for stale_after since the last
        success. Data that is merely old (its call waits for budget or for its safety net) is
        still the latest the API gave: it is served, never turned into a hole."""
        collected = state.collect.get(endpoint)
        if collected is None or collected.last_success is None:
            return False
        return collected.success or now - collected.last_success <= self._settings.stale_after

    def _service_snapshot(self, state: ServiceState, now: float) -> ServiceSnapshot:
        details_fresh = state.merged is not None and self._fresh(state, "details", now)
        events_fresh = (
            state.events_polled and state.events is not None and self._fresh(state, "events", now)
        )
        updates_ok = state.logs_polled and details_fresh
        monitor_ok = state.monitor is not None and self._fresh(state, "monitor", now)
        previous = state.snapshot
        if (
            previous is not None
            and (previous.details is not None) == details_fresh
            and (previous.events is not None) == events_fresh
            and (previous.updates is not None) == updates_ok
            and (previous.monitor is not None) == monitor_ok
        ):
            return previous
        snap = build(
            ServiceSnapshot,
            project_id=state.project_id,
            service_id=state.service_id,
            service_name=state.name,
            details=state.merged if details_fresh else None,
            events=state.events.totals() if events_fresh and state.events else None,
            updates=state.updates.totals() if updates_ok else None,
            collect=MappingProxyType(dict(state.collect)),
            generation=state.generation or "",
            monitor=state.monitor if monitor_ok else None,
            status=state.status,
        )
        state.snapshot = snap
        return snap

    def _publish(self) -> None:
        now = self._clock()
        services = tuple(
            self._service_snapshot(s, now) for s in self._states.values() if s.generation
        )
        watched: Counter[str] = Counter()
        for project_id, plan in self._plans.items():
            ids = self._watched(project_id, plan)
            gone = self._gone
            watched[project_id] = (
                sum(1 for sid in ids if (project_id, sid) not in gone) if gone else len(ids)
            )
        self._snapshot = Snapshot(
            services=services,
            watched=MappingProxyType(dict(watched)),
            projects=MappingProxyType(dict(self._summaries)),
            published_at=now,
        )
        for callback in self._subscribers:
            callback(self._snapshot)


__all__: Sequence[str] = [
    "DiscoveryRule",
    "PollSettings",
    "Poller",
    "ProjectPlan",
    "in_shard",
    "phase_of",
]
