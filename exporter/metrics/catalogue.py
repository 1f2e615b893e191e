"""Every metric the exporter serves: name, type, help and labels, written once (SPEC §4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# The label values of the events metric are defined where events are classified.
from exporter.polling.events import EVENT_TYPES as EVENT_TYPES  # noqa: PLC0414 (re-export)
from exporter.polling.events import EVENT_TYPES_V2 as EVENT_TYPES_V2  # noqa: PLC0414
from exporter.polling.events import PHASES as PHASES  # noqa: PLC0414 (re-export)

MetricType = Literal["gauge", "counter", "histogram"]

SERVICE_LABELS = ("project_id", "service_id", "service_name")

# v1 statuses (lower-case, as the v1 API sends them).
KNOWN_STATUSES = (
    "running",
    "deploying",
    "concerning",
    "failed",
    "stopped",
    "finished",
    "stopping",
    "deleting",
    "pending",
    "waiting",
)
# v2 statuses, lower-cased (the v2 API sends them upper-case; INIT only in details).
KNOWN_STATUSES_V2 = (
    "init",
    "deploying",
    "running",
    "concerning",
    "upgrading",
    "stopping",
    "stopped",
    "failed",
    "error",
    "deleting",
    "interrupting",
)
# Every status value a dashboard or rule may meet, v1's first.
ALL_STATUSES = KNOWN_STATUSES + tuple(s for s in KNOWN_STATUSES_V2 if s not in KNOWN_STATUSES)
GENERATIONS = ("v1", "v2")
UPDATE_RESULTS = ("success", "fail")
LAST_UPDATE_RESULTS = ("success", "fail", "running")
API_ENDPOINTS = (
    "list",
    "details",
    "events",
    "logs",
    "monitor",
    "v2_list",
    "v2_details",
    "v2_events",
    "token",
)
# The per-service endpoints of collect_success / last_success.
COLLECT_ENDPOINTS = ("details", "events", "logs", "monitor")


@dataclass(frozen=True)
class MetricSpec:
    """One metric family; `name` is the exposed name (counters without the `_total` suffix
    are never used: the name is exactly what users query)."""

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...]


def _svc(name: str, type_: MetricType, help_: str, *extra: str) -> MetricSpec:
    return MetricSpec(name, type_, help_, SERVICE_LABELS + extra)


_LAST = " (from the last successful poll)."

SERVICE_INFO = _svc(
    "modelarts_service_info",
    "gauge",
    "Static facts about a ModelArts service, value 1" + _LAST,
    "infer_type",
    "workspace_id",
    "cluster_id",
    "pool_name",
    "owner",
    "generation",
)
SERVICE_STATUS = _svc(
    "modelarts_service_status",
    "gauge",
    "1 for the service's current status, 0 for each other known status" + _LAST,
    "status",
)
SERVICE_PROGRESS = _svc(
    "modelarts_service_progress_ratio",
    "gauge",
    "Deployment progress as a ratio 0..1, 0 when the API reports none" + _LAST,
)
SERVICE_INVOCATIONS = _svc(
    "modelarts_service_invocations_total",
    "counter",
    "Total inference calls of the service, as reported by the API" + _LAST,
)
SERVICE_FAILURES = _svc(
    "modelarts_service_invocation_failures_total",
    "counter",
    "Total failed inference calls of the service, as reported by the API" + _LAST,
)
MODEL_INSTANCES = _svc(
    "modelarts_service_model_instances",
    "gauge",
    "Configured instance count of each model of the service" + _LAST,
    "model_id",
    "model_name",
    "model_version",
    "specification",
)
MODEL_TRAFFIC = _svc(
    "modelarts_service_model_traffic_ratio",
    "gauge",
    "Share of the service's traffic routed to each model, 0..1" + _LAST,
    "model_id",
    "model_name",
    "model_version",
)
PUBLISHED_TS = _svc(
    "modelarts_service_published_timestamp_seconds",
    "gauge",
    "When the service was last published, Unix seconds" + _LAST,
)
CONFIG_UPDATED_TS = _svc(
    "modelarts_service_config_updated_timestamp_seconds",
    "gauge",
    "When the service's current configuration was applied, Unix seconds" + _LAST,
)
STATUS_CHANGED_TS = _svc(
    "modelarts_service_status_changed_timestamp_seconds",
    "gauge",
    "When the service's status last changed, Unix seconds" + _LAST,
)
AUTO_STOP_TS = _svc(
    "modelarts_service_auto_stop_timestamp_seconds",
    "gauge",
    "When the service will be stopped automatically, Unix seconds; absent without auto-stop"
    + _LAST,
)
EVENTS = _svc(
    "modelarts_service_events_total",
    "counter",
    "Service events recorded by the API, by event type and deployment phase" + _LAST,
    "event_type",
    "phase",
)
LAST_EVENT_TS = _svc(
    "modelarts_service_last_event_timestamp_seconds",
    "gauge",
    "Time of the newest event of each type, Unix seconds" + _LAST,
    "event_type",
)
UPDATES = _svc(
    "modelarts_service_updates_total",
    "counter",
    "Service update records that finished with the given result" + _LAST,
    "result",
)
LAST_UPDATE_TS = _svc(
    "modelarts_service_last_update_timestamp_seconds",
    "gauge",
    "Time of the newest service update record, Unix seconds" + _LAST,
)
LAST_UPDATE_RESULT = _svc(
    "modelarts_service_last_update_result",
    "gauge",
    "1 for the result of the newest update record, 0 for the others" + _LAST,
    "result",
)

_MONITOR = " (v1 monitor API, from the last successful monitor poll)."
_MODEL_LABELS = ("model_id", "model_name", "model_version", "node_id")


def _model(name: str, type_: MetricType, help_: str) -> MetricSpec:
    return _svc(name, type_, help_ + _MONITOR, *_MODEL_LABELS)


SERVICE_INSTANCES = _svc(
    "modelarts_service_instances",
    "gauge",
    "Desired instances of the service" + _MONITOR,
)
SERVICE_RUNNING_INSTANCES = _svc(
    "modelarts_service_running_instances",
    "gauge",
    "Running instances of the service" + _MONITOR,
)
REQUESTS_LAST_MINUTE = _svc(
    "modelarts_service_requests_last_minute",
    "gauge",
    "Inference calls of the service in the last minute" + _MONITOR,
)
MODEL_RUNNING_INSTANCES = _svc(
    "modelarts_service_model_running_instances",
    "gauge",
    "Running instances of each model (v1: monitor API; v2: instance group running_count)" + _LAST,
    *_MODEL_LABELS,
)
MODEL_CPU_USED = _model("modelarts_service_model_cpu_cores_used", "gauge", "CPU cores in use")
MODEL_CPU = _model("modelarts_service_model_cpu_cores", "gauge", "CPU cores allocated")
MODEL_MEMORY_USED = _model(
    "modelarts_service_model_memory_used_bytes", "gauge", "Memory in use, bytes"
)
MODEL_MEMORY = _model("modelarts_service_model_memory_bytes", "gauge", "Memory allocated, bytes")
MODEL_GPUS_USED = _model("modelarts_service_model_gpus_used", "gauge", "GPUs in use (fractional)")
MODEL_GPUS = _model("modelarts_service_model_gpus", "gauge", "GPUs allocated")
MODEL_GPU_MEMORY_USED = _model(
    "modelarts_service_model_gpu_memory_used_bytes", "gauge", "GPU memory in use, bytes"
)
MODEL_GPU_MEMORY = _model(
    "modelarts_service_model_gpu_memory_bytes", "gauge", "GPU memory allocated, bytes"
)
MODEL_NPUS_USED = _model("modelarts_service_model_npus_used", "gauge", "NPUs in use (fractional)")
MODEL_NPUS = _model("modelarts_service_model_npus", "gauge", "NPUs allocated")
MODEL_NPU_MEMORY_USED = _model(
    "modelarts_service_model_npu_memory_used_bytes", "gauge", "NPU memory in use, bytes"
)
MODEL_NPU_MEMORY = _model(
    "modelarts_service_model_npu_memory_bytes", "gauge", "NPU memory allocated, bytes"
)
MODEL_INVOCATIONS = _model(
    "modelarts_service_model_invocations_total", "counter", "Inference calls of each model"
)
MODEL_FAILURES = _model(
    "modelarts_service_model_invocation_failures_total",
    "counter",
    "Failed inference calls of each model",
)
MONITOR_METRICS: tuple[MetricSpec, ...] = (
    SERVICE_INSTANCES,
    SERVICE_RUNNING_INSTANCES,
    REQUESTS_LAST_MINUTE,
    MODEL_CPU_USED,
    MODEL_CPU,
    MODEL_MEMORY_USED,
    MODEL_MEMORY,
    MODEL_GPUS_USED,
    MODEL_GPUS,
    MODEL_GPU_MEMORY_USED,
    MODEL_GPU_MEMORY,
    MODEL_NPUS_USED,
    MODEL_NPUS,
    MODEL_NPU_MEMORY_USED,
    MODEL_NPU_MEMORY,
    MODEL_INVOCATIONS,
    MODEL_FAILURES,
)

BUILD_INFO = MetricSpec(
    "modelarts_exporter_build_info",
    "gauge",
    "Version of the exporter and of Python, value 1.",
    ("version", "python_version"),
)
API_REQUESTS = MetricSpec(
    "modelarts_exporter_api_requests_total",
    "counter",
    "HTTP requests sent to the cloud APIs, by endpoint and status code (error: no response).",
    ("endpoint", "code"),
)
API_DURATION = MetricSpec(
    "modelarts_exporter_api_request_duration_seconds",
    "histogram",
    "Duration of HTTP requests to the cloud APIs, by endpoint.",
    ("endpoint",),
)
API_THROTTLED = MetricSpec(
    "modelarts_exporter_api_throttled_total",
    "counter",
    "Answers of the cloud APIs that said to slow down (429, APIG.0308, throttling codes).",
    ("endpoint",),
)
API_RATE_LIMIT = MetricSpec(
    "modelarts_exporter_api_rate_limit",
    "gauge",
    "Requests per second the exporter allows itself now (below the budget while throttled).",
    (),
)
API_RETRIES = MetricSpec(
    "modelarts_exporter_api_retries_total",
    "counter",
    "Requests to the cloud APIs that were retried, by endpoint.",
    ("endpoint",),
)
COLLECT_SUCCESS = MetricSpec(
    "modelarts_exporter_collect_success",
    "gauge",
    "1 if the last attempt to fetch this endpoint for the service succeeded, else 0.",
    ("project_id", "service_id", "endpoint"),
)
LAST_SUCCESS_TS = MetricSpec(
    "modelarts_exporter_last_success_timestamp_seconds",
    "gauge",
    "When this endpoint was last fetched successfully for the service, Unix seconds.",
    ("project_id", "service_id", "endpoint"),
)
POLL_DURATION = MetricSpec(
    "modelarts_exporter_poll_duration_seconds",
    "histogram",
    "Duration of one full poll cycle of a project.",
    ("project_id",),
)
WATCHED_SERVICES = MetricSpec(
    "modelarts_exporter_watched_services",
    "gauge",
    "Services this exporter (shard) watches, by project.",
    ("project_id",),
)
TOKEN_REFRESHES = MetricSpec(
    "modelarts_exporter_token_refreshes_total",
    "counter",
    "IAM tokens obtained successfully.",
    (),
)
TOKEN_REFRESH_FAILURES = MetricSpec(
    "modelarts_exporter_token_refresh_failures_total",
    "counter",
    "Failed attempts to obtain an IAM token.",
    (),
)
CONFIG_RELOAD_OK = MetricSpec(
    "modelarts_exporter_config_last_reload_successful",
    "gauge",
    "1 if the last configuration (re)load succeeded, else 0.",
    (),
)

SERVICE_METRICS: tuple[MetricSpec, ...] = (
    SERVICE_INFO,
    SERVICE_STATUS,
    SERVICE_PROGRESS,
    SERVICE_INVOCATIONS,
    SERVICE_FAILURES,
    MODEL_INSTANCES,
    MODEL_TRAFFIC,
    PUBLISHED_TS,
    CONFIG_UPDATED_TS,
    STATUS_CHANGED_TS,
    AUTO_STOP_TS,
    EVENTS,
    LAST_EVENT_TS,
    UPDATES,
    LAST_UPDATE_TS,
    LAST_UPDATE_RESULT,
    MODEL_RUNNING_INSTANCES,
    *MONITOR_METRICS,
)
EXPORTER_METRICS: tuple[MetricSpec, ...] = (
    BUILD_INFO,
    API_REQUESTS,
    API_DURATION,
    API_RETRIES,
    API_THROTTLED,
    API_RATE_LIMIT,
    COLLECT_SUCCESS,
    LAST_SUCCESS_TS,
    POLL_DURATION,
    WATCHED_SERVICES,
    TOKEN_REFRESHES,
    TOKEN_REFRESH_FAILURES,
    CONFIG_RELOAD_OK,
)
ALL_METRICS: tuple[MetricSpec, ...] = SERVICE_METRICS + EXPORTER_METRICS


def exposed_series_names() -> frozenset[str]:
    """Every sample name that can appear on /metrics (histogram parts included)."""
    names: set[str] = set()
    for spec in ALL_METRICS:
        names.add(spec.name)
        if spec.type == "histogram":
            names.update(f"{spec.name}_{s}" for s in ("bucket", "sum", "count"))
    return frozenset(names)
