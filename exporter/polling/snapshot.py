"""Immutable state handed from the poller to the collector: swapped in whole, never mutated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from exporter.modelarts.models import ServiceDetails
from exporter.polling.events import EventTotals, UpdateTotals


@dataclass(frozen=True)
class EndpointState:
    """Outcome of the last attempt at one endpoint for one service."""

    success: bool
    last_success: float | None  # Unix seconds


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


@dataclass(frozen=True, eq=False)
class Snapshot:
    services: tuple[ServiceSnapshot, ...] = ()
    watched: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


EMPTY_SNAPSHOT = Snapshot()
