"""Snapshot -> exposition: values, one-hot status, label escaping, caching, gzip, promtool."""

from __future__ import annotations

import dataclasses
import gzip
import shutil
import struct
import subprocess
import zlib
from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from exporter.metrics import catalogue as cat
from exporter.metrics import collector
from exporter.metrics.collector import Exposition, ServiceRenderer, _DeflateCache
from exporter.metrics.own import ExporterMetrics
from exporter.modelarts.models import ModelConfig, ServiceDetails
from exporter.polling.events import EventTotals, UpdateTotals
from exporter.polling.snapshot import EndpointState, ServiceSnapshot, Snapshot


def details(**over: object) -> ServiceDetails:
    base: dict[str, object] = dict(
        service_id="s1",
        service_name='we"ird\\name',
        infer_type="real-time",
        workspace_id="0",
        cluster_id="",
        pool_name="",
        owner="u",
        status="deploying",
        progress=40.0,
        invocation_times=100.0,
        failed_times=7.0,
        publish_at=1_700_000_000_000.0,
        update_time=1_700_000_100_000.0,
        transition_at=1_700_000_200_000.0,
        due_time=None,
        models=(
            ModelConfig("m1", "a", "1.0", "cpu", 70.0, 2.0),
            ModelConfig("m2", "b", "2.0", "gpu", 30.0, 1.0),
        ),
    )
    base.update(over)
    return ServiceDetails(**base)  # type: ignore[arg-type]


def service(d: ServiceDetails | None = None, **over: object) -> ServiceSnapshot:
    fields: dict[str, object] = dict(
        project_id="p1",
        service_id="s1",
        service_name='we"ird\\name',
        details=d if d is not None else details(),
        events=EventTotals(
            {("abnormal", "model_start"): 3, ("normal", "deploy"): 1},
            {"abnormal": 1_700_000_300_000},
        ),
        updates=UpdateTotals({"success": 2}, 1_700_000_400_000, "running"),
        collect=MappingProxyType(
            {"details": EndpointState(True, 1_700_000_500.0), "events": EndpointState(False, None)}
        ),
    )
    fields.update(over)
    return ServiceSnapshot(**fields)  # type: ignore[arg-type]


def samples(body: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    matches = [v for (n, ls), v in found.items() if n == name and set(labels.items()) <= ls]
    assert len(matches) == 1, (name, labels, matches)
    return matches[0]


def test_details_values_and_one_hot_status() -> None:
    body = ServiceRenderer().render(Snapshot(services=(service(),), watched={"p1": 1}))
    found = samples(body)
    for status in cat.KNOWN_STATUSES:
        assert value(found, "modelarts_service_status", status=status) == (status == "deploying")
    assert value(found, "modelarts_service_progress_ratio") == 0.4
    assert value(found, "modelarts_service_invocations_total") == 100
    assert value(found, "modelarts_service_invocation_failures_total") == 7
    assert (
        value(found, "modelarts_service_model_instances", model_id="m1", specification="cpu") == 2
    )
    assert value(found, "modelarts_service_model_traffic_ratio", model_id="m2") == 0.3
    assert value(found, "modelarts_service_published_timestamp_seconds") == 1_700_000_000
    assert value(found, "modelarts_service_config_updated_timestamp_seconds") == 1_700_000_100
    assert value(found, "modelarts_service_status_changed_timestamp_seconds") == 1_700_000_200
    assert not any(n == "modelarts_service_auto_stop_timestamp_seconds" for n, _ in found)
    assert (
        value(found, "modelarts_service_info", service_name='we"ird\\name', infer_type="real-time")
        == 1
    )
    assert value(found, "modelarts_exporter_watched_services", project_id="p1") == 1


def test_unknown_status_is_its_own_series() -> None:
    found = samples(
        ServiceRenderer().render(Snapshot(services=(service(details(status="upgrading")),)))
    )
    assert value(found, "modelarts_service_status", status="upgrading") == 1
    assert sum(v for (n, _), v in found.items() if n == "modelarts_service_status") == 1


def test_events_all_fourteen_combinations_and_updates() -> None:
    found = samples(ServiceRenderer().render(Snapshot(services=(service(),))))
    events = {ls: v for (n, ls), v in found.items() if n == "modelarts_service_events_total"}
    assert len(events) == 14
    assert (
        value(found, "modelarts_service_events_total", event_type="abnormal", phase="model_start")
        == 3
    )
    assert (
        value(found, "modelarts_service_events_total", event_type="normal", phase="image_pull") == 0
    )
    assert (
        value(found, "modelarts_service_last_event_timestamp_seconds", event_type="abnormal")
        == 1_700_000_300
    )
    assert value(found, "modelarts_service_updates_total", result="success") == 2
    assert value(found, "modelarts_service_updates_total", result="fail") == 0
    assert value(found, "modelarts_service_last_update_result", result="running") == 1
    assert value(found, "modelarts_service_last_update_result", result="success") == 0
    assert value(found, "modelarts_exporter_collect_success", endpoint="events") == 0
    assert (
        value(found, "modelarts_exporter_last_success_timestamp_seconds", endpoint="details")
        == 1_700_000_500
    )


def test_missing_parts_are_not_exported() -> None:
    svc = service(details=None, events=None, updates=None)
    object.__setattr__(svc, "details", None)
    found = samples(ServiceRenderer().render(Snapshot(services=(svc,))))
    names = {n for n, _ in found}
    assert names == {
        "modelarts_exporter_collect_success",
        "modelarts_exporter_last_success_timestamp_seconds",
    }


def test_unchanged_blocks_are_not_rerendered_and_output_matches_a_fresh_render() -> None:
    from exporter.metrics import collector

    calls: list[str] = []
    original = collector._static_details

    def counting(base: str, d: ServiceDetails) -> dict[int, bytes]:
        calls.append(d.service_id)
        return original(base, d)

    collector._static_details = counting  # type: ignore[assignment]
    try:
        renderer = ServiceRenderer()
        a, b = service(), service(service_id="s2")
        renderer.render(Snapshot(services=(a, b)))
        # new objects: only counters and collect times changed for s1; s2's status changed
        a2 = service(
            details(invocation_times=101.0),
            collect=MappingProxyType({"details": EndpointState(True, 1_700_000_600.0)}),
        )
        b2 = service(details(service_id="s2", status="running"), service_id="s2")
        cached = renderer.render(Snapshot(services=(a2, b2)))
    finally:
        collector._static_details = original  # type: ignore[assignment]
    assert calls == ["s1", "s1", "s2"]  # first render: both; second: only s2 (status changed)
    fresh = ServiceRenderer().render(Snapshot(services=(a2, b2)))
    assert cached == fresh
    found = samples(cached)
    assert value(found, "modelarts_service_invocations_total", service_id="s1") == 101
    assert value(found, "modelarts_service_status", service_id="s2", status="running") == 1


def test_gzip_body_decompresses_to_plain_body() -> None:
    live = iter([b"live_metric 1\n", b"live_metric 1\n", b"live_metric 2\n", b"live_metric 2\n"])
    expo = Exposition(lambda: next(live))
    expo.update(Snapshot(services=(service(),)))
    plain = expo.body(gzipped=False)
    assert gzip.decompress(expo.body(gzipped=True)) == plain
    plain2 = expo.body(gzipped=False)
    assert gzip.decompress(expo.body(gzipped=True)) == plain2
    assert plain2.endswith(b"live_metric 2\n")


def test_promtool_accepts_the_full_exposition() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is required: run `make tools`"
    own = ExporterMetrics()
    own.request_done("details", "200", 0.1)
    own.retried("events")
    own.poll_cycle("p1", 1.0)
    expo = Exposition(own.render)
    expo.update(Snapshot(services=(service(), service(service_id="s2")), watched={"p1": 2}))
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=expo.body(gzipped=False),
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()
    assert result.stdout.strip() == b"" and result.stderr.strip() == b"", result.stderr


_ENDPOINT_STATES = (
    EndpointState(True, 1_700_000_500.0),
    EndpointState(True, 1_700_000_530.0),
    EndpointState(False, 1_700_000_500.0),
    EndpointState(False, None),
)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(
                st.sampled_from(["s1", "s2", "s3"]),
                st.sampled_from(["running", "failed", "weird"]),
                st.integers(0, 3),
                st.booleans(),
                # per endpoint: absent, or one of the states above (a fresh object each time)
                st.dictionaries(
                    st.sampled_from(["details", "events", "logs"]),
                    st.integers(0, len(_ENDPOINT_STATES) - 1),
                ),
                st.sampled_from([None, 0.0, 1_800_000_000_000.0]),  # due_time
                st.booleans(),  # details present
            ),
            max_size=3,
            unique_by=lambda t: t[0],
        ),
        min_size=1,
        max_size=6,
    )
)
def test_cached_render_always_equals_a_fresh_render(
    rounds: list[list[tuple[str, str, int, bool, dict[str, int], float | None, bool]]],
) -> None:
    renderer = ServiceRenderer()
    for round_ in rounds:
        snap = Snapshot(
            services=tuple(
                service(
                    details=details(
                        service_id=sid, status=status, invocation_times=float(calls), due_time=due
                    )
                    if has_details
                    else None,
                    service_id=sid,
                    service_name=f"name-{calls % 2}",
                    events=EventTotals({("normal", "deploy"): calls}, {}) if has_events else None,
                    collect=MappingProxyType(
                        {
                            endpoint: dataclasses.replace(_ENDPOINT_STATES[n])
                            for endpoint, n in states.items()
                        }
                    ),
                )
                for sid, status, calls, has_events, states, due, has_details in round_
            )
        )
        assert renderer.render(snap) == ServiceRenderer().render(snap)


def fleet(n: int, *, calls: int = 100, status: dict[int, str] | None = None) -> Snapshot:
    status = status or {}
    return Snapshot(
        services=tuple(
            service(
                details(
                    service_id=f"s{i}",
                    invocation_times=float(calls + i),
                    status=status.get(i, "running"),
                    due_time=1_800_000_000_000.0 if i % 3 == 0 else None,
                ),
                service_id=f"s{i}",
            )
            for i in range(n)
        ),
        watched=MappingProxyType({"p1": n}),
    )


def single_member(body: bytes) -> bytes:
    """Decompress as one gzip member (what a strict client does), checking CRC and length."""
    decoder = zlib.decompressobj(31)
    out = decoder.decompress(body) + decoder.flush()
    assert decoder.eof and decoder.unused_data == b""
    assert gzip.decompress(body) == out  # gzip also checks the CRC-32 and size trailer
    return out


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, 120),
            st.integers(0, 5),
            st.dictionaries(
                st.integers(0, 119),
                st.sampled_from(["failed", "stopped", "concerning"]),
                max_size=5,
            ),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_gzip_stays_exact_while_runs_are_reused(
    steps: list[tuple[int, int, dict[int, str]]],
) -> None:
    expo = Exposition(lambda: b"live_metric 1\n")
    for n, calls, status in steps:
        expo.update(fleet(n, calls=calls, status=status))
        assert single_member(expo.body(gzipped=True)) == expo.body(gzipped=False)


@settings(max_examples=60, deadline=None)
@given(
    first=st.lists(
        st.lists(st.integers(0, 200_000), min_size=1, max_size=70), min_size=1, max_size=4
    ),
    edits=st.lists(
        st.lists(st.tuples(st.integers(0, 300), st.integers(0, 90_000)), max_size=6),
        min_size=1,
        max_size=4,
    ),
)
def test_the_carried_checksum_equals_the_checksum_of_the_text(
    first: list[list[int]], edits: list[list[tuple[int, int]]]
) -> None:
    # Chunks of any size (runs longer than the block of zeros the CRC is carried with
    # included), some replaced between updates by chunks of another length.
    def chunk(size: int, salt: int) -> bytes:
        return bytes([salt % 251]) * size

    families = [[chunk(size, n) for n, size in enumerate(sizes)] for sizes in first]
    cache = _DeflateCache(1)
    for step, changes in enumerate([[], *edits]):
        for where, size in changes:
            family = families[where % len(families)]
            family[where % len(family)] = chunk(size, step + where)
        cache.update([list(family) for family in families])  # never mutated once handed over
        text = b"".join(c for family in families for c in family)
        assert (cache.crc, cache.size) == (zlib.crc32(text), len(text))
        tail = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS).flush()
        body = cache.data + tail + struct.pack("<II", cache.crc, cache.size & 0xFFFFFFFF)
        assert single_member(body) == text


def test_unchanged_runs_are_not_compressed_again() -> None:
    expo = Exposition(lambda: b"")
    expo.update(fleet(500))
    runs = expo._deflate.runs
    assert expo._deflate.compressed == runs
    expo.update(fleet(500))  # equal content, new objects
    assert expo._deflate.compressed == 0
    expo.update(fleet(500, status={250: "failed"}))  # one service's status changed
    # Only the runs holding that service's changed lines: a handful, not the whole body.
    assert 0 < expo._deflate.compressed <= 3
    plain = expo.body(gzipped=False)
    assert single_member(expo.body(gzipped=True)) == plain
    assert b'service_id="s250"' in plain


def test_only_the_text_of_runs_compressed_again_is_checksummed() -> None:
    """The gzip trailer's CRC-32 is carried over reused runs without reading their text (CRC
    combination), wherever in the body the changes are, and the trailer still verifies."""
    expo = Exposition(lambda: b"")
    expo.update(fleet(500))
    cache = expo._deflate
    assert cache.checksummed == cache.size
    expo.update(fleet(500))  # equal content, new objects
    assert cache.checksummed == 0
    assert single_member(expo.body(gzipped=True)) == expo.body(gzipped=False)
    expo.update(fleet(500, calls=101))  # every service's invocation counter moved
    assert 0 < cache.checksummed < cache.size / 4
    assert single_member(expo.body(gzipped=True)) == expo.body(gzipped=False)
    expo.update(fleet(500, calls=101, status={3: "failed"}))  # an early family changed
    assert 0 < cache.checksummed < cache.size / 20
    assert single_member(expo.body(gzipped=True)) == expo.body(gzipped=False)


@settings(max_examples=200, deadline=None)
@given(a=st.binary(max_size=300), b=st.binary(max_size=300), zeros=st.integers(0, 200_000))
def test_both_crc_combinations_equal_the_checksum_of_the_joined_text(
    a: bytes, b: bytes, zeros: int
) -> None:
    tail = b + bytes(zeros)  # long runs too (longer than the block of zeros carried with)
    want = zlib.crc32(a + tail)
    assert collector.crc32_combine_by_zeros(zlib.crc32(a), zlib.crc32(tail), len(tail)) == want
    assert collector.crc32_combine(zlib.crc32(a), zlib.crc32(tail), len(tail)) == want


def test_zlibs_own_crc_combination_is_used_where_the_library_is_there() -> None:
    # Debian (CI, the container image) has libz.so.1: the O(log n) combination is in use.
    assert collector.crc32_combine is not collector.crc32_combine_by_zeros


def test_a_family_whose_chunks_did_not_change_is_the_same_list_and_is_reused_whole() -> None:
    renderer = ServiceRenderer()
    first = renderer.render_families(fleet(300))
    names = [family[0].split(b" ")[2] for family in first]
    info = names.index(cat.SERVICE_INFO.name.encode())
    calls = names.index(cat.SERVICE_INVOCATIONS.name.encode())
    second = renderer.render_families(fleet(300, calls=101))  # only the counters moved
    assert second[info] is first[info]
    assert second[calls] is not first[calls]
    cache = _DeflateCache(1)
    cache.update(first)
    cache.update(second)
    # the unchanged families were neither compared run by run nor compressed: only the
    # counters' family (every service's line moved) was compressed again
    runs_of_calls = -(-len(second[calls]) // _DeflateCache.SEGMENT)
    assert cache.compressed == runs_of_calls
    text = b"".join(chunk for family in second for chunk in family)
    assert (cache.crc, cache.size) == (zlib.crc32(text), len(text))
    # a service that moves in the snapshot makes every family anew, with the same text
    moved = fleet(300, calls=101)
    services = moved.services
    moved = Snapshot(services=(*services[1:], services[0]), watched=moved.watched)
    third = renderer.render_families(moved)
    assert third[info] is not second[info]
    assert b"".join(c for f in third for c in f) == ServiceRenderer().render(moved)
