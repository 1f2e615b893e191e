"""The Grafana dashboards: generated from grafana/build.py, valid against the JSON Schema in
grafana/schema/, laid out without overlaps, and templated on datasource, job, project and
service."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from tests.test_rules import metric_selectors

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
SCHEMA = json.loads((GRAFANA / "schema" / "dashboard.schema.json").read_text(encoding="utf-8"))

Dashboard = dict[str, Any]


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grafana_build", GRAFANA / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class body runs.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


build = _load_generator()


def _load(path: Path) -> Dashboard:
    loaded: Dashboard = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def _by_uid(uid: str) -> Dashboard:
    return next(d for d in map(_load, DASHBOARD_FILES) if d["uid"] == uid)


def _query_panels(dashboard: Dashboard) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def _validator() -> Draft202012Validator:
    return Draft202012Validator(SCHEMA)


dashboards = pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)

# --- generator ---------------------------------------------------------------------------


def test_committed_json_is_the_generator_output() -> None:
    generated = build.generated()
    assert sorted(generated) == sorted(p.name for p in DASHBOARD_FILES)
    for path in DASHBOARD_FILES:
        assert path.read_text(encoding="utf-8") == generated[path.name], (
            f"{path.name} is stale: run python grafana/build.py"
        )


def test_check_mode_reports_a_stale_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(build, "DASHBOARD_DIR", tmp_path)
    assert build.main([]) == 0
    assert build.main(["--check"]) == 0
    (tmp_path / "modelarts-fleet.json").write_text("{}", encoding="utf-8")
    assert build.main(["--check"]) == 1
    assert "modelarts-fleet.json" in capsys.readouterr().err


def test_the_model_rejects_impossible_panels() -> None:
    query = (build.Query('up{job=~"$job"}'),)
    with pytest.raises(ValueError, match="does not fit"):
        build.Panel("stat", "too wide", query, width=25, height=4)
    with pytest.raises(ValueError, match="TableStyle"):
        build.Panel("table", "no style", query, width=12, height=4)
    with pytest.raises(ValueError, match="1 to 26 queries"):
        build.Panel("stat", "empty", (), width=4, height=4)
    with pytest.raises(ValueError, match="share a width"):
        build.Stack(
            (
                build.Panel("stat", "a", query, width=4, height=4),
                build.Panel("stat", "b", query, width=6, height=4),
            )
        )


# --- schema ------------------------------------------------------------------------------


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(SCHEMA)


@dashboards
def test_dashboard_passes_the_schema(path: Path) -> None:
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in _validator().iter_errors(_load(path))
    ]
    assert errors == []


def _first_panel(d: Dashboard) -> dict[str, Any]:
    return _query_panels(d)[0]


def _set_panel_uid(d: Dashboard) -> None:
    _first_panel(d)["datasource"]["uid"] = "P1809F7CD0C75ACF3"


def _set_target_uid(d: Dashboard) -> None:
    _first_panel(d)["targets"][0]["datasource"] = {"type": "prometheus", "uid": "prom"}


def _drop_ref_id(d: Dashboard) -> None:
    del _first_panel(d)["targets"][0]["refId"]


def _hard_code_job(d: Dashboard) -> None:
    target = _first_panel(d)["targets"][0]
    target["expr"] = target["expr"].replace('job=~"$job"', 'job="modelarts"')


def _also_hard_code_job(d: Dashboard) -> None:
    target = _first_panel(d)["targets"][0]
    target["expr"] = target["expr"] + ' or up{job="modelarts"}'


def _widen(d: Dashboard) -> None:
    _first_panel(d)["gridPos"]["w"] = 25


def _drop_grid(d: Dashboard) -> None:
    del _first_panel(d)["gridPos"]


def _old_schema_version(d: Dashboard) -> None:
    d["schemaVersion"] = 27


def _unknown_panel_type(d: Dashboard) -> None:
    _first_panel(d)["type"] = "graph"


def _no_targets(d: Dashboard) -> None:
    _first_panel(d)["targets"] = []


def _drop_service_variable(d: Dashboard) -> None:
    d["templating"]["list"] = [v for v in d["templating"]["list"] if v["name"] != "service_id"]


def _datasource_variable_for_loki(d: Dashboard) -> None:
    d["templating"]["list"][0]["query"] = "loki"


def _variable_with_fixed_datasource(d: Dashboard) -> None:
    d["templating"]["list"][1]["datasource"] = {"type": "prometheus", "uid": "abc"}


def _typo_in_panel_key(d: Dashboard) -> None:
    _first_panel(d)["fieldconfig"] = _first_panel(d).pop("fieldConfig")


@pytest.mark.parametrize(
    "break_it",
    [
        _set_panel_uid,
        _set_target_uid,
        _drop_ref_id,
        _hard_code_job,
        _also_hard_code_job,
        _widen,
        _drop_grid,
        _old_schema_version,
        _unknown_panel_type,
        _no_targets,
        _drop_service_variable,
        _datasource_variable_for_loki,
        _variable_with_fixed_datasource,
        _typo_in_panel_key,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
def test_schema_rejects_a_broken_dashboard(break_it: Callable[[Dashboard], None]) -> None:
    dashboard = copy.deepcopy(_by_uid("modelarts-fleet"))
    assert _validator().is_valid(dashboard)
    break_it(dashboard)
    assert not _validator().is_valid(dashboard)


# --- rules the schema cannot express -----------------------------------------------------


@dashboards
def test_panels_tile_the_grid_without_overlap(path: Path) -> None:
    dashboard = _load(path)
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


@dashboards
def test_ids_and_ref_ids_are_unique(path: Path) -> None:
    dashboard = _load(path)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in _query_panels(dashboard):
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


@dashboards
def test_every_selector_is_scoped_to_the_job_variable(path: Path) -> None:
    for panel in _query_panels(_load(path)):
        for target in panel["targets"]:
            selectors = metric_selectors(target["expr"])
            assert selectors, target["expr"]
            for name, matchers in selectors:
                assert 'job=~"$job"' in matchers, f"{panel['title']}: {name} lacks $job"


@dashboards
def test_per_service_selectors_follow_project_and_service(path: Path) -> None:
    for panel in _query_panels(_load(path)):
        for target in panel["targets"]:
            for name, matchers in metric_selectors(target["expr"]):
                if name.startswith("modelarts_service_"):
                    assert 'project_id=~"$project_id"' in matchers, panel["title"]
                    assert 'service_id=~"$service_id"' in matchers, panel["title"]


@dashboards
def test_no_datasource_uid_is_hard_coded(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    uids = set(re.findall(r'"uid": "([^"]*)"', text))
    assert uids == {"${datasource}", _load(path)["uid"]}


@dashboards
def test_template_variables(path: Path) -> None:
    variables = {v["name"]: v for v in _load(path)["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "project_id", "service_id"):
        assert variables[name]["type"] == "query"
        assert variables[name]["query"].startswith("label_values(")
        assert variables[name]["query"].endswith(f", {name})")
    # Every variable a query mentions is defined.
    defined = set(variables) | {"__rate_interval", "__range", "__interval"}
    for panel in _query_panels(_load(path)):
        for target in panel["targets"]:
            assert set(re.findall(r"\$(\w+)", target["expr"])) <= defined


def test_dashboards_cover_the_issue() -> None:
    titles = {d["uid"]: {p["title"] for p in d["panels"]} for d in map(_load, DASHBOARD_FILES)}
    assert {"Status of every service", "Failed or concerning services"} <= titles["modelarts-fleet"]
    assert {"Invocations per second", "Failure ratio", "Deployments in progress"} <= titles[
        "modelarts-fleet"
    ]
    assert {"Abnormal events per minute"} <= titles["modelarts-fleet"]
    assert {
        "Status timeline",
        "Deployment progress over time",
        "Instances per model",
        "Traffic split",
        "Failure ratio",
        "Events per minute by phase",
        "Update history",
    } <= titles["modelarts-service"]
    assert {
        "API requests by endpoint and code",
        "API latency",
        "API retries per second",
        "Poll cycle duration",
        "Collect success by endpoint",
        "IAM tokens",
        "Data age",
    } <= titles["modelarts-exporter"]


def test_status_code_mapping_matches_the_query() -> None:
    """The number a status folds into and the text it maps back to must agree."""
    fleet = _by_uid("modelarts-fleet")
    timeline = next(p for p in fleet["panels"] if p["title"] == "Status over time")
    codes = dict(re.findall(r'status="(\w+)"\} \* (\d+)', timeline["targets"][0]["expr"]))
    options = timeline["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert codes and all(options[code]["text"] == status for status, code in codes.items())


# --- provisioning and documentation ------------------------------------------------------


def test_provisioning_files() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/modelarts.yaml").read_text())
    assert provider["apiVersion"] == 1
    (entry,) = provider["providers"]
    assert entry["type"] == "file"
    assert entry["options"]["path"] == "/var/lib/grafana/dashboards"
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yaml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"


def test_readme_pictures_and_panel_lists_are_current() -> None:
    readme = (GRAFANA / "README.md").read_text(encoding="utf-8")
    for make in build.DASHBOARDS:
        section = build.readme_section(make())
        assert section in readme, "stale: paste the output of python grafana/build.py --readme"
    for dashboard in map(_load, DASHBOARD_FILES):
        for panel in _query_panels(dashboard):
            assert f"| {panel['title']} | {panel['type']} |" in readme


@dashboards
def test_every_panel_explains_itself(path: Path) -> None:
    for panel in _query_panels(_load(path)):
        assert panel["description"].endswith("."), panel["title"]
