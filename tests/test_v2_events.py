"""v2 aggregated events: the pure cursor and the v2 pager, driven by a model of the API."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.modelarts.errors import MalformedResponseError
from exporter.modelarts.models import AggregatedEvent
from exporter.modelarts.pagination import read_limit_pages
from exporter.polling.events import EVENT_TYPES_V2, AggregatedEventCursor, classify_phase

LOOKBACK_MS = 2_000  # two ticks of the model: reads after the first stop early
TEXTS = ("pull image success", "health check failed", "start to deploy service", "oom killed")


class ApiModel:
    """The v2 events of one service as the API holds them."""

    def __init__(self) -> None:
        self.now = 1_700_000_000_000
        self.events: dict[str, AggregatedEvent] = {}
        self.ever: dict[str, int] = {}  # the largest count each id ever had
        self.settled: dict[str, int] = {}  # each id's count at the last quiet read
        self.forgot = False
        self.next_id = 0

    def tick(self, ms: int) -> None:
        self.now += ms

    def add(self, kind: int, text: int, count: int, late_ms: int = 0) -> None:
        """A new record; `late_ms` > 0: it shows up stamped that much in the past (within the
        lookback), as a record written late does."""
        self.next_id += 1
        eid = f"ev-{self.next_id}"
        at = self.now - late_ms
        self.events[eid] = AggregatedEvent(eid, EVENT_TYPES_V2[kind], TEXTS[text], count, at, at)
        self.ever[eid] = count

    def grow(self, which: int, k: int) -> None:
        if not self.events:
            return
        eid = sorted(self.events)[which % len(self.events)]
        e = self.events[eid]
        self.events[eid] = e._replace(event_count=e.event_count + k, update_at=self.now)
        self.ever[eid] = e.event_count + k

    def forget(self, which: int) -> None:
        if self.events:
            del self.events[sorted(self.events)[which % len(self.events)]]
            self.forgot = True

    def ordered(self, tie_seed: int) -> list[AggregatedEvent]:
        # newest update first; ties in an order the API does not promise
        rows = sorted(
            self.events.values(), key=lambda e: (zlib.crc32(f"{e.id}:{tie_seed}".encode()), e.id)
        )
        return sorted(rows, key=lambda e: -e.update_at)

    def settle(self) -> int:
        """After a read the API did not change under: every present record was seen whole."""
        for eid, e in self.events.items():
            self.settled[eid] = e.event_count
        return sum(self.settled.values())

    def restart(self) -> None:
        """A new process knows only what the API still holds."""
        self.ever = {eid: e.event_count for eid, e in self.events.items()}
        self.settled = {}
        self.forgot = False

    def upper(self) -> int:
        return sum(self.ever.values())


Mutation = tuple[str, int, int, int]

mutations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 2), st.integers(0, 3), st.integers(1, 50)),
        st.tuples(st.just("late"), st.integers(0, 2), st.integers(0, 3), st.integers(1_001, 2_000)),
        st.tuples(st.just("grow"), st.integers(0, 99), st.integers(1, 9), st.just(0)),
        st.tuples(st.just("forget"), st.integers(0, 99), st.just(0), st.just(0)),
    ),
    max_size=8,
)


def apply(api: ApiModel, changes: Sequence[Mutation]) -> None:
    for op, a, b, c in changes:
        api.tick(1_000)
        if op == "add":
            api.add(a, b, c)
        elif op == "late":
            api.add(a, b, 1, late_ms=min(c, LOOKBACK_MS))
        elif op == "grow":
            api.grow(a, b)
        else:
            api.forget(a)


async def read(
    api: ApiModel,
    cursor: AggregatedEventCursor,
    page_size: int,
    tie_seed: int,
    during: Sequence[Mutation] = (),
) -> list[AggregatedEvent]:
    """What the client reads: the real pager over the model, the API changing between pages
    when `during` says so."""
    pending = list(during)

    async def fetch(offset: int) -> tuple[int, Sequence[AggregatedEvent]]:
        if offset and pending:
            apply(api, [pending.pop(0)])
        rows = api.ordered(tie_seed)
        return len(rows), rows[offset : offset + page_size]

    stop_before = cursor.stop_before()

    def older(page: Sequence[AggregatedEvent]) -> bool:
        return stop_before is not None and min(e.update_at for e in page) < stop_before

    return await read_limit_pages(
        fetch, page_size, endpoint="v2_events", key=lambda e: e.id, stop=older
    )


@settings(max_examples=300, deadline=None)
@given(
    history=mutations,
    polls=st.lists(st.tuples(mutations, mutations, st.booleans()), max_size=6),
    page_size=st.integers(1, 7),
    tie_seed=st.integers(0, 3),
)
def test_counter_is_the_sum_of_event_counts_over_distinct_ids(
    history: list[Mutation],
    polls: list[tuple[list[Mutation], list[Mutation], bool]],
    page_size: int,
    tie_seed: int,
) -> None:
    """For any page size, any order of ties, any growth between polls and while pages are
    read, any forgetting, and a restart at any poll: never more than the truth, never down,
    and exact after every read the API did not change under."""

    async def scenario() -> None:
        api = ApiModel()
        apply(api, history)
        api.restart()
        cursor = AggregatedEventCursor(LOOKBACK_MS)
        cursor.apply(await read(api, cursor, page_size, tie_seed))
        assert total(cursor) == api.settle() == api.upper()
        for between, during, restart in polls:
            apply(api, between)
            if restart:  # a new process: the whole history again, nothing lost
                cursor = AggregatedEventCursor(LOOKBACK_MS)
                api.restart()
            before = total(cursor)
            try:
                rows = await read(api, cursor, page_size, tie_seed, during)
            except MalformedResponseError:
                continue  # the list kept moving: one failed poll, nothing counted
            cursor.apply(rows)
            assert before <= total(cursor) <= api.upper()  # never down, never twice
            if not during:
                settled = api.settle()
                assert settled <= total(cursor)  # everything the API shows is counted
                if not api.forgot:
                    assert total(cursor) == api.upper()
        # a quiet read at the end catches up with whatever moved during the reads
        cursor.apply(await read(api, cursor, page_size, tie_seed))
        assert api.settle() <= total(cursor) <= api.upper()
        if not api.forgot:
            assert total(cursor) == api.upper()

    asyncio.run(scenario())


def total(cursor: AggregatedEventCursor) -> int:
    return sum(cursor.totals().counts.values())


def test_growth_adds_only_the_growth_and_phases_come_from_the_text() -> None:
    cursor = AggregatedEventCursor(LOOKBACK_MS)
    first = AggregatedEvent("a", "warning", "health check failed", 3, 1000, 2000)
    assert cursor.apply([first]) == 3
    assert cursor.apply([first]) == 0
    assert cursor.apply([first._replace(event_count=5, update_at=9000)]) == 2
    # a count that went down (or a record the API forgot) subtracts nothing
    assert cursor.apply([first._replace(event_count=1)]) == 0
    assert cursor.apply([]) == 0
    totals = cursor.totals()
    assert totals.counts == {("warning", classify_phase("health check failed")): 5}
    assert totals.last_occur_ms == {"warning": 9000}
    assert totals.types == EVENT_TYPES_V2
    assert cursor.stop_before() == 9000 - LOOKBACK_MS
    # unchanged totals keep their identity (the collector caches by it)
    assert cursor.totals() is totals


def test_first_read_reads_everything() -> None:
    assert AggregatedEventCursor(LOOKBACK_MS).stop_before() is None


async def test_pager_restarts_with_the_server_page_size_when_limit_is_capped() -> None:
    rows = list(range(23))
    asked: list[int] = []

    async def fetch(offset: int) -> tuple[int, Sequence[int]]:
        asked.append(offset)
        return len(rows), rows[offset : offset + 5]  # the server caps limit at 5

    assert await read_limit_pages(fetch, 10, endpoint="x", key=lambda r: r) == rows
    assert asked == [0, 0, 5, 10, 15, 20]


async def test_pager_gives_up_on_a_list_that_never_settles() -> None:
    calls = 0

    async def fetch(offset: int) -> tuple[int, Sequence[int]]:
        nonlocal calls
        calls += 1
        return 100 + calls, [1, 2]

    with pytest.raises(MalformedResponseError, match="kept changing"):
        await read_limit_pages(fetch, 2, endpoint="v2_events", key=lambda r: r)
    assert calls == 6


async def test_a_record_re_sorted_between_pages_is_not_taken_for_another() -> None:
    """Growth moves a record to the front while the pages are read: the page after repeats a
    record and the last one is pushed out of reach. Counting rows would end the read one short;
    the distinct ids do not reach `total`, so the read starts over and gets every record."""
    api = ApiModel()
    for text in range(3):
        api.add(0, text, 1)
        api.tick(10_000)  # far older than each other: nothing is re-read later by the lookback
    cursor = AggregatedEventCursor(LOOKBACK_MS)
    rows = await read(api, cursor, 1, 0, during=[("grow", 0, 1, 0)])
    assert sorted(r.id for r in rows) == ["ev-1", "ev-2", "ev-3"]
    cursor.apply(rows)
    assert total(cursor) == api.settle() == 4
