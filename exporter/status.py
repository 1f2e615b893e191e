"""The operator status page: what the exporter sees of every watched service and why a part of
it failed. Pure functions of a Snapshot (plus the clock), so the page never calls the cloud and
a test can render any state; `StatusBoard` only adds a per-snapshot cache of the sort order.

Every string that came from the API (names, statuses, error text) is escaped where HTML is
written, and error text is passed through `redact` so a long credential-like run never shows.
"""

from __future__ import annotations

import html
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from exporter.polling.snapshot import EndpointState, ServiceSnapshot, Snapshot

ENDPOINTS = ("details", "events", "logs", "monitor")
PER_PAGE = 100
MAX_PER_PAGE = 1000
API_VERSION = 1

# Tokens, signatures and keys are long unbroken runs; service ids (UUIDs) and API messages are
# not. The poller's error text never carries one: this is the page's own safety net.
_CREDENTIAL_LIKE = re.compile(r"[A-Za-z0-9+/_=-]{40,}")


def redact(text: str) -> str:
    """`text` with every credential-like run replaced."""
    return _CREDENTIAL_LIKE.sub("[redacted]", text)


@dataclass(frozen=True)
class StatusQuery:
    """The page's filters, from query parameters (unknown or bad values fall back to defaults)."""

    project: str = ""
    failing: bool = False
    page: int = 1
    per_page: int = PER_PAGE

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> StatusQuery:
        failing = params.get("failing", "").strip().lower() in ("1", "true", "yes", "on")
        return cls(
            project=params.get("project", "").strip(),
            failing=failing,
            page=_positive(params.get("page"), 1, 10**9),
            per_page=_positive(params.get("per_page"), PER_PAGE, MAX_PER_PAGE),
        )

    def params(self, **changes: object) -> str:
        """This query as a query string, with `changes` applied; defaults left out."""
        values: dict[str, object] = {
            "project": self.project,
            "failing": "1" if self.failing else "",
            "page": self.page,
            "per_page": self.per_page,
        }
        values.update(changes)
        defaults: dict[str, object] = {"page": 1, "per_page": PER_PAGE}
        return urlencode(
            {k: v for k, v in values.items() if v not in ("", None, False) and defaults.get(k) != v}
        )


def _positive(raw: str | None, default: int, ceiling: int) -> int:
    try:
        value = int(raw or "")
    except ValueError:
        return default
    return min(ceiling, value) if value >= 1 else default


@dataclass(frozen=True)
class EndpointView:
    """One endpoint of one service: None fields mean "never" (not polled, or never succeeded)."""

    endpoint: str
    success: bool | None  # None: not attempted yet (or not polled for this generation)
    last_success: float | None
    last_attempt: float | None
    age: float | None  # seconds since the last success
    error: str
    stale: bool  # failing, and its data is no longer served


@dataclass(frozen=True)
class ServiceView:
    project_id: str
    generation: str
    service_id: str
    service_name: str
    status: str
    failing: bool
    stale: bool
    endpoints: tuple[EndpointView, ...]


@dataclass(frozen=True)
class ProjectView:
    project_id: str
    watched: int
    failing: int
    stale: int
    cycles: int
    last_cycle_seconds: float | None
    last_cycle_finished: float | None
    list_errors: Mapping[str, str]


@dataclass(frozen=True)
class RateView:
    """The process-wide request budget now."""

    rate: float  # requests per second allowed now
    budget: float  # the configured requests per second
    throttled: int  # "slow down" answers since start


@dataclass(frozen=True)
class StatusPage:
    query: StatusQuery
    now: float
    published_at: float | None
    total: int  # services matching the filters
    failing: int  # of those, failing
    pages: int
    services: tuple[ServiceView, ...]  # this page's
    projects: tuple[str, ...]  # every project, for the filter


# -- from the snapshot ------------------------------------------------------------------------


def is_failing(service: ServiceSnapshot) -> bool:
    return any(not state.success for state in service.collect.values())


def _served(service: ServiceSnapshot, endpoint: str) -> bool:
    data = {
        "details": service.details,
        "events": service.events,
        "logs": service.updates,
        "monitor": service.monitor,
    }
    return data.get(endpoint) is not None


def endpoint_view(
    service: ServiceSnapshot, endpoint: str, state: EndpointState | None, now: float
) -> EndpointView:
    if state is None:
        return EndpointView(endpoint, None, None, None, None, "", False)
    last = state.last_success
    return EndpointView(
        endpoint=endpoint,
        success=state.success,
        last_success=last,
        last_attempt=state.last_attempt,
        age=max(0.0, now - last) if last is not None else None,
        error="" if state.success else redact(state.error or "failed"),
        stale=not state.success and not _served(service, endpoint),
    )


def service_view(service: ServiceSnapshot, now: float) -> ServiceView:
    endpoints = tuple(endpoint_view(service, ep, service.collect.get(ep), now) for ep in ENDPOINTS)
    return ServiceView(
        project_id=service.project_id,
        generation=service.generation,
        service_id=service.service_id,
        service_name=service.service_name,
        status=service.status,
        failing=any(e.success is False for e in endpoints),
        stale=any(e.stale for e in endpoints),
        endpoints=endpoints,
    )


def sort_key(service: ServiceSnapshot) -> tuple[bool, str, str, str]:
    """Failing first, then by project, name and id."""
    return (not is_failing(service), service.project_id, service.service_name, service.service_id)


def ordered(snapshot: Snapshot) -> tuple[ServiceSnapshot, ...]:
    return tuple(sorted(snapshot.services, key=sort_key))


def select(
    services: Sequence[ServiceSnapshot],
    query: StatusQuery,
    now: float,
    *,
    projects: Iterable[str] = (),
    published_at: float | None = None,
    flags: Sequence[bool] | None = None,
) -> StatusPage:
    """One page of `services` (already in page order) matching `query`; `flags` (whether each
    service fails) may be given when already known."""
    failing_flags = flags if flags is not None else [is_failing(s) for s in services]
    if query.project or query.failing:
        chosen_ids = [
            i
            for i, s in enumerate(services)
            if (not query.project or s.project_id == query.project)
            and (not query.failing or failing_flags[i])
        ]
        matched: Sequence[ServiceSnapshot] = [services[i] for i in chosen_ids]
        failing = sum(1 for i in chosen_ids if failing_flags[i])
    else:
        matched, failing = services, sum(failing_flags)
    pages = max(1, math.ceil(len(matched) / query.per_page))
    page = min(query.page, pages)
    start = (page - 1) * query.per_page
    chosen = matched[start : start + query.per_page]
    known = set(projects) or {s.project_id for s in services}
    return StatusPage(
        query=StatusQuery(query.project, query.failing, page, query.per_page),
        now=now,
        published_at=published_at,
        total=len(matched),
        failing=failing,
        pages=pages,
        services=tuple(service_view(s, now) for s in chosen),
        projects=tuple(sorted(known)),
    )


def summarize(snapshot: Snapshot) -> tuple[ProjectView, ...]:
    """One row per project for the landing page."""
    failing: dict[str, int] = {}
    stale: dict[str, int] = {}
    for service in snapshot.services:
        bad = [ep for ep, state in service.collect.items() if not state.success]
        if not bad:  # the common case, without building views
            continue
        pid = service.project_id
        failing[pid] = failing.get(pid, 0) + 1
        if any(not _served(service, ep) for ep in bad):
            stale[pid] = stale.get(pid, 0) + 1
    ids = sorted(set(snapshot.projects) | set(snapshot.watched) | set(failing))
    rows = []
    for pid in ids:
        summary = snapshot.projects.get(pid)
        rows.append(
            ProjectView(
                project_id=pid,
                watched=snapshot.watched.get(pid, 0),
                failing=failing.get(pid, 0),
                stale=stale.get(pid, 0),
                cycles=summary.cycles if summary else 0,
                last_cycle_seconds=summary.last_cycle_seconds if summary else None,
                last_cycle_finished=summary.last_cycle_finished if summary else None,
                list_errors={
                    gen: redact(err)
                    for gen, err in (summary.list_errors if summary else {}).items()
                },
            )
        )
    return tuple(rows)


# -- JSON -------------------------------------------------------------------------------------


def _endpoint_json(e: EndpointView) -> dict[str, Any]:
    return {
        "success": e.success,
        "last_success": e.last_success,
        "last_attempt": e.last_attempt,
        "age_seconds": None if e.age is None else round(e.age, 3),
        "error": e.error,
        "stale": e.stale,
    }


def _project_json(p: ProjectView) -> dict[str, Any]:
    return {
        "project_id": p.project_id,
        "watched": p.watched,
        "failing": p.failing,
        "stale": p.stale,
        "cycles": p.cycles,
        "last_cycle_seconds": p.last_cycle_seconds,
        "last_cycle_finished": p.last_cycle_finished,
        "list_errors": dict(p.list_errors),
    }


def page_json(
    page: StatusPage, projects: Sequence[ProjectView] = (), rate: RateView | None = None
) -> dict[str, Any]:
    """The /api/v1/status document (field names documented in the README; only added to)."""
    return {
        "version": API_VERSION,
        "generated_at": page.now,
        "snapshot_published_at": page.published_at,
        "filters": {"project": page.query.project, "failing": page.query.failing},
        "page": page.query.page,
        "per_page": page.query.per_page,
        "pages": page.pages,
        "total": page.total,
        "failing": page.failing,
        "services": [
            {
                "project_id": s.project_id,
                "generation": s.generation,
                "service_id": s.service_id,
                "service_name": s.service_name,
                "status": s.status,
                "failing": s.failing,
                "stale": s.stale,
                "endpoints": {e.endpoint: _endpoint_json(e) for e in s.endpoints},
            }
            for s in page.services
        ],
        "projects": [_project_json(p) for p in projects],
        "requests": None
        if rate is None
        else {"rate": rate.rate, "budget": rate.budget, "throttled": rate.throttled},
    }


# -- HTML -------------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1em 2em;color:#222}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#eee}tr.failing{background:#fde8e8}
.ok{color:#176b17}.bad{color:#a00;font-weight:bold}.none{color:#888}
.err{color:#a00;display:block;max-width:28em;overflow-wrap:anywhere}
.id{color:#666;font-family:monospace;font-size:11px}nav a{margin-right:.6em}
form{margin:.6em 0}
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} d ago"


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def utc(moment: float | None) -> str:
    if moment is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(moment))


def _endpoint_cell(e: EndpointView) -> str:
    if e.success is None:
        return '<td class="none">not polled</td>'
    mark = '<span class="ok">ok</span>' if e.success else '<span class="bad">failing</span>'
    if e.stale:
        mark += ' <span class="bad">stale</span>'
    title = esc(utc(e.last_success))
    if e.success:
        age = age_text(e.age)
    else:
        age = "never ok" if e.age is None else f"last ok {age_text(e.age)}"
    cell = f'{mark}<br><span class="age" title="{title}">{esc(age)}</span>'
    if e.error:
        cell += f'<span class="err">{esc(e.error)}</span>'
    return f'<td data-endpoint="{e.endpoint}">{cell}</td>'


def _row(s: ServiceView) -> str:
    cells = "".join(_endpoint_cell(e) for e in s.endpoints)
    cls = ' class="failing"' if s.failing else ""
    return (
        f'<tr{cls} data-service-id="{esc(s.service_id)}">'
        f"<td>{esc(s.project_id)}</td><td>{esc(s.generation)}</td>"
        f'<td>{esc(s.service_name)}<br><span class="id">{esc(s.service_id)}</span></td>'
        f"<td>{esc(s.status or 'unknown')}</td>{cells}</tr>"
    )


def _filters(page: StatusPage) -> str:
    q = page.query
    options = ['<option value="">all projects</option>'] + [
        f'<option value="{esc(p)}"{" selected" if p == q.project else ""}>{esc(p)}</option>'
        for p in page.projects
    ]
    checked = " checked" if q.failing else ""
    return (
        '<form method="get" action="">'
        f'<label>Project <select name="project">{"".join(options)}</select></label> '
        f'<label><input type="checkbox" name="failing" value="1"{checked}> failing only</label> '
        '<button type="submit">Apply</button></form>'
        "<nav>"
        f'<a href="?{esc(q.params(page="", failing=""))}">all</a>'
        f'<a href="?{esc(q.params(page="", failing="1"))}">failing only</a>'
        f'<a href="?{esc(q.params(page="", project=""))}">all projects</a>'
        "</nav>"
    )


def _pager(page: StatusPage) -> str:
    q = page.query
    parts = [f"page {q.page} of {page.pages}"]
    if q.page > 1:
        parts.insert(0, f'<a rel="prev" href="?{esc(q.params(page=q.page - 1))}">previous</a>')
    if q.page < page.pages:
        parts.append(f'<a rel="next" href="?{esc(q.params(page=q.page + 1))}">next</a>')
    return f'<p class="pager">{" ".join(parts)}</p>'


def page_html(page: StatusPage) -> str:
    """The /status page."""
    header = "".join(f"<th>{ep}</th>" for ep in ENDPOINTS)
    rows = "".join(_row(s) for s in page.services)
    if not rows:
        rows = f'<tr><td colspan="{4 + len(ENDPOINTS)}">no service matches</td></tr>'
    first = (page.query.page - 1) * page.query.per_page
    shown = f"{first + 1}-{first + len(page.services)}" if page.services else "0"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>Status · ModelArts Exporter</title>"
        f"<style>{_STYLE}</style></head><body>"
        '<h1>Watched services</h1><p><a href="./">home</a></p>'
        f'<p id="summary">{page.total} services match, <strong>{page.failing}</strong> failing; '
        f"showing {shown}. Snapshot from {esc(utc(page.published_at))}.</p>"
        f"{_filters(page)}{_pager(page)}"
        '<table id="services"><thead><tr><th>project</th><th>gen</th><th>service</th>'
        f"<th>status</th>{header}</tr></thead><tbody>{rows}</tbody></table>"
        f"{_pager(page)}</body></html>"
    )


def summary_html(projects: Sequence[ProjectView], rate: RateView | None) -> str:
    """The landing page's per-project summary (a fragment)."""
    rows = []
    for p in projects:
        link = "status?" + urlencode({"project": p.project_id})
        failing_link = "status?" + urlencode({"project": p.project_id, "failing": "1"})
        errors = "; ".join(f"{gen}: {err}" for gen, err in sorted(p.list_errors.items()) if err)
        duration = duration_text(p.last_cycle_seconds)
        rows.append(
            f'<tr><td><a href="{esc(link)}">{esc(p.project_id)}</a></td><td>{p.watched}</td>'
            f'<td><a href="{esc(failing_link)}">{p.failing}</a></td><td>{p.stale}</td>'
            f"<td>{duration}</td><td>{esc(utc(p.last_cycle_finished))}</td>"
            f'<td class="err">{esc(errors)}</td></tr>'
        )
    body = "".join(rows) or '<tr><td colspan="7">no project has finished a cycle yet</td></tr>'
    requests = ""
    if rate is not None:
        requests = (
            f'<p id="requests">Request rate allowed now: {rate.rate:.1f}/s of {rate.budget:g}/s; '
            f"throttled answers since start: {rate.throttled}.</p>"
        )
    return (
        '<h2>Projects</h2><table id="projects"><thead><tr><th>project</th><th>watched</th>'
        "<th>failing</th><th>stale</th><th>last cycle</th><th>finished</th>"
        f"<th>list errors</th></tr></thead><tbody>{body}</tbody></table>{requests}"
        '<p><a href="status">Status of every watched service</a> · '
        '<a href="status?failing=1">failing only</a></p>'
    )


# -- with a cache -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    """What every request on one snapshot shares."""

    snapshot: Snapshot
    order: tuple[ServiceSnapshot, ...]
    flags: tuple[bool, ...]
    projects: tuple[ProjectView, ...]
    project_ids: tuple[str, ...]


class StatusBoard:
    """Serves the page, the JSON and the landing summary from the latest snapshot. The sort
    order, the failing flags and the project summary are computed once per snapshot, and an
    answer is reused for the same query within `cache_seconds` (ages are shown to the second),
    so a page refreshed by many operators, or a script polling the JSON, costs one render."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        *,
        rate: Callable[[], RateView | None] = lambda: None,
        clock: Callable[[], float] = time.time,
        cache_seconds: float = 1.0,
    ) -> None:
        self._snapshot = snapshot
        self._rate = rate
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._prepared: _Prepared | None = None
        self._answers: dict[tuple[object, ...], str | bytes] = {}

    def _current(self) -> _Prepared:
        snap = self._snapshot()
        prepared = self._prepared
        if prepared is None or prepared.snapshot is not snap:
            order = ordered(snap)
            projects = summarize(snap)
            prepared = _Prepared(
                snapshot=snap,
                order=order,
                flags=tuple(is_failing(s) for s in order),
                projects=projects,
                project_ids=tuple(p.project_id for p in projects),
            )
            self._prepared = prepared  # one assignment: a request sees one snapshot's data
            self._answers = {}
        return prepared

    def _page(self, prepared: _Prepared, query: StatusQuery, now: float) -> StatusPage:
        return select(
            prepared.order,
            query,
            now,
            projects=prepared.project_ids,
            published_at=prepared.snapshot.published_at,
            flags=prepared.flags,
        )

    def page(self, params: Mapping[str, str]) -> StatusPage:
        return self._page(self._current(), StatusQuery.from_params(params), self._clock())

    def _answer(self, kind: str, params: Mapping[str, str]) -> str | bytes:
        prepared = self._current()
        query = StatusQuery.from_params(params)
        now = self._clock()
        key: tuple[object, ...] = (kind, query)
        if self._cache_seconds > 0:
            key += (math.floor(now / self._cache_seconds),)
            cached = self._answers.get(key)
            if cached is not None:
                return cached
        page = self._page(prepared, query, now)
        if kind == "html":
            answer: str | bytes = page_html(page)
        else:
            wanted = page.query.project
            projects = [p for p in prepared.projects if not wanted or p.project_id == wanted]
            doc = page_json(page, projects, self._rate())
            answer = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        if self._cache_seconds > 0:
            if len(self._answers) >= _MAX_ANSWERS:
                self._answers = {}
            self._answers[key] = answer
        return answer

    def html(self, params: Mapping[str, str]) -> str:
        answer = self._answer("html", params)
        assert isinstance(answer, str)
        return answer

    def json(self, params: Mapping[str, str]) -> bytes:
        answer = self._answer("json", params)
        assert isinstance(answer, bytes)
        return answer

    def summary(self) -> str:
        return summary_html(self._current().projects, self._rate())


_MAX_ANSWERS = 256


__all__ = [
    "ENDPOINTS",
    "EndpointView",
    "ProjectView",
    "RateView",
    "ServiceView",
    "StatusBoard",
    "StatusPage",
    "StatusQuery",
    "page_html",
    "page_json",
    "redact",
    "select",
    "summarize",
    "summary_html",
]
