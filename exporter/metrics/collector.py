"""Snapshot -> Prometheus text exposition. Pure: no I/O, no clocks.

The per-service part is written directly in the text format (it is the bulk of the output at
thousands of services) and cached per ServiceSnapshot object, which the poller only replaces when
that service changed. The exporter's own process-wide metrics come from a private
prometheus_client registry and are rendered at every scrape; they are small.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterator, Sequence

from exporter.metrics import catalogue as cat
from exporter.metrics.catalogue import MetricSpec
from exporter.polling.snapshot import ServiceSnapshot, Snapshot

Fragment = tuple[str, ...]  # one string per family of FAMILIES, possibly empty


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value)}"
    return repr(float(value))


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)


FAMILIES: tuple[MetricSpec, ...] = (
    *cat.SERVICE_METRICS,
    cat.COLLECT_SUCCESS,
    cat.LAST_SUCCESS_TS,
)
_INDEX = {spec.name: i for i, spec in enumerate(FAMILIES)}


def _header(spec: MetricSpec) -> str:
    return f"# HELP {spec.name} {_escape(spec.help)}\n# TYPE {spec.name} {spec.type}\n"


_HEADERS = tuple(_header(spec) for spec in FAMILIES)


def render_service(svc: ServiceSnapshot) -> Fragment:
    """The lines of one service for every family, in FAMILIES order."""
    out: list[list[str]] = [[] for _ in FAMILIES]
    base = _labels(
        (
            ("project_id", svc.project_id),
            ("service_id", svc.service_id),
            ("service_name", svc.service_name),
        )
    )

    def add(spec: MetricSpec, value: float, extra: Sequence[tuple[str, str]] = ()) -> None:
        labels = base + ("," + _labels(extra) if extra else "")
        out[_INDEX[spec.name]].append(f"{spec.name}{{{labels}}} {_num(value)}\n")

    d = svc.details
    if d is not None:
        add(
            cat.SERVICE_INFO,
            1,
            (
                ("infer_type", d.infer_type),
                ("workspace_id", d.workspace_id),
                ("cluster_id", d.cluster_id),
                ("pool_name", d.pool_name),
                ("owner", d.owner),
            ),
        )
        for status in cat.KNOWN_STATUSES:
            add(cat.SERVICE_STATUS, 1 if d.status == status else 0, (("status", status),))
        if d.status and d.status not in cat.KNOWN_STATUSES:
            add(cat.SERVICE_STATUS, 1, (("status", d.status),))
        add(cat.SERVICE_PROGRESS, (d.progress or 0.0) / 100.0)
        if d.invocation_times is not None:
            add(cat.SERVICE_INVOCATIONS, d.invocation_times)
        if d.failed_times is not None:
            add(cat.SERVICE_FAILURES, d.failed_times)
        seen_models: set[tuple[str, str, str, str]] = set()
        seen_traffic: set[tuple[str, str, str]] = set()
        for m in d.models:
            model = (
                ("model_id", m.model_id),
                ("model_name", m.model_name),
                ("model_version", m.model_version),
            )
            key = (m.model_id, m.model_name, m.model_version, m.specification)
            if m.instance_count is not None and key not in seen_models:
                seen_models.add(key)
                add(
                    cat.MODEL_INSTANCES,
                    m.instance_count,
                    (*model, ("specification", m.specification)),
                )
            if m.weight is not None and key[:3] not in seen_traffic:
                seen_traffic.add(key[:3])
                add(cat.MODEL_TRAFFIC, m.weight / 100.0, model)
        for spec, ms in (
            (cat.PUBLISHED_TS, d.publish_at),
            (cat.CONFIG_UPDATED_TS, d.update_time),
            (cat.STATUS_CHANGED_TS, d.transition_at),
            (cat.AUTO_STOP_TS, d.due_time),
        ):
            if ms is not None:
                add(spec, ms / 1000.0)

    ev = svc.events
    if ev is not None:
        types = list(cat.EVENT_TYPES) + sorted({t for t, _ in ev.counts} - set(cat.EVENT_TYPES))
        for event_type in types:
            phases = list(cat.PHASES) + sorted(
                {p for t, p in ev.counts if t == event_type} - set(cat.PHASES)
            )
            for phase in phases:
                add(
                    cat.EVENTS,
                    ev.counts.get((event_type, phase), 0),
                    (("event_type", event_type), ("phase", phase)),
                )
        for event_type, ms in sorted(ev.last_occur_ms.items()):
            add(cat.LAST_EVENT_TS, ms / 1000.0, (("event_type", event_type),))

    up = svc.updates
    if up is not None:
        for result in cat.UPDATE_RESULTS:
            add(cat.UPDATES, up.counts.get(result, 0), (("result", result),))
        if up.newest_time_ms is not None:
            add(cat.LAST_UPDATE_TS, up.newest_time_ms / 1000.0)
        for result in cat.LAST_UPDATE_RESULTS:
            add(
                cat.LAST_UPDATE_RESULT,
                1 if up.newest_result == result else 0,
                (("result", result),),
            )

    own = _labels((("project_id", svc.project_id), ("service_id", svc.service_id)))
    for endpoint, state in sorted(svc.collect.items()):
        labels = f'{own},endpoint="{_escape(endpoint)}"'
        out[_INDEX[cat.COLLECT_SUCCESS.name]].append(
            f"{cat.COLLECT_SUCCESS.name}{{{labels}}} {1 if state.success else 0}\n"
        )
        if state.last_success is not None:
            out[_INDEX[cat.LAST_SUCCESS_TS.name]].append(
                f"{cat.LAST_SUCCESS_TS.name}{{{labels}}} {_num(state.last_success)}\n"
            )
    return tuple("".join(lines) for lines in out)


class ServiceRenderer:
    """Renders snapshots, re-rendering only the services whose snapshot object changed."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[ServiceSnapshot, Fragment]] = {}

    def render(self, snapshot: Snapshot) -> bytes:
        cache: dict[int, tuple[ServiceSnapshot, Fragment]] = {}
        fragments: list[Fragment] = []
        for svc in snapshot.services:
            hit = self._cache.get(id(svc))
            fragment = hit[1] if hit is not None and hit[0] is svc else render_service(svc)
            cache[id(svc)] = (svc, fragment)
            fragments.append(fragment)
        self._cache = cache
        parts: list[str] = []
        for i, header in enumerate(_HEADERS):
            body = [f[i] for f in fragments if f[i]]
            if body:
                parts.append(header)
                parts.extend(body)
        watched = cat.WATCHED_SERVICES
        parts.append(_header(watched))
        for project_id, count in sorted(snapshot.watched.items()):
            parts.append(f'{watched.name}{{project_id="{_escape(project_id)}"}} {count}\n')
        return "".join(parts).encode()


class Exposition:
    """The /metrics body: the cached service part of the current snapshot, plus the live
    process-wide part rendered per scrape. The gzip variant compresses the big cached part once
    per snapshot and, per scrape, only the small live part (zlib's compressor state is copied)."""

    def __init__(self, live: Callable[[], bytes]) -> None:
        self._live = live
        self._renderer = ServiceRenderer()
        self._snapshot: Snapshot | None = None
        self._plain = b""
        self._gzip_prefix = b""
        self._gzip_state: zlib._Compress | None = None

    def update(self, snapshot: Snapshot) -> None:
        """Called by the poller for every new snapshot (not on the scrape path)."""
        if snapshot is self._snapshot:
            return
        plain = self._renderer.render(snapshot)
        compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        prefix = compressor.compress(plain)
        self._snapshot, self._plain = snapshot, plain
        self._gzip_prefix, self._gzip_state = prefix, compressor

    def body(self, *, gzipped: bool) -> bytes:
        live = self._live()
        if not gzipped:
            return self._plain + live
        state = self._gzip_state
        if state is None:
            return gzip.compress(self._plain + live, 6)
        tail = state.copy()
        return self._gzip_prefix + tail.compress(live) + tail.flush()


def iter_family_names() -> Iterator[str]:
    yield from (spec.name for spec in FAMILIES)
