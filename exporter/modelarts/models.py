"""Tolerant parsing of ModelArts v1 responses into frozen dataclasses.

The API documents numbers but sometimes sends strings ("70"), documents strings but sends numbers
(workspace_id 0), and omits optional fields instead of sending null. Parsers accept all of that;
anything else (a missing required field, a list that is not a list, "abc" for a number) raises
MalformedResponseError so the caller counts one failed poll instead of exporting a wrong value.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from exporter.modelarts.errors import MalformedResponseError


def _fail(where: str, message: str) -> MalformedResponseError:
    return MalformedResponseError(f"{where}: {message}")


def as_mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(where, f"expected an object, got {type(value).__name__}")
    return value


def as_list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(where, f"expected a list, got {type(value).__name__}")
    return value


def opt_number(obj: Mapping[str, Any], key: str, where: str) -> float | None:
    """A number sent as a JSON number or a numeric string; None when absent, null or empty."""
    value = obj.get(key)
    if type(value) is int:  # the common case first: this runs for every field of every poll
        return float(value)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _fail(f"{where}.{key}", "expected a number, got a boolean")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise _fail(f"{where}.{key}", f"expected a number, got {value[:40]!r}") from None
    else:
        raise _fail(f"{where}.{key}", f"expected a number, got {type(value).__name__}")
    if not math.isfinite(number):
        raise _fail(f"{where}.{key}", "expected a finite number")
    return number


def req_number(obj: Mapping[str, Any], key: str, where: str) -> float:
    number = opt_number(obj, key, where)
    if number is None:
        raise _fail(f"{where}.{key}", "required")
    return number


def opt_str(obj: Mapping[str, Any], key: str, where: str) -> str:
    """A string field; numbers are accepted and stringified, absence gives ""."""
    value = obj.get(key)
    if type(value) is str:
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, str):
        return value
    raise _fail(f"{where}.{key}", f"expected a string, got {type(value).__name__}")


def req_str(obj: Mapping[str, Any], key: str, where: str) -> str:
    text = opt_str(obj, key, where)
    if not text:
        raise _fail(f"{where}.{key}", "required")
    return text


def opt_bool(obj: Mapping[str, Any], key: str, where: str) -> bool | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _fail(f"{where}.{key}", f"expected a boolean, got {value!r:.40}")


def _int_ms(value: float) -> int:
    return int(value)


@dataclass(frozen=True)
class ModelConfig:
    """One entry of a service's `config[]`."""

    model_id: str
    model_name: str
    model_version: str
    specification: str
    weight: float | None
    instance_count: float | None


@dataclass(frozen=True)
class ServiceDetails:
    """GET /v1/{project_id}/services/{service_id}."""

    service_id: str
    service_name: str
    infer_type: str
    workspace_id: str
    cluster_id: str
    pool_name: str
    owner: str
    status: str
    progress: float | None
    invocation_times: float | None
    failed_times: float | None
    publish_at: float | None
    update_time: float | None
    transition_at: float | None
    due_time: float | None
    models: tuple[ModelConfig, ...]


@dataclass(frozen=True)
class ServiceSummary:
    """One item of GET /v1/{project_id}/services."""

    service_id: str
    service_name: str
    infer_type: str
    status: str


@dataclass(frozen=True)
class ServicePage:
    total_count: int
    services: tuple[ServiceSummary, ...]


class Event(NamedTuple):
    """One service event; identical rows are distinct events, so this is a value, not an id.

    A tuple rather than a dataclass: tens of thousands are built per cycle, and the event
    cursor uses the row itself as its multiset key."""

    occur_time: int
    event_type: str
    event_info: str


@dataclass(frozen=True)
class EventPage:
    total_count: int
    events: tuple[Event, ...]


@dataclass(frozen=True)
class EventRead:
    """A complete events read: the rows, or None when the read is known to be unchanged."""

    events: list[Event] | None
    fingerprint: bytes | None  # of a complete one-page read; passed back as `previous`


@dataclass(frozen=True)
class UpdateRecord:
    """One entry of GET .../logs, identified by its update_time."""

    update_time: int
    result: str  # upper-case: SUCCESS, FAIL, RUNNING (or whatever the API sent)


def parse_model_config(raw: object, where: str) -> ModelConfig:
    obj = as_mapping(raw, where)
    return ModelConfig(
        model_id=opt_str(obj, "model_id", where),
        model_name=opt_str(obj, "model_name", where),
        model_version=opt_str(obj, "model_version", where),
        specification=opt_str(obj, "specification", where),
        weight=opt_number(obj, "weight", where),
        instance_count=opt_number(obj, "instance_count", where),
    )


def parse_details(raw: object) -> ServiceDetails:
    """Parse a details body; raises MalformedResponseError."""
    where = "details"
    obj = as_mapping(raw, where)
    config = obj.get("config")
    models = (
        ()
        if config is None
        else tuple(
            parse_model_config(item, f"{where}.config[{i}]")
            for i, item in enumerate(as_list(config, f"{where}.config"))
        )
    )
    return ServiceDetails(
        service_id=req_str(obj, "service_id", where),
        service_name=opt_str(obj, "service_name", where),
        infer_type=opt_str(obj, "infer_type", where),
        workspace_id=opt_str(obj, "workspace_id", where),
        cluster_id=opt_str(obj, "cluster_id", where),
        pool_name=opt_str(obj, "pool_name", where),
        owner=opt_str(obj, "owner", where),
        status=req_str(obj, "status", where).strip().lower(),
        progress=opt_number(obj, "progress", where),
        invocation_times=opt_number(obj, "invocation_times", where),
        failed_times=opt_number(obj, "failed_times", where),
        publish_at=opt_number(obj, "publish_at", where),
        update_time=opt_number(obj, "update_time", where),
        transition_at=opt_number(obj, "transition_at", where),
        due_time=opt_number(obj, "due_time", where),
        models=models,
    )


def _total(obj: Mapping[str, Any], where: str) -> int:
    total = req_number(obj, "total_count", where)
    if total < 0:
        raise _fail(f"{where}.total_count", "negative")
    return int(total)


def parse_service_page(raw: object) -> ServicePage:
    """Parse one page of the list API."""
    where = "list"
    obj = as_mapping(raw, where)
    items = []
    for i, item in enumerate(as_list(obj.get("services", []), f"{where}.services")):
        entry = as_mapping(item, f"{where}.services[{i}]")
        at = f"{where}.services[{i}]"
        items.append(
            ServiceSummary(
                service_id=req_str(entry, "service_id", at),
                service_name=opt_str(entry, "service_name", at),
                infer_type=opt_str(entry, "infer_type", at),
                status=opt_str(entry, "status", at).strip().lower(),
            )
        )
    return ServicePage(total_count=_total(obj, where), services=tuple(items))


def _event(item: object, at: str) -> Event:
    entry = as_mapping(item, at)
    return Event(
        occur_time=_int_ms(req_number(entry, "occur_time", at)),
        event_type=req_str(entry, "event_type", at).strip().lower(),
        event_info=opt_str(entry, "event_info", at),
    )


def parse_event_page(raw: object) -> EventPage:
    """Parse one page of the events API."""
    where = "events"
    obj = as_mapping(raw, where)
    events = []
    intern = sys.intern
    for i, item in enumerate(as_list(obj.get("events", []), f"{where}.events")):
        # Fast path for the common, well-typed row; anything else takes the tolerant parsers.
        if type(item) is dict:
            occur, kind, info = (
                item.get("occur_time"),
                item.get("event_type"),
                item.get("event_info"),
            )
            if type(occur) is int and type(kind) is str and kind.strip() and type(info) is str:
                event = Event(occur, kind.strip().lower(), info)
            else:
                event = _event(item, f"{where}.events[{i}]")
        else:
            event = _event(item, f"{where}.events[{i}]")
        # Interned: the same few texts recur in every poll of every service, and the event
        # cursors keep them for the whole lookback window.
        events.append(Event(event.occur_time, intern(event.event_type), intern(event.event_info)))
    return EventPage(total_count=_total(obj, where), events=tuple(events))


def parse_update_logs(raw: object) -> tuple[UpdateRecord, ...]:
    """Parse the update-log body."""
    where = "logs"
    obj = as_mapping(raw, where)
    records = []
    for i, item in enumerate(as_list(obj.get("logs", []), f"{where}.logs")):
        at = f"{where}.logs[{i}]"
        entry = as_mapping(item, at)
        records.append(
            UpdateRecord(
                update_time=_int_ms(req_number(entry, "update_time", at)),
                result=req_str(entry, "result", at).strip().upper(),
            )
        )
    return tuple(records)
