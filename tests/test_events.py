"""The event cursor and update tracker: exact counts for any history, paging and restart."""

from __future__ import annotations

import asyncio
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.modelarts.errors import MalformedResponseError
from exporter.modelarts.models import Event, UpdateRecord
from exporter.modelarts.pagination import read_all_consistent
from exporter.polling.events import EventCursor, UpdateTracker, classify_phase


def test_phase_rules_first_match_wins() -> None:
    assert classify_phase("building image for model [m 1.0]") == "image_build"
    assert classify_phase("model (m 1.0) build image success") == "image_build"
    assert classify_phase("preparing environment") == "environment"
    assert classify_phase("[m 1.0] schedule resource success") == "scheduling"
    assert classify_phase("Insufficient RESOURCE in pool") == "scheduling"
    assert classify_phase("[m 1.0] pulling model image") == "image_pull"
    assert classify_phase("[m 1.0] starting model") == "model_start"
    assert classify_phase("health check failed") == "model_start"
    assert classify_phase("container failed to start") == "model_start"
    assert classify_phase("start to deploy service") == "deploy"
    assert classify_phase("something else entirely") == "other"
    # "environment" is checked before "deploy"
    assert classify_phase("deploy environment ready") == "environment"


class FakeApi:
    """Ground truth: a list of events in arrival order; answers a start_time query in
    occur_time order (stable for ties), like the simulator and the real API."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def query(self, start: int | None) -> list[Event]:
        rows = [e for e in self.events if start is None or e.occur_time >= start]
        return sorted(rows, key=lambda e: e.occur_time)

    def by_type(self) -> Counter[str]:
        return Counter(e.event_type for e in self.events)


def totals_by_type(cursor: EventCursor) -> Counter[str]:
    result: Counter[str] = Counter()
    for (event_type, _), n in cursor.totals().counts.items():
        result[event_type] += n
    return result


LOOKBACK = 1_000

event_st = st.builds(
    Event,
    occur_time=st.integers(0, 50),
    event_type=st.sampled_from(["normal", "abnormal"]),
    event_info=st.sampled_from(["start to deploy service", "pulling model image", "x"]),
)


@settings(max_examples=300, deadline=None)
@given(
    batches=st.lists(
        st.tuples(
            st.lists(event_st, max_size=8),  # events arriving before this poll
            st.integers(-LOOKBACK, 200),  # offset of their occur_time from the newest seen
            st.booleans(),  # restart the exporter before this poll
        ),
        max_size=12,
    )
)
def test_counter_equals_api_for_any_arrival_pattern(
    batches: list[tuple[list[Event], int, bool]],
) -> None:
    api = FakeApi()
    cursor = EventCursor(LOOKBACK)
    newest = 10_000
    for arrivals, shift, restart in batches:
        for e in arrivals:
            # Late events land up to LOOKBACK before the newest one already visible.
            api.events.append(Event(newest + shift + e.occur_time % 3, e.event_type, e.event_info))
        if api.events:
            newest = max(newest, *(e.occur_time for e in api.events))
        if restart:
            cursor = EventCursor(LOOKBACK)
        cursor.apply(api.query(cursor.query_start()))
        assert totals_by_type(cursor) == api.by_type()


def test_identical_rows_are_distinct_events_and_counted_once() -> None:
    api = FakeApi()
    cursor = EventCursor(LOOKBACK)
    row = Event(5_000, "abnormal", "health check failed")
    api.events += [row, row]
    cursor.apply(api.query(cursor.query_start()))
    assert totals_by_type(cursor)["abnormal"] == 2
    cursor.apply(api.query(cursor.query_start()))  # nothing new: no double count
    assert totals_by_type(cursor)["abnormal"] == 2
    api.events.append(row)  # a third identical row arrives later
    cursor.apply(api.query(cursor.query_start()))
    assert totals_by_type(cursor)["abnormal"] == 3
    assert cursor.totals().counts[("abnormal", "model_start")] == 3


def test_late_event_inside_lookback_counts_once_outside_does_not() -> None:
    api = FakeApi()
    cursor = EventCursor(LOOKBACK)
    api.events.append(Event(100_000, "normal", "a"))
    cursor.apply(api.query(cursor.query_start()))
    api.events.append(Event(100_000 - LOOKBACK, "normal", "late but inside"))
    api.events.append(Event(100_000 - LOOKBACK - 1, "normal", "too late"))
    cursor.apply(api.query(cursor.query_start()))
    cursor.apply(api.query(cursor.query_start()))
    assert totals_by_type(cursor)["normal"] == 2


def test_window_memory_is_bounded() -> None:
    cursor = EventCursor(LOOKBACK)
    history = [Event(t * 100, "normal", "e") for t in range(5_000)]
    cursor.apply(history)
    assert totals_by_type(cursor)["normal"] == 5_000
    assert cursor.window_size <= LOOKBACK // 100 + 1
    assert cursor.totals().last_occur_ms["normal"] == 499_900


def test_query_start_is_newest_minus_lookback() -> None:
    cursor = EventCursor(LOOKBACK)
    assert cursor.query_start() is None
    cursor.apply([Event(7_000, "normal", "a"), Event(9_000, "abnormal", "b")])
    assert cursor.query_start() == 9_000 - LOOKBACK


def test_rows_older_than_the_asked_start_are_ignored() -> None:
    cursor = EventCursor(LOOKBACK)
    cursor.apply([Event(50_000, "normal", "a")])
    # a server that ignored start_time and sent old history again must not recount it
    cursor.apply([Event(1, "normal", "old"), Event(50_000, "normal", "a")])
    assert totals_by_type(cursor)["normal"] == 1


def test_update_tracker_counts_running_once_when_it_finishes() -> None:
    tracker = UpdateTracker()
    tracker.apply([UpdateRecord(1_000, "SUCCESS"), UpdateRecord(2_000, "RUNNING")])
    t = tracker.totals()
    assert dict(t.counts) == {"success": 1}
    assert t.newest_result == "running" and t.newest_time_ms == 2_000
    assert tracker.newest_is_running
    # order of records does not matter; the RUNNING one finished as FAIL
    tracker.apply([UpdateRecord(2_000, "FAIL"), UpdateRecord(1_000, "SUCCESS")])
    tracker.apply([UpdateRecord(2_000, "FAIL"), UpdateRecord(1_000, "SUCCESS")])
    t = tracker.totals()
    assert dict(t.counts) == {"success": 1, "fail": 1}
    assert t.newest_result == "fail"
    assert not tracker.newest_is_running
    # Unchanged log: the same totals object (the collector then reuses its rendered lines).
    tracker.apply([UpdateRecord(1_000, "SUCCESS"), UpdateRecord(2_000, "FAIL")])
    assert tracker.totals() is t
    tracker.apply([UpdateRecord(3_000, "RUNNING")])  # a new update starts: nothing counted
    assert tracker.totals() is not t and tracker.totals().newest_result == "running"


@settings(max_examples=200, deadline=None)
@given(
    records=st.lists(
        st.tuples(st.integers(0, 30), st.sampled_from(["SUCCESS", "FAIL", "RUNNING"])),
        unique_by=lambda r: r[0],
        max_size=15,
    ),
    polls=st.integers(1, 4),
    restart=st.booleans(),
)
def test_update_counts_equal_final_records(
    records: list[tuple[int, str]], polls: int, restart: bool
) -> None:
    logs = [UpdateRecord(t, r) for t, r in records]
    tracker = UpdateTracker()
    for _ in range(polls):
        tracker.apply(list(reversed(logs)))
    if restart:
        tracker = UpdateTracker()
        tracker.apply(logs)
    expected = Counter({"SUCCESS": "success", "FAIL": "fail"}.get(r) for _, r in records)
    expected.pop(None, None)
    assert dict(tracker.totals().counts) == dict(expected)


arrival_st = st.tuples(
    st.integers(-LOOKBACK, 300),  # occur_time relative to the API's newest event at arrival
    st.sampled_from(["normal", "abnormal"]),
    st.sampled_from(["start to deploy service", "health check failed", "x"]),
)


@settings(max_examples=300, deadline=None)
@given(
    initial=st.lists(arrival_st, max_size=40),
    polls=st.lists(
        st.tuples(
            st.lists(arrival_st, max_size=6),  # arrive before the poll
            st.lists(st.tuples(st.integers(0, 6), arrival_st), max_size=3),  # before page k
            st.booleans(),  # the exporter restarts before this poll
        ),
        max_size=8,
    ),
    page_size=st.one_of(st.integers(1, 12), st.sampled_from([100, 1000])),
)
def test_paged_reads_with_arrivals_during_paging_are_exact(
    initial: list[tuple[int, str, str]],
    polls: list[tuple[list[tuple[int, str, str]], list[tuple[int, tuple[int, str, str]]], bool]],
    page_size: int,
) -> None:
    api = FakeApi()

    def arrive(shift: int, event_type: str, info: str) -> None:
        newest = max((e.occur_time for e in api.events), default=1_000_000)
        api.events.append(Event(newest + shift, event_type, info))

    for item in initial:
        arrive(*item)
    cursor = EventCursor(LOOKBACK)

    def read(during: list[tuple[int, tuple[int, str, str]]]) -> list[Event] | None:
        pending = list(during)
        fetched = 0
        start = cursor.query_start()

        async def fetch(offset: int) -> tuple[int, list[Event]]:
            nonlocal fetched
            for item in [p for p in pending if p[0] == fetched]:
                pending.remove(item)
                arrive(*item[1])
            fetched += 1
            rows = api.query(start)  # the server caps the page at page_size
            return len(rows), rows[offset : offset + page_size]

        try:
            return asyncio.run(read_all_consistent(fetch, endpoint="events"))
        except MalformedResponseError:
            return None  # one failed poll: nothing applied
        finally:
            for item in pending:  # arrivals the read did not reach still happen
                arrive(*item[1])

    for before, during, restart in polls:
        for item in before:
            arrive(*item)
        if restart:
            cursor = EventCursor(LOOKBACK)
        rows = read(during)
        if rows is not None:
            cursor.apply(rows)
        counted = totals_by_type(cursor)
        truth = api.by_type()
        assert all(counted[t] <= truth[t] for t in counted)  # never over-counted
    rows = read([])  # a quiet poll: now exactly what the API holds
    assert rows is not None
    cursor.apply(rows)
    assert totals_by_type(cursor) == api.by_type()
