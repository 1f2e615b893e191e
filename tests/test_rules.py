"""The Prometheus rules: promtool accepts them, every alert is unit-tested both ways, and
every metric name the rules and dashboards use exists in the catalogue."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.metrics.catalogue import exposed_series_names

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted(RULES_DIR.glob("*.rules.yml"))
TEST_FILES = sorted((RULES_DIR / "tests").glob("*.yml"))
DASHBOARD_FILES = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))

SEVERITIES = {"critical", "warning", "info"}
# level:metric:operations, as the Prometheus naming practices describe.
RECORD_NAME = re.compile(r"^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*:[a-z0-9_]+$")

# --- a small PromQL lexer: enough to find every metric selector -------------------------

_TOKEN = re.compile(
    r"""
      (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<braces>\{(?:[^{}"']|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')*\})
    | (?P<range>\[[^\]]*\])
    | (?P<var>\$\{?\w+\}?)
    | (?P<number>\d[\w.]*(?:[eE][+-]?\d+)?)
    | (?P<ident>[a-zA-Z_:][\w:]*)
    | (?P<other>\S)
    """,
    re.VERBOSE,
)
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
# Aggregations may put their grouping before the parenthesis: `sum by (x) (...)`.
_AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count"}
_AGGREGATIONS |= {"count_values", "bottomk", "topk", "quantile"}
_KEYWORDS = _GROUPING | _AGGREGATIONS | {"and", "or", "unless", "offset", "bool", "atan2"}
_KEYWORDS |= {"inf", "nan"}


def metric_selectors(expr: str) -> list[tuple[str, str]]:
    """Every (metric name, label matchers text) in a PromQL expression, in order."""
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(expr)]
    found: list[tuple[str, str]] = []
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else ("", "")
        if kind == "ident" and text in _GROUPING and following[1] == "(":
            i = next(j for j in range(i, len(tokens)) if tokens[j][1] == ")")
        elif kind == "ident" and text not in _KEYWORDS and following[1] != "(":
            if following[0] == "braces":
                found.append((text, following[1]))
                i += 1
            else:
                found.append((text, ""))
        elif kind == "braces":
            raise ValueError(f"selector without a metric name in {expr!r}")
        i += 1
    return found


def metric_names(expr: str) -> set[str]:
    return {name for name, _ in metric_selectors(expr)}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (
            'sum by (job, le) (rate(a_bucket{job=~"$job", x="y{z}"}[$__rate_interval])) '
            "/ on (job) group_left(le) b_total offset 5m > bool 1e-3",
            [("a_bucket", '{job=~"$job", x="y{z}"}'), ("b_total", "")],
        ),
        ("time() - c:recorded:rate5m and ignoring (x) d", [("c:recorded:rate5m", ""), ("d", "")]),
        ('count(e{a="and"} == 1) or vector(0)', [("e", '{a="and"}')]),
        ("histogram_quantile(0.99, sum(rate(f[5m])) by (le))", [("f", "")]),
    ],
)
def test_lexer_finds_metric_selectors(expr: str, expected: list[tuple[str, str]]) -> None:
    assert metric_selectors(expr) == expected


# --- loading -----------------------------------------------------------------------------


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _rules() -> list[dict[str, Any]]:
    return [rule for f in RULE_FILES for g in _load_yaml(f)["groups"] for rule in g["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [r for r in _rules() if "alert" in r]


def _records() -> list[dict[str, Any]]:
    return [r for r in _rules() if "record" in r]


def _dashboard_exprs() -> list[str]:
    exprs: list[str] = []
    for path in DASHBOARD_FILES:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for panel in dashboard["panels"]:
            exprs.extend(t["expr"] for t in panel.get("targets", []))
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                inner = re.fullmatch(r"label_values\((.+), *\w+\)", variable["query"])
                assert inner, variable["query"]
                exprs.append(inner.group(1))
    return exprs


def _rule_test_cases() -> list[dict[str, Any]]:
    return [case for f in TEST_FILES for case in _load_yaml(f)["tests"]]


def _promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool (Prometheus 2.x) must be on PATH"
    return path


# --- promtool ----------------------------------------------------------------------------


def test_rule_files_exist() -> None:
    assert RULE_FILES and TEST_FILES
    assert len(_alerts()) >= 10 and len(_records()) >= 5


def test_promtool_check_rules() -> None:
    result = subprocess.run(
        [_promtool(), "check", "rules", *map(str, RULE_FILES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules() -> None:
    result = subprocess.run(
        [_promtool(), "test", "rules", *(p.name for p in TEST_FILES)],
        cwd=RULES_DIR / "tests",
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TEST_FILES), result.stdout


def test_example_prometheus_config_loads_the_rules() -> None:
    result = subprocess.run(
        [_promtool(), "check", "config", "prometheus.yml"],
        cwd=RULES_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(RULE_FILES)} rule files found" in result.stdout


# --- the shape of the rules --------------------------------------------------------------


@pytest.mark.parametrize("alert", _alerts(), ids=lambda a: a["alert"])
def test_alert_is_documented(alert: dict[str, Any]) -> None:
    assert re.fullmatch(r"ModelArts[A-Z][A-Za-z]+", alert["alert"])
    assert alert["labels"]["severity"] in SEVERITIES
    annotations = alert["annotations"]
    assert annotations["summary"].strip()
    assert len(annotations["description"]) > len(annotations["summary"])


def test_alert_and_record_names_are_unique() -> None:
    names = [r.get("alert") or r["record"] for r in _rules()]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("record", _records(), ids=lambda r: r["record"])
def test_record_names_follow_level_metric_operations(record: dict[str, Any]) -> None:
    assert RECORD_NAME.fullmatch(record["record"]), record["record"]


def test_every_alert_has_a_firing_and_a_quiet_test_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in _rule_test_cases():
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {a["alert"] for a in _alerts()}
    assert alerts - firing == set(), "alerts never seen firing in a test"
    assert alerts - quiet == set(), "alerts never seen staying quiet in a test"
    assert (firing | quiet) - alerts == set(), "tests of alerts that do not exist"


def test_every_recording_rule_is_unit_tested() -> None:
    tested = {
        name
        for case in _rule_test_cases()
        for check in case.get("promql_expr_test", [])
        for name in metric_names(check["expr"])
    }
    assert {r["record"] for r in _records()} - tested == set()


# --- metric names against the catalogue --------------------------------------------------


def _allowed_names() -> set[str]:
    standard = {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    }
    return set(exposed_series_names()) | standard | {r["record"] for r in _records()}


def _is_known(name: str, allowed: set[str]) -> bool:
    return name in allowed or name.startswith(("process_", "python_"))


def test_rules_use_only_catalogue_metrics() -> None:
    allowed = _allowed_names()
    used = {n for rule in _rules() for n in metric_names(rule["expr"])}
    assert used, "the lexer found no metric in the rules"
    assert {n for n in used if not _is_known(n, allowed)} == set()


def test_dashboards_use_only_catalogue_metrics() -> None:
    allowed = _allowed_names()
    used = {n for expr in _dashboard_exprs() for n in metric_names(expr)}
    assert len(used) >= 20, sorted(used)
    assert {n for n in used if not _is_known(n, allowed)} == set()


def test_rule_unit_tests_feed_only_catalogue_metrics() -> None:
    allowed = _allowed_names()
    fed = {
        metric_selectors(series["series"])[0][0]
        for case in _rule_test_cases()
        for series in case.get("input_series", [])
    }
    assert {n for n in fed if not _is_known(n, allowed)} == set()


def test_a_renamed_metric_would_be_caught() -> None:
    allowed = _allowed_names()
    expr = 'rate(modelarts_service_invocation_total{job=~"$job"}[5m])'
    assert not _is_known(next(iter(metric_names(expr))), allowed)
