"""What the simulator sends for the v2 API and the v1 monitor API, built from a service's state.

The v2 shapes follow the official SDK's models (huaweicloudsdkmodelarts: ServiceItemResponseData,
ShowInferServiceResponse with GroupConfigResponse, ServiceEventResponse); tests hold these bodies
against those classes. The monitor body follows reference §2.5: memory in MB, all fields optional.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from exporter.simulator.scenario import SimAggEvent, SimModel, SimService, Simulation

_TASK_TYPES = ("TEXT_GENERATION", "EMBEDDING", "RERANK", "IMAGE_UNDERSTANDING", "VECTOR_MODEL")


@dataclass(frozen=True)
class Flavor:
    """Resources of one instance of a flavor; None where the flavor has no such device."""

    cpu_cores: float
    memory_mb: int
    gpus: float | None = None
    gpu_memory_mb: float | None = None
    npus: float | None = None
    npu_memory_mb: float | None = None


FLAVORS = {
    "modelarts.vm.cpu.2u": Flavor(2.0, 8192),
    "modelarts.vm.cpu.8u": Flavor(8.0, 32768),
    "modelarts.vm.gpu.t4": Flavor(8.0, 32768, gpus=1.0, gpu_memory_mb=16384.0),
    "modelarts.vm.gpu.p4": Flavor(8.0, 32768, gpus=1.0, gpu_memory_mb=8192.0),
    "modelarts.vm.gpu.a10": Flavor(16.0, 65536, gpus=1.0, gpu_memory_mb=24576.0),
    "modelarts.vm.npu.snt3": Flavor(8.0, 32768, npus=1.0, npu_memory_mb=8192.0),
    "modelarts.vm.npu.snt9b": Flavor(24.0, 196608, npus=1.0, npu_memory_mb=65536.0),
    "custom": Flavor(2.0, 4096),
}


def running_instances(sim: Simulation, svc: SimService, model: SimModel, now: int) -> int:
    """Instances of one model that are up: they lag the desired count while deploying."""
    desired = model.instance_count
    status = svc.status
    if status == "running":
        return desired
    if status == "concerning":
        return max(desired - 1, 0)  # one instance failing its health check
    if status == "deploying":
        return desired * sim.progress_at(svc, now) // 100
    if status == "upgrading":
        return max(desired - 1, 0)  # rolling: one instance at a time is replaced
    return 0


# ----- v2 ----------------------------------------------------------------------------------------


def _v2_type(svc: SimService) -> str:
    return svc.infer_type.upper().replace("-", "_")


def _v2_update_at(svc: SimService) -> int:
    return max(svc.transition_at, svc.update_time)


def _v2_schedule(svc: SimService) -> list[dict[str, Any]]:
    if svc.auto_stop_hours is None or svc.due_time is None:
        return []
    return [
        {
            "type": "STOP",
            "time_unit": "HOURS",
            "duration": svc.auto_stop_hours,
            "due_time": svc.due_time,
            "processed": False,
        }
    ]


def _v2_common(svc: SimService) -> dict[str, Any]:
    return {
        "id": svc.service_id,
        "name": svc.service_name,
        "workspace_id": svc.workspace_id,
        "type": _v2_type(svc),
        "deploy_type": "MULTI" if len(svc.models) > 1 else "SINGLE",
        "status": svc.status.upper(),
        "tags": [{"key": "owner", "value": svc.owner[:8]}],
        "schedule": _v2_schedule(svc),
        "task_type": _TASK_TYPES[int(svc.service_id[:2], 16) % len(_TASK_TYPES)],
    }


def v2_list_item(svc: SimService) -> dict[str, Any]:
    """The service as one `data[]` item of GET /v2/{project_id}/services."""
    body = _v2_common(svc)
    body.update(
        description=svc.description,
        version=svc.version,
        version_count=int(svc.version.rsplit(".", 1)[-1]) + 1,
        user_name=f"dev-{svc.owner[:6]}",
        create_at=svc.publish_at,
        update_at=_v2_update_at(svc),
        auth_type="TOKEN",
        frozen_infos=[],
    )
    return body


def _v2_group(sim: Simulation, svc: SimService, model: SimModel, now: int) -> dict[str, Any]:
    return {
        "id": model.model_id,
        "name": model.model_name,
        "infer_name": model.model_name,
        "pool_id": svc.cluster_id or "",
        "count": model.instance_count,
        "running_count": running_instances(sim, svc, model, now),
        "weight": model.weight,
        "traffic_ratio": f"{model.weight:.2f}%",
        "version": model.model_version,
        "status": svc.status.upper(),
        "update_at": _v2_update_at(svc),
        "create_at": str(svc.publish_at),
        "unit_configs": [
            {
                "id": model.model_id[:8],
                "name": f"{model.model_name}-unit",
                "role": "COMMON",
                "flavor": model.specification,
                "count": 1,
                "image": {"source": "SWR", "swr_path": f"swr/infer/{model.model_name}:latest"},
            }
        ],
    }


def v2_details(sim: Simulation, svc: SimService, now: int) -> dict[str, Any]:
    """GET /v2/{project_id}/services/{service_id} (create_at/update_at are strings there)."""
    body = _v2_common(svc)
    if svc.error_msg is not None:
        body["failure_reason"] = svc.error_msg
    body["version"] = {
        "id": svc.version_id,
        "version": svc.version,
        "description": svc.description,
        "instance_groups": [_v2_group(sim, svc, m, now) for m in svc.models],
    }
    if svc.status in ("running", "concerning", "upgrading"):
        body["predict_url"] = [
            {"type": "PUBLIC", "urls": [f"https://infer.example.invalid/v2/{svc.service_id}"]}
        ]
    body["deploy_timeout_minutes"] = 20
    body["create_at"] = str(svc.publish_at)
    body["update_at"] = str(_v2_update_at(svc))
    return body


def v2_event(svc: SimService, record: SimAggEvent) -> dict[str, Any]:
    """One `data[]` item of GET /v2/{project_id}/services/{service_id}/events."""
    return {
        "id": record.id,
        "service_id": svc.service_id,
        "service_version_id": record.version_id,
        "event_count": record.event_count,
        "event_type": record.event_type.upper(),
        "event_info": record.event_info,
        "event_info_cn": record.event_info,
        "create_at": record.create_at,
        "update_at": record.update_at,
    }


# ----- v1 monitor --------------------------------------------------------------------------------


def _load(svc: SimService, index: int, now: int) -> float:
    """Utilisation in 0..1: follows the call rate, with a slow wobble so graphs move."""
    if svc.status not in ("running", "concerning"):
        return 0.0
    if svc.load is not None:
        return svc.load
    base = min(0.85, 0.06 + svc.call_rate / 30.0)
    wobble = 0.05 * math.sin(now / 47_000 + index + len(svc.service_id))
    return min(0.98, max(0.01, base + wobble))


def monitor(
    sim: Simulation, svc: SimService, now: int, *, node_id: str | None = None
) -> dict[str, Any]:
    """GET /v1/{project_id}/services/{service_id}/monitor, before `monitor_omit` is applied."""
    calls, failed = sim.invocations_at(svc, now)
    serving = svc.status in ("running", "concerning")
    models = []
    for index, model in enumerate(svc.models):
        flavor = FLAVORS.get(model.specification, FLAVORS["custom"])
        up = running_instances(sim, svc, model, now)
        load = _load(svc, index, now)
        entry: dict[str, Any] = {
            "model_id": model.model_id,
            "model_name": model.model_name,
            "model_version": model.model_version,
            "invocation_times": calls * model.weight // 100,
            "failed_times": failed * model.weight // 100,
            "cpu_core_usage": round(flavor.cpu_cores * up * load, 3),
            "cpu_core_total": flavor.cpu_cores * up,
            "cpu_memory_usage": int(flavor.memory_mb * up * (0.25 + 0.5 * load)),
            "cpu_memory_total": flavor.memory_mb * up,
            "model_running_instance_count": up,
            "model_instance_count": model.instance_count,
        }
        if flavor.gpus is not None and flavor.gpu_memory_mb is not None:
            entry["gpu_usage"] = round(flavor.gpus * up * load, 3)
            entry["gpu_total"] = flavor.gpus * up
            entry["gpu_memory_usage"] = round(flavor.gpu_memory_mb * up * (0.4 + 0.55 * load), 1)
            entry["gpu_memory_total"] = flavor.gpu_memory_mb * up
        if flavor.npus is not None and flavor.npu_memory_mb is not None:
            entry["npu_usage"] = round(flavor.npus * up * load, 3)
            entry["npu_total"] = flavor.npus * up
            entry["npu_memory_usage"] = round(flavor.npu_memory_mb * up * (0.4 + 0.55 * load), 1)
            entry["npu_memory_total"] = flavor.npu_memory_mb * up
        if svc.infer_type == "edge":
            entry["node_id"] = f"node-{model.model_id[:8]}"
            entry["node_name"] = f"edge-{index + 1}"
        models.append(entry)
    if node_id is not None:
        models = [m for m in models if m.get("node_id") == node_id]
    return {
        "service_id": svc.service_id,
        "service_name": svc.service_name,
        "service_running_instance_count": sum(m["model_running_instance_count"] for m in models),
        "service_instance_count": sum(m["model_instance_count"] for m in models),
        "req_count_per_min": int(svc.call_rate * 60) if serving else 0,
        "monitors": models,
    }
