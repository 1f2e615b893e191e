"""Pure bookkeeping that turns API histories into exact, restart-safe counters.

EventCursor: the first read takes the whole event history; later reads ask only for events with
occur_time >= newest_seen - lookback (ascending). Within that window the cursor remembers what it
has already counted as a *multiset* of (occur_time, event_type, event_info), because two identical
rows are two events. A read that returns more copies of a row than the window holds counts the
difference; nothing is ever counted twice and memory is bounded by the window, not the history.

UpdateTracker: update records are identified by update_time; a record is counted once, when it is
first seen with a final result (SUCCESS or FAIL), so a RUNNING record is counted when it finishes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from exporter.modelarts.models import AggregatedEvent, Event, UpdateRecord

EVENT_TYPES = ("normal", "abnormal")
EVENT_TYPES_V2 = ("normal", "abnormal", "warning")  # v2 adds WARNING
PHASES = (
    "image_build",
    "environment",
    "scheduling",
    "image_pull",
    "model_start",
    "deploy",
    "other",
)

# First rule that matches wins (SPEC §4); matching is on the lower-cased event text.
_PHASE_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("image_build", ("build image", "building image", "image build")),
    ("environment", ("environment",)),
    ("scheduling", ("schedul", "resource")),
    ("image_pull", ("pull",)),
    ("model_start", ("starting model", "start model", "model start", "health check", "container")),
    ("deploy", ("deploy",)),
)


def classify_phase(event_info: str) -> str:
    """The deployment phase an event's text belongs to."""
    text = event_info.lower()
    for phase, needles in _PHASE_RULES:
        if any(needle in text for needle in needles):
            return phase
    return "other"


EventKey = Event  # (occur_time, event_type, event_info): the row itself


@dataclass(frozen=True)
class EventTotals:
    """What the collector needs: counts by (event_type, phase) and newest time by event_type."""

    counts: Mapping[tuple[str, str], int]
    last_occur_ms: Mapping[str, int]
    types: tuple[str, ...] = EVENT_TYPES  # emitted even at 0 (v2 adds warning)


class EventCursor:
    """Exact event counting for one service."""

    def __init__(self, lookback_ms: int) -> None:
        self._lookback_ms = max(0, lookback_ms)
        self._newest: int | None = None
        self._window: Counter[EventKey] = Counter()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._last: dict[str, int] = {}
        self._totals: EventTotals | None = None

    def query_start(self) -> int | None:
        """The start_time (ms, inclusive) of the next read; None means "the whole history"."""
        if self._newest is None:
            return None
        return self._newest - self._lookback_ms

    def apply(self, events: Iterable[Event]) -> int:
        """Take one complete read (every event with occur_time >= query_start()); returns how
        many events were newly counted."""
        start = self.query_start()
        # Rows older than what was asked for are dropped: a misbehaving filter must not recount.
        seen: Counter[EventKey] = Counter(
            events if start is None else (e for e in events if e.occur_time >= start)
        )
        if seen == self._window:
            return 0  # the steady state: the window read again, nothing new
        added = 0
        for key, copies in seen.items():
            new = copies - self._window.get(key, 0)
            if new <= 0:
                continue
            occur, event_type, info = key
            self._counts[(event_type, classify_phase(info))] += new
            if occur > self._last.get(event_type, -1):
                self._last[event_type] = occur
            added += new
        if added:
            self._totals = None
        if seen:
            newest = max(key[0] for key in seen)
            if self._newest is None or newest > self._newest:
                self._newest = newest
        self._prune(seen)
        return added

    def _prune(self, seen: Counter[EventKey]) -> None:
        if self._newest is None:
            self._window = Counter()
            return
        floor = self._newest - self._lookback_ms
        # The read covered everything >= the old floor, which is <= the new floor, so it is the
        # complete picture of the new window; keep the larger multiplicity in case a row vanished.
        merged: Counter[EventKey] = Counter()
        for source in (self._window, seen):
            for key, copies in source.items():
                if key[0] >= floor and copies > merged[key]:
                    merged[key] = copies
        self._window = merged

    @property
    def window_size(self) -> int:
        return sum(self._window.values())

    def totals(self) -> EventTotals:
        """An immutable copy, the same object until something new is counted (so the collector
        recognises an unchanged service by identity)."""
        if self._totals is None:
            self._totals = EventTotals(counts=dict(self._counts), last_occur_ms=dict(self._last))
        return self._totals


class AggregatedEventCursor:
    """Exact counting of v2 events for one service.

    A v2 record is one message that occurred `event_count` times, first at create_at and last
    at update_at. The counter is the sum of event_count over distinct ids: a record seen for the
    first time adds its whole count, a grown one adds its growth, a shrunk or vanished one
    subtracts nothing. Counted ids are remembered for good: forgetting one and meeting it again
    after it grew would count its history twice. Records are aggregated, so they are few (one
    per distinct message), unlike v1's one row per occurrence.

    Reads after the first stop at records last updated before `stop_before()`: a record that
    occurred again carries a new update_at, so it is read; one that shows up with an update_at
    older than the newest seen minus the lookback is late beyond the window (as for v1)."""

    def __init__(self, lookback_ms: int) -> None:
        self._lookback_ms = max(0, lookback_ms)
        self._newest: int | None = None
        self._known: dict[str, int] = {}
        self._counts: Counter[tuple[str, str]] = Counter()
        self._last: dict[str, int] = {}
        self._totals: EventTotals | None = None

    def stop_before(self) -> int | None:
        """Records updated before this (ms) need not be read; None: read the whole history."""
        if self._newest is None:
            return None
        return self._newest - self._lookback_ms

    def apply(self, events: Iterable[AggregatedEvent]) -> int:
        """Take one read; returns how many occurrences were newly counted."""
        added = 0
        newest = self._newest
        for event in events:
            counted = self._known.get(event.id, 0)
            growth = event.event_count - counted
            if growth > 0 or event.id not in self._known:
                self._known[event.id] = max(event.event_count, counted)
            if growth > 0:
                self._counts[(event.event_type, classify_phase(event.event_info))] += growth
                added += growth
                if event.update_at > self._last.get(event.event_type, -1):
                    self._last[event.event_type] = event.update_at
            if newest is None or event.update_at > newest:
                newest = event.update_at
        self._newest = newest
        if added:
            self._totals = None
        return added

    @property
    def known_ids(self) -> int:
        return len(self._known)

    def totals(self) -> EventTotals:
        if self._totals is None:
            self._totals = EventTotals(
                counts=dict(self._counts), last_occur_ms=dict(self._last), types=EVENT_TYPES_V2
            )
        return self._totals


@dataclass(frozen=True)
class UpdateTotals:
    counts: Mapping[str, int]  # "success"/"fail" -> records that finished so
    newest_time_ms: int | None
    newest_result: str | None  # lower-case


class UpdateTracker:
    """Exact update-result counting for one service."""

    FINAL = {"SUCCESS": "success", "FAIL": "fail", "FAILED": "fail"}

    def __init__(self) -> None:
        self._counted: set[int] = set()
        self._counts: Counter[str] = Counter()
        self._newest: UpdateRecord | None = None
        self._totals: UpdateTotals | None = None

    def apply(self, records: Sequence[UpdateRecord]) -> int:
        """Take the full update log; returns how many records were newly counted."""
        added = 0
        for record in records:
            result = self.FINAL.get(record.result)
            if result is not None and record.update_time not in self._counted:
                self._counted.add(record.update_time)
                self._counts[result] += 1
                added += 1
        if records:
            newest = max(records, key=lambda r: r.update_time)
            if newest != self._newest:
                self._newest = newest
                self._totals = None
        if added:
            self._totals = None
        return added

    @property
    def newest_is_running(self) -> bool:
        return self._newest is not None and self._newest.result == "RUNNING"

    def totals(self) -> UpdateTotals:
        """Like EventCursor.totals: the same object until something changes."""
        if self._totals is None:
            newest = self._newest
            self._totals = UpdateTotals(
                counts=dict(self._counts),
                newest_time_ms=None if newest is None else newest.update_time,
                newest_result=None if newest is None else newest.result.lower(),
            )
        return self._totals
