"""The status page's pure functions: snapshot -> rows, JSON and HTML (no I/O)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from types import MappingProxyType

import pytest

import exporter.status as status_module
from exporter.modelarts.errors import (
    ApiError,
    MalformedResponseError,
    TransportError,
)
from exporter.polling.snapshot import EndpointState, ProjectSummary, ServiceSnapshot, Snapshot
from exporter.status import (
    PER_PAGE,
    RateView,
    StatusBoard,
    StatusQuery,
    ordered,
    page_json,
    redact,
    select,
    summarize,
    summary_html,
)

NOW = 1_800_000_000.0
OK = EndpointState(success=True, last_success=NOW - 5, last_attempt=NOW - 5)


def failed(error: str, last_success: float | None = NOW - 600) -> EndpointState:
    return EndpointState(
        success=False, last_success=last_success, last_attempt=NOW - 1, error=error
    )


def service(
    sid: str,
    name: str | None = None,
    *,
    project: str = "p1",
    generation: str = "v1",
    status: str = "running",
    served: bool = True,
    **collect: EndpointState,
) -> ServiceSnapshot:
    states = {"details": OK, "events": OK, "logs": OK, "monitor": OK}
    states.update(collect)
    if generation == "v2":
        states.pop("logs")
        states.pop("monitor")
    marker = object() if served else None
    return ServiceSnapshot(
        project_id=project,
        service_id=sid,
        service_name=name or f"svc-{sid}",
        details=marker,  # type: ignore[arg-type]
        events=marker,  # type: ignore[arg-type]
        updates=marker,  # type: ignore[arg-type]
        monitor=marker,  # type: ignore[arg-type]
        collect=MappingProxyType(states),
        generation=generation,
        status=status,
    )


def snapshot(
    *services: ServiceSnapshot, projects: dict[str, ProjectSummary] | None = None
) -> Snapshot:
    watched: dict[str, int] = {}
    for s in services:
        watched[s.project_id] = watched.get(s.project_id, 0) + 1
    return Snapshot(
        services=services,
        watched=MappingProxyType(watched),
        projects=MappingProxyType(projects or {}),
        published_at=NOW - 2,
    )


class Elements(HTMLParser):
    """Every start tag, and the text, of a document."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(doc: str) -> Elements:
    parser = Elements()
    parser.feed(doc)
    parser.close()
    return parser


def render(snap: Snapshot, **params: str) -> tuple[str, dict[str, object]]:
    board = StatusBoard(lambda: snap, clock=lambda: NOW)
    return board.html(params), json.loads(board.json(params))


# -- escaping and secrets -------------------------------------------------------------------


def test_script_names_and_api_text_are_escaped() -> None:
    evil = '<script>alert("x")</script>'
    snap = snapshot(
        service(
            'id"><img src=x onerror=alert(1)>',
            evil,
            project="p<b>",
            status="<i>running</i>",
            events=failed("HTTP 500 ModelArts.3505: <svg onload=alert(2)>"),
        )
    )
    doc, data = render(snap)
    parsed = parse(doc)
    tags = {tag for tag, _ in parsed.tags}
    assert not tags & {"script", "img", "svg", "b", "i"}, tags
    assert not any(k.startswith("on") for _, attrs in parsed.tags for k in attrs)
    text = "".join(parsed.text)
    assert evil in text  # shown as text
    assert "<svg onload=alert(2)>" in text and "p<b>" in text and "<i>running</i>" in text
    service_json = data["services"][0]  # type: ignore[index]
    assert service_json["service_name"] == evil  # JSON carries the raw string
    landing = parse(summary_html(summarize(snap), None))
    assert "b" not in {tag for tag, _ in landing.tags}
    assert "p<b>" in "".join(landing.text)


def test_credential_like_runs_never_shown() -> None:
    token = "MIIEhgYJKoZIhvcNAQcCoIIEdzCCBHMCAQExDTALBglghkgBZQMEAgEwgg" + "x" * 40
    assert redact(f"auth failed for {token}") == "auth failed for [redacted]"
    snap = snapshot(service("a", details=failed(f"HTTP 401 APIG.1002: token {token} expired")))
    summaries = {"p1": ProjectSummary("p1", list_errors=MappingProxyType({"v1": f"x {token}"}))}
    snap = snapshot(*snap.services, projects=summaries)
    doc, data = render(snap)
    assert token not in doc and token not in json.dumps(data)
    assert "[redacted]" in doc
    assert token not in summary_html(summarize(snap), None)
    # A service id (UUID) and an API message are not taken for a credential.
    uid = "6db75a3c-6b44-409d-b9f0-e7e7632771ed"
    assert redact(f"HTTP 404 ModelArts.3502: service {uid} does not exist") == (
        f"HTTP 404 ModelArts.3502: service {uid} does not exist"
    )


def test_reasons_are_plain_words() -> None:
    assert (
        ApiError(503, "ModelArts.0001", "Service unavailable", endpoint="events").reason
        == "HTTP 503 ModelArts.0001: Service unavailable"
    )
    assert ApiError(429, "APIG.0308", "threshold", endpoint="list").reason == (
        "throttled (HTTP 429 APIG.0308)"
    )
    assert ApiError(400, "ModelArts.2799", "busy").reason == "throttled (HTTP 400 ModelArts.2799)"
    assert ApiError(502, "502", "").reason == "HTTP 502"
    assert (
        TransportError("logs request failed: timed out after 10 s", endpoint="logs").reason
        == "timed out after 10 s"
    )
    assert (
        MalformedResponseError("events: response is not JSON", endpoint="events").reason
        == "malformed response: response is not JSON"
    )


# -- order, filters, paging -----------------------------------------------------------------


def test_failing_first_then_project_name_id() -> None:
    snap = snapshot(
        service("1", "b", project="p2"),
        service("2", "a", project="p2"),
        service("3", "z", project="p1"),
        service("4", "y", project="p2", logs=failed("HTTP 503 X: down")),
        service("5", "x", project="p1", monitor=failed("timed out after 10 s")),
    )
    assert [s.service_id for s in ordered(snap)] == ["5", "4", "3", "2", "1"]
    _, data = render(snap)
    assert [s["service_id"] for s in data["services"]] == ["5", "4", "3", "2", "1"]  # type: ignore[attr-defined]
    doc, _ = render(snap)
    rows = re.findall(r'<tr( class="failing")? data-service-id="(\d)"', doc)
    assert rows == [
        (' class="failing"', "5"),
        (' class="failing"', "4"),
        ("", "3"),
        ("", "2"),
        ("", "1"),
    ]


def test_filters_by_project_and_failing() -> None:
    snap = snapshot(
        service("a1", project="alpha", events=failed("HTTP 500 ModelArts.3505: x")),
        service("a2", project="alpha"),
        service("b1", project="beta", details=failed("timed out after 10 s")),
        service("b2", project="beta"),
    )
    _, data = render(snap, failing="1")
    assert {s["service_id"] for s in data["services"]} == {"a1", "b1"}  # type: ignore[attr-defined]
    assert data["total"] == 2 and data["failing"] == 2
    _, data = render(snap, project="beta")
    assert [s["service_id"] for s in data["services"]] == ["b1", "b2"]  # type: ignore[attr-defined]
    assert data["failing"] == 1 and data["filters"] == {"project": "beta", "failing": False}
    assert [p["project_id"] for p in data["projects"]] == ["beta"]  # type: ignore[attr-defined]
    _, data = render(snap, project="beta", failing="true")
    assert [s["service_id"] for s in data["services"]] == ["b1"]  # type: ignore[attr-defined]
    doc, data = render(snap, project="nowhere")
    assert data["services"] == [] and data["total"] == 0
    assert "no service matches" in doc
    # The form keeps the filters; the project list offers every project.
    doc, _ = render(snap, project="beta", failing="1")
    tags = parse(doc).tags
    assert ("option", {"value": "beta", "selected": None}) in tags
    assert ("option", {"value": "alpha"}) in tags
    assert ("input", {"type": "checkbox", "name": "failing", "value": "1", "checked": None}) in tags


def test_paging() -> None:
    services = [service(f"{i:04d}", f"n{i:04d}") for i in range(250)]
    services[200] = service("0200", "n0200", events=failed("HTTP 503 X: y"))
    snap = snapshot(*services)
    _, data = render(snap)
    assert data["pages"] == 3 and data["per_page"] == PER_PAGE and data["total"] == 250
    first = [s["service_id"] for s in data["services"]]  # type: ignore[attr-defined]
    assert len(first) == 100 and first[0] == "0200" and first[1] == "0000"
    _, data = render(snap, page="3")
    last = [s["service_id"] for s in data["services"]]  # type: ignore[attr-defined]
    assert len(last) == 50 and last[-1] == "0249"
    _, data = render(snap, page="99")  # past the end: the last page
    assert data["page"] == 3
    _, data = render(snap, page="-1", per_page="junk")  # bad values: defaults
    assert data["page"] == 1 and data["per_page"] == PER_PAGE
    _, data = render(snap, per_page="1000000")
    assert data["per_page"] == 1000 and len(data["services"]) == 250  # type: ignore[arg-type]
    doc, _ = render(snap, page="2", failing="0")
    links = {a.get("rel"): a.get("href") for t, a in parse(doc).tags if t == "a" and a.get("rel")}
    assert links == {"prev": "?", "next": "?page=3"}
    doc, _ = render(snap, page="2", project="p1")
    links = {a.get("rel"): a.get("href") for t, a in parse(doc).tags if t == "a" and a.get("rel")}
    assert links == {"prev": "?project=p1", "next": "?project=p1&page=3"}
    assert StatusQuery.from_params({"page": "2", "project": "p1"}).params(page=5) == (
        "project=p1&page=5"
    )


# -- JSON fields ----------------------------------------------------------------------------


def test_json_fields() -> None:
    summary = ProjectSummary(
        "p1",
        cycles=7,
        last_cycle_seconds=0.25,
        last_cycle_finished=NOW - 3,
        list_errors=MappingProxyType({"v2": "HTTP 403 ModelArts.0204: Policy doesn't allow"}),
    )
    snap = snapshot(
        service("a", events=failed("HTTP 500 ModelArts.3505: Failed to query the service.")),
        service(
            "b",
            generation="v2",
            status="",
            served=False,
            details=failed("timed out after 5 s", None),
        ),
        projects={"p1": summary},
    )
    board = StatusBoard(lambda: snap, clock=lambda: NOW, rate=lambda: RateView(12.5, 25.0, 3))
    data = json.loads(board.json({}))
    assert set(data) == {
        "version",
        "generated_at",
        "snapshot_published_at",
        "filters",
        "page",
        "per_page",
        "pages",
        "total",
        "failing",
        "services",
        "projects",
        "requests",
    }
    assert data["version"] == 1 and data["generated_at"] == NOW
    assert data["snapshot_published_at"] == NOW - 2
    assert data["requests"] == {"rate": 12.5, "budget": 25.0, "throttled": 3}
    a, b = sorted(data["services"], key=lambda s: s["service_id"])
    assert set(a) == {
        "project_id",
        "generation",
        "service_id",
        "service_name",
        "status",
        "failing",
        "stale",
        "endpoints",
    }
    assert a["failing"] and not a["stale"] and a["generation"] == "v1"
    assert set(a["endpoints"]) == {"details", "events", "logs", "monitor"}
    events = a["endpoints"]["events"]
    assert events == {
        "success": False,
        "last_success": NOW - 600,
        "last_attempt": NOW - 1,
        "age_seconds": 600.0,
        "error": "HTTP 500 ModelArts.3505: Failed to query the service.",
        "stale": False,
    }
    assert a["endpoints"]["details"]["success"] is True
    assert (
        a["endpoints"]["details"]["error"] == "" and a["endpoints"]["details"]["age_seconds"] == 5.0
    )
    # v2: never succeeded, its data no longer served; logs and monitor are not polled.
    assert b["generation"] == "v2" and b["stale"] and b["status"] == ""
    assert b["endpoints"]["details"]["last_success"] is None
    assert b["endpoints"]["details"]["age_seconds"] is None
    assert b["endpoints"]["details"]["stale"] is True
    assert b["endpoints"]["logs"] == {
        "success": None,
        "last_success": None,
        "last_attempt": None,
        "age_seconds": None,
        "error": "",
        "stale": False,
    }
    (project,) = data["projects"]
    assert project == {
        "project_id": "p1",
        "watched": 2,
        "failing": 2,
        "stale": 1,
        "cycles": 7,
        "last_cycle_seconds": 0.25,
        "last_cycle_finished": NOW - 3,
        "list_errors": {"v2": "HTTP 403 ModelArts.0204: Policy doesn't allow"},
    }


def test_html_shows_endpoint_reason_and_age() -> None:
    snap = snapshot(service("a", logs=failed("throttled (HTTP 429 APIG.0308)", NOW - 7200)))
    doc, _ = render(snap)
    cell = re.search(r'<td data-endpoint="logs">(.*?)</td>', doc)
    assert cell is not None
    text = "".join(parse(cell.group(1)).text)
    assert "failing" in text and "2.0 h ago" in text and "throttled (HTTP 429 APIG.0308)" in text
    ok_cell = re.search(r'<td data-endpoint="details">(.*?)</td>', doc)
    assert ok_cell is not None and "ok" in ok_cell.group(1) and "5 s ago" in ok_cell.group(1)


def test_landing_summary() -> None:
    summary = ProjectSummary("p1", cycles=3, last_cycle_seconds=1.5, last_cycle_finished=NOW)
    snap = snapshot(
        service("a", events=failed("x")),
        service("b", served=False, details=failed("y")),
        service("c"),
        projects={"p1": summary},
    )
    fragment = summary_html(summarize(snap), RateView(6.25, 25.0, 4))
    row = re.search(r"<tbody><tr>(.*?)</tr>", fragment)
    assert row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
    assert re.sub("<[^>]+>", "", cells[0]) == "p1"
    assert cells[1:5] == ["3", '<a href="status?project=p1&amp;failing=1">2</a>', "1", "1.50 s"]
    assert "6.2/s of 25/s" in fragment and "throttled answers since start: 4" in fragment
    assert 'href="status?project=p1"' in fragment
    assert "no project" in summary_html((), None)


def test_order_once_per_snapshot_and_answers_reused_within_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sorts = 0
    real_ordered = status_module.ordered

    def counting(snap: Snapshot) -> tuple[ServiceSnapshot, ...]:
        nonlocal sorts
        sorts += 1
        return real_ordered(snap)

    monkeypatch.setattr(status_module, "ordered", counting)
    first = snapshot(*(service(str(i)) for i in range(5)))
    second = snapshot(*(service(str(i)) for i in range(5)), service("9", events=failed("x")))
    current, now = [first], [NOW]
    board = StatusBoard(lambda: current[0], clock=lambda: now[0])
    page = board.html({})
    assert board.html({}) is page  # the same query within the second: the same answer
    assert board.html({"failing": "1"}) is not page
    body = board.json({})
    assert board.json({}) is body
    assert sorts == 1
    now[0] += 1.0  # ages move on: rendered again, on the same order
    assert board.html({}) is not page and board.json({}) is not body
    assert sorts == 1
    current[0] = second  # a new snapshot: sorted again, never an old answer
    assert 'data-service-id="9"' in board.html({}) and sorts == 2
    assert json.loads(board.json({"failing": "1"}))["total"] == 1
    uncached = StatusBoard(lambda: first, clock=lambda: NOW, cache_seconds=0)
    assert uncached.html({}) is not uncached.html({}) and uncached.html({}) == page
    assert select(real_ordered(first), StatusQuery(), NOW).total == 5
    assert page_json(board.page({}))["filters"]["failing"] is False
    assert page.startswith("<!DOCTYPE html>")
