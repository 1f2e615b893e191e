"""Generate the Grafana dashboards in grafana/dashboards/ from typed definitions.

    python grafana/build.py            rewrite the JSON files
    python grafana/build.py --check    exit 1 if a committed file differs from the generator
    python grafana/build.py --readme   print the dashboard sections of grafana/README.md

Dashboards are written as data (frozen dataclasses that reject impossible panels), laid out
automatically (panels flow left to right in lines of 24 grid units) and rendered into Grafana's
JSON model (schemaVersion 39). Every query selects its series through the `$job`,
`$project_id` and `$service_id` variables and every panel reads from the `$datasource`
variable, so nothing depends on how a particular Grafana or Prometheus is set up.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout without an installed package
    sys.path.insert(0, str(ROOT))

from exporter.metrics.catalogue import ALL_STATUSES, LAST_UPDATE_RESULTS  # noqa: E402

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"
SCHEMA_VERSION = 39
GRID_WIDTH = 24
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SERVICE_DASHBOARD_UID = "modelarts-service"

PanelKind = Literal["timeseries", "stat", "table", "state-timeline", "bargauge", "piechart"]
# Panels that show one value per series: they ask Prometheus for the last instant only.
INSTANT_KINDS = frozenset({"table", "bargauge", "piechart"})

# --- the model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""

    @property
    def whole_range(self) -> bool:
        """A query over the dashboard's whole range has one meaningful value: the last."""
        return "[$__range]" in self.expr


@dataclass(frozen=True)
class Threshold:
    value: float | None
    color: str


@dataclass(frozen=True)
class Mapping:
    """Show `value` (a number, or a label value in tables) as `text` in `color`."""

    value: str
    text: str
    color: str


@dataclass(frozen=True)
class TableStyle:
    hidden: tuple[str, ...] = ("Time", "Value", "__name__", "job", "instance")
    renames: tuple[tuple[str, str], ...] = (("service_name", "service"),)
    # A label column coloured through the panel's mappings.
    coloured_column: str | None = None
    # A column that links to the service dashboard (needs project_id and service_id columns).
    service_link_column: str | None = None


@dataclass(frozen=True)
class Panel:
    kind: PanelKind
    title: str
    queries: tuple[Query, ...]
    width: int
    height: int
    description: str = ""
    unit: str = "short"
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    thresholds: tuple[Threshold, ...] = (Threshold(None, "green"),)
    mappings: tuple[Mapping, ...] = ()
    no_value: str | None = None
    stack: bool = False
    bars: bool = False
    threshold_line: bool = False
    text_mode: Literal["auto", "value", "name", "value_and_name"] = "auto"
    color_mode: Literal["value", "background"] = "value"
    table: TableStyle | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.width <= GRID_WIDTH or self.height < 1:
            raise ValueError(f"{self.title}: size {self.width}x{self.height} does not fit")
        if not self.queries or len(self.queries) > 26:
            raise ValueError(f"{self.title}: a panel needs 1 to 26 queries")
        if (self.kind == "table") != (self.table is not None):
            raise ValueError(f"{self.title}: tables, and only tables, take a TableStyle")
        if self.thresholds[0].value is not None:
            raise ValueError(f"{self.title}: the first threshold is the base, value None")


@dataclass(frozen=True)
class Stack:
    """Panels of one width stacked in a single column of a line."""

    panels: tuple[Panel, ...]

    def __post_init__(self) -> None:
        if len({p.width for p in self.panels}) != 1:
            raise ValueError("stacked panels must share a width")

    @property
    def width(self) -> int:
        return self.panels[0].width

    @property
    def height(self) -> int:
        return sum(p.height for p in self.panels)


@dataclass(frozen=True)
class Row:
    title: str
    items: tuple[Panel | Stack, ...]


@dataclass(frozen=True)
class Variable:
    """A `label_values` query variable."""

    name: str
    label: str
    query: str
    multi: bool = False
    include_all: bool = False
    hidden: bool = False
    # 1: refreshed on dashboard load; 2: also on time range change, as services come and go.
    refresh: Literal[1, 2] = 1


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    variables: tuple[Variable, ...]
    rows: tuple[Row, ...]
    tags: tuple[str, ...] = ("modelarts", "modelarts-exporter")

    @property
    def filename(self) -> str:
        return f"{self.uid}.json"


def panel(
    kind: PanelKind,
    title: str,
    *queries: str | Query,
    w: int,
    h: int,
    legend: str = "",
    **style: Any,
) -> Panel:
    """A panel; plain-string queries share `legend`."""
    built = tuple(q if isinstance(q, Query) else Query(q, legend) for q in queries)
    return Panel(kind, title, built, w, h, **style)


# --- PromQL ------------------------------------------------------------------------------

JOB = 'job=~"$job"'
PROJECT = 'project_id=~"$project_id"'
SERVICE = 'service_id=~"$service_id"'
SERVICE_KEY = "project_id, service_id, service_name"


def matcher(label: str, value: str, op: str = "=") -> str:
    return f'{label}{op}"{value}"'


ABNORMAL = matcher("event_type", "abnormal")
# Update logs are fetched rarely by design, so only these endpoints say whether data is fresh.
FRESH_ENDPOINTS = matcher("endpoint", "details|events", "=~")


def exporter_sel(metric: str, *extra: str) -> str:
    return f"{metric}{{{', '.join((JOB, *extra))}}}"


def service_sel(metric: str, *extra: str) -> str:
    return f"{metric}{{{', '.join((JOB, PROJECT, SERVICE, *extra))}}}"


def over(func: str, selector: str, window: str = "$__rate_interval") -> str:
    return f"{func}({selector}[{window}])"


def failure_ratio(by: str, window: str = "$__rate_interval", func: str = "rate") -> str:
    failures = over(func, service_sel("modelarts_service_invocation_failures_total"), window)
    calls = over(func, service_sel("modelarts_service_invocations_total"), window)
    return f"sum by ({by}) ({failures})\n/ sum by ({by}) ({calls})"


def in_status(status_regex: str) -> str:
    """Services whose current status matches, one series each, keeping the `status` label."""
    status = service_sel("modelarts_service_status", matcher("status", status_regex, "=~"))
    return f"(max by (project_id, service_id, status) ({status}) == 1)"


def one_hot_code(metric: str, label: str, values: Iterable[str]) -> str:
    """Fold a one-hot family into one number per service (1 for the first value, ...), so a
    state timeline or stat can map it back to text; 0 means none of `values` is set."""
    terms = [
        f"{service_sel(metric, matcher(label, value))} * {code}"
        for code, value in enumerate(values, start=1)
    ]
    return f"max by ({SERVICE_KEY}) (\n  " + "\n  or ".join(terms) + "\n)"


STATUS_COLORS = {
    "running": "green",
    "deploying": "blue",
    "concerning": "orange",
    "failed": "red",
    "stopped": "#8e8e8e",
    "finished": "purple",
    "stopping": "yellow",
    "deleting": "dark-red",
    "pending": "light-blue",
    "waiting": "light-blue",
    # v2 only
    "init": "light-blue",
    "upgrading": "blue",
    "error": "red",
    "interrupting": "yellow",
}
STATUS_CODE = one_hot_code("modelarts_service_status", "status", ALL_STATUSES)
STATUS_CODE_MAPPINGS = (
    Mapping("0", "other", "text"),
    *(Mapping(str(c), s, STATUS_COLORS[s]) for c, s in enumerate(ALL_STATUSES, start=1)),
)
STATUS_TEXT_MAPPINGS = tuple(Mapping(s, s, STATUS_COLORS[s]) for s in ALL_STATUSES)

UPDATE_COLORS = {"success": "green", "fail": "red", "running": "blue"}
UPDATE_CODE = one_hot_code("modelarts_service_last_update_result", "result", LAST_UPDATE_RESULTS)
UPDATE_CODE_MAPPINGS = (
    Mapping("0", "no update yet", "text"),
    *(Mapping(str(c), r, UPDATE_COLORS[r]) for c, r in enumerate(LAST_UPDATE_RESULTS, start=1)),
)
UPDATE_TEXT_MAPPINGS = tuple(Mapping(r, r, UPDATE_COLORS[r]) for r in LAST_UPDATE_RESULTS)

OK_FAILED = (Mapping("1", "ok", "green"), Mapping("0", "failed", "red"))
TEXT_COLOR = (Threshold(None, "text"),)


def timestamp_ms(metric: str, by: str = "service_id") -> str:
    return f"max by ({by}) ({service_sel(metric)}) * 1000"


# --- variables ---------------------------------------------------------------------------

JOB_VARIABLE = Variable("job", "Job", "label_values(modelarts_exporter_build_info, job)")


def project_variable(multi: bool) -> Variable:
    query = f"label_values(modelarts_exporter_watched_services{{{JOB}}}, project_id)"
    return Variable("project_id", "Project", query, multi=multi, include_all=True, refresh=2)


def service_variable(metric: str, multi: bool) -> Variable:
    query = f"label_values({metric}{{{JOB}, {PROJECT}}}, service_id)"
    return Variable("service_id", "Service", query, multi=multi, include_all=multi, refresh=2)


# --- the dashboards ----------------------------------------------------------------------


ACCELERATOR_MEMORY = (
    (
        "GPU",
        "modelarts_service_model_gpu_memory_used_bytes",
        "modelarts_service_model_gpu_memory_bytes",
    ),
    (
        "NPU",
        "modelarts_service_model_npu_memory_used_bytes",
        "modelarts_service_model_npu_memory_bytes",
    ),
)
CPU_AND_MEMORY = (
    ("CPU", "modelarts_service_model_cpu_cores_used", "modelarts_service_model_cpu_cores"),
    ("memory", "modelarts_service_model_memory_used_bytes", "modelarts_service_model_memory_bytes"),
)


def v2_only(metric: str) -> str:
    """The series of `metric` that belong to v2 services (modelarts_service_info generation)."""
    return (
        f"{service_sel(metric)} and on (project_id, service_id) "
        f"{service_sel('modelarts_service_info', matcher('generation', 'v2'))}"
    )


def fleet() -> Dashboard:
    info = service_sel("modelarts_service_info")
    calls = service_sel("modelarts_service_invocations_total")
    abnormal = service_sel("modelarts_service_events_total", ABNORMAL)

    def count_status(status: str, color: str) -> Panel:
        alarming = status in ("failed", "concerning")
        return panel(
            "stat",
            status.capitalize(),
            f"count({in_status(status)}) or vector(0)",
            w=4,
            h=4,
            description=f'Services whose current status is "{status}".',
            thresholds=(Threshold(None, "green"), Threshold(1, color))
            if alarming
            else (Threshold(None, color),),
            color_mode="background" if alarming else "value",
        )

    return Dashboard(
        uid="modelarts-fleet",
        title="ModelArts / Fleet overview",
        description="Status, traffic and trouble of every watched ModelArts inference service.",
        variables=(
            JOB_VARIABLE,
            project_variable(multi=True),
            service_variable("modelarts_service_info", multi=True),
        ),
        rows=(
            Row(
                "Now",
                (
                    panel(
                        "stat",
                        "Services",
                        f"count(max by (project_id, service_id) ({info})) or vector(0)",
                        w=4,
                        h=4,
                        description="Services with data from a recent successful poll.",
                        thresholds=(Threshold(None, "blue"),),
                    ),
                    count_status("running", "green"),
                    count_status("deploying", "blue"),
                    count_status("concerning", "orange"),
                    count_status("failed", "red"),
                    count_status("stopped", STATUS_COLORS["stopped"]),
                ),
            ),
            Row(
                "Status",
                (
                    panel(
                        "table",
                        "Status of every service",
                        f"{in_status('.+')}\n"
                        "* on (project_id, service_id) "
                        "group_left(service_name, infer_type, pool_name, generation)\n"
                        "max by (project_id, service_id, service_name, infer_type, pool_name, "
                        f"generation) ({info})",
                        w=14,
                        h=10,
                        description="Current status with inference type, resource pool and "
                        "API generation (v1, or v2 for the new-generation services). Click a "
                        "name for the service's own dashboard.",
                        mappings=STATUS_TEXT_MAPPINGS,
                        table=TableStyle(
                            renames=(("service_name", "service"), ("infer_type", "type")),
                            coloured_column="status",
                            service_link_column="service",
                        ),
                    ),
                    panel(
                        "table",
                        "Failed or concerning services",
                        "(\n  "
                        + timestamp_ms(
                            "modelarts_service_status_changed_timestamp_seconds", SERVICE_KEY
                        )
                        + f"\n  or max by ({SERVICE_KEY}) "
                        f"({v2_only('modelarts_service_last_event_timestamp_seconds')}) * 1000"
                        + "\n)\n* on (project_id, service_id) group_left(status)\n"
                        + in_status("failed|error|concerning"),
                        w=10,
                        h=10,
                        description="Services that need attention, and since when; v2 services "
                        "report no status-change time, so theirs is the time of their newest "
                        "event.",
                        unit="dateTimeFromNow",
                        mappings=STATUS_TEXT_MAPPINGS,
                        no_value="none",
                        table=TableStyle(
                            hidden=("Time", "__name__", "job", "instance"),
                            renames=(("service_name", "service"), ("Value", "since")),
                            coloured_column="status",
                            service_link_column="service",
                        ),
                    ),
                    panel(
                        "state-timeline",
                        "Status over time",
                        STATUS_CODE,
                        w=24,
                        h=8,
                        description="Each service's status through the time range.",
                        legend="{{service_name}}",
                        mappings=STATUS_CODE_MAPPINGS,
                    ),
                ),
            ),
            Row(
                "Resource usage",
                (
                    panel(
                        "timeseries",
                        "Instances short of desired",
                        Query(
                            f"sum by ({SERVICE_KEY}) ({service_sel('modelarts_service_instances')})"
                            f"\n- sum by ({SERVICE_KEY}) "
                            f"({service_sel('modelarts_service_running_instances')})",
                            "{{service_name}} (v1)",
                        ),
                        Query(
                            f"sum by ({SERVICE_KEY}) "
                            f"({v2_only('modelarts_service_model_instances')})"
                            f"\n- sum by ({SERVICE_KEY}) "
                            f"({v2_only('modelarts_service_model_running_instances')})",
                            "{{service_name}} (v2)",
                        ),
                        w=8,
                        h=8,
                        description="Desired minus running instances per service: v1 from the "
                        "monitor API, v2 summed over its instance groups. "
                        "ModelArtsServiceInstancesBelowDesired fires after 10 minutes short.",
                        decimals=0,
                        min=0,
                    ),
                    panel(
                        "timeseries",
                        "Highest GPU and NPU memory utilisation",
                        *(
                            Query(
                                f"max by ({SERVICE_KEY}) "
                                f"({service_sel(used)} / ({service_sel(total)} > 0))",
                                f"{{{{service_name}}}} {kind}",
                            )
                            for kind, used, total in ACCELERATOR_MEMORY
                        ),
                        w=8,
                        h=8,
                        description="The fullest model of each service: accelerator memory used "
                        "over allocated (v1 monitor API). ModelArtsServiceAcceleratorMemoryHigh "
                        "fires above 90% for 15 minutes.",
                        unit="percentunit",
                        min=0,
                        max=1,
                        thresholds=(Threshold(None, "green"), Threshold(0.9, "red")),
                        threshold_line=True,
                    ),
                    panel(
                        "timeseries",
                        "CPU and memory utilisation",
                        *(
                            Query(
                                f"sum by ({SERVICE_KEY}) ({service_sel(used)})\n"
                                f"/ (sum by ({SERVICE_KEY}) ({service_sel(total)}) > 0)",
                                f"{{{{service_name}}}} {kind}",
                            )
                            for kind, used, total in CPU_AND_MEMORY
                        ),
                        w=8,
                        h=8,
                        description="CPU cores and memory used over allocated, all models of a "
                        "service together (v1 monitor API).",
                        unit="percentunit",
                        min=0,
                        max=1,
                    ),
                ),
            ),
            Row(
                "Traffic",
                (
                    panel(
                        "timeseries",
                        "Invocations per second",
                        f"sum by ({SERVICE_KEY}) ({over('rate', calls)})",
                        w=8,
                        h=8,
                        description="Inference calls per second, per service, stacked.",
                        legend="{{service_name}}",
                        unit="reqps",
                        stack=True,
                    ),
                    panel(
                        "timeseries",
                        "Failed invocations per second",
                        f"sum by ({SERVICE_KEY}) ("
                        + over("rate", service_sel("modelarts_service_invocation_failures_total"))
                        + ")",
                        w=8,
                        h=8,
                        description="Failed inference calls per second, per service, stacked.",
                        legend="{{service_name}}",
                        unit="reqps",
                        stack=True,
                    ),
                    panel(
                        "timeseries",
                        "Failure ratio",
                        failure_ratio(SERVICE_KEY),
                        w=8,
                        h=8,
                        legend="{{service_name}}",
                        description="Share of inference calls that failed; the red line is "
                        "the 5% threshold of ModelArtsServiceHighFailureRatio.",
                        unit="percentunit",
                        min=0,
                        thresholds=(Threshold(None, "green"), Threshold(0.05, "red")),
                        threshold_line=True,
                    ),
                    panel(
                        "bargauge",
                        "Invocations in the time range",
                        f"sort_desc(sum by ({SERVICE_KEY}) "
                        f"({over('increase', calls, '$__range')}))",
                        w=12,
                        h=8,
                        description="Inference calls per service over the whole time range.",
                        legend="{{service_name}}",
                        decimals=0,
                        thresholds=(Threshold(None, "blue"),),
                    ),
                    panel(
                        "bargauge",
                        "Failure ratio in the time range",
                        f"sort_desc(\n{failure_ratio(SERVICE_KEY, '$__range', 'increase')}\n)",
                        w=12,
                        h=8,
                        description="Share of failed calls per service over the time range.",
                        legend="{{service_name}}",
                        unit="percentunit",
                        min=0,
                        max=1,
                        thresholds=(
                            Threshold(None, "green"),
                            Threshold(0.01, "orange"),
                            Threshold(0.05, "red"),
                        ),
                    ),
                ),
            ),
            Row(
                "Events and deployments",
                (
                    panel(
                        "timeseries",
                        "Abnormal events per minute",
                        f"sum by ({SERVICE_KEY}) ({over('rate', abnormal)}) * 60",
                        w=12,
                        h=8,
                        description="Abnormal service events per minute, per service.",
                        legend="{{service_name}}",
                        bars=True,
                        stack=True,
                    ),
                    panel(
                        "bargauge",
                        "Abnormal events in the time range, by service",
                        f"sort_desc(sum by ({SERVICE_KEY}) "
                        f"({over('increase', abnormal, '$__range')}))",
                        w=6,
                        h=8,
                        description="Abnormal events recorded per service over the time range.",
                        legend="{{service_name}}",
                        decimals=0,
                        thresholds=(Threshold(None, "green"), Threshold(1, "orange")),
                    ),
                    panel(
                        "bargauge",
                        "Abnormal events in the time range, by phase",
                        f"sort_desc(sum by (phase) ({over('increase', abnormal, '$__range')}))",
                        w=6,
                        h=8,
                        legend="{{phase}}",
                        description="The deployment phase each abnormal event belongs to.",
                        decimals=0,
                        thresholds=(Threshold(None, "green"), Threshold(1, "orange")),
                    ),
                    panel(
                        "bargauge",
                        "Deployments in progress",
                        f"max by ({SERVICE_KEY}) "
                        f"({service_sel('modelarts_service_progress_ratio')})\n"
                        f"and on (project_id, service_id) {in_status('deploying')}",
                        w=12,
                        h=8,
                        legend="{{service_name}}",
                        description="Progress of every service deploying right now.",
                        unit="percentunit",
                        min=0,
                        max=1,
                        no_value="nothing deploying",
                        thresholds=(Threshold(None, "blue"),),
                    ),
                    panel(
                        "table",
                        "Latest update of each service",
                        timestamp_ms("modelarts_service_last_update_timestamp_seconds", SERVICE_KEY)
                        + "\n* on (project_id, service_id) group_left(result)\n"
                        + "(max by (project_id, service_id, result) ("
                        + service_sel("modelarts_service_last_update_result")
                        + ") == 1)",
                        w=12,
                        h=8,
                        description="Time and result of each service's newest update record.",
                        unit="dateTimeFromNow",
                        mappings=UPDATE_TEXT_MAPPINGS,
                        table=TableStyle(
                            hidden=("Time", "__name__", "job", "instance"),
                            renames=(("service_name", "service"), ("Value", "updated")),
                            coloured_column="result",
                            service_link_column="service",
                        ),
                    ),
                ),
            ),
        ),
    )


def service() -> Dashboard:
    sel = service_sel
    calls = sel("modelarts_service_invocations_total")
    failures = sel("modelarts_service_invocation_failures_total")
    events = sel("modelarts_service_events_total")
    traffic = f"sum by (model_name, model_version) ({sel('modelarts_service_model_traffic_ratio')})"
    progress = f"max by ({SERVICE_KEY}) ({sel('modelarts_service_progress_ratio')})"

    def when(title: str, metric: str, description: str, **style: Any) -> Panel:
        return panel(
            "stat",
            title,
            timestamp_ms(metric),
            w=4,
            h=4,
            description=description,
            unit="dateTimeFromNow",
            thresholds=TEXT_COLOR,
            **style,
        )

    return Dashboard(
        uid=SERVICE_DASHBOARD_UID,
        title="ModelArts / Service detail",
        description="One ModelArts inference service: status, models, traffic, events, updates.",
        variables=(
            JOB_VARIABLE,
            project_variable(multi=False),
            service_variable("modelarts_service_info", multi=False),
            Variable(
                "service_name",
                "Service name",
                f"label_values(modelarts_service_info{{{JOB}, {SERVICE}}}, service_name)",
                hidden=True,
                refresh=2,
            ),
        ),
        rows=(
            Row(
                "Service $service_name",
                (
                    panel(
                        "stat",
                        "Status",
                        STATUS_CODE,
                        w=4,
                        h=4,
                        description="The service's current status.",
                        legend="{{service_name}}",
                        mappings=STATUS_CODE_MAPPINGS,
                        text_mode="value",
                        color_mode="background",
                    ),
                    panel(
                        "stat",
                        "Deployment progress",
                        progress,
                        w=4,
                        h=4,
                        description="As reported by ModelArts; 0 when it reports none.",
                        unit="percentunit",
                        thresholds=(Threshold(None, "blue"),),
                    ),
                    when(
                        "Status changed",
                        "modelarts_service_status_changed_timestamp_seconds",
                        "When the service's status last changed.",
                    ),
                    when(
                        "Configuration applied",
                        "modelarts_service_config_updated_timestamp_seconds",
                        "When the service's current configuration was applied.",
                    ),
                    when(
                        "Published",
                        "modelarts_service_published_timestamp_seconds",
                        "When the service was last published.",
                    ),
                    when(
                        "Automatic stop",
                        "modelarts_service_auto_stop_timestamp_seconds",
                        "When ModelArts will stop the service by itself.",
                        no_value="not scheduled",
                    ),
                    panel(
                        "table",
                        "Service facts",
                        sel("modelarts_service_info"),
                        w=24,
                        h=3,
                        description="Inference type, workspace, cluster, resource pool and owner.",
                        table=TableStyle(
                            renames=(("service_name", "service"), ("infer_type", "type"))
                        ),
                    ),
                ),
            ),
            Row(
                "Status",
                (
                    panel(
                        "state-timeline",
                        "Status timeline",
                        STATUS_CODE,
                        w=24,
                        h=5,
                        description="The service's status through the time range.",
                        legend="{{service_name}}",
                        mappings=STATUS_CODE_MAPPINGS,
                    ),
                    panel(
                        "timeseries",
                        "Deployment progress over time",
                        progress,
                        w=24,
                        h=6,
                        description="Progress reported by ModelArts through the time range.",
                        legend="{{service_name}}",
                        unit="percentunit",
                        min=0,
                        max=1,
                    ),
                ),
            ),
            Row(
                "Models",
                (
                    panel(
                        "timeseries",
                        "Instances per model",
                        "sum by (model_name, model_version, specification) "
                        f"({sel('modelarts_service_model_instances')})",
                        w=8,
                        h=8,
                        legend="{{model_name}} {{model_version}} ({{specification}})",
                        description="Configured instance count of each model version.",
                        decimals=0,
                        stack=True,
                    ),
                    panel(
                        "piechart",
                        "Traffic split",
                        traffic,
                        w=8,
                        h=8,
                        legend="{{model_name}} {{model_version}}",
                        description="Share of traffic routed to each model version now.",
                        unit="percentunit",
                    ),
                    panel(
                        "timeseries",
                        "Traffic split over time",
                        traffic,
                        w=8,
                        h=8,
                        description="Share of traffic per model version through the time range.",
                        legend="{{model_name}} {{model_version}}",
                        unit="percentunit",
                        min=0,
                        max=1,
                        stack=True,
                    ),
                ),
            ),
            Row(
                "Resource usage",
                (
                    panel(
                        "timeseries",
                        "Running vs desired instances",
                        Query(f"sum({sel('modelarts_service_instances')})", "desired (v1)"),
                        Query(f"sum({sel('modelarts_service_running_instances')})", "running (v1)"),
                        Query(
                            f"sum({sel('modelarts_service_model_instances')})",
                            "desired, all models",
                        ),
                        Query(
                            f"sum({sel('modelarts_service_model_running_instances')})",
                            "running, all models",
                        ),
                        w=8,
                        h=8,
                        description="Instances asked for and running: v1 from the monitor API, "
                        "v2 from its instance groups; ModelArtsServiceInstancesBelowDesired "
                        "fires after 10 minutes short.",
                        decimals=0,
                    ),
                    panel(
                        "timeseries",
                        "GPU and NPU memory utilisation",
                        *(
                            Query(
                                f"max by (model_name, model_version, node_id) "
                                f"({sel(used)} / ({sel(total)} > 0))",
                                f"{kind} {{{{model_name}}}} {{{{model_version}}}} {{{{node_id}}}}",
                            )
                            for kind, used, total in ACCELERATOR_MEMORY
                        ),
                        w=8,
                        h=8,
                        description="Accelerator memory used over allocated, per model (v1 "
                        "monitor API); ModelArtsServiceAcceleratorMemoryHigh fires above 90%.",
                        unit="percentunit",
                        min=0,
                        max=1,
                        thresholds=(Threshold(None, "green"), Threshold(0.9, "red")),
                        threshold_line=True,
                    ),
                    panel(
                        "timeseries",
                        "CPU and memory utilisation",
                        *(
                            Query(
                                f"max by (model_name, model_version, node_id) "
                                f"({sel(used)} / ({sel(total)} > 0))",
                                f"{kind} {{{{model_name}}}} {{{{model_version}}}} {{{{node_id}}}}",
                            )
                            for kind, used, total in CPU_AND_MEMORY
                        ),
                        w=8,
                        h=8,
                        description="CPU cores and memory used over allocated, per model (v1 "
                        "monitor API).",
                        unit="percentunit",
                        min=0,
                        max=1,
                    ),
                ),
            ),
            Row(
                "Invocations",
                (
                    panel(
                        "timeseries",
                        "Invocations per second",
                        Query(f"sum({over('rate', calls)})", "all calls"),
                        Query(f"sum({over('rate', failures)})", "failed calls"),
                        w=10,
                        h=8,
                        description="All inference calls and the failed ones, per second.",
                        unit="reqps",
                    ),
                    panel(
                        "timeseries",
                        "Failure ratio",
                        failure_ratio("service_id"),
                        w=10,
                        h=8,
                        legend="failed",
                        description="The red line is the 5% threshold of "
                        "ModelArtsServiceHighFailureRatio.",
                        unit="percentunit",
                        min=0,
                        thresholds=(Threshold(None, "green"), Threshold(0.05, "red")),
                        threshold_line=True,
                    ),
                    Stack(
                        (
                            panel(
                                "stat",
                                "Calls in the time range",
                                f"sum({over('increase', calls, '$__range')})",
                                w=4,
                                h=4,
                                description="Inference calls over the whole time range.",
                                decimals=0,
                                thresholds=(Threshold(None, "blue"),),
                            ),
                            panel(
                                "stat",
                                "Failed in the time range",
                                failure_ratio("service_id", "$__range", "increase"),
                                w=4,
                                h=4,
                                description="Share of calls that failed over the whole time range.",
                                unit="percentunit",
                                thresholds=(
                                    Threshold(None, "green"),
                                    Threshold(0.01, "orange"),
                                    Threshold(0.05, "red"),
                                ),
                            ),
                        )
                    ),
                ),
            ),
            Row(
                "Events",
                (
                    panel(
                        "timeseries",
                        "Events per minute by phase",
                        f"sum by (event_type, phase) ({over('rate', events)}) * 60",
                        w=12,
                        h=8,
                        legend="{{event_type}} {{phase}}",
                        description="Service events by type (normal, abnormal and, for v2 "
                        "services, warning) and deployment phase.",
                        bars=True,
                        stack=True,
                    ),
                    panel(
                        "bargauge",
                        "Events in the time range by phase",
                        "sort_desc(sum by (event_type, phase) "
                        f"({over('increase', events, '$__range')}))",
                        w=6,
                        h=8,
                        description="Events recorded over the time range, by type and phase.",
                        legend="{{event_type}} {{phase}}",
                        decimals=0,
                        thresholds=(Threshold(None, "blue"),),
                    ),
                    panel(
                        "stat",
                        "Newest event",
                        timestamp_ms(
                            "modelarts_service_last_event_timestamp_seconds", "event_type"
                        ),
                        w=6,
                        h=8,
                        description="Time of the newest event of each type.",
                        legend="{{event_type}}",
                        unit="dateTimeFromNow",
                        text_mode="value_and_name",
                        thresholds=TEXT_COLOR,
                    ),
                ),
            ),
            Row(
                "Updates",
                (
                    panel(
                        "stat",
                        "Latest update result",
                        UPDATE_CODE,
                        w=6,
                        h=4,
                        description="Result of the newest service update record.",
                        legend="{{service_name}}",
                        mappings=UPDATE_CODE_MAPPINGS,
                        text_mode="value",
                        color_mode="background",
                    ),
                    panel(
                        "stat",
                        "Latest update",
                        timestamp_ms("modelarts_service_last_update_timestamp_seconds"),
                        w=6,
                        h=4,
                        description="Time of the newest service update record.",
                        unit="dateTimeFromNow",
                        no_value="no update yet",
                        thresholds=TEXT_COLOR,
                    ),
                    panel(
                        "stat",
                        "Updates finished in the time range",
                        "sum by (result) ("
                        f"{over('increase', sel('modelarts_service_updates_total'), '$__range')})",
                        w=12,
                        h=4,
                        description="Updates that ended in success or fail over the time range.",
                        legend="{{result}}",
                        decimals=0,
                        text_mode="value_and_name",
                        thresholds=(Threshold(None, "blue"),),
                    ),
                    panel(
                        "state-timeline",
                        "Update history",
                        UPDATE_CODE,
                        w=24,
                        h=5,
                        legend="{{service_name}}",
                        description="Result of the newest update record through the time "
                        "range: an update shows as running, then success or fail.",
                        mappings=UPDATE_CODE_MAPPINGS,
                    ),
                ),
            ),
        ),
    )


def exporter() -> Dashboard:
    requests = exporter_sel("modelarts_exporter_api_requests_total")
    errors = exporter_sel(
        "modelarts_exporter_api_requests_total", 'code=~"4..|5..|error"', 'code!="404"'
    )
    buckets = exporter_sel("modelarts_exporter_api_request_duration_seconds_bucket")
    poll = "modelarts_exporter_poll_duration_seconds"
    collect = service_sel("modelarts_exporter_collect_success")
    last_success = "modelarts_exporter_last_success_timestamp_seconds"
    # Endpoints that never saw an error or retry still draw a zero line instead of nothing.
    zero_per_endpoint = f"sum by (endpoint) ({over('rate', requests)}) * 0"
    return Dashboard(
        uid="modelarts-exporter",
        title="ModelArts / Exporter health",
        description="modelarts-exporter itself: cloud API calls, polling, data freshness, "
        "authentication and the process.",
        variables=(
            JOB_VARIABLE,
            project_variable(multi=True),
            service_variable("modelarts_exporter_collect_success", multi=True),
        ),
        rows=(
            Row(
                "Overview",
                (
                    panel(
                        "stat",
                        "Scrape target",
                        exporter_sel("up"),
                        w=4,
                        h=4,
                        legend="{{instance}}",
                        description="Whether Prometheus reaches each exporter instance.",
                        mappings=(Mapping("1", "up", "green"), Mapping("0", "down", "red")),
                        color_mode="background",
                    ),
                    panel(
                        "stat",
                        "Version",
                        "max by (version, python_version) "
                        f"({exporter_sel('modelarts_exporter_build_info')})",
                        w=4,
                        h=4,
                        description="Exporter and Python versions of the running instances.",
                        legend="{{version}} (Python {{python_version}})",
                        text_mode="name",
                        thresholds=TEXT_COLOR,
                    ),
                    panel(
                        "stat",
                        "Watched services",
                        f"sum({exporter_sel('modelarts_exporter_watched_services', PROJECT)})",
                        w=4,
                        h=4,
                        description="Services the exporter watches in the selected projects.",
                        thresholds=(Threshold(None, "blue"),),
                    ),
                    panel(
                        "stat",
                        "Collect success",
                        f"avg({collect})",
                        w=4,
                        h=4,
                        description="Share of (service, endpoint) pairs whose last fetch "
                        "succeeded.",
                        unit="percentunit",
                        thresholds=(
                            Threshold(None, "red"),
                            Threshold(0.9, "orange"),
                            Threshold(1, "green"),
                        ),
                    ),
                    panel(
                        "stat",
                        "Oldest data",
                        f"max(time() - {service_sel(last_success, FRESH_ENDPOINTS)})",
                        w=4,
                        h=4,
                        description="Age of the least recently refreshed service details or "
                        "events; ModelArtsExporterDataStale fires above 10 minutes.",
                        unit="s",
                        thresholds=(
                            Threshold(None, "green"),
                            Threshold(300, "orange"),
                            Threshold(600, "red"),
                        ),
                    ),
                    panel(
                        "stat",
                        "Configuration reload",
                        f"min({exporter_sel('modelarts_exporter_config_last_reload_successful')})",
                        w=4,
                        h=4,
                        description="Whether the last configuration (re)load succeeded.",
                        mappings=OK_FAILED,
                        color_mode="background",
                    ),
                ),
            ),
            Row(
                "Cloud API",
                (
                    panel(
                        "timeseries",
                        "API requests by endpoint and code",
                        f"sum by (endpoint, code) ({over('rate', requests)})",
                        w=12,
                        h=8,
                        legend="{{endpoint}} {{code}}",
                        description="Requests per second to ModelArts and IAM; code `error` "
                        "means no response (timeout or connection failure).",
                        unit="reqps",
                        stack=True,
                    ),
                    panel(
                        "timeseries",
                        "API error ratio",
                        f"(\n  sum by (endpoint) ({over('rate', errors)})\n"
                        f"  or {zero_per_endpoint}\n)\n"
                        f"/ sum by (endpoint) ({over('rate', requests)})",
                        w=12,
                        h=8,
                        legend="{{endpoint}}",
                        description="Share of requests answered with an error other than 404, "
                        "or not at all; ModelArtsExporterApiErrorsHigh fires above 10%.",
                        unit="percentunit",
                        min=0,
                        thresholds=(Threshold(None, "green"), Threshold(0.1, "red")),
                        threshold_line=True,
                    ),
                    panel(
                        "timeseries",
                        "API latency",
                        *(
                            Query(
                                f"histogram_quantile({q}, sum by (endpoint, le) "
                                f"({over('rate', buckets)}))",
                                f"p{round(q * 100)} {{{{endpoint}}}}",
                            )
                            for q in (0.99, 0.5)
                        ),
                        w=12,
                        h=8,
                        description="99th percentile and median request duration.",
                        unit="s",
                    ),
                    panel(
                        "timeseries",
                        "API retries per second",
                        "sum by (endpoint) ("
                        f"{over('rate', exporter_sel('modelarts_exporter_api_retries_total'))})"
                        f"\nor {zero_per_endpoint}",
                        w=12,
                        h=8,
                        legend="{{endpoint}}",
                        description="Requests retried after a timeout, connection error, "
                        "429 or 5xx.",
                        unit="reqps",
                    ),
                ),
            ),
            Row(
                "Polling",
                (
                    panel(
                        "timeseries",
                        "Poll cycle duration",
                        Query(
                            "histogram_quantile(0.9, sum by (project_id, le) "
                            f"({over('rate', exporter_sel(poll + '_bucket', PROJECT))}))",
                            "p90 {{project_id}}",
                        ),
                        Query(
                            "sum by (project_id) "
                            f"({over('rate', exporter_sel(poll + '_sum', PROJECT))})\n"
                            "/ sum by (project_id) "
                            f"({over('rate', exporter_sel(poll + '_count', PROJECT))})",
                            "mean {{project_id}}",
                        ),
                        w=12,
                        h=8,
                        description="One full poll cycle of a project; it should stay well "
                        "below polling.interval.",
                        unit="s",
                    ),
                    panel(
                        "timeseries",
                        "Collect success by endpoint",
                        f"avg by (endpoint) ({collect})",
                        w=12,
                        h=8,
                        legend="{{endpoint}}",
                        description="Share of services whose last fetch of each endpoint "
                        "succeeded.",
                        unit="percentunit",
                        min=0,
                        max=1,
                    ),
                    panel(
                        "state-timeline",
                        "Collect success per service",
                        f"min by (project_id, service_id) ({collect})",
                        w=12,
                        h=8,
                        legend="{{service_id}}",
                        description="Red while any endpoint of the service fails to be fetched.",
                        mappings=OK_FAILED,
                    ),
                    panel(
                        "timeseries",
                        "Data age",
                        f"max by (endpoint) (time() - {service_sel(last_success)})",
                        w=12,
                        h=8,
                        legend="{{endpoint}}",
                        description="Time since each endpoint was last fetched successfully, "
                        "worst service. Update logs are fetched only when a service changes "
                        "or every polling.logs_interval.",
                        unit="s",
                        min=0,
                    ),
                ),
            ),
            Row(
                "Authentication and process",
                (
                    panel(
                        "timeseries",
                        "IAM tokens",
                        *(
                            Query(
                                f"sum by (instance) ({exporter_sel(metric)})",
                                f"{verb} {{{{instance}}}}",
                            )
                            for metric, verb in (
                                ("modelarts_exporter_token_refreshes_total", "obtained"),
                                ("modelarts_exporter_token_refresh_failures_total", "failed"),
                            )
                        ),
                        w=6,
                        h=8,
                        description="Tokens obtained and failed attempts since the exporter "
                        "started (both stay 0 with a static token).",
                        decimals=0,
                    ),
                    panel(
                        "timeseries",
                        "Scrape duration",
                        exporter_sel("scrape_duration_seconds"),
                        w=6,
                        h=8,
                        description="How long Prometheus takes to scrape the exporter.",
                        legend="{{instance}}",
                        unit="s",
                    ),
                    panel(
                        "timeseries",
                        "Resident memory",
                        exporter_sel("process_resident_memory_bytes"),
                        w=6,
                        h=8,
                        description="Resident memory of the exporter process.",
                        legend="{{instance}}",
                        unit="bytes",
                    ),
                    panel(
                        "timeseries",
                        "CPU",
                        over("rate", exporter_sel("process_cpu_seconds_total")),
                        w=6,
                        h=8,
                        legend="{{instance}}",
                        description="CPU time used per second: 100% is one full core.",
                        unit="percentunit",
                    ),
                ),
            ),
        ),
    )


DASHBOARDS = (fleet, service, exporter)

# --- layout ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    panel: Panel
    x: int
    y: int


def layout(row: Row, top: int) -> tuple[list[Placed], int]:
    """Flow a row's items into lines of at most 24 units starting at `top`; returns the
    placed panels and the y just below the row."""
    placed: list[Placed] = []
    x, y, line_height = GRID_WIDTH, top, 0
    for item in row.items:
        if x + item.width > GRID_WIDTH:
            x, y, line_height = 0, y + line_height, 0
        line_height = max(line_height, item.height)
        offset = 0
        for p in item.panels if isinstance(item, Stack) else (item,):
            placed.append(Placed(p, x, y + offset))
            offset += p.height
        x += item.width
    return placed, y + line_height


# --- rendering ---------------------------------------------------------------------------


def _reduce() -> dict[str, Any]:
    return {"calcs": ["lastNotNull"], "fields": "", "values": False}


def _mappings(mappings: Iterable[Mapping]) -> list[dict[str, Any]]:
    options = {
        m.value: {"color": m.color, "index": i, "text": m.text} for i, m in enumerate(mappings)
    }
    return [{"options": options, "type": "value"}] if options else []


def _legend() -> dict[str, Any]:
    return {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True}


def _target(query: Query, ref_id: str, kind: PanelKind) -> dict[str, Any]:
    instant = kind in INSTANT_KINDS or query.whole_range
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": query.expr,
        "format": "table" if kind == "table" else "time_series",
        "instant": instant,
        "legendFormat": query.legend,
        "range": not instant,
        "refId": ref_id,
    }


def _defaults(p: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "color": {
            "mode": "palette-classic" if p.kind in ("timeseries", "piechart") else "thresholds"
        },
        # Tables colour one text column through an override instead (see _overrides).
        "mappings": [] if p.table else _mappings(p.mappings),
        "thresholds": {
            "mode": "absolute",
            "steps": [{"color": t.color, "value": t.value} for t in p.thresholds],
        },
        "unit": p.unit,
    }
    for key in ("min", "max", "decimals"):
        if (value := getattr(p, key)) is not None:
            defaults[key] = value
    if p.no_value is not None:
        defaults["noValue"] = p.no_value
    if p.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "bars" if p.bars else "line",
            "fillOpacity": 70 if p.bars else 10,
            "lineWidth": 1,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"group": "A", "mode": "normal" if p.stack else "none"},
            "thresholdsStyle": {"mode": "line" if p.threshold_line else "off"},
        }
    elif p.kind == "state-timeline":
        defaults["custom"] = {"fillOpacity": 80, "lineWidth": 0}
    elif p.kind == "table":
        defaults["custom"] = {"align": "auto", "cellOptions": {"type": "auto"}}
    return defaults


def _overrides(p: Panel) -> list[dict[str, Any]]:
    if p.table is None:
        return []
    overrides: list[dict[str, Any]] = []
    if p.table.coloured_column:
        overrides.append(
            {
                "matcher": {"id": "byName", "options": p.table.coloured_column},
                "properties": [
                    {"id": "mappings", "value": _mappings(p.mappings)},
                    {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                ],
            }
        )
    if p.table.service_link_column:
        url = (
            f"/d/{SERVICE_DASHBOARD_UID}/modelarts-service-detail?${{__url_time_range}}"
            "&var-datasource=${datasource}&var-job=${job}"
            "&var-project_id=${__data.fields.project_id}"
            "&var-service_id=${__data.fields.service_id}"
        )
        overrides.append(
            {
                "matcher": {"id": "byName", "options": p.table.service_link_column},
                "properties": [{"id": "links", "value": [{"title": "Service detail", "url": url}]}],
            }
        )
    return overrides


def _options(p: Panel) -> dict[str, Any]:
    tooltip = {"mode": "multi", "sort": "desc"}
    match p.kind:
        case "timeseries":
            return {"legend": _legend(), "tooltip": tooltip}
        case "stat":
            return {
                "colorMode": p.color_mode,
                "graphMode": "none",
                "justifyMode": "auto",
                "orientation": "auto",
                "reduceOptions": _reduce(),
                "showPercentChange": False,
                "textMode": p.text_mode,
                "wideLayout": True,
            }
        case "table":
            return {
                "cellHeight": "sm",
                "footer": {"countRows": False, "fields": "", "reducer": ["sum"], "show": False},
                "showHeader": True,
            }
        case "state-timeline":
            return {
                "alignValue": "left",
                "legend": _legend(),
                "mergeValues": True,
                "rowHeight": 0.9,
                "showValue": "auto",
                "tooltip": tooltip,
            }
        case "bargauge":
            return {
                "displayMode": "gradient",
                "maxVizHeight": 300,
                "minVizHeight": 16,
                "minVizWidth": 8,
                "namePlacement": "auto",
                "orientation": "horizontal",
                "reduceOptions": _reduce(),
                "showUnfilled": True,
                "sizing": "auto",
                "valueMode": "color",
            }
        case "piechart":
            return {
                "displayLabels": ["percent"],
                "legend": {
                    "displayMode": "table",
                    "placement": "right",
                    "showLegend": True,
                    "values": ["percent"],
                },
                "pieType": "donut",
                "reduceOptions": _reduce(),
                "tooltip": {"mode": "single", "sort": "none"},
            }


def _panel_json(p: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "datasource": DATASOURCE,
        "description": p.description,
        "fieldConfig": {"defaults": _defaults(p), "overrides": _overrides(p)},
        "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y},
        "id": panel_id,
        "options": _options(p),
        "targets": [_target(q, chr(ord("A") + i), p.kind) for i, q in enumerate(p.queries)],
        "title": p.title,
        "type": p.kind,
    }
    if p.table is not None:
        organize = {
            "excludeByName": dict.fromkeys(p.table.hidden, True),
            "indexByName": {},
            "renameByName": dict(p.table.renames),
        }
        rendered["transformations"] = [{"id": "organize", "options": organize}]
    return rendered


def render(dashboard: Dashboard) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    for row in dashboard.rows:
        panels.append(
            {
                "collapsed": False,
                "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y},
                "id": len(panels) + 1,
                "panels": [],
                "title": row.title,
                "type": "row",
            }
        )
        placed, y = layout(row, y + 1)
        for item in placed:
            panels.append(_panel_json(item.panel, len(panels) + 1, item.x, item.y))
    return {
        "annotations": {"list": []},
        "description": dashboard.description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "asDropdown": False,
                "includeVars": True,
                "keepTime": True,
                "tags": ["modelarts"],
                "title": "ModelArts dashboards",
                "type": "dashboards",
            }
        ],
        "panels": panels,
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "tags": list(dashboard.tags),
        "templating": {
            "list": [_datasource_variable(), *(_variable(v) for v in dashboard.variables)]
        },
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": dashboard.title,
        "uid": dashboard.uid,
        "version": 1,
        "weekStart": "",
    }


def _datasource_variable() -> dict[str, Any]:
    return {
        "current": {},
        "hide": 0,
        "includeAll": False,
        "label": "Data source",
        "multi": False,
        "name": "datasource",
        "options": [],
        "query": "prometheus",
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
        "type": "datasource",
    }


def _variable(v: Variable) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "current": {},
        "datasource": DATASOURCE,
        "definition": v.query,
        "hide": 2 if v.hidden else 0,
        "includeAll": v.include_all,
        "label": v.label,
        "multi": v.multi,
        "name": v.name,
        "options": [],
        "query": v.query,
        "refresh": v.refresh,
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
        "type": "query",
    }
    if v.include_all:
        rendered["allValue"] = ".*"
    return rendered


def dump(dashboard: Dashboard) -> str:
    return json.dumps(render(dashboard), indent=2, ensure_ascii=False) + "\n"


def generated() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {d.filename: dump(d) for d in (make() for make in DASHBOARDS)}


# --- layout pictures for the README ------------------------------------------------------

CELL = 4  # characters per grid unit


def _text_line(grid_rows: int) -> int:
    """Text lines for a height in grid units: a box 4 units high keeps 2 lines inside."""
    return math.ceil(grid_rows * 0.6)


def sketch(dashboard: Dashboard) -> str:
    """A text picture of the dashboard: each row, and each panel as a box with its title
    and type."""
    out = [f"{dashboard.title}  (uid: {dashboard.uid})"]
    y = 0
    for row in dashboard.rows:
        out.append(f"== {row.title} ".ljust(GRID_WIDTH * CELL + 1, "="))
        top = y + 1
        placed, y = layout(row, top)
        canvas = [[" "] * (GRID_WIDTH * CELL + 1) for _ in range(_text_line(y - top) + 1)]
        for item in placed:
            _draw_box(canvas, item, top)
        out.extend("".join(chars).rstrip() for chars in canvas)
    return "\n".join(out)


def _draw_box(canvas: list[list[str]], item: Placed, row_top: int) -> None:
    left, right = item.x * CELL, (item.x + item.panel.width) * CELL
    top = _text_line(item.y - row_top)
    bottom = _text_line(item.y - row_top + item.panel.height)
    # Neighbouring boxes share borders; a corner drawn first must survive the second box.
    for line, col in [(top, c) for c in range(left, right)] + [
        (bottom, c) for c in range(left, right)
    ]:
        if canvas[line][col] != "+":
            canvas[line][col] = "-"
    for line in range(top + 1, bottom):
        canvas[line][left] = canvas[line][right] = "|"
    for line in (top, bottom):
        canvas[line][left] = canvas[line][right] = "+"
    room = right - left - 3
    lines: list[str] = []
    for word in f"{item.panel.title} ({item.panel.kind})".split():
        if lines and len(f"{lines[-1]} {word}") <= room:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word[:room])
    for offset, text in enumerate(lines[: bottom - top - 1]):
        canvas[top + 1 + offset][left + 2 : left + 2 + len(text)] = list(text)


def readme_section(dashboard: Dashboard) -> str:
    """The README's picture and panel list of one dashboard."""
    rows = [
        f"| {row.title} | {p.title} | {p.kind} | {p.description} |"
        for row in dashboard.rows
        for item in row.items
        for p in (item.panels if isinstance(item, Stack) else (item,))
    ]
    return "\n".join(
        [
            f"### {dashboard.title}",
            "",
            dashboard.description,
            "",
            "```text",
            sketch(dashboard),
            "```",
            "",
            "| Row | Panel | Type | Shows |",
            "|---|---|---|---|",
            *rows,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the ModelArts Grafana dashboards.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="fail if committed JSON is stale")
    mode.add_argument("--readme", action="store_true", help="print the README sections")
    args = parser.parse_args(argv)
    if args.readme:
        print("\n\n".join(readme_section(make()) for make in DASHBOARDS))
        return 0
    stale = []
    for name, text in generated().items():
        path = DASHBOARD_DIR / name
        if not args.check:
            path.write_text(text, encoding="utf-8")
        elif not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    if stale:
        print(f"out of date, run python grafana/build.py: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
