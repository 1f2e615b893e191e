"""The status page end to end: the real exporter against the real simulator, with one endpoint
of some services (v1 and v2) failing; /api/v1/status, /status and the landing page must name
exactly those services, the endpoint and the reason."""

from __future__ import annotations

import json
import ssl
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import trustme
import yaml

from exporter.simulator import Simulation, serve
from tests.harness import running_exporter, sim_config, wait_until
from tests.test_web_security import TIMEOUT, _status, _wait_listening, basic, exporter_process

PASSWORD = "operator-page-password"

# (generation, simulator route, fault) -> (endpoint on the page, the reason it must show)
FAULTS = {
    ("v1", "details", "error"): (
        "details",
        "HTTP 500 ModelArts.3505: Failed to query the service.",
    ),
    ("v1", "events", "throttle"): ("events", "throttled (HTTP 429 ModelArts.2799)"),
    ("v1", "monitor", "slow"): ("monitor", "timed out after 0.5 s"),
    ("v2", "v2_details", "error"): (
        "details",
        "HTTP 500 ModelArts.3505: Failed to query the service.",
    ),
    ("v2", "v2_events", "malformed"): ("events", "malformed response: "),
}


def break_some(sim: Simulation) -> dict[str, tuple[str, str]]:
    """Inject FAULTS into distinct services; service id -> (endpoint, reason)."""
    free = {
        gen: [sid for sid, svc in sorted(sim.services.items()) if svc.generation == gen]
        for gen in ("v1", "v2")
    }
    broken: dict[str, tuple[str, str]] = {}
    for (gen, route, fault), expected in FAULTS.items():
        sid = free[gen].pop(0)
        if route == "monitor":
            sim.set_status(sid, "running")  # the monitor API is read while a service serves
        sim.service_faults[(sid, route)] = fault
        broken[sid] = expected
    return broken


def config(url: str) -> Any:
    return sim_config(url, timeout=0.5, retries=0, logs_interval=0.0001)


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as resp:
        return resp.status, await resp.text()


def failing_of(doc: dict[str, Any]) -> dict[str, dict[str, str]]:
    """service id -> {endpoint: error} of every failing endpoint."""
    return {
        s["service_id"]: {
            ep: state["error"] for ep, state in s["endpoints"].items() if state["success"] is False
        }
        for s in doc["services"]
        if s["failing"]
    }


class Rows(HTMLParser):
    """The /status table: service id -> (css class, {endpoint: cell text})."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, tuple[str, dict[str, str]]] = {}
        self._sid: str | None = None
        self._endpoint: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and a.get("data-service-id"):
            self._sid = a["data-service-id"]
            self.rows[self._sid] = (a.get("class") or "", {})
        elif tag == "td" and self._sid is not None:
            self._endpoint = a.get("data-endpoint")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._endpoint = None
        elif tag == "tr":
            self._sid = None

    def handle_data(self, data: str) -> None:
        if self._sid is not None and self._endpoint is not None:
            cells = self.rows[self._sid][1]
            cells[self._endpoint] = cells.get(self._endpoint, "") + data


def rows_of(doc: str) -> dict[str, tuple[str, dict[str, str]]]:
    parser = Rows()
    parser.feed(doc)
    parser.close()
    return parser.rows


async def test_status_lists_exactly_the_failing_services_with_endpoint_and_reason() -> None:
    sim = Simulation(seed=18, services=6, v2_services=4, dynamic=False)
    sim.faults.slow_seconds = 1.5
    broken = break_some(sim)
    async with (
        serve(sim) as api_url,
        running_exporter(config(api_url)) as (url, exporter),
        aiohttp.ClientSession() as session,
    ):
        await wait_until(exporter.ready, what="first cycle")
        latest: dict[str, Any] = {}

        async def all_failed() -> bool:
            status, text = await get(session, url + "/api/v1/status?failing=1")
            assert status == 200
            latest.update(json.loads(text))
            return set(failing_of(latest)) == set(broken)

        await wait_until(all_failed, timeout=20, what="the broken services to fail")
        failing = failing_of(latest)
        assert latest["total"] == latest["failing"] == len(broken)
        for sid, (endpoint, reason) in broken.items():
            assert list(failing[sid]) == [endpoint], (sid, failing[sid])
            assert failing[sid][endpoint].startswith(reason), (sid, failing[sid])
        generations = {s["service_id"]: s["generation"] for s in latest["services"]}
        assert {generations[sid] for sid in broken} == {"v1", "v2"}

        # The whole fleet: every other service is fine on every endpoint it is polled on.
        status, text = await get(session, url + "/api/v1/status")
        doc = json.loads(text)
        assert status == 200 and doc["total"] == len(sim.services) == 10
        assert [s["failing"] for s in doc["services"]] == [True] * 5 + [False] * 5  # failing first
        for s in doc["services"]:
            polled = {ep for ep, st in s["endpoints"].items() if st["success"] is not None}
            assert {"details", "events"} <= polled, s
            if s["generation"] == "v2":
                assert polled == {"details", "events"}  # v2 has no logs nor monitor API
        by_id = {s["service_id"]: s for s in doc["services"]}
        for sid, (endpoint, _) in broken.items():
            state = by_id[sid]["endpoints"][endpoint]
            assert state["last_attempt"] is not None and state["error"], state
        (project,) = doc["projects"]
        assert project["watched"] == 10 and project["failing"] == 5 and project["cycles"] >= 1

        # /status agrees: the same rows failing, each failing cell names the reason.
        status, page = await get(session, url + "/status?failing=1")
        assert status == 200
        rows = rows_of(page)
        assert set(rows) == set(broken)
        for sid, (endpoint, reason) in broken.items():
            css, cells = rows[sid]
            assert css == "failing"
            assert "failing" in cells[endpoint] and reason in cells[endpoint], cells
            others = [ep for ep, text in cells.items() if ep != endpoint and "failing" in text]
            assert others == [], (sid, cells)
        status, page = await get(session, url + "/status")
        assert set(rows_of(page)) == set(sim.services)

        # The landing page's summary counts them and links to the filtered page.
        status, landing = await get(session, url + "/")
        assert status == 200
        assert f'status?project={project["project_id"]}&amp;failing=1">5</a>' in landing
        assert 'href="status"' in landing

        # Repairing the services clears them from the failing list.
        sim.service_faults.clear()

        async def all_ok() -> bool:
            _, text = await get(session, url + "/api/v1/status?failing=1")
            return json.loads(text)["total"] == 0

        await wait_until(all_ok, timeout=20, what="the services to recover")


async def test_status_pages_need_the_same_basic_auth_and_tls_as_metrics(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    (tmp_path / "server.crt").write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    (tmp_path / "server.key").write_bytes(leaf.private_key_pem.bytes())
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    (tmp_path / "web.yml").write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"},
                "basic_auth_users": {"operator": hashed},
            }
        )
    )
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    web_config = f"--web.config.file={tmp_path / 'web.yml'}"
    with exporter_process("--demo", web_config) as (proc, port):
        await _wait_listening(port, proc)
        base = f"https://127.0.0.1:{port}"
        good = basic("operator", PASSWORD)
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            for path in ("/status", "/status?failing=1", "/api/v1/status", "/"):
                async with session.get(base + path, ssl=ctx) as resp:
                    assert resp.status == 401, path
                    body = await resp.text()
                    assert "service" not in body.lower(), path
                async with session.get(base + path, ssl=ctx, headers=basic("x", PASSWORD)) as r:
                    assert r.status == 401, path
            assert await _status(f"http://127.0.0.1:{port}/status") is None  # plain HTTP refused

            async def listed() -> bool:
                async with session.get(base + "/api/v1/status", ssl=ctx, headers=good) as resp:
                    assert resp.status == 200
                    return bool((await resp.json())["services"])

            await wait_until(listed, timeout=20, what="the demo fleet on /api/v1/status")
            async with session.get(base + "/status", ssl=ctx, headers=good) as resp:
                assert resp.status == 200 and "data-service-id" in await resp.text()
    _, err = proc.communicate() if proc.returncode is None else (b"", b"")
    assert PASSWORD.encode() not in err
