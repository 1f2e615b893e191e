"""The benchmark harness itself works: a small fleet, a short interval, the table comes out.

200 services, not fewer: the exporter's CPU is read from /proc in 10 ms ticks, and a cycle of a
few dozen services now costs less than one tick, so the CPU column could not be checked.

Beyond being present and positive, the numbers are not checked (they mean little at this
size); only that every process starts, the window holds whole cycles and the report is written.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_bench_runs_at_a_tiny_size(tmp_path: Path) -> None:
    argv = [
        sys.executable,
        "-m",
        "bench",
        "--sizes=200",
        "--interval=2",
        "--cycles=1",
        "--fetches=4",
        "--scrapers=1",
        f"--out={tmp_path}",
        "--no-plot",
    ]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=75)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    table = (tmp_path / "results.md").read_text()
    assert "| services | exposition plain / gzip |" in table
    assert "\n| 200 | " in table
    assert "### Acceptance at 200 services" in table
    assert "| services | exposition plain / gzip |" in done.stdout

    data = json.loads((tmp_path / "results.json").read_text())
    (row,) = data["rows"]
    assert row["services"] == 200
    assert row["watched"] == 200
    assert row["cycles"] == 1
    assert row["plain_bytes"] > row["gzip_bytes"] > 0
    assert row["cpu_per_cycle"] > 0
    assert row["hwm_mib"] >= row["rss_mib"] > 0
    # The list is the heartbeat: in steady state a cycle costs the list pages plus events for
    # services in a transitional status, far below one call per service (2.0 before).
    assert 0.0 < row["calls_per_service_cycle"] <= 0.3
    for kind in ("metrics_plain", "metrics_gzip", "floor_plain", "floor_gzip"):
        assert len(row[kind]["samples_ms"]) == 4
    assert sorted(row["floor_variants"]) == [
        "file_gzip",
        "file_plain",
        "memory_gzip",
        "memory_plain",
    ]
    assert {row["floor_plain_source"], row["floor_gzip_source"]} <= {"file", "memory"}

    if importlib.util.find_spec("matplotlib") is not None:
        # Only with the bench extra installed; the table above never needs it.
        from bench import report

        report.plot(data["rows"], tmp_path / "scaling.png")
        assert (tmp_path / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_budget_bench_runs_two_shards_within_the_budget(tmp_path: Path) -> None:
    """The budget benchmark's harness (simulator control routes, exposition parsing, report) on
    its shortest scenario: two shards must together stay within the budget."""
    argv = [
        sys.executable,
        "-m",
        "bench.budget",
        "--scenarios=shards",
        "--shards-services=60",
        "--shards-seconds=6",
        f"--out={tmp_path}",
        "--no-plot",
    ]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=75)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads((tmp_path / "budget.json").read_text())
    shards = data["shards"]
    assert 0 < shards["peak"] <= shards["budget"]
    assert sum(shards["watched"]) == 60 and all(w > 0 for w in shards["watched"])
    assert "## Two shards, one budget" in (tmp_path / "budget.md").read_text()
