"""The simulator's v2 bodies held against the official SDK's models (huaweicloudsdkmodelarts):
every field the simulator sends exists in the SDK's class for that object, with a compatible
type, and every field the exporter's v2 parser reads is one the SDK knows. The SDK is a test
dependency only; nobody here wrote it, so the simulator cannot drift into an API of its own."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from exporter.modelarts.models import parse_v2_details, parse_v2_event_page, parse_v2_service_page
from exporter.simulator import Simulation, create_app
from exporter.simulator.scenario import DEFAULT_PROJECT_ID

sdk = pytest.importorskip("huaweicloudsdkmodelarts.v1")

BASE = f"/v2/{DEFAULT_PROJECT_ID}/services"
_LIST_OF = re.compile(r"^list\[(.+)\]$")
_DICT_OF = re.compile(r"^dict\((.+), (.+)\)$")
_SCALARS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "object": (object,),
}


def _json_keys(cls: type) -> dict[str, str]:
    """JSON key -> declared type of one SDK model class."""
    attribute_map: dict[str, str] = cls.attribute_map  # type: ignore[attr-defined]
    openapi_types: dict[str, str] = cls.openapi_types  # type: ignore[attr-defined]
    return {attribute_map[attr]: declared for attr, declared in openapi_types.items()}


def conform(value: Any, declared: str, where: str, problems: list[str]) -> None:
    """Append to `problems` every way `value` does not fit the SDK type `declared`."""
    if value is None:
        return
    if (m := _LIST_OF.match(declared)) is not None:
        if not isinstance(value, list):
            problems.append(f"{where}: {type(value).__name__} where the SDK has {declared}")
            return
        for i, item in enumerate(value):
            conform(item, m.group(1), f"{where}[{i}]", problems)
        return
    if (m := _DICT_OF.match(declared)) is not None:
        if not isinstance(value, dict):
            problems.append(f"{where}: {type(value).__name__} where the SDK has {declared}")
            return
        for key, item in value.items():
            conform(item, m.group(2), f"{where}.{key}", problems)
        return
    if declared in _SCALARS:
        kinds = _SCALARS[declared]
        if isinstance(value, bool) and bool not in kinds and declared != "object":
            problems.append(f"{where}: bool where the SDK has {declared}")
        elif not isinstance(value, kinds):
            problems.append(f"{where}: {type(value).__name__} where the SDK has {declared}")
        return
    cls = getattr(sdk, declared)
    if not isinstance(value, dict):
        problems.append(f"{where}: {type(value).__name__} where the SDK has {declared}")
        return
    known = _json_keys(cls)
    for key, item in value.items():
        if key not in known:
            problems.append(f"{where}.{key}: not a field of {declared}")
        else:
            conform(item, known[key], f"{where}.{key}", problems)


def declared_at(cls_name: str, path: str) -> str:
    """The SDK's declared type at a dotted path ("version.instance_groups.count")."""
    declared = cls_name
    for part in path.split("."):
        while (m := _LIST_OF.match(declared)) is not None:
            declared = m.group(1)
        known = _json_keys(getattr(sdk, declared))
        assert part in known, f"{path}: {part} is not a field of {declared}"
        declared = known[part]
    return declared


@pytest.fixture
def sim() -> Simulation:
    # Auto-stop schedules, async services, failed/stopped/deploying ones, both generations.
    simulation = Simulation(seed=7, services=4, v2_services=40, happening_interval=5.0)
    for svc in list(simulation.services.values())[-8:]:
        simulation.add_v2_event(svc.service_id, "warning", "instance restarted", count=3)
    return simulation


async def _get(client: TestClient[Any, Any], path: str, **params: str) -> Any:
    response = await client.get(path, params=params)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_every_v2_body_fits_the_sdk_models(aiohttp_client: Any, sim: Simulation) -> None:
    client = await aiohttp_client(create_app(sim))
    problems: list[str] = []
    first = await _get(client, BASE, limit="500")
    conform(first, "ListInferServicesResponse", "list", problems)
    ids = [item["id"] for item in first["data"]]
    assert len(ids) == 40
    statuses = {item["status"] for item in first["data"]}
    assert {"RUNNING", "DEPLOYING", "FAILED", "STOPPED"} <= statuses
    for sid in ids:
        details = await _get(client, f"{BASE}/{sid}")
        conform(details, "ShowInferServiceResponse", f"details[{sid[:8]}]", problems)
        events = await _get(client, f"{BASE}/{sid}/events", limit="50")
        conform(events, "ListInferServiceEventsResponse", f"events[{sid[:8]}]", problems)
    assert problems == []


def test_the_checker_catches_a_field_the_sdk_does_not_have() -> None:
    problems: list[str] = []
    conform({"id": "x", "invocation_times": 3}, "ShowInferServiceResponse", "d", problems)
    conform(
        {"data": [{"id": "e", "event_count": "3"}]}, "ListInferServiceEventsResponse", "e", problems
    )
    conform(
        {"version": {"instance_groups": [{"count": True}]}},
        "ShowInferServiceResponse",
        "v",
        problems,
    )
    assert problems == [
        "d.invocation_times: not a field of ShowInferServiceResponse",
        "e.data[0].event_count: str where the SDK has int",
        "v.version.instance_groups[0].count: bool where the SDK has int",
    ]


@pytest.mark.parametrize(
    ("cls_name", "path"),
    [
        # every field the exporter's v2 parsers read (exporter/modelarts/models.py)
        ("ListInferServicesResponse", "total"),
        ("ListInferServicesResponse", "data.id"),
        ("ListInferServicesResponse", "data.name"),
        ("ListInferServicesResponse", "data.type"),
        ("ListInferServicesResponse", "data.status"),
        ("ListInferServicesResponse", "data.create_at"),
        ("ListInferServicesResponse", "data.update_at"),
        ("ListInferServicesResponse", "data.user_name"),
        ("ListInferServicesResponse", "data.workspace_id"),
        ("ShowInferServiceResponse", "id"),
        ("ShowInferServiceResponse", "status"),
        ("ShowInferServiceResponse", "create_at"),
        ("ShowInferServiceResponse", "update_at"),
        ("ShowInferServiceResponse", "version.instance_groups.id"),
        ("ShowInferServiceResponse", "version.instance_groups.name"),
        ("ShowInferServiceResponse", "version.instance_groups.version"),
        ("ShowInferServiceResponse", "version.instance_groups.count"),
        ("ShowInferServiceResponse", "version.instance_groups.running_count"),
        ("ShowInferServiceResponse", "version.instance_groups.weight"),
        ("ShowInferServiceResponse", "version.instance_groups.pool_id"),
        ("ShowInferServiceResponse", "version.instance_groups.unit_configs.flavor"),
        ("ListInferServiceEventsResponse", "total"),
        ("ListInferServiceEventsResponse", "data.id"),
        ("ListInferServiceEventsResponse", "data.event_type"),
        ("ListInferServiceEventsResponse", "data.event_info"),
        ("ListInferServiceEventsResponse", "data.event_count"),
        ("ListInferServiceEventsResponse", "data.create_at"),
        ("ListInferServiceEventsResponse", "data.update_at"),
    ],
)
def test_the_parser_reads_only_fields_the_sdk_knows(cls_name: str, path: str) -> None:
    assert declared_at(cls_name, path)


async def test_the_parsers_read_the_simulated_bodies(aiohttp_client: Any, sim: Simulation) -> None:
    client = await aiohttp_client(create_app(sim))
    total, items = parse_v2_service_page(await _get(client, BASE, limit="500"))
    assert total == len(items) == 40
    for item in items[:10]:
        details = parse_v2_details(await _get(client, f"{BASE}/{item.service_id}"))
        svc = sim.service(item.service_id)
        assert details.status == svc.status
        assert [m.instance_count for m in details.models] == [m.instance_count for m in svc.models]
        total_events, events = parse_v2_event_page(
            await _get(client, f"{BASE}/{item.service_id}/events", limit="500")
        )
        assert total_events == len(events)
        assert sum(e.event_count for e in events) == sum(
            sim.v2_event_totals(item.service_id).values()
        )
