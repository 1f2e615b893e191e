"""Immutable state handed from the poller to the collector and the status page: swapped in
whole, never mutated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from exporter.modelarts.models import MonitorReading, ServiceDetails
from exporter.polling.events import EventTotals, UpdateTotals

T = TypeVar("T")


def build(cls: type[T], **fields: object) -> T:
    """`cls(**fields)` for a plain frozen dataclass of this module given every field: its state
    is its __dict__, filled at a third of the cost of the generated __init__ (which sets each
    field through object.__setattr__). The poller makes one per watched service per cycle."""
    obj = object.__new__(cls)
    obj.__dict__.update(fields)
    return obj


@dataclass(frozen=True)
class EndpointState:
    """Outcome of the last attempt at one endpoint for one service."""

    success: bool
    last_success: float | None  # Unix seconds
    last_attempt: float | None = None  # Unix seconds
    error: str = ""  # the last failure in plain words ("" after a success); never a secret


# eq=False: snapshots are compared by identity, so the collector can cache what it rendered
# for a service object that did not change between two cycles.
@dataclass(frozen=True, eq=False)
class ServiceSnapshot:
    """Everything known about one watched service; None parts are not exported."""

    project_id: str
    service_id: str
    service_name: str
    details: ServiceDetails | None
    events: EventTotals | None
    updates: UpdateTotals | None
    collect: Mapping[str, EndpointState]
    generation: str = "v1"
    monitor: MonitorReading | None = None
    status: str = ""  # the last known status, lower-case ("" when never known)


@dataclass(frozen=True)
class ProjectSummary:
    """One project's latest cycle, for the landing and status pages."""

    project_id: str
    generations: tuple[str, ...] = ("v1", "v2")
    cycles: int = 0
    last_cycle_seconds: float | None = None
    last_cycle_finished: float | None = None  # Unix seconds
    # generation -> why its list could not be read in the last cycle ("" when it was read)
    list_errors: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, eq=False)
class Snapshot:
    services: tuple[ServiceSnapshot, ...] = ()
    watched: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    projects: Mapping[str, ProjectSummary] = field(default_factory=lambda: MappingProxyType({}))
    published_at: float | None = None  # Unix seconds


EMPTY_SNAPSHOT = Snapshot()
