"""A real Prometheus scrapes the exporter running against its demo simulator; every dashboard
query and every rule expression is evaluated through the Prometheus HTTP API.

This is the proof that the queries work on real data: PromQL that parses but matches nothing,
a label that the exporter spells differently or a join that is many-to-many on real series
all show up here and nowhere else.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from exporter.simulator import DEFAULT_PROJECT_ID, Simulation, serve
from tests.harness import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
RULE_FILES = sorted((ROOT / "deploy" / "prometheus").glob("*.rules.yml"))
DASHBOARD_FILES = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
JOB = "modelarts-exporter"  # matches the job selector of ModelArtsExporterDown
DATA_SHARE_REQUIRED = 0.9

# What Grafana would put in place of its variables. Rate windows are short because the run is
# short: rate() needs two samples inside its window, and Prometheus scrapes every second here.
GRAFANA_VARIABLES = {
    "__rate_interval": "30s",
    "__interval": "15s",
    "__range": "5m",
    "job": JOB,
}

T = TypeVar("T")


def substitute(expr: str, chosen: dict[str, str] | None = None) -> str:
    """Replace Grafana variables; project and service variables select everything unless
    `chosen` picks a value."""
    values = GRAFANA_VARIABLES | (chosen or {})
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), ".*"), expr)


def test_substitute() -> None:
    assert (
        substitute('rate(x{job=~"$job", service_id=~"${service_id}"}[$__rate_interval])')
        == 'rate(x{job=~"modelarts-exporter", service_id=~".*"}[30s])'
    )
    assert substitute("increase(x[$__range]) / $__interval") == "increase(x[5m]) / 15s"
    assert substitute('x{service_id=~"$service_id"}', {"service_id": "s1"}) == 'x{service_id=~"s1"}'


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    expr: str

    @property
    def name(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref_id}"


def _dashboard_queries(
    uid: str | None = None, chosen: dict[str, str] | None = None
) -> list[PanelQuery]:
    queries = []
    for path in DASHBOARD_FILES:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        if uid not in (None, dashboard["uid"]):
            continue
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                expr = substitute(target["expr"], chosen)
                queries.append(PanelQuery(dashboard["uid"], panel["title"], target["refId"], expr))
    return queries


def _rule_exprs() -> dict[str, str]:
    exprs = {}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                exprs[rule.get("alert") or rule["record"]] = rule["expr"]
    return exprs


# --- processes ---------------------------------------------------------------------------


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def _wait_for(
    what: str, check: Callable[[], T | None], timeout: float, proc: subprocess.Popen[bytes]
) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, (
            f"process exited with {proc.returncode} while waiting for {what}"
        )
        try:
            result = check()
        except OSError:
            result = None
        if result is not None:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _log_tail(path: Path) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-30:])


@contextmanager
def _running_exporter(tmp_path: Path, *args: str) -> Iterator[str]:
    """`python -m exporter` with `args` on a free port; yields its address once it is ready."""
    port = free_port()
    log = tmp_path / "exporter.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", *args, f"--web.listen-address=127.0.0.1:{port}"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        address = f"127.0.0.1:{port}"
        _wait_for(
            "the exporter's first poll",
            lambda: True if _get(f"http://{address}/-/ready")[0] == 200 else None,
            30,
            proc,
        )
        yield address
    except BaseException:
        print(_log_tail(log))
        raise
    finally:
        _stop(proc)


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[str]:
    with _running_exporter(tmp_path, "--demo") as address:
        yield address


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def api(self, path: str, **params: str) -> dict[str, Any]:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        status, body = _get(f"{self.url}/api/v1/{path}{query}", timeout=10)
        answer: dict[str, Any] = json.loads(body)
        answer.setdefault("httpStatus", status)
        return answer

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)


@contextmanager
def _running_prometheus(tmp_path: Path, target: str) -> Iterator[Prometheus]:
    """A real Prometheus with our rule files, scraping `target` every second."""
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    assert Path(binary).exists(), "the Prometheus server (Debian package prometheus) is required"
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in RULE_FILES],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]}],
    }
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for(
            "Prometheus to be ready",
            lambda: True if _get(f"{url}/-/ready")[0] == 200 else None,
            30,
            proc,
        )
        yield Prometheus(url)
    except BaseException:
        print(_log_tail(log))
        raise
    finally:
        _stop(proc)


@pytest.fixture
def prometheus(tmp_path: Path, exporter: str) -> Iterator[Prometheus]:
    with _running_prometheus(tmp_path, exporter) as prom:
        yield prom


# --- the test ----------------------------------------------------------------------------


def _has_data(answer: dict[str, Any]) -> bool:
    data = answer["data"]
    return data["resultType"] == "scalar" or bool(data["result"])


def _evaluate(prom: Prometheus, queries: list[PanelQuery]) -> tuple[list[str], list[str]]:
    """Names of the queries that failed and of those that returned nothing."""
    errors, empty = [], []
    for q in queries:
        answer = prom.query(q.expr)
        if answer["status"] != "success":
            errors.append(f"{q.name}: {answer.get('error')}\n  {q.expr}")
        elif not _has_data(answer):
            empty.append(q.name)
    return errors, empty


def test_every_query_evaluates_on_real_data(prometheus: Prometheus) -> None:
    prom = prometheus
    queries = _dashboard_queries()
    assert len(queries) >= 60

    up = _wait_for_result(prom, f'up{{job="{JOB}"}} == 1', 30)
    assert up, "Prometheus never scraped the exporter"

    # Let a few poll cycles (2s each in --demo) land so rates have two samples to work with,
    # then give queries that need something to happen (events, deployments) until the
    # deadline to find it.
    time.sleep(8)
    deadline = time.monotonic() + 60
    while True:
        errors, empty = _evaluate(prom, queries)
        assert errors == [], "dashboard queries rejected by Prometheus:\n" + "\n".join(errors)
        if not empty or time.monotonic() > deadline:
            break
        time.sleep(5)
    share = 1 - len(empty) / len(queries)
    assert share >= DATA_SHARE_REQUIRED, f"{share:.0%} with data; empty: {empty}"

    # The service dashboard as it is used: one service chosen, each in turn.
    services = _services(prom.query(f'modelarts_service_info{{job="{JOB}"}}'))
    assert len(services) >= 2
    for project_id, service_id in sorted(services):
        chosen = {"project_id": project_id, "service_id": service_id}
        errors, _ = _evaluate(prom, _dashboard_queries("modelarts-service", chosen))
        assert errors == [], f"service {service_id}:\n" + "\n".join(errors)

    rule_errors = []
    for name, expr in _rule_exprs().items():
        answer = prom.query(expr)
        if answer["status"] != "success":
            rule_errors.append(f"{name}: {answer.get('error')}")
    assert rule_errors == []

    # Prometheus evaluates the loaded rules itself every second: none may report an error.
    def all_rules_evaluated() -> list[dict[str, Any]] | None:
        rules = [r for g in prom.api("rules")["data"]["groups"] for r in g["rules"]]
        return rules if all(r["health"] != "unknown" for r in rules) else None

    rules = _wait_until(all_rules_evaluated, 15)
    assert len(rules) == len(_rule_exprs())
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []

    # The status alerts see the exporter's real labels: every failed service has an alert.
    # (Allow one evaluation cycle for a service that failed since the last one.)
    def failed_services_alerting() -> bool | None:
        failed = _services(prom.query('modelarts_service_status{status="failed"} == 1'))
        alerting = _services(prom.query('ALERTS{alertname="ModelArtsServiceFailed"}'))
        return True if failed <= alerting else None

    _wait_until(failed_services_alerting, 5)


# --- v2 services and the monitor API on a fleet set up for it ----------------------------

# The dashboard queries that deal with v2 services or the monitor API, and whether each returns
# data for the v1 service (monitored) and for the v2 service of the fleet below.
#   (dashboard, panel, refId): (data for v1, data for v2)
V2_AND_MONITOR_QUERIES = {
    ("modelarts-fleet", "Status of every service", "A"): (True, True),
    ("modelarts-fleet", "Failed or concerning services", "A"): (True, True),
    ("modelarts-fleet", "Status over time", "A"): (True, True),
    ("modelarts-fleet", "Instances short of desired", "A"): (True, False),
    ("modelarts-fleet", "Instances short of desired", "B"): (False, True),
    ("modelarts-fleet", "Highest GPU and NPU memory utilisation", "A"): (True, False),
    ("modelarts-fleet", "Highest GPU and NPU memory utilisation", "B"): (True, False),
    ("modelarts-fleet", "CPU and memory utilisation", "A"): (True, False),
    ("modelarts-fleet", "CPU and memory utilisation", "B"): (True, False),
    ("modelarts-service", "Status", "A"): (True, True),
    ("modelarts-service", "Status timeline", "A"): (True, True),
    ("modelarts-service", "Running vs desired instances", "A"): (True, False),
    ("modelarts-service", "Running vs desired instances", "B"): (True, False),
    ("modelarts-service", "Running vs desired instances", "C"): (True, True),
    ("modelarts-service", "Running vs desired instances", "D"): (True, True),
    ("modelarts-service", "GPU and NPU memory utilisation", "A"): (True, False),
    ("modelarts-service", "GPU and NPU memory utilisation", "B"): (True, False),
    ("modelarts-service", "CPU and memory utilisation", "A"): (True, False),
    ("modelarts-service", "CPU and memory utilisation", "B"): (True, False),
}
RATIO_RECORDS = (
    "modelarts:service_model_cpu:ratio",
    "modelarts:service_model_memory:ratio",
    "modelarts:service_model_gpu:ratio",
    "modelarts:service_model_gpu_memory:ratio",
    "modelarts:service_model_npu:ratio",
    "modelarts:service_model_npu_memory:ratio",
)


@contextmanager
def _simulator_thread(sim: Simulation) -> Iterator[str]:
    """Serve `sim` from an event loop of its own, so that this test may block."""
    loop = asyncio.new_event_loop()
    started: concurrent.futures.Future[tuple[str, asyncio.Event]] = concurrent.futures.Future()

    async def main() -> None:
        async with serve(sim) as url:
            stop = asyncio.Event()
            started.set_result((url, stop))
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        url, stop = started.result(timeout=10)
        try:
            yield url
        finally:
            loop.call_soon_threadsafe(stop.set)
    finally:
        thread.join(timeout=10)
        assert not thread.is_alive(), "the simulator did not stop"
        loop.close()


def _config_file(tmp_path: Path, url: str) -> Path:
    config = {
        "auth": {"method": "token", "token": "e2e-token"},  # the simulator takes any token
        "projects": [
            {
                "project_id": DEFAULT_PROJECT_ID,
                "region": "cn-north-4",
                "endpoint": url,
                "discovery": {"enabled": True},
            }
        ],
        "polling": {
            "interval": "1s",
            "details_interval": "1s",
            "events_interval": "1s",
            "monitor_interval": "1s",
            "discovery_interval": "1s",
            "logs_interval": "60s",
            "timeout": "5s",
            "max_requests_per_second": 100,
            "stale_after": "60s",
        },
    }
    path = tmp_path / "exporter.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_v2_and_monitor_queries_and_rules_return_data(tmp_path: Path) -> None:
    sim = Simulation(seed=7, services=0, dynamic=False)
    # A monitored v1 service one instance short on each model, a GPU and an NPU model among
    # them, its accelerators nearly full (so that ModelArtsServiceAcceleratorMemoryHigh has
    # something to see); a v2 service with instance groups one short; a v2 service in "error".
    v1 = sim.add_service(name="e2e-v1", status="concerning", generation="v1")
    sim.service(v1).load = 0.98
    v2 = sim.add_service(name="e2e-v2", status="concerning", generation="v2")
    v2_error = sim.add_service(name="e2e-v2-error", status="error", generation="v2")
    for model, flavor in zip(
        sim.service(v1).models, ("modelarts.vm.gpu.t4", "modelarts.vm.npu.snt3"), strict=True
    ):
        model.specification, model.instance_count = flavor, 2
    for model in sim.service(v2).models:
        model.instance_count = 2
    sim.add_v2_event(v2, "warning", "health probe slow", count=2)

    with (
        _simulator_thread(sim) as url,
        _running_exporter(tmp_path, f"--config.file={_config_file(tmp_path, url)}") as address,
        _running_prometheus(tmp_path, address) as prom,
    ):
        assert _wait_for_result(prom, f'up{{job="{JOB}"}} == 1', 30)
        # the monitor families of v1 and the instance groups of v2 have been scraped
        _wait_for_result(prom, f'modelarts_service_model_npu_memory_bytes{{service_id="{v1}"}}', 30)
        _wait_for_result(
            prom, f'modelarts_service_model_running_instances{{service_id="{v2}"}}', 30
        )

        by_name = {(q.dashboard, q.panel, q.ref_id): q for q in _dashboard_queries()}
        assert set(V2_AND_MONITOR_QUERIES) <= set(by_name), "a listed query no longer exists"
        for service_id, column in ((v1, 0), (v2, 1)):
            chosen = {"project_id": DEFAULT_PROJECT_ID, "service_id": service_id}
            queries = [
                q
                for q in _dashboard_queries(chosen=chosen)
                if (q.dashboard, q.panel, q.ref_id) in V2_AND_MONITOR_QUERIES
            ]
            errors, empty = _evaluate(prom, queries)
            assert errors == [], errors
            expected_empty = sorted(
                " / ".join(key)
                for key, with_data in V2_AND_MONITOR_QUERIES.items()
                if not with_data[column]
            )
            assert sorted(empty) == expected_empty, (service_id, empty)

        # the generation column, and v2 warning events beside the others
        v2_chosen = {"project_id": DEFAULT_PROJECT_ID, "service_id": v2}
        of_v2 = {
            (q.dashboard, q.panel, q.ref_id): q.expr for q in _dashboard_queries(None, v2_chosen)
        }
        rows = prom.query(of_v2["modelarts-fleet", "Status of every service", "A"])["data"][
            "result"
        ]
        assert [r["metric"].get("generation") for r in rows] == ["v2"], rows
        rows = prom.query(of_v2["modelarts-service", "Newest event", "A"])["data"]["result"]
        assert "warning" in {r["metric"]["event_type"] for r in rows}, rows

        # recording rules: every utilisation ratio of the v1 service, in (0, 1]
        for record in RATIO_RECORDS:
            result = _wait_for_result(prom, f'{record}{{service_id="{v1}"}}', 15)
            assert {r["metric"]["model_id"] for r in result} <= {
                m.model_id for m in sim.service(v1).models
            }, record
            assert all(0 < float(r["value"][1]) <= 1 for r in result), (record, result)

        # alerts: pending (their `for` is minutes) for exactly the services set up to trip them
        def alerting(name: str, expected: set[tuple[str, ...]], *labels: str) -> bool | None:
            answer = prom.query(f'ALERTS{{alertname="{name}"}}')["data"]["result"]
            found = {
                (r["metric"]["service_id"], *(r["metric"].get(k, "") for k in labels))
                for r in answer
            }
            return True if found == expected else None

        v1_models = sim.service(v1).models
        expectations: list[tuple[str, set[tuple[str, ...]], tuple[str, ...]]] = [
            (
                "ModelArtsServiceInstancesBelowDesired",
                {(v1, "")} | {(v2, m.model_id) for m in sim.service(v2).models},
                ("model_id",),
            ),
            (
                "ModelArtsServiceAcceleratorMemoryHigh",
                {(v1, v1_models[0].model_id, "gpu"), (v1, v1_models[1].model_id, "npu")},
                ("model_id", "accelerator"),
            ),
            ("ModelArtsServiceFailed", {(v2_error, "error")}, ("status",)),
        ]
        for name, expected, labels in expectations:
            try:
                _wait_until(functools.partial(alerting, name, expected, *labels), 20)
            except AssertionError:
                answer = prom.query(f'ALERTS{{alertname="{name}"}}')["data"]["result"]
                raise AssertionError((name, [r["metric"] for r in answer])) from None

        rules = [r for g in prom.api("rules")["data"]["groups"] for r in g["rules"]]
        assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []


def _services(answer: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (r["metric"]["project_id"], r["metric"]["service_id"]) for r in answer["data"]["result"]
    }


def _wait_for_result(prom: Prometheus, expr: str, timeout: float) -> list[Any]:
    def check() -> list[Any] | None:
        result: list[Any] = prom.query(expr)["data"]["result"]
        return result or None

    return _wait_until(check, timeout)


def _wait_until(check: Callable[[], T | None], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while (result := check()) is None:
        assert time.monotonic() < deadline, f"timed out after {timeout}s"
        time.sleep(0.5)
    return result
