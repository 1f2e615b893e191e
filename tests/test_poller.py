"""The list-driven schedule of the poller, on fake sources and a fake clock (no I/O, no sleeping).

The functional tests run the same poller against the simulator; these pin down the schedule
itself: what one cycle costs, what a change costs, and what happens when a list is forbidden,
a generation is missing, the budget is short or an endpoint fails."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.modelarts.errors import ApiError, AuthError, NotFoundError, TransportError
from exporter.modelarts.models import (
    MonitorReading,
    ServiceDetails,
    ServiceSummary,
    UpdateRecord,
)
from exporter.polling.events import EventTotals
from exporter.polling.poller import (
    DiscoveryRule,
    Poller,
    PollSettings,
    ProjectPlan,
    ServiceState,
    _merge,
    phase_of,
)
from exporter.polling.snapshot import EndpointState, ServiceSnapshot
from exporter.polling.sources import EventState

PROJECT = "p0"


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


class FakeEvents:
    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def totals(self) -> EventTotals:
        return EventTotals(counts=dict(self.counts), last_occur_ms={})


class FakeSource:
    """One generation of one project, in memory; every call is counted."""

    def __init__(self, generation: str) -> None:
        self.project_id = PROJECT
        self.generation = generation
        self.list_endpoint = "list" if generation == "v1" else "v2_list"
        self.has_logs = self.has_monitor = generation == "v1"
        self.services: dict[str, dict[str, object]] = {}
        self.calls: Counter[str] = Counter()
        self.calls_for: Counter[tuple[str, str]] = Counter()  # (endpoint, service_id)
        self.list_error: Exception | None = None
        self.fail: dict[str, Exception] = {}  # endpoint -> error to raise
        self.listed: set[str] | None = None  # ids the list shows (None: all)
        self.monitor = MonitorReading(2, 1, 30, ())

    def add(self, sid: str, status: str = "running", **fields: object) -> None:
        self.services[sid] = {"status": status, "invocations": 0, "op": 0, **fields}

    def row(self, sid: str) -> ServiceSummary:
        s = self.services[sid]
        key = (s["status"], s["op"])
        return ServiceSummary(
            service_id=sid,
            service_name=f"name-{sid}",
            infer_type="real-time",
            status=str(s["status"]),
            generation=self.generation,
            change_key=key,
            invocation_times=float(s["invocations"])  # type: ignore[arg-type]
            if self.generation == "v1"
            else None,
            owner="someone",
        )

    def _maybe_fail(self, endpoint: str) -> None:
        self.calls[endpoint] += 1
        error = self.fail.get(endpoint)
        if error is not None:
            raise error

    async def list_services(self, workspace_id: str | None) -> list[ServiceSummary]:
        self._maybe_fail("list")
        if self.list_error is not None:
            raise self.list_error
        ids = self.services if self.listed is None else self.listed
        return [self.row(sid) for sid in ids if sid in self.services]

    async def get_details(self, service_id: str) -> ServiceDetails:
        self.calls_for["details", service_id] += 1
        self._maybe_fail("details")
        if service_id not in self.services:
            raise NotFoundError(404, "ModelArts.3502", "service not found", endpoint="details")
        s = self.services[service_id]
        return ServiceDetails(
            service_id=service_id,
            service_name=f"name-{service_id}",
            infer_type="real-time",
            workspace_id="0",
            cluster_id="",
            pool_name="",
            owner="",
            status=str(s["status"]),
            progress=None,
            invocation_times=None,
            failed_times=None,
            publish_at=None,
            update_time=float(s["op"]),  # type: ignore[arg-type]
            transition_at=None,
            due_time=None,
            models=(),
            generation=self.generation,
        )

    def new_events(self, lookback_ms: int) -> EventState:
        return FakeEvents()

    async def poll_events(self, service_id: str, state: EventState) -> None:
        self.calls_for["events", service_id] += 1
        self._maybe_fail("events")

    async def get_update_logs(self, service_id: str) -> tuple[UpdateRecord, ...]:
        self._maybe_fail("logs")
        return ()

    async def get_monitor(self, service_id: str) -> MonitorReading:
        self._maybe_fail("monitor")
        return self.monitor


def make(
    *sources: FakeSource,
    services: tuple[str, ...] = (),
    discovery: bool = True,
    budget: float = float("inf"),
    **settings: float,
) -> tuple[Poller, Clock]:
    clock = Clock()
    base = PollSettings(
        interval=30.0,
        details_interval=300.0,
        events_interval=300.0,
        monitor_interval=60.0,
        logs_interval=600.0,
        stale_after=300.0,
    )
    plan = ProjectPlan(
        sources=tuple(sources), services=services, discovery=DiscoveryRule(enabled=discovery)
    )
    poller = Poller(
        {PROJECT: plan},
        replace(base, **settings),  # type: ignore[arg-type]
        budget=lambda: budget,
        clock=clock,
        monotonic=clock,
    )
    return poller, clock


async def cycle(poller: Poller, clock: Clock, seconds: float = 30.0) -> None:
    await poller.run_cycle(PROJECT)
    clock.t += seconds


def services(poller: Poller) -> dict[str, object]:
    return {s.service_id: s for s in poller.snapshot.services}


async def test_steady_state_costs_the_list_and_the_spread_safety_nets() -> None:
    v1 = FakeSource("v1")
    for i in range(100):
        v1.add(f"s{i}")
    poller, clock = make(v1, monitor_interval=0)
    await cycle(poller, clock)
    assert v1.calls == Counter(list=1, details=100, events=100, logs=100)
    v1.calls.clear()
    cycles = 20  # 600 s: each safety net came due once per service per interval
    for _ in range(cycles):
        await cycle(poller, clock)
    assert v1.calls["list"] == cycles
    # details and events every 300 s, logs every 600 s, spread over the interval
    assert 180 <= v1.calls["details"] <= 200
    assert 180 <= v1.calls["events"] <= 200
    assert 90 <= v1.calls["logs"] <= 100
    per_service_per_cycle = sum(v1.calls.values()) / (100 * cycles)
    assert per_service_per_cycle <= 0.3
    # spread: no cycle pays for all services at once
    v1.calls.clear()
    await cycle(poller, clock)
    assert v1.calls["details"] < 30


async def test_published_snapshots_are_whole_dataclasses() -> None:
    """The poller fills its snapshots without the dataclass __init__ (snapshot.build): each must
    still hold every field, equal to what the constructor would make of them."""
    v1 = FakeSource("v1")
    v1.add("s0")
    poller, clock = make(v1)
    for _ in range(2):
        await cycle(poller, clock)
    (svc,) = poller.snapshot.services
    assert set(vars(svc)) == {f.name for f in dataclasses.fields(ServiceSnapshot)}
    assert vars(ServiceSnapshot(**vars(svc))) == vars(svc)
    for state in svc.collect.values():
        assert state == EndpointState(**vars(state))
        assert set(vars(state)) == {f.name for f in dataclasses.fields(EndpointState)}


async def test_a_changed_list_entry_costs_that_service_details_and_events() -> None:
    v1 = FakeSource("v1")
    for i in range(5):
        v1.add(f"s{i}")
    poller, clock = make(v1, monitor_interval=0)
    await cycle(poller, clock)
    v1.calls.clear()
    v1.services["s3"]["invocations"] = 42
    await cycle(poller, clock)
    # counters come with the list: no per-service call, and on /metrics in this cycle
    assert v1.calls == Counter(list=1)
    details = services(poller)["s3"].details  # type: ignore[attr-defined]
    assert details.invocation_times == 42
    v1.services["s3"]["status"] = "concerning"
    v1.calls_for.clear()
    await cycle(poller, clock)
    assert v1.calls_for["details", "s3"] == 1 and v1.calls_for["events", "s3"] == 1
    assert services(poller)["s3"].status == "concerning"  # type: ignore[attr-defined]
    # a transitional status: events every cycle, details only on change
    v1.calls_for.clear()
    await cycle(poller, clock)
    assert v1.calls_for["events", "s3"] == 1 and v1.calls_for["details", "s3"] == 0


async def test_monitor_every_interval_only_while_serving_and_dropped_when_stopped() -> None:
    v1 = FakeSource("v1")
    v1.add("up")
    v1.add("down", status="stopped")
    poller, clock = make(v1, monitor_interval=60)
    await cycle(poller, clock)
    assert v1.calls["monitor"] == 1
    for _ in range(4):  # 120 s more: two more monitor calls, none for the stopped service
        await cycle(poller, clock)
    assert v1.calls["monitor"] == 3
    assert services(poller)["up"].monitor is not None  # type: ignore[attr-defined]
    assert services(poller)["down"].monitor is None  # type: ignore[attr-defined]
    v1.services["up"]["status"] = "stopped"
    await cycle(poller, clock)
    assert services(poller)["up"].monitor is None  # type: ignore[attr-defined]
    assert v1.calls["monitor"] == 3


async def test_failing_monitor_touches_nothing_else() -> None:
    v1 = FakeSource("v1")
    v1.add("s")
    poller, clock = make(v1, monitor_interval=30)
    await cycle(poller, clock)
    v1.fail["monitor"] = ApiError(500, "ModelArts.3508", "monitor failed", endpoint="monitor")
    await cycle(poller, clock)
    snap = services(poller)["s"]
    assert snap.collect["monitor"].success is False  # type: ignore[attr-defined]
    assert "ModelArts.3508" in snap.collect["monitor"].error  # type: ignore[attr-defined]
    assert all(
        state.success
        for endpoint, state in snap.collect.items()  # type: ignore[attr-defined]
        if endpoint != "monitor"
    )
    assert snap.monitor is not None  # last values kept until stale_after  # type: ignore[attr-defined]
    assert snap.details is not None and snap.events is not None  # type: ignore[attr-defined]


async def test_forbidden_list_falls_back_to_details_with_one_warning_per_cycle(
    caplog: pytest.LogCaptureFixture,
) -> None:
    v1 = FakeSource("v1")
    for i in range(4):
        v1.add(f"s{i}")
    v1.list_error = AuthError(403, "ModelArts.0108", "not authorized", endpoint="list")
    poller, clock = make(v1, services=tuple(v1.services), discovery=False, monitor_interval=0)
    await cycle(poller, clock)
    v1.calls.clear()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="exporter.poller"):
        for _ in range(3):
            await cycle(poller, clock)
    assert v1.calls["list"] == 3 and v1.calls["details"] == 3 * 4
    warnings = [r for r in caplog.records if "list unavailable" in r.getMessage()]
    assert len(warnings) == 3
    assert len(services(poller)) == 4
    assert poller.snapshot.projects[PROJECT].list_errors["v1"].startswith("HTTP 403")


async def test_forbidden_v2_leaves_v1_alone_and_explicit_ids_resolve_v1_then_v2() -> None:
    v1, v2 = FakeSource("v1"), FakeSource("v2")
    v1.add("classic")
    v2.add("modern")
    poller, clock = make(v1, v2, services=("classic", "modern"), discovery=False)
    v1.listed = set()  # neither list shows them (another workspace, say)
    v2.listed = set()
    await cycle(poller, clock)
    snaps = services(poller)
    assert snaps["classic"].generation == "v1"  # type: ignore[attr-defined]
    assert snaps["modern"].generation == "v2"  # type: ignore[attr-defined]
    # the generation found is remembered: no more v1 probes for the v2 service
    v1.calls.clear()
    v2.calls.clear()
    await cycle(poller, clock)
    assert v1.calls["details"] == 1 and v2.calls["details"] == 1
    # v2 forbidden for the whole project: v1 keeps everything
    v2.list_error = AuthError(403, "ModelArts.0108", "no permission", endpoint="v2_list")
    v2.fail["details"] = AuthError(403, "ModelArts.0108", "no permission", endpoint="v2_details")
    await cycle(poller, clock)
    snaps = services(poller)
    assert snaps["classic"].collect["details"].success  # type: ignore[attr-defined]
    assert not snaps["modern"].collect["details"].success  # type: ignore[attr-defined]
    assert snaps["modern"].details is not None  # kept until stale  # type: ignore[attr-defined]


async def test_a_service_missing_from_both_generations_is_gone_and_comes_back() -> None:
    v1, v2 = FakeSource("v1"), FakeSource("v2")
    poller, clock = make(v1, v2, services=("ghost",), discovery=False)
    await cycle(poller, clock)
    assert services(poller) == {}
    assert poller.snapshot.watched[PROJECT] == 0
    v2.add("ghost")
    await cycle(poller, clock)
    assert services(poller)["ghost"].generation == "v2"  # type: ignore[attr-defined]


async def test_short_budget_carries_work_over_oldest_first_and_keeps_every_series() -> None:
    v1 = FakeSource("v1")
    for i in range(50):
        v1.add(f"s{i:02}")
    # 1 request/s x 30 s: a first poll of 50 x 3 calls takes several cycles
    poller, clock = make(v1, budget=1.0, monitor_interval=0)
    await cycle(poller, clock)
    first = v1.calls["details"]
    assert 0 < first < 50
    assert poller.carried_over[PROJECT] == 50 - first
    for _ in range(10):
        await cycle(poller, clock)
    assert v1.calls["details"] >= 50  # every service got its details in the end
    snaps = services(poller)
    assert len(snaps) == 50
    assert all(s.details is not None for s in snaps.values())  # type: ignore[attr-defined]
    assert all(s.events is not None for s in snaps.values())  # type: ignore[attr-defined]
    # old but not failing data is served, not dropped, even past stale_after
    clock.t += 10_000
    v1.calls.clear()
    await cycle(poller, clock)
    assert len([s for s in services(poller).values() if s.events is not None]) == 50  # type: ignore[attr-defined]


async def test_failing_endpoints_go_stale_after_stale_after() -> None:
    v1 = FakeSource("v1")
    v1.add("s")
    poller, clock = make(v1, events_interval=30, details_interval=30, stale_after=90)
    await cycle(poller, clock)
    v1.fail["events"] = TransportError("events request failed: timed out", endpoint="events")
    await cycle(poller, clock)
    snap = services(poller)["s"]
    assert snap.events is not None  # type: ignore[attr-defined]
    assert snap.collect["events"].error.endswith("timed out")  # type: ignore[attr-defined]
    for _ in range(4):
        await cycle(poller, clock)
    snap = services(poller)["s"]
    assert snap.events is None  # type: ignore[attr-defined]
    assert snap.details is not None  # the list still brings the service's state  # type: ignore[attr-defined]


async def test_failed_list_marks_details_of_the_services_it_covers() -> None:
    v1 = FakeSource("v1")
    v1.add("a")
    v1.add("b")
    poller, clock = make(v1, monitor_interval=0)
    await cycle(poller, clock)
    v1.list_error = ApiError(503, "APIG.0101", "unavailable", endpoint="list")
    v1.calls.clear()
    await cycle(poller, clock)
    assert v1.calls["details"] == 0  # no burst of per-service calls into an outage
    for snap in services(poller).values():
        assert snap.collect["details"].success is False  # type: ignore[attr-defined]
        assert snap.details is not None  # type: ignore[attr-defined]


def test_safety_net_phases_are_stable_and_spread() -> None:
    phases = [phase_of(f"svc-{i}", "details") for i in range(1000)]
    assert phase_of("svc-1", "details") == phases[1]
    assert all(0 <= p < 1 for p in phases)
    assert 80 <= sum(1 for p in phases if p < 0.1) <= 120


@given(
    status=st.sampled_from(["", "running", "stopped", "concerning"]),
    calls=st.one_of(st.none(), st.floats(0, 1e12, allow_nan=False)),
    failed=st.one_of(st.none(), st.floats(0, 1e9, allow_nan=False)),
    transition=st.one_of(st.none(), st.integers(0, 2**45).map(float)),
    owner=st.sampled_from(["", "alice", "bob"]),
    generation=st.sampled_from(["v1", "v2"]),
)
def test_merge_overlays_the_row_exactly_as_replace_would(
    *,
    status: str,
    calls: float | None,
    failed: float | None,
    transition: float | None,
    owner: str,
    generation: str,
) -> None:
    """_merge builds the merged details without dataclasses.replace (it runs for most of a
    fleet every cycle): the result must be what replace gives, and the details themselves when
    the row adds nothing."""
    details = ServiceDetails(
        "svc-1", "name", "real-time", "ws", "cl", "pool", "bob", "running", 100.0, 5.0, 1.0,
        1.0e12, 2.0e12, 3.0e12, None, (), generation,
    )  # fmt: skip
    row = ServiceSummary(
        "svc-1", "name", "real-time", status, generation=generation, invocation_times=calls,
        failed_times=failed, transition_at=transition, owner=owner,
    )  # fmt: skip
    merged = _merge(details, row)
    expected: dict[str, object] = {"status": status or details.status}
    if generation == "v2":
        if owner:
            expected["owner"] = owner
    else:
        for name, value in (
            ("invocation_times", calls),
            ("failed_times", failed),
            ("transition_at", transition),
        ):
            if value is not None:
                expected[name] = value
    assert merged == replace(details, **expected)  # type: ignore[arg-type]
    assert hash(merged) == hash(replace(details, **expected))  # type: ignore[arg-type]
    if merged == details:
        assert merged is details


def test_a_repeated_row_keeps_the_published_details_object() -> None:
    # The collector recognises an unchanged service by identity: a list row that says again
    # what was published (a new object, equal content) must not make new published details.
    details = ServiceDetails(
        "svc-1", "name", "real-time", "ws", "cl", "pool", "bob", "running", 100.0, 5.0, 1.0,
        1.0e12, 2.0e12, 3.0e12, None, (), "v1",
    )  # fmt: skip

    def row(calls: float) -> ServiceSummary:
        return ServiceSummary("svc-1", "name", "real-time", "running", invocation_times=calls)

    state = ServiceState("p1", "svc-1", 0, generation="v1")
    state.details = details
    state.row = row(7.0)
    state.publish_details()
    first = state.merged
    assert first is not None and first.invocation_times == 7.0
    state.row = row(7.0)
    state.publish_details()
    assert state.merged is first
    state.row = row(9.0)
    state.publish_details()
    assert state.merged is not first and state.merged.invocation_times == 9.0
    state.details = replace(details, invocation_times=9.0)  # a details call: new base
    state.row = row(9.0)
    state.publish_details()
    assert state.merged is state.details  # the row adds nothing to these details
    state.details = replace(details, status="stopped")
    state.publish_details()
    assert state.merged.status == "running"  # the (newer) row's status overlays
