"""Tolerant parsing: strings for numbers, numbers for strings, missing optional fields."""

from __future__ import annotations

import pytest

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
