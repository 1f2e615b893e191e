"""Snapshot -> Prometheus text exposition. Pure: no I/O, no clocks.

The per-service part is written directly in the text format (it is the bulk of the output at
thousands of services). Each service's lines are built from blocks, and a block is only
re-rendered when its inputs changed: the status/info/model block rarely changes, the counters
change every cycle but are a handful of lines. The exporter's own process-wide metrics come from a
private prometheus_client registry and are rendered at every scrape; they are small.
"""

from __future__ import annotations

import ctypes
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence

from exporter.metrics import catalogue as cat
from exporter.metrics.catalogue import MetricSpec
from exporter.modelarts.models import ModelUsage, MonitorReading, ServiceDetails
from exporter.polling.events import EventTotals, UpdateTotals
from exporter.polling.snapshot import EndpointState, ServiceSnapshot, Snapshot

# The families that change at every cycle for most services (the list's counters, the time of
# the last success) come last, together (the gzip cache compresses their runs again each cycle).
_VOLATILE = (cat.SERVICE_INVOCATIONS, cat.SERVICE_FAILURES, cat.LAST_SUCCESS_TS)
FAMILIES: tuple[MetricSpec, ...] = (
    *(spec for spec in cat.SERVICE_METRICS if spec not in _VOLATILE),
    cat.COLLECT_SUCCESS,
    *_VOLATILE,
)
_INDEX = {spec.name: i for i, spec in enumerate(FAMILIES)}
_N = len(FAMILIES)

# A block as the collector keeps it: (family index, its lines) pairs, empty lines left out; a
# service's output is the union of its blocks.
Chunks = tuple[tuple[int, bytes], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value)}"
    return repr(float(value))


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)


def _header(spec: MetricSpec) -> bytes:
    return f"# HELP {spec.name} {_escape(spec.help)}\n# TYPE {spec.name} {spec.type}\n".encode()


_HEADERS = tuple(_header(spec) for spec in FAMILIES)


class _Lines:
    """Collects the lines of one block, grouped by family."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.lines: dict[int, list[str]] = {}

    def add(self, spec: MetricSpec, value: float, extra: Sequence[tuple[str, str]] = ()) -> None:
        labels = self.base + ("," + _labels(extra) if extra else "")
        line = f"{spec.name}{{{labels}}} {_num(value)}\n"
        self.lines.setdefault(_INDEX[spec.name], []).append(line)

    def block(self) -> Chunks:
        return tuple((i, "".join(lines).encode()) for i, lines in self.lines.items() if lines)


def _static_details(base: str, d: ServiceDetails) -> Chunks:
    """Lines that change only with status, configuration or identity."""
    out = _Lines(base)
    out.add(
        cat.SERVICE_INFO,
        1,
        (
            ("infer_type", d.infer_type),
            ("workspace_id", d.workspace_id),
            ("cluster_id", d.cluster_id),
            ("pool_name", d.pool_name),
            ("owner", d.owner),
            ("generation", d.generation),
        ),
    )
    known = cat.KNOWN_STATUSES_V2 if d.generation == "v2" else cat.KNOWN_STATUSES
    for status in known:
        out.add(cat.SERVICE_STATUS, 1 if d.status == status else 0, (("status", status),))
    if d.status and d.status not in known:
        out.add(cat.SERVICE_STATUS, 1, (("status", d.status),))
    seen_models: set[tuple[str, str, str, str]] = set()
    seen_traffic: set[tuple[str, str, str]] = set()
    seen_running: set[tuple[str, str, str]] = set()
    for m in d.models:
        model = (
            ("model_id", m.model_id),
            ("model_name", m.model_name),
            ("model_version", m.model_version),
        )
        key = (m.model_id, m.model_name, m.model_version, m.specification)
        # Duplicate label sets would make Prometheus reject the whole scrape: first one wins.
        if m.instance_count is not None and key not in seen_models:
            seen_models.add(key)
            out.add(
                cat.MODEL_INSTANCES, m.instance_count, (*model, ("specification", m.specification))
            )
        if m.weight is not None and key[:3] not in seen_traffic:
            seen_traffic.add(key[:3])
            out.add(cat.MODEL_TRAFFIC, m.weight / 100.0, model)
        if m.running_count is not None and key[:3] not in seen_running:
            seen_running.add(key[:3])  # v2 instance groups (v1: from the monitor API)
            out.add(cat.MODEL_RUNNING_INSTANCES, m.running_count, (*model, ("node_id", "")))
    if d.publish_at is not None:
        out.add(cat.PUBLISHED_TS, d.publish_at / 1000.0)
    return out.block()


def _same_static(d: ServiceDetails, was: ServiceDetails) -> bool:
    """Whether the static block of `was` is that of `d` too (compared field by field: no key
    tuple per service per cycle)."""
    return (
        d.status == was.status
        and d.publish_at == was.publish_at
        and d.models == was.models
        and d.owner == was.owner
        and d.generation == was.generation
        and d.infer_type == was.infer_type
        and d.workspace_id == was.workspace_id
        and d.cluster_id == was.cluster_id
        and d.pool_name == was.pool_name
    )


_DYNAMIC = tuple(
    (_INDEX[spec.name], spec.name)
    for spec in (
        cat.SERVICE_PROGRESS,
        cat.SERVICE_INVOCATIONS,
        cat.SERVICE_FAILURES,
        cat.CONFIG_UPDATED_TS,
        cat.STATUS_CHANGED_TS,
        cat.AUTO_STOP_TS,
    )
)
_DYNAMIC_INDEXES = tuple(index for index, _ in _DYNAMIC)


def _dynamic_values(d: ServiceDetails) -> tuple[float | None, ...]:
    return (
        (d.progress or 0.0) / 100.0,
        d.invocation_times,
        d.failed_times,
        None if d.update_time is None else d.update_time / 1000.0,
        None if d.transition_at is None else d.transition_at / 1000.0,
        None if d.due_time is None else d.due_time / 1000.0,
    )


def _dynamic_details(
    heads: Sequence[str],
    values: Sequence[float | None],
    old_values: Sequence[float | None],
    old_pairs: Sequence[tuple[int, bytes] | None],
) -> tuple[list[tuple[int, bytes] | None], Chunks]:
    """Counters and timestamps, one line each: the list's counters move at every cycle, so a
    line is re-rendered only when its own value moved (the start of each line is kept per
    service), and the (family, line) pair of an unchanged one is the old object (fewer young
    objects for the garbage collector to walk). Returns every pair (None for a value that is
    None) and the block."""
    pairs = [
        old_pairs[n]
        if old_values and value == old_values[n]
        else None
        if value is None
        else (_DYNAMIC_INDEXES[n], f"{heads[n]}{_num(value)}\n".encode())
        for n, value in enumerate(values)
    ]
    return pairs, tuple([pair for pair in pairs if pair is not None])


def _dynamic_heads(base: str) -> list[str]:
    return [f"{name}{{{base}}} " for _, name in _DYNAMIC]


def _events(base: str, ev: EventTotals) -> Chunks:
    out = _Lines(base)
    types = list(ev.types) + sorted({t for t, _ in ev.counts} - set(ev.types))
    for event_type in types:
        phases = list(cat.PHASES) + sorted(
            {p for t, p in ev.counts if t == event_type} - set(cat.PHASES)
        )
        for phase in phases:
            out.add(
                cat.EVENTS,
                ev.counts.get((event_type, phase), 0),
                (("event_type", event_type), ("phase", phase)),
            )
    for event_type, ms in sorted(ev.last_occur_ms.items()):
        out.add(cat.LAST_EVENT_TS, ms / 1000.0, (("event_type", event_type),))
    return out.block()


_MODEL_USAGE: tuple[tuple[MetricSpec, Callable[[ModelUsage], float | None]], ...] = (
    (cat.MODEL_RUNNING_INSTANCES, lambda u: u.running_instances),
    (cat.MODEL_CPU_USED, lambda u: u.cpu_cores_used),
    (cat.MODEL_CPU, lambda u: u.cpu_cores),
    (cat.MODEL_MEMORY_USED, lambda u: u.memory_used_bytes),
    (cat.MODEL_MEMORY, lambda u: u.memory_bytes),
    (cat.MODEL_GPUS_USED, lambda u: u.gpus_used),
    (cat.MODEL_GPUS, lambda u: u.gpus),
    (cat.MODEL_GPU_MEMORY_USED, lambda u: u.gpu_memory_used_bytes),
    (cat.MODEL_GPU_MEMORY, lambda u: u.gpu_memory_bytes),
    (cat.MODEL_NPUS_USED, lambda u: u.npus_used),
    (cat.MODEL_NPUS, lambda u: u.npus),
    (cat.MODEL_NPU_MEMORY_USED, lambda u: u.npu_memory_used_bytes),
    (cat.MODEL_NPU_MEMORY, lambda u: u.npu_memory_bytes),
    (cat.MODEL_INVOCATIONS, lambda u: u.invocations),
    (cat.MODEL_FAILURES, lambda u: u.failures),
)


_USAGE_LABELS = ("model_id", "model_name", "model_version", "node_id")


def _monitor(base: str, mon: MonitorReading) -> Chunks:
    """Resource usage; a field the API left out gives no line (never a made-up 0)."""
    out = _Lines(base)
    for spec, value in (
        (cat.SERVICE_INSTANCES, mon.instances),
        (cat.SERVICE_RUNNING_INSTANCES, mon.running_instances),
        (cat.REQUESTS_LAST_MINUTE, mon.requests_last_minute),
    ):
        if value is not None:
            out.add(spec, value)
    seen: set[tuple[str, str, str, str]] = set()
    for usage in mon.models:
        key = (usage.model_id, usage.model_name, usage.model_version, usage.node_id)
        if key in seen:  # a duplicate label set would make Prometheus reject the scrape
            continue
        seen.add(key)
        labels = tuple(zip(_USAGE_LABELS, key, strict=True))
        for spec, field in _MODEL_USAGE:
            value = field(usage)
            if value is not None:
                out.add(spec, value, labels)
    return out.block()


def _updates(base: str, up: UpdateTotals) -> Chunks:
    out = _Lines(base)
    for result in cat.UPDATE_RESULTS:
        out.add(cat.UPDATES, up.counts.get(result, 0), (("result", result),))
    if up.newest_time_ms is not None:
        out.add(cat.LAST_UPDATE_TS, up.newest_time_ms / 1000.0)
    for result in cat.LAST_UPDATE_RESULTS:
        out.add(
            cat.LAST_UPDATE_RESULT, 1 if up.newest_result == result else 0, (("result", result),)
        )
    return out.block()


_SUCCESS = _INDEX[cat.COLLECT_SUCCESS.name]
_LAST = _INDEX[cat.LAST_SUCCESS_TS.name]


def _collect_prefixes(svc: ServiceSnapshot, endpoint: str) -> tuple[str, str]:
    labels = _labels(
        (("project_id", svc.project_id), ("service_id", svc.service_id), ("endpoint", endpoint))
    )
    return f"{cat.COLLECT_SUCCESS.name}{{{labels}}} ", f"{cat.LAST_SUCCESS_TS.name}{{{labels}}} "


_LAST_TEXT: list[object] = [None, ""]  # the last time rendered, and its text


def _collect(svc: ServiceSnapshot, cache: _ServiceCache) -> Chunks:
    """Re-rendered at every cycle for every listed service (the time of its last success
    moves). The label part of each line is kept per service and endpoint, an endpoint's lines
    are made again only when its state is a new object, a family's chunk only when one of its
    lines changed."""
    collect = svc.collect
    names = tuple(collect)
    entries = cache.endpoint_lines
    success_moved = last_moved = names != cache.endpoint_names
    if success_moved:
        cache.endpoint_names = names
        cache.endpoint_order = tuple(sorted(names))
        entries = cache.endpoint_lines = [None] * len(names)
    for k, endpoint in enumerate(cache.endpoint_order):
        state = collect[endpoint]
        entry = entries[k]
        if entry is not None and entry[0] is state:
            continue
        pair = cache.prefixes.get(endpoint)
        if pair is None:
            pair = cache.prefixes[endpoint] = _collect_prefixes(svc, endpoint)
        if entry is not None and entry[0].success == state.success:
            success = entry[1]
        else:
            success = f"{pair[0]}{1 if state.success else 0}\n"
            success_moved = True
        at = state.last_success
        if at is None:
            last = ""
        else:
            if at != _LAST_TEXT[0]:  # the services a list covered share their time
                _LAST_TEXT[:] = [at, _num(at)]
            last = f"{pair[1]}{_LAST_TEXT[1]}\n"
        last_moved = True if entry is None else last_moved or last != entry[2]
        entries[k] = (state, success, last)
    if success_moved:
        text = "".join([entry[1] for entry in entries]).encode()  # type: ignore[index]
        cache.success = (_SUCCESS, text) if text else None
    if last_moved:
        text = "".join([entry[2] for entry in entries]).encode()  # type: ignore[index]
        cache.last = (_LAST, text) if text else None
    if success_moved or last_moved:
        cache.collect = tuple([pair for pair in (cache.success, cache.last) if pair is not None])
    return cache.collect


class _ServiceCache:
    """What was rendered for one service, block by block, with the inputs it came from. Every
    block is kept as (family index, lines) pairs."""

    __slots__ = (
        "base",
        "base_key",
        "blocks",
        "collect",
        "details",
        "dynamic",
        "endpoint_lines",
        "endpoint_names",
        "endpoint_order",
        "events",
        "events_from",
        "heads",
        "key",
        "last",
        "monitor",
        "monitor_from",
        "pairs",
        "prefixes",
        "static",
        "success",
        "updates",
        "updates_from",
        "values",
    )

    def __init__(self, key: tuple[str, str]) -> None:
        self.key = key  # (project_id, service_id)
        self.reset()
        self.blocks: list[Chunks] = _NO_BLOCKS  # the blocks of the last render

    def reset(self) -> None:
        self.base_key: tuple[str, str, str] | None = None
        self.base = ""
        self.heads: list[str] = []  # the dynamic block's line starts
        self.details: ServiceDetails | None = None  # what the static and dynamic blocks show
        self.static: Chunks = ()
        self.values: tuple[float | None, ...] = ()  # the dynamic block's values
        self.pairs: list[tuple[int, bytes] | None] = []  # the dynamic block's, one per value
        self.dynamic: Chunks = ()
        self.events_from: EventTotals | None = None
        self.events: Chunks = ()
        self.updates_from: UpdateTotals | None = None
        self.updates: Chunks = ()
        self.monitor_from: MonitorReading | None = None
        self.monitor: Chunks = ()
        self.prefixes: dict[str, tuple[str, str]] = {}  # endpoint -> its collect line starts
        # the snapshot's endpoints in its order, and sorted (the order of the lines)
        self.endpoint_names: tuple[str, ...] | None = None
        self.endpoint_order: tuple[str, ...] = ()
        # per endpoint in sorted order: (the state its lines show, success line, last line)
        self.endpoint_lines: list[tuple[EndpointState, str, str] | None] = []
        # the collect block's (family, lines) pairs, None when empty
        self.success: tuple[int, bytes] | None = None
        self.last: tuple[int, bytes] | None = None
        self.collect: Chunks = ()


class ServiceRenderer:
    """Renders snapshots; unchanged blocks of a service are reused from the previous render."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], _ServiceCache] = {}
        self._order: list[_ServiceCache] = []  # the services of the last render, in order
        self._families: list[list[bytes]] = [[header] for header in _HEADERS]
        # part * _N + family -> every service's chunk there, by its place in _order; and per
        # family, its columns in part order
        self._columns: dict[int, list[bytes]] = {}
        self._slots: list[list[int]] = [[] for _ in range(_N)]
        self._watched_key: tuple[tuple[str, int], ...] | None = None
        self._watched: list[bytes] = []

    def render_service(self, svc: ServiceSnapshot, cache: _ServiceCache) -> list[Chunks]:
        """The service's blocks, one per part (`_PARTS`), () for a part it does not have."""
        known = cache.base_key
        if (
            known is None
            or known[2] != svc.service_name
            or known[1] != svc.service_id
            or known[0] != svc.project_id
        ):
            base_key = (svc.project_id, svc.service_id, svc.service_name)
            cache.reset()
            cache.base_key = base_key
            cache.base = _labels(
                (
                    ("project_id", base_key[0]),
                    ("service_id", base_key[1]),
                    ("service_name", base_key[2]),
                )
            )
            cache.heads = _dynamic_heads(cache.base)
        base = cache.base
        d = svc.details
        static = dynamic = events = updates = monitor = _NO_BLOCK
        if d is not None:
            if d is not cache.details:
                was = cache.details
                if was is None or not _same_static(d, was):
                    cache.static = _static_details(base, d)
                values = _dynamic_values(d)
                if values != cache.values:
                    cache.pairs, cache.dynamic = _dynamic_details(
                        cache.heads, values, cache.values, cache.pairs
                    )
                    cache.values = values
                cache.details = d
            static, dynamic = cache.static, cache.dynamic
        ev = svc.events
        if ev is not None:
            if ev is not cache.events_from and ev != cache.events_from:
                cache.events = _events(base, ev)
            cache.events_from = ev
            events = cache.events
        up = svc.updates
        if up is not None:
            if up is not cache.updates_from and up != cache.updates_from:
                cache.updates = _updates(base, up)
            cache.updates_from = up
            updates = cache.updates
        mon = svc.monitor
        if mon is not None:
            if mon is not cache.monitor_from and mon != cache.monitor_from:
                cache.monitor = _monitor(base, mon)
            cache.monitor_from = mon
            monitor = cache.monitor
        return [static, dynamic, events, updates, monitor, _collect(svc, cache)]

    def render(self, snapshot: Snapshot) -> bytes:
        return b"".join(chunk for family in self.render_families(snapshot) for chunk in family)

    def render_families(self, snapshot: Snapshot) -> list[list[bytes]]:
        """The exposition family by family, each a list of chunks (its header, then one chunk
        per service that has lines in it) that reference the cached blocks (no copy).

        Each (part, family) has a column: every service's chunk there, by the service's place
        in the snapshot. A changed block puts its chunks in the columns; a family none of whose
        chunks changed is the very list of the previous render, so the gzip cache reuses it
        whole without looking at its chunks. When services come, go or move, the columns are
        made again from every service's blocks."""
        caches: dict[tuple[str, str], _ServiceCache] = {}
        order: list[_ServiceCache] = []
        dirty = [False] * _N
        old = self._cache
        old_order = self._order
        known = len(old_order)
        same = True  # the same services in the same places so far
        for pos, svc in enumerate(snapshot.services):
            # the service in this place last time, usually: found without a key tuple
            cache = old_order[pos] if pos < known else None
            if cache is None or cache.key[1] != svc.service_id or cache.key[0] != svc.project_id:
                key = (svc.project_id, svc.service_id)
                cache = old.get(key) or _ServiceCache(key)
            caches[cache.key] = cache
            order.append(cache)
            if same and (pos >= known or old_order[pos] is not cache):
                same = False
            blocks = self.render_service(svc, cache)
            was = cache.blocks
            if blocks == was:  # identical blocks compare by identity, at C speed
                continue
            cache.blocks = blocks
            if not same:
                continue
            for part in range(_PARTS):
                block, before = blocks[part], was[part]
                if block is not before:
                    self._apply(pos, part * _N, block, before, dirty)
        self._cache = caches  # services that left the snapshot are forgotten
        if not same or len(order) != known:
            self._rebuild(order)
            dirty = [True] * _N
        families = self._families
        for i in range(_N):
            if dirty[i]:
                families[i] = self._assemble(i)
        out = [lines for lines in families if len(lines) > 1]
        watched = tuple(sorted(snapshot.watched.items()))
        if watched != self._watched_key:
            spec = cat.WATCHED_SERVICES
            self._watched_key = watched
            self._watched = [
                _header(spec),
                *(
                    f'{spec.name}{{project_id="{_escape(project_id)}"}} {count}\n'.encode()
                    for project_id, count in watched
                ),
            ]
        out.append(self._watched)
        return out

    def _apply(self, pos: int, base: int, block: Chunks, was: Chunks, dirty: list[bool]) -> None:
        """Put a changed block of the service at `pos` in the columns (`base`: its part's first
        column), marking the families whose chunk is another object as dirty."""
        columns = self._columns
        if len(block) == len(was):  # usually: the same families, some of their lines changed
            for (i, chunk), (j, before) in zip(block, was, strict=True):
                if i != j:
                    break
                if chunk is not before:
                    columns[base + i][pos] = chunk
                    dirty[i] = True
            else:
                return
        for i, _ in was:
            columns[base + i][pos] = b""
            dirty[i] = True
        for i, chunk in block:
            self._column(base + i, len(self._order))[pos] = chunk
            dirty[i] = True

    def _column(self, slot: int, size: int) -> list[bytes]:
        column = self._columns.get(slot)
        if column is None:
            column = self._columns[slot] = [b""] * size
            family = slot % _N
            self._slots[family] = sorted([*self._slots[family], slot])
        return column

    def _rebuild(self, order: list[_ServiceCache]) -> None:
        self._order = order
        self._columns = {}
        self._slots = [[] for _ in range(_N)]
        size = len(order)
        for pos, cache in enumerate(order):
            for part, block in enumerate(cache.blocks):
                for i, chunk in block:
                    self._column(part * _N + i, size)[pos] = chunk

    def _assemble(self, family: int) -> list[bytes]:
        """One family's chunks: its header, then each service's chunks in it, in part order."""
        lines = [_HEADERS[family]]
        slots = self._slots[family]
        if len(slots) == 1:
            lines += filter(None, self._columns[slots[0]])
        elif slots:
            for group in zip(*(self._columns[slot] for slot in slots), strict=True):
                lines += filter(None, group)
        return lines


# A service's blocks, in this order: static, dynamic, events, updates, monitor, collect.
_PARTS = 6
_NO_BLOCK: Chunks = ()
_NO_BLOCKS: list[Chunks] = [_NO_BLOCK] * _PARTS  # shared: block lists are never mutated


def coalesce(chunks: Iterable[bytes], size: int = 1 << 20) -> Iterator[bytes]:
    """Join many small chunks into pieces of about `size` bytes."""
    batch: list[bytes] = []
    filled = 0
    for chunk in chunks:
        batch.append(chunk)
        filled += len(chunk)
        if filled >= size:
            yield b"".join(batch)
            batch, filled = [], 0
    if batch:
        yield b"".join(batch)


_ZEROS = bytes(1 << 16)


def _shift(crc: int, length: int) -> int:
    """crc32(zeros(length), crc)."""
    while length > len(_ZEROS):
        crc = zlib.crc32(_ZEROS, crc)
        length -= len(_ZEROS)
    return zlib.crc32(memoryview(_ZEROS)[:length], crc)


def crc32_combine_by_zeros(crc1: int, crc2: int, length2: int) -> int:
    """crc32(A + B) from crc1 = crc32(A), crc2 = crc32(B) and len(B): CRC-32 is affine, so
    crc(A + B) = crc32(zeros(len B), crc(A)) ^ crc(B) ^ crc32(zeros(len B)). Reads 2 len(B)
    bytes of zeros (a block of them that stays in the CPU cache)."""
    return _shift(crc1, length2) ^ crc2 ^ _shift(0, length2)


def _zlib_crc32_combine() -> Callable[[int, int, int], int] | None:
    """zlib's own crc32_combine, in O(log n) without reading any text. Python's zlib module
    does not expose it, so it is taken from the zlib library through ctypes (already loaded on
    Linux: the zlib module links it); None where there is no such library or its answer is
    wrong, and the caller falls back to crc32_combine_by_zeros."""
    for name in ("libz.so.1", "libz.dylib", "libz.so"):
        try:
            library = ctypes.CDLL(name)
        except OSError:
            continue
        for symbol, offset in (
            ("crc32_combine64", ctypes.c_int64),
            ("crc32_combine", ctypes.c_long),
        ):
            function = getattr(library, symbol, None)
            if function is None:
                continue
            function.restype = ctypes.c_ulong
            function.argtypes = (ctypes.c_ulong, ctypes.c_ulong, offset)
            if _combines_right(function):
                return function  # type: ignore[no-any-return]
    return None


def _combines_right(combine: Callable[[int, int, int], int]) -> bool:
    for a, b in ((b"", b"x"), (b"metrics ", b"text" * 1000), (b"\xff" * 70_001, b"\x00" * 65_537)):
        if combine(zlib.crc32(a), zlib.crc32(b), len(b)) != zlib.crc32(a + b):
            return False
    return True


crc32_combine: Callable[[int, int, int], int] = _zlib_crc32_combine() or crc32_combine_by_zeros


class _DeflateCache:
    """The service part of the exposition as raw deflate, compressed run by run of `SEGMENT`
    chunks, each run ended by a full flush so it stands alone: no back-reference crosses it,
    and it ends on a byte boundary. Runs whose chunks are unchanged since the previous snapshot
    (the same cached blocks, or equal bytes) are reused instead of compressed again; at
    thousands of services most of the text is unchanged from one cycle to the next. A family
    that is the very list of the previous update is reused whole, without comparing its runs.

    The gzip trailer's CRC-32 of the whole text is combined from the CRC-32 of each run
    (`crc32_combine`) without reading their text again: only the text of a run compressed again
    is checksummed.

    The compressed runs are kept joined in one buffer (served as is); a reused run is copied
    from the previous buffer. No final block is written: the per-scrape tail ends the stream."""

    SEGMENT = 32

    def __init__(self, level: int) -> None:
        # One compressor for every run: after a full flush its output depends on nothing before.
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        self._families: list[Sequence[bytes]] = []  # the families of the last update
        self._keys: list[list[tuple[bytes, ...]]] = []  # per family, per run: its chunks
        # per family, per run: where its output is, from the family's start in `data`, the
        # length of its text and the text's CRC-32
        self._runs: list[list[tuple[int, int, int, int]]] = []
        # per family: where its output is in `data`, the length of its text and its CRC-32
        self._spans: list[tuple[int, int, int, int]] = []
        self.data: bytes = _GZIP_HEADER
        self.crc = 0
        self.size = 0
        self.runs = self.compressed = 0  # of the last update: runs in all, runs compressed
        self.checksummed = 0  # of the last update: bytes of text run through CRC-32

    def update(self, families: Sequence[Sequence[bytes]]) -> None:
        # Runs are counted within a family, so a service gaining or losing a line in one family
        # moves the run boundaries of that family only.
        old_families, old_keys, old_runs, old_spans = (
            self._families,
            self._keys,
            self._runs,
            self._spans,
        )
        old = memoryview(self.data)
        keys: list[list[tuple[bytes, ...]]] = []
        runs_out: list[list[tuple[int, int, int, int]]] = []
        spans: list[tuple[int, int, int, int]] = []
        pieces: list[bytes | memoryview] = [_GZIP_HEADER]
        offset = len(_GZIP_HEADER)
        compressor = self._compressor
        combine = crc32_combine
        step = self.SEGMENT
        compressed = crc = size = checksummed = 0
        for f, chunks in enumerate(families):
            if f < len(old_families) and chunks is old_families[f]:
                begin, end, length, family_crc = old_spans[f]
                pieces.append(old[begin:end])
                keys.append(old_keys[f])
                runs_out.append(old_runs[f])
            else:
                family_keys: list[tuple[bytes, ...]] = []
                family_runs: list[tuple[int, int, int, int]] = []
                previous_keys = old_keys[f] if f < len(old_keys) else []
                reusable = len(previous_keys)
                base = old_spans[f][0] if f < len(old_spans) else 0
                at = length = family_crc = 0
                for n, start in enumerate(range(0, len(chunks), step)):
                    key = tuple(chunks[start : start + step])
                    piece: bytes | memoryview
                    if n < reusable and previous_keys[n] == key:
                        key = previous_keys[n]  # the old tuple is kept, the new one freed at once
                        begin, end, run_length, run_crc = old_runs[f][n]
                        piece = old[base + begin : base + end]
                    else:
                        text = b"".join(key)
                        piece = compressor.compress(text)
                        piece += compressor.flush(zlib.Z_FULL_FLUSH)
                        compressed += 1
                        run_length = len(text)
                        run_crc = zlib.crc32(text)
                        checksummed += run_length
                    family_crc = combine(family_crc, run_crc, run_length)
                    length += run_length
                    family_keys.append(key)
                    family_runs.append((at, at + len(piece), run_length, run_crc))
                    pieces.append(piece)
                    at += len(piece)
                keys.append(family_keys)
                runs_out.append(family_runs)
                end = at  # the family's output length
                begin = 0
            written = end - begin
            spans.append((offset, offset + written, length, family_crc))
            offset += written
            crc = combine(crc, family_crc, length)
            size += length
        data = b"".join(pieces)
        del pieces
        old.release()
        self._families = list(families)
        self._keys, self._runs, self._spans = keys, runs_out, spans
        self.data, self.crc, self.size = data, crc, size
        self.runs = sum(len(family) for family in keys)
        self.compressed, self.checksummed = compressed, checksummed


# A gzip member header: deflate, no name, no mtime (reproducible bodies), unknown OS.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


class Exposition:
    """The /metrics body: the service part of the current snapshot, plus the live process-wide
    part rendered per scrape.

    The service part is kept as the list of cached blocks it is made of, not joined into one
    body, so the text is in memory once. Its gzip form is kept compressed (see _DeflateCache);
    per scrape only the small live part is compressed and the gzip trailer written."""

    # Level 1: the exposition is repetitive text, so it compresses well even at the fastest
    # level, for half the CPU of the default.
    GZIP_LEVEL = 1

    def __init__(self, live: Callable[[], bytes]) -> None:
        self._live = live
        self._renderer = ServiceRenderer()
        self._snapshot: Snapshot | None = None
        self._families: list[list[bytes]] = []
        self._parts: list[bytes] | None = []  # the families' chunks in one list, when asked for
        self._deflate = _DeflateCache(self.GZIP_LEVEL)

    def update(self, snapshot: Snapshot) -> None:
        """Called by the poller for every new snapshot (not on the scrape path)."""
        if snapshot is self._snapshot:
            return
        families = self._renderer.render_families(snapshot)
        self._deflate.update(families)
        self._snapshot = snapshot
        # Flattened on the first uncompressed scrape: Prometheus asks for gzip.
        self._families, self._parts = families, None

    def chunks(self, *, gzipped: bool) -> list[bytes]:
        """The body as chunks to write one after the other."""
        live = self._live()
        if not gzipped:
            if self._parts is None:
                self._parts = [chunk for family in self._families for chunk in family]
            return [*self._parts, live]
        cache = self._deflate
        tail = zlib.compressobj(self.GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        end = tail.compress(live) + tail.flush()
        trailer = struct.pack(
            "<II", zlib.crc32(live, cache.crc), (cache.size + len(live)) & 0xFFFFFFFF
        )
        return [cache.data, end + trailer]

    def body(self, *, gzipped: bool) -> bytes:
        return b"".join(self.chunks(gzipped=gzipped))
