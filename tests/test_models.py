"""Tolerant parsing: strings for numbers, numbers for strings, missing optional fields."""

from __future__ import annotations

from unittest import mock

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from exporter.modelarts import models
from exporter.modelarts.errors import MalformedResponseError
from exporter.modelarts.models import (
    parse_details,
    parse_event_page,
    parse_service_page,
    parse_update_logs,
)

DETAILS = {
    "service_id": "s-1",
    "service_name": "prod-a",
    "infer_type": "real-time",
    "workspace_id": 0,
    "owner": "u1",
    "status": "RUNNING",
    "progress": "70",
    "invocation_times": "12345",
    "failed_times": 3,
    "publish_at": 1_700_000_000_000,
    "update_time": "1700000001000",
    "transition_at": 1_700_000_002_000,
    "is_shared": "false",
    "config": [
        {
            "model_id": "m1",
            "model_name": "a",
            "model_version": "1.0",
            "specification": "s",
            "weight": "70",
            "instance_count": "2",
        },
        {"model_id": "m2", "model_name": "b", "model_version": 2, "weight": 30},
    ],
}


def test_details_accepts_strings_numbers_and_missing_optionals() -> None:
    d = parse_details(DETAILS)
    assert d.status == "running"
    assert d.progress == 70.0
    assert d.invocation_times == 12345.0 and d.failed_times == 3.0
    assert d.workspace_id == "0"
    assert d.update_time == 1_700_000_001_000
    assert d.due_time is None and d.cluster_id == "" and d.pool_name == ""
    assert d.models[0].weight == 70 and d.models[0].instance_count == 2
    assert d.models[1].model_version == "2" and d.models[1].instance_count is None


@pytest.mark.parametrize(
    ("patch", "where"),
    [
        ({"progress": "abc"}, "details.progress"),
        ({"config": "x"}, "details.config"),
        ({"config": [{"weight": []}]}, "details.config[0].weight"),
        ({"status": None}, "details.status"),
        ({"invocation_times": True}, "details.invocation_times"),
        ({"publish_at": "nan"}, "details.publish_at"),
    ],
)
def test_details_rejects_malformed_values(patch: dict[str, object], where: str) -> None:
    with pytest.raises(MalformedResponseError, match=where.replace("[", r"\[").replace("]", r"\]")):
        parse_details({**DETAILS, **patch})


def test_details_not_an_object() -> None:
    with pytest.raises(MalformedResponseError):
        parse_details(["x"])


def test_event_page_and_logs() -> None:
    page = parse_event_page(
        {
            "total_count": "2",
            "count": 2,
            "events": [
                {"event_type": "NORMAL", "event_info": "a", "occur_time": "5"},
                {"event_type": "abnormal", "event_info": "b", "occur_time": 6.0},
            ],
        }
    )
    assert page.total_count == 2
    assert [(e.occur_time, e.event_type) for e in page.events] == [(5, "normal"), (6, "abnormal")]
    with pytest.raises(MalformedResponseError):
        parse_event_page({"total_count": 1, "events": "nope"})
    with pytest.raises(MalformedResponseError):
        parse_event_page({"events": []})  # total_count is what pagination relies on
    logs = parse_update_logs({"logs": [{"update_time": "10", "result": "success"}]})
    assert logs[0].update_time == 10 and logs[0].result == "SUCCESS"


def test_service_page() -> None:
    page = parse_service_page(
        {
            "total_count": 3,
            "count": 1,
            "services": [
                {"service_id": "a", "service_name": "n", "infer_type": "edge", "status": "Running"}
            ],
        }
    )
    assert page.total_count == 3
    assert page.services[0].status == "running"
    with pytest.raises(MalformedResponseError):
        parse_service_page({"total_count": 1, "services": [{"service_name": "no id"}]})


_ROW_VALUES = st.one_of(
    st.none(),
    st.text(" \tRunig1.2e", max_size=6),
    st.sampled_from(["", " Running ", "12", "x", "svc-1"]),
    st.integers(-3, 2**53),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.lists(st.integers(), max_size=1),
)
_ROW_KEYS = (
    "service_id",
    "service_name",
    "infer_type",
    "status",
    "transition_at",
    "publish_at",
    "operation_time",
    "progress",
    "invocation_times",
    "failed_times",
    "owner",
    "workspace_id",
)


def _parse_or_error(row: object) -> object:
    try:
        page = models.parse_service_page({"total_count": 1, "services": [row]})
    except MalformedResponseError as err:
        return ("error", str(err))
    return [(s, {k: type(v) for k, v in vars(s).items()}) for s in page.services]


@settings(max_examples=600, deadline=None)
@given(st.dictionaries(st.sampled_from(_ROW_KEYS), _ROW_VALUES, max_size=3))
@example({"status": " Running "})
@example({"progress": 12.5, "owner": 7})
@example({"service_id": ""})
def test_list_rows_fast_path_equals_the_tolerant_parsers(row: dict[str, object]) -> None:
    """The well-typed rows take a fast path: every row, typed or not, parses (or fails) as
    the tolerant per-field parsers alone would have it, to the type of each field."""
    base: dict[str, object] = {
        "service_id": "s1",
        "service_name": "n",
        "infer_type": "real-time",
        "status": "running",
        "transition_at": 1_700_000_000_000,
        "publish_at": 1_700_000_000_000,
        "operation_time": 1_700_000_000_000,
        "progress": 100,
        "invocation_times": 5,
        "failed_times": 0,
        "owner": "u",
        "workspace_id": "0",
    }
    row = {**base, **row}  # a well-typed row with up to three fields changed or made null
    fast = _parse_or_error(row)
    with mock.patch.object(models, "_plain_row", lambda entry: None):
        tolerant = _parse_or_error(row)
    assert fast == tolerant


@settings(max_examples=200)
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=12,
    ),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32"]),
)
def test_bodies_decode_as_json_loads_of_bytes_does(value: object, encoding: str) -> None:
    # The UTF-8 fast path must accept exactly what json.loads(bytes) accepts (a BOM, UTF-16
    # and UTF-32 included) and give the same value.
    import json

    from exporter.modelarts.client import _decode

    body = json.dumps(value).encode(encoding)
    assert _decode(body, "details") == json.loads(body)


@pytest.mark.parametrize("body", [b"", b"{", b"\xff\xfe{", b"nul\x00l", b"[1,]"])
def test_bodies_that_are_not_json_are_malformed(body: bytes) -> None:
    from exporter.modelarts.client import _decode

    with pytest.raises(MalformedResponseError, match="details: response is not JSON"):
        _decode(body, "details")


_PLAIN_DETAILS = {
    "service_id": "s1",
    "service_name": "n",
    "infer_type": "real-time",
    "workspace_id": "0",
    "cluster_id": "c",
    "pool_name": "p",
    "owner": "u",
    "status": " Running ",
    "progress": 100,
    "invocation_times": 5,
    "failed_times": 0,
    "publish_at": 1_700_000_000_000,
    "update_time": 1_700_000_000_000,
    "transition_at": 1_700_000_000_000,
    "due_time": None,
    "config": [
        {
            "model_id": "m",
            "model_name": "mn",
            "model_version": "1.0.0",
            "specification": "modelarts.vm.cpu.2u",
            "weight": 100,
            "instance_count": 1,
        }
    ],
}
_ODD_VALUES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4)


@settings(max_examples=300)
@given(
    top=st.dictionaries(st.sampled_from(sorted(_PLAIN_DETAILS)), _ODD_VALUES, max_size=3),
    model=st.dictionaries(
        st.sampled_from(sorted(_PLAIN_DETAILS["config"][0])), _ODD_VALUES, max_size=2
    ),
    config=st.sampled_from(["keep", "none", "absent", "empty", "not a list", "not a dict"]),
)
def test_the_plain_details_path_parses_exactly_as_the_tolerant_one(
    top: dict[str, object], model: dict[str, object], config: str
) -> None:
    body: dict[str, object] = {**_PLAIN_DETAILS, **top}
    body["config"] = {
        "keep": [{**_PLAIN_DETAILS["config"][0], **model}],
        "none": None,
        "empty": [],
        "not a list": "x",
        "not a dict": [1],
    }.get(config)
    if config == "absent":
        del body["config"]
    fast = _details_or_error(body)
    with mock.patch.object(models, "_plain_details", lambda entry: None):
        tolerant = _details_or_error(body)
    assert fast == tolerant


def _details_or_error(body: object) -> object:
    """The parsed details with the type of every field (5.0 and 5 are equal, not the same), or
    the error."""
    try:
        d = parse_details(body)
    except MalformedResponseError as err:
        return ("error", str(err))
    types = {k: type(v) for k, v in vars(d).items()}
    return d, types, [{k: type(v) for k, v in vars(m).items()} for m in d.models]


def test_a_plain_details_body_takes_the_plain_path() -> None:
    assert models._plain_details(dict(_PLAIN_DETAILS)) == parse_details(dict(_PLAIN_DETAILS))
    assert models._plain_details({**_PLAIN_DETAILS, "progress": "100"}) is None
