"""Smoke test of `python -m bench.status_page` at a tiny size (the published figures come from
a 5,000-service run by hand)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_status_page_bench_runs_at_a_tiny_size(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "bench.status_page", "--services=60", "--v2-services=10"]
    argv += ["--broken=6", "--renders=5", "--fetches=5", "--rounds=1", f"--out={tmp_path}"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "status_page.json").read_text())["results"]
    render, http = results["render"], results["http"]
    assert render["services"] == 60 and render["failing"] == 6
    assert render["page 1"]["n"] == 5 and render["page 1"]["bytes"] > 1000
    for name in ("/status, each rendered", "/api/v1/status, each rendered", "metrics quiet"):
        assert http[name]["n"] >= 5 and 0 < http[name]["median"] < 5000, name
    assert http["metrics while /status is hit, a new query each time"]["n"] == 5
    assert http["/status back to back, same page"]["n"] > 0
    text = (tmp_path / "status_page.md").read_text()
    assert "| /status median over HTTP under 200 ms (each rendered) |" in text
    assert done.stdout.strip() == text.strip()
