"""The layers of STYLE.md, held by reading the imports of every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "exporter"


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def modules() -> dict[str, set[str]]:
    return {
        str(p.relative_to(PACKAGE.parent).with_suffix("")).replace("/", "."): imports_of(p)
        for p in sorted(PACKAGE.rglob("*.py"))
    }


def users_of(prefix: str) -> set[str]:
    return {
        mod
        for mod, deps in modules().items()
        if any(d == prefix or d.startswith(prefix + ".") for d in deps)
    }


def test_yaml_only_in_config() -> None:
    assert users_of("yaml") == {"exporter.config"}


def test_prometheus_client_only_in_metrics_web_app() -> None:
    assert all(m.startswith("exporter.metrics.") for m in users_of("prometheus_client"))


def source_contains(text: str) -> set[str]:
    return {
        m for m in modules() if text in (PACKAGE.parent / (m.replace(".", "/") + ".py")).read_text()
    }


def test_outbound_http_only_through_the_transport() -> None:
    # One client session for the cloud APIs (exporter.modelarts.transport), built in app; no
    # module opens sockets or writes HTTP/1.1 framing of its own.
    assert source_contains("ClientSession(") == {"exporter.modelarts.transport"}
    for framing in ("create_connection(", "open_connection(", "HTTP/1.1\\r\\n", "\\r\\n\\r\\n"):
        assert source_contains(framing) == set(), framing
    assert not (PACKAGE / "modelarts" / "http.py").exists()
    assert users_of("exporter.modelarts.transport") <= {
        "exporter.modelarts.client",
        "exporter.modelarts.auth",
        "exporter.app",
    }


@pytest.mark.parametrize(
    ("module_prefix", "forbidden"),
    [
        ("exporter.web", ("exporter.modelarts", "exporter.polling", "exporter.simulator")),
        (
            "exporter.config",
            ("exporter.modelarts", "exporter.polling", "exporter.metrics", "aiohttp"),
        ),
        (
            "exporter.modelarts",
            ("exporter.polling", "exporter.metrics", "exporter.app", "prometheus_client"),
        ),
        (
            "exporter.polling",
            ("exporter.metrics", "exporter.app", "aiohttp", "exporter.modelarts.client"),
        ),
        ("exporter.metrics.collector", ("aiohttp", "exporter.modelarts.client", "exporter.app")),
        (
            "exporter.simulator",
            (
                "exporter.modelarts.client",
                "exporter.modelarts.auth",
                "exporter.polling",
                "exporter.config",
                "exporter.app",
            ),
        ),
    ],
)
def test_one_direction_of_travel(module_prefix: str, forbidden: tuple[str, ...]) -> None:
    for mod, deps in modules().items():
        if mod == module_prefix or mod.startswith(module_prefix + "."):
            bad = {d for d in deps for f in forbidden if d == f or d.startswith(f + ".")}
            assert not bad, f"{mod} imports {sorted(bad)}"
