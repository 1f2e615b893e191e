"""Tolerant parsing of ModelArts v1 and v2 responses into frozen dataclasses.

The API documents numbers but sometimes sends strings ("70"), documents strings but sends numbers
(workspace_id 0), and omits optional fields instead of sending null. Parsers accept all of that;
anything else (a missing required field, a list that is not a list, "abc" for a number) raises
MalformedResponseError so the caller counts one failed poll instead of exporting a wrong value.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from exporter.modelarts.errors import MalformedResponseError


def _fail(where: str, message: str) -> MalformedResponseError:
    return MalformedResponseError(f"{where}: {message}")


def as_mapping(value: object, where: str) -> Mapping[str, Any]:
    if type(value) is dict:  # what json gives: no ABC check (it is per list item and event)
        return value
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
    running_count: float | None = None  # v2 instance groups only


@dataclass(frozen=True)
class ServiceDetails:
    """GET /v1/{project_id}/services/{service_id}, or a v2 service mapped onto the same
    fields (SPEC §4 "New-generation (v2) services"); what v2 lacks is None."""

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
    generation: str = "v1"


@dataclass(frozen=True)
class ServiceSummary:
    """One item of a service list (v1 or v2): the heartbeat of a watched service.

    `change_key` holds the fields whose change means the service changed in a way the list does
    not show in full (SPEC §6): v1 status, transition_at, publish_at, operation_time; v2 status,
    update_at. The v1 list also carries progress and the invocation counters."""

    service_id: str
    service_name: str
    infer_type: str
    status: str
    generation: str = "v1"
    change_key: tuple[object, ...] = ()
    progress: float | None = None
    invocation_times: float | None = None
    failed_times: float | None = None
    transition_at: float | None = None
    publish_at: float | None = None
    owner: str = ""  # v2 user_name (the v2 details body has no owner)
    workspace_id: str = ""


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


_NEW = object.__new__
_DETAILS_TEXTS = ("service_name", "infer_type", "workspace_id", "cluster_id", "pool_name", "owner")
_DETAILS_NUMBERS = (
    "progress",
    "invocation_times",
    "failed_times",
    "publish_at",
    "update_time",
    "transition_at",
    "due_time",
)
_MODEL_TEXTS = ("model_id", "model_name", "model_version", "specification")
_MODEL_NUMBERS = ("weight", "instance_count")


def _plain_fields(
    obj: dict[str, Any], texts: Sequence[str], numbers: Sequence[str], into: dict[str, object]
) -> bool:
    """Copy fields of their common JSON types (texts as strings, numbers as integers, or
    absent) into `into`, as the tolerant parsers would; False at the first other one."""
    for key in texts:
        text = obj.get(key)
        if text is None:
            text = ""
        elif type(text) is not str:
            return False
        into[key] = text
    for key in numbers:
        number = obj.get(key)
        if type(number) is int:
            into[key] = float(number)
        elif number is None:
            into[key] = None
        else:
            return False
    return True


def _plain_details(obj: dict[str, Any]) -> ServiceDetails | None:
    """A details body whose fields all have their common JSON types, built without the
    tolerant per-field parsers (a safety-net read of every service every details_interval).
    None for any other body, which the tolerant path parses (or refuses, naming the field)."""
    sid, status = obj.get("service_id"), obj.get("status")
    if type(sid) is not str or not sid or type(status) is not str:
        return None
    status = status.strip().lower()
    if not status:
        return None
    fields: dict[str, object] = {"service_id": sid, "status": status}
    if not _plain_fields(obj, _DETAILS_TEXTS, _DETAILS_NUMBERS, fields):
        return None
    config = obj.get("config")
    models: list[ModelConfig] = []
    if config is not None:
        if type(config) is not list:
            return None
        for item in config:
            if type(item) is not dict:
                return None
            model = _NEW(ModelConfig)
            values = model.__dict__
            if not _plain_fields(item, _MODEL_TEXTS, _MODEL_NUMBERS, values):
                return None
            values["running_count"] = None
            models.append(model)
    fields["models"] = tuple(models)
    fields["generation"] = "v1"
    # ServiceDetails is a plain frozen dataclass (no slots, no __post_init__): its state is its
    # __dict__ (as for list rows in _plain_row).
    details = _NEW(ServiceDetails)
    details.__dict__.update(fields)
    return details


def parse_details(raw: object) -> ServiceDetails:
    """Parse a details body; raises MalformedResponseError."""
    where = "details"
    if type(raw) is dict:
        fast = _plain_details(raw)
        if fast is not None:
            return fast
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


_ROW_TEXTS = ("service_name", "infer_type", "owner", "workspace_id")
_ROW_NUMBERS = (
    "transition_at",
    "publish_at",
    "operation_time",
    "progress",
    "invocation_times",
    "failed_times",
)


def _plain_row(entry: dict[str, Any]) -> ServiceSummary | None:
    """A list row whose fields all have their common JSON types (texts as strings, numbers as
    integers, or absent), built without the tolerant per-field parsers: this runs for every
    watched service at every cycle. None for any other row, which the tolerant path parses."""
    sid, status = entry.get("service_id"), entry.get("status")
    if type(sid) is not str or not sid or type(status) is not str:
        return None
    fields: dict[str, object] = {"service_id": sid}
    if not _plain_fields(entry, _ROW_TEXTS, _ROW_NUMBERS, fields):
        return None
    status = status.strip().lower()
    operation_time = fields.pop("operation_time")
    fields.update(
        status=status,
        generation="v1",
        change_key=(status, fields["transition_at"], fields["publish_at"], operation_time),
    )
    # ServiceSummary is a plain frozen dataclass (no slots, no __post_init__): its state is its
    # __dict__, filled here at a third of the cost of its generated __init__.
    row = _NEW(ServiceSummary)
    row.__dict__.update(fields)
    return row


def parse_service_page(raw: object) -> ServicePage:
    """Parse one page of the list API."""
    where = "list"
    obj = as_mapping(raw, where)
    items = []
    for i, item in enumerate(as_list(obj.get("services", []), f"{where}.services")):
        if type(item) is dict:
            fast = _plain_row(item)
            if fast is not None:
                items.append(fast)
                continue
        entry = as_mapping(item, f"{where}.services[{i}]")
        at = f"{where}.services[{i}]"
        status = opt_str(entry, "status", at).strip().lower()
        transition_at = opt_number(entry, "transition_at", at)
        publish_at = opt_number(entry, "publish_at", at)
        items.append(
            ServiceSummary(
                service_id=req_str(entry, "service_id", at),
                service_name=opt_str(entry, "service_name", at),
                infer_type=opt_str(entry, "infer_type", at),
                status=status,
                change_key=(
                    status,
                    transition_at,
                    publish_at,
                    opt_number(entry, "operation_time", at),
                ),
                progress=opt_number(entry, "progress", at),
                invocation_times=opt_number(entry, "invocation_times", at),
                failed_times=opt_number(entry, "failed_times", at),
                transition_at=transition_at,
                publish_at=publish_at,
                owner=opt_str(entry, "owner", at),
                workspace_id=opt_str(entry, "workspace_id", at),
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


# -- v1 monitor API -----------------------------------------------------------------------------

MB = 1_048_576


@dataclass(frozen=True)
class ModelUsage:
    """One `monitors[]` entry: one model (and, for edge services, one node). None = omitted."""

    model_id: str
    model_name: str
    model_version: str
    node_id: str
    running_instances: float | None
    cpu_cores_used: float | None
    cpu_cores: float | None
    memory_used_bytes: float | None
    memory_bytes: float | None
    gpus_used: float | None
    gpus: float | None
    gpu_memory_used_bytes: float | None
    gpu_memory_bytes: float | None
    npus_used: float | None
    npus: float | None
    npu_memory_used_bytes: float | None
    npu_memory_bytes: float | None
    invocations: float | None
    failures: float | None


@dataclass(frozen=True)
class MonitorReading:
    """GET /v1/{project_id}/services/{service_id}/monitor; memory converted from MB to bytes."""

    instances: float | None
    running_instances: float | None
    requests_last_minute: float | None
    models: tuple[ModelUsage, ...]


def _mb(obj: Mapping[str, Any], key: str, where: str) -> float | None:
    value = opt_number(obj, key, where)
    return None if value is None else value * MB


def parse_monitor(raw: object) -> MonitorReading:
    """Parse a monitor body; every field is optional (the API omits what it does not measure)."""
    where = "monitor"
    obj = as_mapping(raw, where)
    monitors = obj.get("monitors")
    models = []
    for i, item in enumerate(() if monitors is None else as_list(monitors, f"{where}.monitors")):
        at = f"{where}.monitors[{i}]"
        m = as_mapping(item, at)
        models.append(
            ModelUsage(
                model_id=opt_str(m, "model_id", at),
                model_name=opt_str(m, "model_name", at),
                model_version=opt_str(m, "model_version", at),
                node_id=opt_str(m, "node_id", at),
                running_instances=opt_number(m, "model_running_instance_count", at),
                cpu_cores_used=opt_number(m, "cpu_core_usage", at),
                cpu_cores=opt_number(m, "cpu_core_total", at),
                memory_used_bytes=_mb(m, "cpu_memory_usage", at),
                memory_bytes=_mb(m, "cpu_memory_total", at),
                gpus_used=opt_number(m, "gpu_usage", at),
                gpus=opt_number(m, "gpu_total", at),
                gpu_memory_used_bytes=_mb(m, "gpu_memory_usage", at),
                gpu_memory_bytes=_mb(m, "gpu_memory_total", at),
                npus_used=opt_number(m, "npu_usage", at),
                npus=opt_number(m, "npu_total", at),
                npu_memory_used_bytes=_mb(m, "npu_memory_usage", at),
                npu_memory_bytes=_mb(m, "npu_memory_total", at),
                invocations=opt_number(m, "invocation_times", at),
                failures=opt_number(m, "failed_times", at),
            )
        )
    return MonitorReading(
        instances=opt_number(obj, "service_instance_count", where),
        running_instances=opt_number(obj, "service_running_instance_count", where),
        requests_last_minute=opt_number(obj, "req_count_per_min", where),
        models=tuple(models),
    )


# -- v2 (new-generation) services -----------------------------------------------------------------
#
# Shapes of the official SDK's models (huaweicloudsdkmodelarts): ListInferServicesResponse
# {data[], current, size, pages, total}, ShowInferServiceResponse (version.instance_groups[]),
# ListInferServiceEventsResponse {data[] of aggregated events, total, ...}. Statuses and event types
# are upper-case on the wire and lower-cased here.


def v2_infer_type(value: str) -> str:
    """REAL_TIME -> real-time, ASYNC_REAL_TIME -> async-real-time (SPEC §4)."""
    return value.strip().lower().replace("_", "-")


def _v2_total(obj: Mapping[str, Any], where: str) -> int:
    total = opt_number(obj, "total", where)
    if total is None:
        raise _fail(f"{where}.total", "required")
    if total < 0:
        raise _fail(f"{where}.total", "negative")
    return int(total)


def parse_v2_service_page(raw: object) -> tuple[int, tuple[ServiceSummary, ...]]:
    """One page of GET /v2/{project_id}/services: (total, items)."""
    where = "v2_list"
    obj = as_mapping(raw, where)
    data = obj.get("data")
    items = []
    for i, item in enumerate(() if data is None else as_list(data, f"{where}.data")):
        at = f"{where}.data[{i}]"
        entry = as_mapping(item, at)
        status = opt_str(entry, "status", at).strip().lower()
        update_at = opt_number(entry, "update_at", at)
        items.append(
            ServiceSummary(
                service_id=req_str(entry, "id", at),
                service_name=opt_str(entry, "name", at),
                infer_type=v2_infer_type(opt_str(entry, "type", at)),
                status=status,
                generation="v2",
                change_key=(status, update_at),
                publish_at=opt_number(entry, "create_at", at),
                owner=opt_str(entry, "user_name", at),
                workspace_id=opt_str(entry, "workspace_id", at),
            )
        )
    return _v2_total(obj, where), tuple(items)


def _v2_group(raw: object, where: str) -> tuple[ModelConfig, str]:
    group = as_mapping(raw, where)
    units = group.get("unit_configs")
    flavor = ""
    if units is not None:
        unit_list = as_list(units, f"{where}.unit_configs")
        if unit_list:
            flavor = opt_str(as_mapping(unit_list[0], f"{where}.unit_configs[0]"), "flavor", where)
    config = ModelConfig(
        model_id=opt_str(group, "id", where),
        model_name=opt_str(group, "name", where),
        model_version=opt_str(group, "version", where),
        specification=flavor,
        weight=opt_number(group, "weight", where),
        instance_count=opt_number(group, "count", where),
        running_count=opt_number(group, "running_count", where),
    )
    return config, opt_str(group, "pool_id", where)


def parse_v2_details(raw: object) -> ServiceDetails:
    """GET /v2/{project_id}/services/{service_id} mapped onto ServiceDetails (owner comes from
    the list: the details body has none)."""
    where = "v2_details"
    obj = as_mapping(raw, where)
    version = obj.get("version")
    groups: list[tuple[ModelConfig, str]] = []
    if version is not None:
        v = as_mapping(version, f"{where}.version")
        raw_groups = v.get("instance_groups")
        if raw_groups is not None:
            groups = [
                _v2_group(g, f"{where}.version.instance_groups[{i}]")
                for i, g in enumerate(as_list(raw_groups, f"{where}.version.instance_groups"))
            ]
    return ServiceDetails(
        service_id=req_str(obj, "id", where),
        service_name=opt_str(obj, "name", where),
        infer_type=v2_infer_type(opt_str(obj, "type", where)),
        workspace_id=opt_str(obj, "workspace_id", where),
        cluster_id=groups[0][1] if groups else "",
        pool_name="",
        owner="",
        status=req_str(obj, "status", where).strip().lower(),
        progress=None,
        invocation_times=None,
        failed_times=None,
        publish_at=opt_number(obj, "create_at", where),
        update_time=opt_number(obj, "update_at", where),
        transition_at=None,
        due_time=None,
        models=tuple(config for config, _ in groups),
        generation="v2",
    )


class AggregatedEvent(NamedTuple):
    """One v2 event record: `event_count` occurrences between create_at and update_at."""

    id: str
    event_type: str  # lower-case: normal, abnormal, warning (or what the API sent)
    event_info: str
    event_count: int
    create_at: int
    update_at: int


def parse_v2_event_page(raw: object) -> tuple[int, tuple[AggregatedEvent, ...]]:
    """One page of GET /v2/{project_id}/services/{service_id}/events: (total, items)."""
    where = "v2_events"
    obj = as_mapping(raw, where)
    data = obj.get("data")
    intern = sys.intern
    events = []
    for i, item in enumerate(() if data is None else as_list(data, f"{where}.data")):
        at = f"{where}.data[{i}]"
        entry = as_mapping(item, at)
        count = req_number(entry, "event_count", at)
        if count < 0 or not count.is_integer():
            raise _fail(f"{at}.event_count", "expected a whole number >= 0")
        create_at = opt_number(entry, "create_at", at)
        update_at = opt_number(entry, "update_at", at)
        if update_at is None:
            update_at = create_at
        if update_at is None:
            raise _fail(f"{at}.update_at", "required")
        events.append(
            AggregatedEvent(
                id=req_str(entry, "id", at),
                event_type=intern(req_str(entry, "event_type", at).strip().lower()),
                event_info=intern(opt_str(entry, "event_info", at)),
                event_count=int(count),
                create_at=int(create_at if create_at is not None else update_at),
                update_at=int(update_at),
            )
        )
    return _v2_total(obj, where), tuple(events)
