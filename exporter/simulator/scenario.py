"""The simulated fleet: services, their events and update logs, and how they evolve (SPEC §7).

Both API generations live here: a v1 service keeps a list of event rows and update records; a
v2 (new-generation) service keeps aggregated event records whose `event_count` grows when the
same event happens again. Statuses are lower-case inside; the v2 wire upper-cases them.

Pure Python, no I/O. Times are integer milliseconds since the epoch, as the API reports them;
the clock is injectable (epoch seconds as a float).

Evolution is lazy. Every service keeps an agenda (a heap of timed actions: planned deployment
events, the end of a deployment, the next random happening) and its own random generator. When
the service is read, the actions due by "now" run in time order, each drawing from that
generator in turn. The result therefore depends only on the seed and the times the clock
returns, not on how often or in which order services are read, and a fleet of 5,000 services
costs nothing while nobody looks at it.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import random
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from exporter.simulator.faults import MODELARTS_ENDPOINTS, Faults, Quota, RequestStats
from exporter.simulator.identity import Identity

DEFAULT_PROJECT_ID = "2b7a6f0c4d1e4f5a9b8c7d6e5f4a3b2c"
DEFAULT_DOMAIN_NAME = "demo-account"

NORMAL = "normal"
ABNORMAL = "abnormal"
WARNING = "warning"
SERVING = frozenset({"running", "concerning"})
GENERATIONS = ("v1", "v2")
# What a v2 service reports as a warning rather than as abnormal: trouble it recovers from.
_V2_WARNING_WORDS = ("health check failed", "restarted", "failed to schedule resource")
UPDATE_RESULTS = frozenset({"SUCCESS", "FAIL", "RUNNING"})

_REGIONS = ("cn-north-4", "cn-east-3", "cn-south-1", "ap-southeast-1", "ap-southeast-3")
_ENVIRONMENTS = ("prod", "prod", "prod", "staging", "dev")
_APPS = (
    "ocr",
    "chat",
    "rerank",
    "embedding",
    "vision",
    "asr",
    "tts",
    "fraud",
    "recsys",
    "translate",
    "summarize",
    "classify",
)
# Model names avoid the words the exporter's phase rules look for ("pull", "environment", ...),
# so an event's phase comes from its wording, not from the model it names.
_MODEL_NAMES = (
    "resnet50",
    "bert-base-zh",
    "yolov8",
    "whisper-small",
    "qwen-7b-chat",
    "bge-m3",
    "paddle-ocr",
    "xgboost-risk",
    "t5-small",
    "vit-large",
)
_SPECIFICATIONS = (
    "modelarts.vm.cpu.2u",
    "modelarts.vm.cpu.8u",
    "modelarts.vm.gpu.t4",
    "modelarts.vm.gpu.p4",
    "custom",
)
# Flavors of v2 services (dedicated pools), NPU ones among them.
_V2_FLAVORS = (
    "modelarts.vm.cpu.8u",
    "modelarts.vm.gpu.t4",
    "modelarts.vm.gpu.a10",
    "modelarts.vm.npu.snt3",
    "modelarts.vm.npu.snt9b",
)
_FAILED_ERRORS = (
    "Failed to start the model instance: the container exited with code 1.",
    "Deployment timed out after 20 minutes.",
    "Insufficient resources in the pool to schedule the instance.",
    "Failed to pull the model image.",
)

_SECOND = 1000
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
# A clock jump longer than this many due actions fast-forwards instead of replaying them all.
_MAX_ACTIONS_PER_READ = 10_000


@dataclass(frozen=True)
class SimEvent:
    """One row of the events API; identical rows are distinct events."""

    occur_time: int
    event_type: str
    event_info: str

    def to_json(self) -> dict[str, Any]:
        """The row as the API serialises it."""
        return {
            "event_type": self.event_type,
            "event_info": self.event_info,
            "occur_time": self.occur_time,
        }


@dataclass
class SimAggEvent:
    """One record of the v2 events API: `event_count` occurrences of the same event."""

    id: str
    event_type: str  # lower-case: normal, abnormal, warning
    event_info: str
    event_count: int
    create_at: int
    update_at: int
    version_id: str = ""


@dataclass
class SimUpdate:
    """One record of the update-log API; `result` moves from RUNNING to SUCCESS or FAIL."""

    update_time: int
    result: str
    config: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        """The record as the API serialises it."""
        return {"update_time": self.update_time, "result": self.result, "config": self.config}


@dataclass
class SimModel:
    """One model of a service's configuration (a `config[]` item)."""

    model_id: str
    model_name: str
    model_version: str
    specification: str
    weight: int
    instance_count: int

    @property
    def label(self) -> str:
        """How event texts name the model: name and version."""
        return f"{self.model_name} {self.model_version}"


@dataclass
class _Deploy:
    start: int
    duration: int
    succeed: bool
    update_time: int | None
    new_models: list[SimModel] | None
    error_msg: str


@dataclass
class SimService:
    """The full state of one simulated service; read it through `Simulation` to see it evolved."""

    service_id: str
    service_name: str
    project_id: str
    tenant: str
    owner: str
    description: str
    infer_type: str
    workspace_id: str
    publish_at: int
    update_time: int
    transition_at: int
    status: str
    models: list[SimModel]
    progress: int = 0
    error_msg: str | None = None
    invocations: int = 0
    failures: int = 0
    cluster_id: str | None = None
    pool_name: str | None = None
    due_time: int | None = None
    auto_stop_hours: int | None = None
    is_shared: bool = False
    shared_count: int = 0
    is_free: bool = False
    load_balancer_policy: str = "ROUND_ROBIN"
    batch_window: tuple[int, int] | None = None
    generation: str = "v1"
    version: str = "1.0.0"  # v2: the service version, bumped by every upgrade
    version_id: str = ""
    agg_events: list[SimAggEvent] = field(default_factory=list, repr=False)  # v2
    events: list[SimEvent] = field(default_factory=list, repr=False)
    event_times: list[int] = field(default_factory=list, repr=False)
    updates: list[SimUpdate] = field(default_factory=list, repr=False)
    # Evolution state (dynamic simulations only).
    rng: random.Random = field(default_factory=random.Random, repr=False)
    call_rate: float = 0.0
    fail_ratio: float = 0.0
    # Resource utilisation (0..1) the monitor API reports while serving; None: follows call_rate.
    load: float | None = None
    serving_since: int | None = None
    deploy: _Deploy | None = field(default=None, repr=False)
    agenda: list[tuple[int, int, str, Any]] = field(default_factory=list, repr=False)
    agenda_seq: int = 0
    last_evolved: int = 0


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _hex32(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def _split_100(rng: random.Random, parts: int) -> list[int]:
    """Random positive integer weights that sum to 100."""
    if parts <= 1:
        return [100]
    cuts = sorted(rng.sample(range(1, 100), parts - 1))
    return [b - a for a, b in itertools.pairwise([0, *cuts, 100])]


# (fraction of the deployment's duration, success text, failure text) per model and phase.
_STAGES = (
    (0.02, "building image for model [{}]", "model ({}) build image failed"),
    (0.25, "model ({}) build image success", "model ({}) build image failed"),
    (0.45, "[{}] prepare environment success", "[{}] prepare environment failed"),
    (0.55, "[{}] schedule resource success", "[{}] failed to schedule resource, quota exhausted"),
    (0.60, "[{}] pulling model image", "[{}] pull image failed"),
    (0.80, "[{}] pull image success", "[{}] pull image failed"),
    (0.90, "[{}] starting model", "[{}] container failed to start"),
)
_ENVIRONMENT_STAGE = 2
_SCHEDULE_STAGE = 3


def _deploy_script(
    models: Sequence[SimModel], rng: random.Random, *, succeed: bool
) -> list[tuple[float, str, str]]:
    """The events of one deployment as (fraction of its duration, type, text).

    Follows the documented sequence; models of one phase share a timestamp, so bursts of
    events with identical occur_time are part of every multi-model deployment.
    """
    labels = [model.label for model in models]
    script: list[tuple[float, str, str]] = [(0.0, NORMAL, "start to deploy service")]
    failing_stage = -1 if succeed else rng.randrange(len(_STAGES) + 1)
    for index, (fraction, ok_text, bad_text) in enumerate(_STAGES):
        if index == _ENVIRONMENT_STAGE:
            script.append((0.30, NORMAL, "preparing environment"))
        if index == failing_stage:
            if labels:
                script.append((fraction, ABNORMAL, bad_text.format(rng.choice(labels))))
            script.append((1.0, ABNORMAL, "failed to deploy service"))
            return script
        # A successful deployment now and then retries scheduling: abnormal, then fine.
        if index == _SCHEDULE_STAGE and labels and rng.random() < 0.1:
            script.append((0.50, ABNORMAL, f"[{labels[0]}] failed to schedule resource"))
        script.extend((fraction, NORMAL, ok_text.format(label)) for label in labels)
    if not succeed:
        # Every phase went through, yet the model never became healthy in time.
        if labels:
            script.append((0.97, ABNORMAL, f"[{labels[-1]}] health check failed"))
        script.append((1.0, ABNORMAL, "deployment timed out after 20 minutes"))
    return script


def _timed(script: Iterable[tuple[float, str, str]], start: int, duration: int) -> list[SimEvent]:
    return [
        SimEvent(start + int(fraction * duration), kind, text) for fraction, kind, text in script
    ]


class Simulation:
    """A fleet of simulated ModelArts services plus the fake IAM's credentials."""

    def __init__(
        self,
        *,
        seed: int = 0,
        services: int = 5,
        project_ids: Sequence[str] = (DEFAULT_PROJECT_ID,),
        events_per_service: int = 20,
        models_per_service: int = 2,
        clock: Callable[[], float] = time.time,
        max_page_size: int = 1000,
        token_ttl: float = 86400.0,
        dynamic: bool = True,
        happening_interval: float = 75.0,
        v2_services: int = 0,
    ) -> None:
        if not project_ids:
            raise ValueError("at least one project id is needed")
        self.seed = seed
        self.clock = clock
        self.dynamic = dynamic
        self.max_page_size = max_page_size
        self.token_ttl = token_ttl
        # Mean seconds between random happenings of one service: at 75 s a 5-service demo
        # sees something (an update, a health-check failure, a traffic change) every ~15 s.
        self._happening_mean_ms = max(happening_interval, 0.001) * 1000
        self.string_numbers = False
        self.require_auth = False
        # Field names the monitor API leaves out (top level and per model), as some flavors do.
        self.monitor_omit: set[str] = set()
        self.quota: Quota | None = None
        # (project_id, endpoint) -> the HTTP status every such request gets (403 or 404)
        self.forbidden: dict[tuple[str, str], int] = {}
        # (service_id, endpoint) -> "error" | "throttle" | "slow" | "malformed": the fault every
        # such request gets (one endpoint of some services failing, for the status page)
        self.service_faults: dict[tuple[str, str], str] = {}
        self.faults = Faults(seed=seed)
        self.stats = RequestStats()
        self.identity = Identity()
        self.domain_name = DEFAULT_DOMAIN_NAME
        self.services: dict[str, SimService] = {}
        self.project_names: dict[str, str] = {}
        for project_id in project_ids:
            self._register_project(project_id)
        self._events_per_service = events_per_service
        self._models_per_service = models_per_service
        self._next_index = itertools.count()
        fleet_rng = random.Random(f"fleet:{seed}")
        now = self.now_ms()
        for index, drawn_status in enumerate(self._initial_statuses(fleet_rng, services)):
            project_id = project_ids[index % len(project_ids)]
            infer_type, status = "real-time", drawn_status
            if services >= 20 and index % 20 == 7:
                infer_type, status = "batch", "finished"
            elif services >= 20 and index % 20 == 13:
                infer_type = "edge"
            self._create(
                project_id=project_id,
                name=None,
                status=status,
                infer_type=infer_type,
                models=models_per_service,
                now=now,
                history=True,
            )
        for index, drawn_status in enumerate(self._initial_statuses(fleet_rng, v2_services)):
            self._create(
                project_id=project_ids[index % len(project_ids)],
                name=None,
                status=drawn_status,
                infer_type="async-real-time" if index % 4 == 3 else "real-time",
                models=models_per_service,
                now=now,
                history=True,
                generation="v2",
            )

    # ----- clock and projects -------------------------------------------------------------

    def now_ms(self) -> int:
        """The simulation clock in milliseconds since the epoch."""
        return int(self.clock() * 1000)

    def _register_project(self, project_id: str) -> None:
        if project_id in self.project_names:
            return
        index = len(self.project_names)
        region = _REGIONS[index % len(_REGIONS)]
        # The default project of a region is named after it; extra ones are sub-projects.
        name = region if index < len(_REGIONS) else f"{region}_sub{index}"
        self.project_names[project_id] = name

    def project_by_name(self, name: str) -> str | None:
        """The project id whose name (the region, for a default project) is `name`."""
        for project_id, project_name in self.project_names.items():
            if project_name == name:
                return project_id
        return None

    # ----- credentials --------------------------------------------------------------------

    def add_iam_user(self, *, domain_name: str, user_name: str, password: str) -> None:
        """Let this IAM user obtain tokens with its password."""
        self.identity.add_user(domain_name, user_name, password)

    def add_access_key(self, access_key: str, secret_key: str) -> None:
        """Accept requests signed with this AK/SK pair."""
        self.identity.add_access_key(access_key, secret_key)

    def add_static_token(self, token: str, project_id: str, expires_at: float) -> None:
        """Accept this token for `project_id` until `expires_at` (epoch seconds)."""
        self.identity.add_static_token(token, project_id, expires_at)

    def set_quota(
        self,
        per_second: int | None = None,
        per_minute: int | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        """Throttle the account like the API Gateway: beyond these, 429 APIG.0308 (None = off)."""
        if per_second is None and per_minute is None:
            self.quota = None
            return
        self.quota = Quota(per_second, per_minute, retry_after)

    def forbid(self, project_id: str, endpoints: Iterable[str], status: int = 403) -> None:
        """Refuse these endpoints for the whole project: 403 (no permission) or 404 (not
        offered, as v2 in a region without it)."""
        if status not in (403, 404):
            raise ValueError("forbid answers 403 or 404")
        for endpoint in endpoints:
            if endpoint not in MODELARTS_ENDPOINTS:
                raise ValueError(f"unknown endpoint {endpoint!r}")
            self.forbidden[(project_id, endpoint)] = status

    def allow(self, project_id: str, endpoints: Iterable[str] | None = None) -> None:
        """Undo `forbid` (for every endpoint of the project when none are named)."""
        for key in list(self.forbidden):
            if key[0] == project_id and (endpoints is None or key[1] in set(endpoints)):
                del self.forbidden[key]

    def revoke_tokens(self) -> None:
        """Invalidate every token handed out so far (they answer 401 ModelArts.0203)."""
        self.identity.revoke()

    # ----- building services --------------------------------------------------------------

    @staticmethod
    def _initial_statuses(rng: random.Random, count: int) -> list[str]:
        statuses = []
        for _ in range(count):
            draw = rng.random()
            statuses.append("running" if draw < 0.85 else "deploying" if draw < 0.95 else "stopped")
        if count >= 5:
            statuses[1:5] = ["deploying", "concerning", "failed", "stopped"]
        return statuses

    def _create(
        self,
        *,
        project_id: str,
        name: str | None,
        status: str,
        infer_type: str,
        models: int,
        now: int,
        history: bool,
        generation: str = "v1",
    ) -> str:
        if generation not in GENERATIONS:
            raise ValueError(f"unknown generation {generation!r}")
        index = next(self._next_index)
        rng = random.Random(f"service:{self.seed}:{index}")
        self._register_project(project_id)
        dedicated = rng.random() < 0.25
        cluster_id = _uuid(rng) if dedicated else None
        pool_name = f"pool-{rng.getrandbits(24):06x}" if dedicated else None
        svc = SimService(
            service_id=_uuid(rng),
            service_name=name or f"{rng.choice(_ENVIRONMENTS)}-{rng.choice(_APPS)}-{index + 1}",
            project_id=project_id,
            tenant=Identity.domain_id(self.domain_name),
            owner=_hex32(rng),
            description=rng.choice(("", "", "online inference", "canary for the new model")),
            infer_type=infer_type,
            workspace_id="0",
            publish_at=now,
            update_time=now,
            transition_at=now,
            status=status,
            models=self._new_models(rng, models),
            cluster_id=cluster_id,
            pool_name=pool_name,
            auto_stop_hours=rng.choice((1, 2, 4, 8, 24)) if rng.random() < 0.15 else None,
            is_shared=rng.random() < 0.05,
            is_free=rng.random() < 0.05,
            load_balancer_policy=rng.choice(("ROUND_ROBIN", "LEAST_CONNECTIONS", "SOURCE_IP")),
            rng=rng,
            last_evolved=now,
        )
        if generation == "v2":
            # New-generation services run on dedicated pools, with their own flavors.
            svc.generation = "v2"
            svc.cluster_id = svc.cluster_id or _uuid(rng)
            svc.pool_name = svc.pool_name or f"pool-{rng.getrandbits(24):06x}"
            svc.version = f"1.0.{rng.randint(0, 5)}"
            svc.version_id = _uuid(rng)
            for model in svc.models:
                model.specification = rng.choice(_V2_FLAVORS)
        svc.shared_count = rng.randint(1, 5) if svc.is_shared else 0
        svc.call_rate = rng.choice((0.2, 1.0, 3.0, 8.0, 20.0)) * rng.uniform(0.5, 1.5)
        svc.fail_ratio = rng.choice((0.0, 0.001, 0.01, 0.05))
        if history:
            self._build_history(svc, now)
        elif status == "deploying":
            svc.progress = 0
        if infer_type == "batch":
            svc.batch_window = (svc.transition_at - rng.randint(5, 60) * _MINUTE, svc.transition_at)
        if svc.status in SERVING and svc.auto_stop_hours is not None:
            svc.due_time = now + rng.randint(10 * _MINUTE, svc.auto_stop_hours * _HOUR)
        if self.dynamic:
            if svc.status in SERVING:
                svc.serving_since = now
            if svc.status == "deploying" and svc.deploy is None:
                self._begin_deploy(svc, now, update=False, succeed=True, progress=svc.progress)
            if svc.status == "concerning":
                self._schedule(svc, now + rng.randint(20, 120) * _SECOND, "recover")
            if svc.due_time is not None:
                self._schedule(svc, svc.due_time, "autostop")
            self._schedule_happening(svc, now)
        self.services[svc.service_id] = svc
        return svc.service_id

    @staticmethod
    def _new_models(rng: random.Random, count: int) -> list[SimModel]:
        names = rng.sample(_MODEL_NAMES, min(max(count, 0), len(_MODEL_NAMES)))
        weights = _split_100(rng, len(names))
        return [
            SimModel(
                model_id=_uuid(rng),
                model_name=name,
                model_version=f"{rng.randint(0, 3)}.{rng.randint(0, 9)}.{rng.randint(0, 20)}",
                specification=rng.choice(_SPECIFICATIONS),
                weight=weight,
                instance_count=rng.randint(1, 4),
            )
            for name, weight in zip(names, weights, strict=True)
        ]

    def _build_history(self, svc: SimService, now: int) -> None:
        """Past deployments, update records and events consistent with the initial status."""
        rng = svc.rng
        status = svc.status
        events: list[SimEvent] = []
        cursor = now
        if status == "deploying":
            duration = rng.randint(40, 150) * _SECOND
            svc.progress = rng.randint(5, 90)
            start = now - svc.progress * duration // 100
            current_is_update = rng.random() < 0.5
            script = _deploy_script(svc.models, rng, succeed=True)
            timed = _timed(script, start, duration)
            events.extend(e for e in timed if e.occur_time <= now)
            svc.transition_at = start
            cursor = start
            if self.dynamic:
                svc.deploy = _Deploy(start, duration, True, None, None, "")
                for event in timed:
                    if event.occur_time > now:
                        self._schedule(
                            svc, event.occur_time, "event", (event.event_type, event.event_info)
                        )
                self._schedule(svc, start + duration, "deploy_end")
            if current_is_update:
                svc.updates.append(SimUpdate(start, "RUNNING", self._config_record(svc)))
                if svc.deploy is not None:
                    svc.deploy.update_time = start

        per_deploy = 2 + 6 * max(len(svc.models), 1)
        deploys = max(4, -(-self._events_per_service // per_deploy) + 1)
        updates_wanted = rng.randint(1, 3) - len(svc.updates)
        newest_end = None
        for j in range(deploys):
            if j == 0 and status in ("concerning", "failed"):
                gap = rng.randint(2, 30) * _MINUTE
            else:
                gap = rng.randint(30, 7 * 24 * 60) * _MINUTE
            end = cursor - gap
            duration = rng.randint(40, 300) * _SECOND
            start = end - duration
            oldest = j == deploys - 1
            if j == 0 and status != "deploying":
                succeed = status != "failed"
            else:
                succeed = rng.random() < 0.8 or oldest
            is_update = not oldest and updates_wanted > 0 and not (j == 0 and status == "failed")
            if is_update:
                updates_wanted -= 1
                result = "SUCCESS" if succeed else "FAIL"
                svc.updates.append(SimUpdate(start, result, self._config_record(svc)))
            if len(events) <= self._events_per_service:
                # Older deployments only matter as far as the kept history reaches back.
                script = _deploy_script(svc.models, rng, succeed=succeed)
                events.extend(_timed(script, start, duration))
            if newest_end is None:
                newest_end = end
            svc.publish_at = start
            cursor = start

        assert newest_end is not None
        if status != "deploying":
            svc.transition_at = newest_end
        if status == "failed":
            svc.error_msg = rng.choice(_FAILED_ERRORS)
        if status in ("stopped", "concerning", "finished"):
            # Some time after the last deployment ended, and before now.
            svc.transition_at = newest_end + rng.randint(1, max(1, now - newest_end - 1))
        if status == "concerning":
            victim = rng.choice(svc.models) if svc.models else None
            if victim is not None:
                events.append(
                    SimEvent(svc.transition_at, ABNORMAL, f"[{victim.label}] health check failed")
                )
        events.sort(key=lambda e: e.occur_time)
        keep = self._events_per_service
        for event in events[len(events) - keep :] if keep > 0 else []:
            self._append_event(svc, event)
        svc.updates.sort(key=lambda u: u.update_time)
        if svc.updates:
            svc.update_time = svc.updates[-1].update_time
        else:
            svc.update_time = svc.publish_at
        age_s = max(now - svc.publish_at, 0) / 1000
        svc.invocations = int(svc.call_rate * age_s * rng.uniform(0.05, 0.3))
        svc.failures = int(svc.invocations * svc.fail_ratio)

    def _config_record(
        self, svc: SimService, models: Sequence[SimModel] | None = None
    ) -> list[dict[str, Any]]:
        record = []
        for model in models if models is not None else svc.models:
            item: dict[str, Any] = {
                "model_id": model.model_id,
                "model_name": model.model_name,
                "model_version": model.model_version,
                "weight": model.weight,
                "specification": model.specification,
                "instance_count": model.instance_count,
                "envs": {},
            }
            if model.specification == "custom":
                item["custom_spec"] = {"cpu": 2.0, "memory": 4096, "gpu_p4": 0.0}
            if svc.cluster_id is not None:
                item["cluster_id"] = svc.cluster_id
            record.append(item)
        return record

    # ----- evolution ----------------------------------------------------------------------

    def _schedule(self, svc: SimService, at: int, kind: str, payload: Any = None) -> None:
        heapq.heappush(svc.agenda, (at, svc.agenda_seq, kind, payload))
        svc.agenda_seq += 1

    def _schedule_happening(self, svc: SimService, after: int) -> None:
        delay = int(svc.rng.expovariate(1.0 / self._happening_mean_ms)) + 1
        self._schedule(svc, after + delay, "happen")

    def _evolve(self, svc: SimService, now: int) -> None:
        if not self.dynamic:
            return
        agenda = svc.agenda
        done = 0
        while agenda and agenda[0][0] <= now:
            at, _, kind, payload = heapq.heappop(agenda)
            self._act(svc, at, kind, payload)
            done += 1
            if done >= _MAX_ACTIONS_PER_READ:
                # The clock leapt far ahead: skip the remaining random happenings, keep the rest.
                svc.agenda = agenda = [a for a in agenda if a[0] > now or a[2] != "happen"]
                heapq.heapify(agenda)
                self._schedule_happening(svc, now)
                done = 0
        svc.last_evolved = max(svc.last_evolved, now)

    def evolve(self) -> None:
        """Bring every service up to the clock's present (reads do this on their own)."""
        now = self.now_ms()
        for svc in self.services.values():
            self._evolve(svc, now)

    def _act(self, svc: SimService, at: int, kind: str, payload: Any) -> None:
        if kind == "event":
            event_type, event_info = payload
            self._append_event(svc, SimEvent(at, event_type, event_info))
        elif kind == "deploy_end":
            self._finish_deploy(svc, at)
        elif kind == "recover":
            if svc.status == "concerning":
                self._transition(svc, at, "running")
        elif kind == "stopped":
            if svc.status == "stopping":
                self._transition(svc, at, "stopped")
        elif kind == "autostop":
            if svc.status in SERVING and svc.due_time == at:
                self._transition(svc, at, "stopping")
                self._schedule(svc, at + svc.rng.randint(3, 10) * _SECOND, "stopped")
        elif kind == "happen":
            self._happen(svc, at)
            self._schedule_happening(svc, at)

    def _happen(self, svc: SimService, at: int) -> None:
        rng = svc.rng
        draw = rng.random()
        status = svc.status
        if svc.infer_type == "batch":
            return
        if status == "running":
            if draw < 0.20:
                self._begin_deploy(svc, at, update=True)
            elif draw < 0.30:
                victim = rng.choice(svc.models) if svc.models else None
                if victim is not None:
                    text = f"[{victim.label}] health check failed"
                    self._append_event(svc, SimEvent(at, ABNORMAL, text))
                self._transition(svc, at, "concerning")
                self._schedule(svc, at + rng.randint(15, 90) * _SECOND, "recover")
            elif draw < 0.45:
                victim = rng.choice(svc.models) if svc.models else None
                if victim is not None:
                    text = rng.choice(
                        (
                            f"[{victim.label}] health check failed",
                            f"[{victim.label}] container restarted after running out of memory",
                        )
                    )
                    self._append_event(svc, SimEvent(at, ABNORMAL, text))
            elif draw < 0.95:
                self._bank(svc, at)
                svc.call_rate = rng.choice((0.2, 1.0, 3.0, 8.0, 20.0)) * rng.uniform(0.5, 1.5)
            elif draw < 0.98:
                self._transition(svc, at, "stopping")
                self._schedule(svc, at + rng.randint(3, 10) * _SECOND, "stopped")
            else:
                victim = rng.choice(svc.models) if svc.models else None
                if victim is not None:
                    text = f"[{victim.label}] container failed to start"
                    self._append_event(svc, SimEvent(at, ABNORMAL, text))
                # A v2 service that breaks at run time is in "error"; v1 calls it failed.
                broken = "error" if svc.generation == "v2" else "failed"
                self._transition(svc, at, broken, error_msg=_FAILED_ERRORS[0])
        elif (status in ("failed", "error") and draw < 0.5) or (status == "stopped" and draw < 0.3):
            self._begin_deploy(svc, at, update=False)

    def _begin_deploy(
        self,
        svc: SimService,
        at: int,
        *,
        update: bool,
        succeed: bool | None = None,
        progress: int = 0,
    ) -> None:
        rng = svc.rng
        duration = rng.randint(30, 120) * _SECOND
        start = at - progress * duration // 100
        will_succeed = succeed if succeed is not None else rng.random() < 0.85
        new_models = self._mutated_models(svc) if update else None
        models = new_models if new_models is not None else svc.models
        update_time = None
        if update:
            update_time = self._open_update(svc, at, self._config_record(svc, models))
        svc.deploy = _Deploy(
            start, duration, will_succeed, update_time, new_models, rng.choice(_FAILED_ERRORS)
        )
        for event in _timed(_deploy_script(models, rng, succeed=will_succeed), start, duration):
            if event.occur_time >= at:
                self._schedule(svc, event.occur_time, "event", (event.event_type, event.event_info))
        self._schedule(svc, start + duration, "deploy_end")
        # A v2 service being updated is "upgrading" (its old version keeps serving).
        status = "upgrading" if update and svc.generation == "v2" else "deploying"
        self._transition(svc, at, status, progress=progress, keep_deploy=True)

    def _mutated_models(self, svc: SimService) -> list[SimModel]:
        rng = svc.rng
        models = [SimModel(**vars(m)) for m in svc.models]
        if not models:
            return models
        bumped = rng.choice(models)
        major, minor, patch = (int(part) for part in bumped.model_version.split("."))
        bumped.model_version = f"{major}.{minor}.{patch + 1}"
        bumped.model_id = _uuid(rng)
        for model, weight in zip(models, _split_100(rng, len(models)), strict=True):
            model.weight = weight
            model.instance_count = max(1, model.instance_count + rng.choice((-1, 0, 0, 1)))
        return models

    def _finish_deploy(self, svc: SimService, at: int) -> None:
        deploy = svc.deploy
        if deploy is None or svc.status not in ("deploying", "upgrading"):
            return
        svc.deploy = None
        if deploy.succeed and deploy.new_models is not None:
            svc.models = deploy.new_models
            if svc.generation == "v2":
                major, minor, patch = svc.version.split(".")
                svc.version = f"{major}.{minor}.{int(patch) + 1}"
                svc.version_id = _uuid(svc.rng)
        if deploy.update_time is not None:
            self._close_update(svc, deploy.update_time, "SUCCESS" if deploy.succeed else "FAIL")
        if deploy.succeed or deploy.update_time is not None:
            # A failed configuration update rolls back: the previous version keeps serving.
            self._transition(svc, at, "running")
        else:
            self._transition(svc, at, "failed", error_msg=deploy.error_msg)

    def _bank(self, svc: SimService, at: int) -> None:
        """Fold the calls served since `serving_since` into the stored counters."""
        if svc.serving_since is None:
            return
        elapsed_s = max(at - svc.serving_since, 0) / 1000
        svc.invocations += int(svc.call_rate * elapsed_s)
        svc.failures += int(svc.call_rate * svc.fail_ratio * elapsed_s)
        svc.serving_since = at

    def _transition(
        self,
        svc: SimService,
        at: int,
        status: str,
        *,
        progress: int | None = None,
        error_msg: str | None = None,
        keep_deploy: bool = False,
    ) -> None:
        self._bank(svc, at)
        svc.status = status
        svc.transition_at = at
        svc.error_msg = error_msg if status in ("failed", "error") else None
        if status == "deploying":
            svc.progress = progress or 0
        if not keep_deploy:
            svc.deploy = None
        if self.dynamic and status in SERVING and svc.infer_type != "batch":
            svc.serving_since = at
        else:
            svc.serving_since = None
        if status == "running" and svc.auto_stop_hours is not None:
            svc.due_time = at + svc.auto_stop_hours * _HOUR
            if self.dynamic:
                self._schedule(svc, svc.due_time, "autostop")
        elif status not in SERVING:
            svc.due_time = None

    # ----- events and update records ------------------------------------------------------

    def _append_event(self, svc: SimService, event: SimEvent) -> None:
        if svc.generation == "v2":
            self._aggregate_event(svc, event)
            return
        # bisect_right keeps insertion order among equal occur_times.
        index = bisect.bisect_right(svc.event_times, event.occur_time)
        svc.event_times.insert(index, event.occur_time)
        svc.events.insert(index, event)

    def _aggregate_event(self, svc: SimService, event: SimEvent) -> None:
        """v2: the same event again grows its record; a new one opens a record."""
        event_type = event.event_type
        if event_type == ABNORMAL and any(w in event.event_info for w in _V2_WARNING_WORDS):
            event_type = WARNING
        for record in svc.agg_events:
            if record.event_type == event_type and record.event_info == event.event_info:
                record.event_count += 1
                record.create_at = min(record.create_at, event.occur_time)
                record.update_at = max(record.update_at, event.occur_time)
                return
        svc.agg_events.append(
            SimAggEvent(
                id=_uuid(svc.rng),
                event_type=event_type,
                event_info=event.event_info,
                event_count=1,
                create_at=event.occur_time,
                update_at=event.occur_time,
                version_id=svc.version_id,
            )
        )

    def _open_update(self, svc: SimService, at: int, config: list[dict[str, Any]]) -> int:
        taken = {u.update_time for u in svc.updates}
        while at in taken:
            at += 1  # update_time identifies a record, so two records never share one
        svc.updates.append(SimUpdate(at, "RUNNING", config))
        svc.updates.sort(key=lambda u: u.update_time)
        # The details follow the newest record, as when a configuration change is applied.
        svc.update_time = svc.updates[-1].update_time
        return at

    def _close_update(self, svc: SimService, update_time: int, result: str) -> None:
        for update in svc.updates:
            if update.update_time == update_time:
                update.result = result
                return
        raise KeyError(f"service {svc.service_id} has no update record at {update_time}")

    # ----- public mutations ---------------------------------------------------------------

    def _get(self, service_id: str) -> SimService:
        svc = self.services.get(service_id)
        if svc is None:
            raise KeyError(f"unknown service {service_id}")
        self._evolve(svc, self.now_ms())
        return svc

    def add_service(
        self,
        *,
        name: str | None = None,
        project_id: str = DEFAULT_PROJECT_ID,
        status: str = "running",
        infer_type: str = "real-time",
        models: int = 2,
        generation: str = "v1",
    ) -> str:
        """Add a fresh service (no events, no update records yet); returns its service_id."""
        return self._create(
            project_id=project_id,
            name=name,
            status=status,
            infer_type=infer_type,
            models=models,
            now=self.now_ms(),
            history=False,
            generation=generation,
        )

    def delete_service(self, service_id: str) -> None:
        """Remove a service: it leaves the list and every endpoint answers 404 ModelArts.3502."""
        del self.services[service_id]

    def set_status(self, service_id: str, status: str, *, progress: int | None = None) -> None:
        """Force a status (and deploying progress); cancels any deployment under way."""
        svc = self._get(service_id)
        now = self.now_ms()
        svc.agenda = [a for a in svc.agenda if a[2] == "happen"]
        heapq.heapify(svc.agenda)
        error = "Forced failure." if status == "failed" else None
        self._transition(svc, now, status, progress=progress, error_msg=error)
        if self.dynamic and status == "deploying":
            self._begin_deploy(svc, now, update=False, succeed=True, progress=progress or 0)
        if self.dynamic and status == "concerning":
            self._schedule(svc, now + svc.rng.randint(20, 120) * _SECOND, "recover")

    def add_invocations(self, service_id: str, calls: int, failures: int = 0) -> None:
        """Count more calls (and failed calls) for a service."""
        if calls < 0 or failures < 0:
            raise ValueError("invocation counters only grow")
        svc = self._get(service_id)
        svc.invocations += calls
        svc.failures += failures

    def add_events(self, service_id: str, events: Sequence[tuple[int, str, str]]) -> None:
        """Record events given as (occur_time_ms, event_type, event_info); duplicates stay."""
        svc = self._get(service_id)
        for occur_time, event_type, event_info in events:
            self._append_event(svc, SimEvent(int(occur_time), event_type, event_info))

    def add_random_events(self, service_id: str, n: int, *, occur_time: int | None = None) -> None:
        """Record n life-like events; all at `occur_time` when given (a burst), else at now."""
        svc = self._get(service_id)
        rng = svc.rng
        at = self.now_ms() if occur_time is None else occur_time
        script = _deploy_script(svc.models, rng, succeed=rng.random() < 0.7)
        for i in range(n):
            _, event_type, event_info = script[i % len(script)]
            self._append_event(svc, SimEvent(at, event_type, event_info))

    def _v2(self, service_id: str) -> SimService:
        svc = self._get(service_id)
        if svc.generation != "v2":
            raise ValueError(f"service {service_id} is not a v2 service")
        return svc

    def add_v2_event(
        self,
        service_id: str,
        event_type: str,
        event_info: str,
        *,
        count: int = 1,
        at: int | None = None,
    ) -> str:
        """Open a new aggregated record (its own id, even if the text repeats); returns the id."""
        svc = self._v2(service_id)
        if count < 1:
            raise ValueError("an event record counts at least one occurrence")
        moment = self.now_ms() if at is None else at
        record = SimAggEvent(
            id=_uuid(svc.rng),
            event_type=event_type,
            event_info=event_info,
            event_count=count,
            create_at=moment,
            update_at=moment,
            version_id=svc.version_id,
        )
        svc.agg_events.append(record)
        return record.id

    def grow_v2_event(
        self, service_id: str, event_id: str, by: int = 1, *, at: int | None = None
    ) -> None:
        """The event of record `event_id` happened `by` more times (its update_at moves)."""
        if by < 0:
            raise ValueError("event counts only grow")
        for record in self._v2(service_id).agg_events:
            if record.id == event_id:
                record.event_count += by
                record.update_at = max(record.update_at, self.now_ms() if at is None else at)
                return
        raise KeyError(f"service {service_id} has no event record {event_id}")

    def v2_events_of(self, service_id: str) -> list[SimAggEvent]:
        """Copies of every aggregated record of a v2 service, oldest first."""
        return [SimAggEvent(**vars(r)) for r in self._v2(service_id).agg_events]

    def v2_event_totals(self, service_id: str) -> dict[str, int]:
        """Occurrences per event type (the sum of event_count) of a v2 service."""
        totals = {NORMAL: 0, ABNORMAL: 0, WARNING: 0}
        for record in self._v2(service_id).agg_events:
            totals[record.event_type] = totals.get(record.event_type, 0) + record.event_count
        return totals

    def start_update(self, service_id: str, *, update_time: int | None = None) -> int:
        """Open a RUNNING update record; details' update_time follows the newest record."""
        svc = self._get(service_id)
        at = self.now_ms() if update_time is None else update_time
        if update_time is not None and any(u.update_time == at for u in svc.updates):
            raise ValueError(f"an update record at {at} exists already")
        return self._open_update(svc, at, self._config_record(svc))

    def finish_update(self, service_id: str, update_time: int, result: str) -> None:
        """Give an update record its final result, SUCCESS or FAIL."""
        if result not in UPDATE_RESULTS:
            raise ValueError(f"unknown update result {result!r}")
        self._close_update(self._get(service_id), update_time, result)

    def add_update(self, service_id: str, result: str, *, update_time: int | None = None) -> int:
        """Add an update record with its result already known; returns its update_time."""
        if result not in UPDATE_RESULTS:
            raise ValueError(f"unknown update result {result!r}")
        at = self.start_update(service_id, update_time=update_time)
        self.finish_update(service_id, at, result)
        return at

    def set_update_time(self, service_id: str, update_time_ms: int) -> None:
        """Set the details' update_time alone (no update record)."""
        self._get(service_id).update_time = update_time_ms

    # ----- ground truth and rendering -----------------------------------------------------

    def events_of(self, service_id: str) -> list[SimEvent]:
        """Every event the API holds for the service, in occur_time order."""
        return list(self._get(service_id).events)

    def event_counts(self, service_id: str) -> dict[str, int]:
        """Number of events per event_type (for v2: occurrences, the sum of event_count)."""
        if self._get(service_id).generation == "v2":
            return self.v2_event_totals(service_id)
        counts = {NORMAL: 0, ABNORMAL: 0}
        for event in self._get(service_id).events:
            counts[event.event_type] = counts.get(event.event_type, 0) + 1
        return counts

    def updates_of(self, service_id: str) -> list[SimUpdate]:
        """Every update record, oldest first."""
        return list(self._get(service_id).updates)

    def services_in(self, project_id: str, generation: str | None = None) -> list[SimService]:
        """The services of one project (of one generation, when given), evolved to now."""
        now = self.now_ms()
        found = []
        for svc in self.services.values():
            if svc.project_id == project_id and generation in (None, svc.generation):
                self._evolve(svc, now)
                found.append(svc)
        return found

    def service(self, service_id: str) -> SimService:
        """One service evolved to now; KeyError when unknown."""
        return self._get(service_id)

    def invocations_at(self, svc: SimService, now: int) -> tuple[int, int]:
        """(invocation_times, failed_times) at `now`, counting calls since the last fold."""
        if svc.serving_since is None:
            return svc.invocations, svc.failures
        elapsed_s = max(now - svc.serving_since, 0) / 1000
        return (
            svc.invocations + int(svc.call_rate * elapsed_s),
            svc.failures + int(svc.call_rate * svc.fail_ratio * elapsed_s),
        )

    def progress_at(self, svc: SimService, now: int) -> int:
        """Deployment progress in percent while deploying."""
        deploy = svc.deploy
        if deploy is None or deploy.duration <= 0:
            return svc.progress
        return min(99, max(svc.progress, (now - deploy.start) * 100 // deploy.duration))

    def _common_json(self, svc: SimService, now: int) -> dict[str, Any]:
        calls, failed = self.invocations_at(svc, now)
        body: dict[str, Any] = {
            "service_id": svc.service_id,
            "service_name": svc.service_name,
            "description": svc.description,
            "tenant": svc.tenant,
            "project": svc.project_id,
            "owner": svc.owner,
            "publish_at": svc.publish_at,
            "infer_type": svc.infer_type,
            "workspace_id": svc.workspace_id,
            "status": svc.status,
        }
        if svc.status == "deploying":
            body["progress"] = self.progress_at(svc, now)
        body.update(
            invocation_times=calls,
            failed_times=failed,
            is_shared=svc.is_shared,
            shared_count=svc.shared_count,
            is_free=svc.is_free,
        )
        if svc.auto_stop_hours is not None and svc.due_time is not None:
            body["schedule"] = [
                {"type": "stop", "time_unit": "HOURS", "duration": svc.auto_stop_hours}
            ]
            body["due_time"] = svc.due_time
        if svc.batch_window is not None:
            body["start_time"], body["finished_time"] = svc.batch_window
        # An update is an operation too: the list entry moves when one is opened.
        body["operation_time"] = max(svc.transition_at, svc.update_time)
        body["transition_at"] = svc.transition_at
        return body

    def list_item_json(self, svc: SimService, now: int) -> dict[str, Any]:
        """The service as one item of the list API."""
        body = self._common_json(svc, now)
        body["is_opened_sample_collection"] = "false"
        return body

    def _instance_status(self, svc: SimService, index: int) -> str:
        if svc.status == "running":
            return "running"
        if svc.status == "concerning":
            return "notReady" if index == 0 else "running"
        if svc.status == "failed":
            return "failed"
        if svc.status in ("stopped", "stopping", "finished"):
            return "stopped"
        return "notReady"

    def details_json(self, service_id: str) -> dict[str, Any]:
        """Exactly what GET details answers now (before string_numbers)."""
        svc = self._get(service_id)
        now = self.now_ms()
        body = self._common_json(svc, now)
        body["update_time"] = svc.update_time
        if svc.cluster_id is not None:
            body["cluster_id"] = svc.cluster_id
            body["pool_name"] = svc.pool_name
        if svc.error_msg is not None and svc.status == "failed":
            body["error_msg"] = svc.error_msg
        config = []
        for index, item in enumerate(self._config_record(svc)):
            item["status"] = self._instance_status(svc, index)
            item["scaling"] = False
            item["support_debug"] = False
            if svc.pool_name is not None:
                item["pool_name"] = svc.pool_name
            config.append(item)
        body["config"] = config
        if svc.status in SERVING and svc.infer_type != "batch":
            region = self.project_names.get(svc.project_id, _REGIONS[0]).split("_")[0]
            body["access_address"] = (
                f"https://{svc.service_id[:8]}.apig.{region}.huaweicloudapis.com"
                f"/v1/infers/{svc.service_id}"
            )
        body["load_balancer_policy"] = svc.load_balancer_policy
        body["additional_properties"] = {}
        return body
