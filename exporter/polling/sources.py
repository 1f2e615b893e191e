"""The two API generations behind one protocol: what the poller asks of a project's v1 or v2
service API. The poller never branches on the generation; what differs (event shapes, the
endpoints a generation lacks) lives here."""

from __future__ import annotations

from typing import Protocol

from exporter.modelarts.models import (
    AggregatedEvent,
    EventRead,
    MonitorReading,
    ServiceDetails,
    ServiceSummary,
    UpdateRecord,
)
from exporter.polling.events import AggregatedEventCursor, EventCursor, EventTotals


class EventState(Protocol):
    """One service's event bookkeeping (pure; the source feeds it)."""

    def totals(self) -> EventTotals: ...


class ServiceSource(Protocol):
    """One API generation of one project."""

    project_id: str
    generation: str  # "v1" | "v2"
    list_endpoint: str  # the api_requests endpoint label of its list call
    has_logs: bool
    has_monitor: bool

    async def list_services(self, workspace_id: str | None) -> list[ServiceSummary]: ...

    async def get_details(self, service_id: str) -> ServiceDetails: ...

    def new_events(self, lookback_ms: int) -> EventState: ...

    async def poll_events(self, service_id: str, state: EventState) -> None: ...

    async def get_update_logs(self, service_id: str) -> tuple[UpdateRecord, ...]: ...

    async def get_monitor(self, service_id: str) -> MonitorReading: ...


class V1Api(Protocol):
    project_id: str

    async def list_services(self, workspace_id: str | None = None) -> list[ServiceSummary]: ...

    async def get_details(self, service_id: str) -> ServiceDetails: ...

    async def list_events(
        self, service_id: str, start_time: int | None, *, previous: bytes | None = None
    ) -> EventRead: ...

    async def get_update_logs(self, service_id: str) -> tuple[UpdateRecord, ...]: ...

    async def get_monitor(self, service_id: str) -> MonitorReading: ...


class V2Api(Protocol):
    project_id: str

    async def v2_list_services(self, workspace_id: str | None = None) -> list[ServiceSummary]: ...

    async def v2_get_details(self, service_id: str) -> ServiceDetails: ...

    async def v2_list_events(
        self, service_id: str, stop_before: int | None
    ) -> list[AggregatedEvent]: ...


class _V1Events:
    __slots__ = ("cursor", "fingerprint")

    def __init__(self, lookback_ms: int) -> None:
        self.cursor = EventCursor(lookback_ms)
        self.fingerprint: bytes | None = None  # of the last one-page read

    def totals(self) -> EventTotals:
        return self.cursor.totals()


class V1Source:
    """Classic online services: /v1/{project_id}/services..."""

    generation = "v1"
    list_endpoint = "list"
    has_logs = True
    has_monitor = True

    def __init__(self, api: V1Api) -> None:
        self._api = api
        self.project_id = api.project_id

    async def list_services(self, workspace_id: str | None) -> list[ServiceSummary]:
        return await self._api.list_services(workspace_id)

    async def get_details(self, service_id: str) -> ServiceDetails:
        return await self._api.get_details(service_id)

    def new_events(self, lookback_ms: int) -> EventState:
        return _V1Events(lookback_ms)

    async def poll_events(self, service_id: str, state: EventState) -> None:
        assert isinstance(state, _V1Events)
        read = await self._api.list_events(
            service_id, state.cursor.query_start(), previous=state.fingerprint
        )
        if read.events is not None:
            state.cursor.apply(read.events)
        state.fingerprint = read.fingerprint

    async def get_update_logs(self, service_id: str) -> tuple[UpdateRecord, ...]:
        return await self._api.get_update_logs(service_id)

    async def get_monitor(self, service_id: str) -> MonitorReading:
        return await self._api.get_monitor(service_id)


class V2Source:
    """New-generation inference services: /v2/{project_id}/services... (no update logs, no
    monitor API: those families are absent for v2 services)."""

    generation = "v2"
    list_endpoint = "v2_list"
    has_logs = False
    has_monitor = False

    def __init__(self, api: V2Api) -> None:
        self._api = api
        self.project_id = api.project_id

    async def list_services(self, workspace_id: str | None) -> list[ServiceSummary]:
        return await self._api.v2_list_services(workspace_id)

    async def get_details(self, service_id: str) -> ServiceDetails:
        return await self._api.v2_get_details(service_id)

    def new_events(self, lookback_ms: int) -> EventState:
        return AggregatedEventCursor(lookback_ms)

    async def poll_events(self, service_id: str, state: EventState) -> None:
        assert isinstance(state, AggregatedEventCursor)
        state.apply(await self._api.v2_list_events(service_id, state.stop_before()))

    async def get_update_logs(self, service_id: str) -> tuple[UpdateRecord, ...]:
        raise NotImplementedError("v2 services have no update log")

    async def get_monitor(self, service_id: str) -> MonitorReading:
        raise NotImplementedError("v2 services have no monitor API")


__all__ = ["EventState", "ServiceSource", "V1Source", "V2Source"]
