"""The fake ModelArts (v1, v2, monitor) + IAM HTTP API over a `Simulation` (reference §2-§7).

Middleware order, outermost first: observe (statistics, X-Request-Id), the account's quota
(429 APIG.0308, as the API Gateway answers), project policy (`Simulation.forbid`), authenticate
(ModelArts endpoints only, when the simulation requires it), inject faults, then the handler.
A v1 service is invisible to the v2 API and a v2 one to the v1 API (reference §11).
"""

from __future__ import annotations

import asyncio
import bisect
import json
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from exporter.modelarts.signing import SignatureError, verify_request
from exporter.simulator import wire
from exporter.simulator.faults import MODELARTS_ENDPOINTS, FaultDraw
from exporter.simulator.identity import IamError
from exporter.simulator.scenario import ABNORMAL, NORMAL, WARNING, SimService, Simulation

SIMULATION = web.AppKey("simulation", Simulation)
_REQUEST_ID = web.RequestKey("request_id", str)
_MODELARTS_ENDPOINTS = MODELARTS_ENDPOINTS
_SORT_KEYS = ("publish_at", "service_name", "transition_at")
_V2_SORT_KEYS = ("create_at", "update_at")
_V2_MAX_LIMIT = 500
# Characters the events API refuses in event_info (ASCII and full-width forms).
_FORBIDDEN_EVENT_INFO = frozenset(
    "`(){}'\";,[]<>/?"
    "\uff08\uff09\uff5b\uff5d\u2018\u2019\u201c\u201d\uff1b\uff0c\u3010\u3011\u300a\u300b\uff0f\uff1f"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _BadParameter(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _stringify(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return {key: _stringify(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_stringify(item) for item in value]
    return value


def _json_response(
    body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _api_response(request: web.Request, body: dict[str, Any]) -> web.Response:
    if request.app[SIMULATION].string_numbers:
        body = _stringify(body)
    return _json_response(body)


def _error(status: int, code: str, message: str) -> web.Response:
    return _json_response({"error_code": code, "error_msg": message}, status=status)


def _gateway_error(request: web.Request, code: str, message: str) -> web.Response:
    return _json_response(
        {"error_code": code, "error_msg": message, "request_id": request[_REQUEST_ID]},
        status=401,
    )


def _int_param(request: web.Request, name: str, default: int | None, *, minimum: int) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadParameter(name) from None
    if value < minimum:
        raise _BadParameter(name)
    return value


def _choice_param(request: web.Request, name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = request.query.get(name, default)
    if value not in allowed:
        raise _BadParameter(name)
    return value


def _page(request: web.Request) -> tuple[int, int]:
    sim = request.app[SIMULATION]
    offset = _int_param(request, "offset", 0, minimum=0) or 0
    limit = _int_param(request, "limit", 1000, minimum=1) or 1000
    return offset, min(limit, sim.max_page_size)


def _service_in_project(request: web.Request, generation: str = "v1") -> SimService | None:
    sim = request.app[SIMULATION]
    svc = sim.services.get(request.match_info["service_id"])
    if (
        svc is None
        or svc.project_id != request.match_info["project_id"]
        or svc.generation != generation
    ):
        return None
    return sim.service(svc.service_id)


def _not_found(request: web.Request) -> web.Response:
    service_id = request.match_info["service_id"]
    return _error(404, "ModelArts.3502", f"Service {service_id} does not exist.")


# ----- ModelArts handlers ------------------------------------------------------------------


async def list_services(request: web.Request) -> web.Response:
    """GET /v1/{project_id}/services."""
    sim = request.app[SIMULATION]
    offset, limit = _page(request)
    sort_by = _choice_param(request, "sort_by", "publish_at", _SORT_KEYS)
    order = _choice_param(request, "order", "desc", ("asc", "desc"))
    query = request.query
    exact = {
        key: query[key]
        for key in ("service_id", "service_name", "workspace_id", "infer_type", "status")
        if key in query
    }
    model_id = query.get("model_id")
    matches = [
        svc
        for svc in sim.services_in(request.match_info["project_id"], "v1")
        if all(getattr(svc, key) == value for key, value in exact.items())
        and (model_id is None or any(m.model_id == model_id for m in svc.models))
    ]
    # service_id breaks ties so that pages never overlap or skip.
    matches.sort(key=lambda svc: svc.service_id, reverse=order == "desc")
    matches.sort(key=lambda svc: getattr(svc, sort_by), reverse=order == "desc")
    page = matches[offset : offset + limit]
    now = sim.now_ms()
    return _api_response(
        request,
        {
            "total_count": len(matches),
            "count": len(page),
            "services": [sim.list_item_json(svc, now) for svc in page],
        },
    )


async def show_service(request: web.Request) -> web.Response:
    """GET /v1/{project_id}/services/{service_id}."""
    svc = _service_in_project(request)
    if svc is None:
        return _not_found(request)
    return _api_response(request, request.app[SIMULATION].details_json(svc.service_id))


async def list_events(request: web.Request) -> web.Response:
    """GET /v1/{project_id}/services/{service_id}/events."""
    svc = _service_in_project(request)
    if svc is None:
        return _not_found(request)
    offset, limit = _page(request)
    _choice_param(request, "sort_by", "occur_time", ("occur_time",))
    order = _choice_param(request, "order", "desc", ("asc", "desc"))
    start_time = _int_param(request, "start_time", None, minimum=0)
    end_time = _int_param(request, "end_time", None, minimum=0)
    event_type = request.query.get("event_type")
    if event_type is not None and event_type not in (NORMAL, ABNORMAL):
        raise _BadParameter("event_type")
    event_info = request.query.get("event_info")
    if event_info is not None and _FORBIDDEN_EVENT_INFO.intersection(event_info):
        raise _BadParameter("event_info")

    low = 0 if start_time is None else bisect.bisect_left(svc.event_times, start_time)
    high = len(svc.events) if end_time is None else bisect.bisect_right(svc.event_times, end_time)
    matches = [
        event
        for event in svc.events[low:high]
        if (event_type is None or event.event_type == event_type)
        and (event_info is None or event_info in event.event_info)
    ]
    if order == "desc":
        # A stable sort: rows sharing an occur_time keep their insertion order.
        matches.sort(key=lambda event: event.occur_time, reverse=True)
    page = matches[offset : offset + limit]
    return _api_response(
        request,
        {
            "service_id": svc.service_id,
            "service_name": svc.service_name,
            "total_count": len(matches),
            "count": len(page),
            "events": [event.to_json() for event in page],
        },
    )


async def list_update_logs(request: web.Request) -> web.Response:
    """GET /v1/{project_id}/services/{service_id}/logs."""
    svc = _service_in_project(request)
    if svc is None:
        return _not_found(request)
    since = _int_param(request, "update_time", None, minimum=0)
    records = [u for u in svc.updates if since is None or u.update_time >= since]
    records.sort(key=lambda u: u.update_time, reverse=True)
    return _api_response(
        request,
        {
            "service_id": svc.service_id,
            "service_name": svc.service_name,
            "logs": [record.to_json() for record in records],
        },
    )


async def show_monitor(request: web.Request) -> web.Response:
    """GET /v1/{project_id}/services/{service_id}/monitor."""
    svc = _service_in_project(request)
    if svc is None:
        return _not_found(request)
    sim = request.app[SIMULATION]
    body = wire.monitor(sim, svc, sim.now_ms(), node_id=request.query.get("node_id"))
    omit = sim.monitor_omit
    if omit:
        body = {k: v for k, v in body.items() if k not in omit}
        body["monitors"] = [
            {k: v for k, v in m.items() if k not in omit} for m in body.get("monitors", [])
        ]
    return _api_response(request, body)


# ----- v2 handlers ---------------------------------------------------------------------------


def _v2_page(request: web.Request) -> tuple[int, int]:
    """limit in [1, 500] (default 10); offset a multiple of limit (reference §3.1, §4)."""
    limit = _int_param(request, "limit", 10, minimum=1) or 10
    if limit > _V2_MAX_LIMIT:
        raise _BadParameter("limit")
    offset = _int_param(request, "offset", 0, minimum=0) or 0
    if offset % limit:
        raise _BadParameter("offset")
    return offset, limit


def _v2_sort(request: web.Request) -> tuple[str, bool]:
    keys = request.query.get("sort_key", "update_at").split(",")
    if not keys or any(key not in _V2_SORT_KEYS for key in keys):
        raise _BadParameter("sort_key")
    direction = _choice_param(request, "sort_dir", "DESC", ("ASC", "DESC"))
    return keys[0], direction == "DESC"


def _v2_paged(items: list[Any], offset: int, limit: int) -> dict[str, Any]:
    page = items[offset : offset + limit]
    return {
        "current": offset // limit,
        "size": len(page),
        "pages": math.ceil(len(items) / limit),
        "total": len(items),
        "data": page,
    }


def _v2_not_found(request: web.Request) -> web.Response:
    service_id = request.match_info["service_id"]
    return _error(404, "ModelArts.3502", f"Service {service_id} does not exist.")


async def v2_list_services(request: web.Request) -> web.Response:
    """GET /v2/{project_id}/services."""
    sim = request.app[SIMULATION]
    offset, limit = _v2_page(request)
    sort_key, descending = _v2_sort(request)
    query = request.query
    items = [
        wire.v2_list_item(svc) for svc in sim.services_in(request.match_info["project_id"], "v2")
    ]
    for param, key in (("id", "id"), ("name", "name"), ("workspace_id", "workspace_id")):
        if param in query:
            items = [item for item in items if item[key] == query[param]]
    if "status" in query:
        wanted = {part.strip().upper() for part in query["status"].split(",")}
        items = [item for item in items if item["status"] in wanted]
    if "type" in query:
        items = [item for item in items if item["type"] == query["type"]]
    # id breaks ties so that pages never overlap or skip.
    items.sort(key=lambda item: item["id"], reverse=descending)
    items.sort(key=lambda item: item[sort_key], reverse=descending)
    return _api_response(request, _v2_paged(items, offset, limit))


async def v2_show_service(request: web.Request) -> web.Response:
    """GET /v2/{project_id}/services/{service_id}."""
    svc = _service_in_project(request, "v2")
    if svc is None:
        return _v2_not_found(request)
    sim = request.app[SIMULATION]
    return _api_response(request, wire.v2_details(sim, svc, sim.now_ms()))


async def v2_list_events(request: web.Request) -> web.Response:
    """GET /v2/{project_id}/services/{service_id}/events: aggregated records."""
    svc = _service_in_project(request, "v2")
    if svc is None:
        return _v2_not_found(request)
    offset, limit = _v2_page(request)
    sort_key, descending = _v2_sort(request)
    event_type = request.query.get("event_type")
    allowed_types = {NORMAL.upper(), ABNORMAL.upper(), WARNING.upper()}
    if event_type is not None and event_type not in allowed_types:
        raise _BadParameter("event_type")
    start_time = _int_param(request, "start_time", None, minimum=0)
    end_time = _int_param(request, "end_time", None, minimum=0)
    records = [
        r
        for r in svc.agg_events
        if (event_type is None or r.event_type.upper() == event_type)
        and (start_time is None or r.update_at >= start_time)
        and (end_time is None or r.create_at <= end_time)
    ]
    records.sort(key=lambda r: r.id, reverse=descending)
    records.sort(key=lambda r: getattr(r, sort_key), reverse=descending)
    return _api_response(
        request, _v2_paged([wire.v2_event(svc, r) for r in records], offset, limit)
    )


# ----- IAM ---------------------------------------------------------------------------------


def _iam_error(status: int, title: str, message: str) -> web.Response:
    body = {"error": {"code": status, "message": message, "title": title}}
    return _json_response(body, status=status)


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_password_auth(body: Any) -> tuple[str, str, str, dict[str, Any]]:
    """(domain name, user name, password, scope) from a token request, ValueError if malformed."""
    try:
        auth = body["auth"]
        identity = auth["identity"]
        if "password" not in identity["methods"]:
            raise ValueError("only the password method is supported")
        user = identity["password"]["user"]
        domain_name, user_name, password = user["domain"]["name"], user["name"], user["password"]
        scope = auth.get("scope", {})
    except (KeyError, TypeError):
        raise ValueError("malformed auth body") from None
    texts = (domain_name, user_name, password)
    if not all(isinstance(text, str) for text in texts) or not isinstance(scope, dict):
        raise ValueError("malformed auth body")
    return domain_name, user_name, password, scope


async def issue_token(request: web.Request) -> web.Response:
    """POST /v3/auth/tokens with a password identity."""
    sim = request.app[SIMULATION]
    try:
        domain_name, user_name, password, scope = _parse_password_auth(await request.json())
    except (ValueError, UnicodeDecodeError):
        return _iam_error(400, "Bad Request", "The request body is invalid.")
    project_id: str | None = None
    project_name: str | None = None
    project = scope.get("project")
    if isinstance(project, dict):
        if isinstance(project.get("id"), str):
            project_id = project["id"]
        elif isinstance(project.get("name"), str):
            project_id = sim.project_by_name(project["name"])
        if project_id is None or project_id not in sim.project_names:
            return _iam_error(400, "Bad Request", "The project in the scope does not exist.")
        project_name = sim.project_names[project_id]
    elif "domain" not in scope:
        return _iam_error(400, "Bad Request", "The request body is invalid.")
    now = sim.clock()
    try:
        issued = sim.identity.issue(
            domain_name=domain_name,
            user_name=user_name,
            password=password,
            project_id=project_id,
            project_name=project_name,
            now=now,
            ttl=sim.token_ttl,
            open_door=not sim.require_auth,
        )
    except IamError as exc:
        sim.stats.auth_failures += 1
        return _iam_error(exc.status, exc.title, exc.message)
    domain = {"id": sim.identity.domain_id(domain_name), "name": domain_name}
    token: dict[str, Any] = {
        "expires_at": _iso(issued.expires_at),
        "issued_at": _iso(issued.issued_at),
        "methods": ["password"],
        "user": {
            "id": issued.user_id,
            "name": user_name,
            "domain": domain,
            "password_expires_at": "",
        },
        "roles": [{"id": "0", "name": "te_admin"}],
    }
    if project_id is not None:
        token["project"] = {"id": project_id, "name": project_name, "domain": domain}
    else:
        token["domain"] = domain
    if not request.query.get("nocatalog"):
        token["catalog"] = []
    return _json_response(
        {"token": token},
        status=201,
        headers={"X-Subject-Token": issued.token, "X-IAM-Trace-Id": request[_REQUEST_ID]},
    )


# ----- middlewares -------------------------------------------------------------------------


def _endpoint_of(request: web.Request) -> str:
    name = request.match_info.route.name
    return name if name in _MODELARTS_ENDPOINTS or name == "token" else "other"


@web.middleware
async def _observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    sim = request.app[SIMULATION]
    request_id = uuid.uuid4().hex
    request[_REQUEST_ID] = request_id
    sim.stats.begin(_endpoint_of(request), request.match_info.get("service_id"))
    try:
        try:
            response = await handler(request)
        except _BadParameter as exc:
            response = _error(400, "ModelArts.0101", f"Invalid parameter: {exc.name}.")
        except web.HTTPException as exc:
            exc.headers["X-Request-Id"] = request_id
            raise
        response.headers["X-Request-Id"] = request_id
        return response
    finally:
        sim.stats.end()


def _authenticate(request: web.Request, body: bytes) -> web.Response | None:
    """None when the request may proceed, else the error to answer."""
    sim = request.app[SIMULATION]
    project_id = request.match_info["project_id"]
    token = request.headers.get("X-Auth-Token")
    if token is not None:
        issued = sim.identity.lookup(token)
        if issued is None:
            return _error(401, "ModelArts.0203", "The token is invalid.")
        if sim.clock() >= issued.expires_at:
            return _error(401, "ModelArts.0202", "The token has expired.")
        if issued.project_id is None:
            return _error(401, "ModelArts.0207", "The token is not scoped to a project.")
        if issued.project_id != project_id:
            return _error(403, "ModelArts.0210", "The project in the URL does not match the token.")
        return None
    if "Authorization" not in request.headers:
        return _error(401, "ModelArts.0201", "No token was supplied in the request.")
    path, _, raw_query = request.raw_path.partition("?")
    try:
        verify_request(
            method=request.method,
            path=path,
            raw_query_string=raw_query,
            headers=request.headers,
            body=body,
            secret_for=sim.identity.secret_for,
            now=datetime.fromtimestamp(sim.clock(), UTC),
        )
    except SignatureError as exc:
        if "expired" in str(exc):
            return _gateway_error(
                request, "APIGW.0303", "Incorrect app authentication information: signature expired"
            )
        return _gateway_error(
            request,
            "APIGW.0301",
            "Incorrect IAM authentication information: verify aksk signature fail",
        )
    header_project = request.headers.get("X-Project-Id")
    if header_project is not None and header_project != project_id:
        return _error(403, "ModelArts.0210", "The project in the URL does not match X-Project-Id.")
    sim.stats.signature_verified += 1
    return None


@web.middleware
async def _quota(request: web.Request, handler: Handler) -> web.StreamResponse:
    sim = request.app[SIMULATION]
    quota = sim.quota
    if quota is None or _endpoint_of(request) not in _MODELARTS_ENDPOINTS:
        return await handler(request)
    refusal = quota.admit()
    if refusal is None:
        return await handler(request)
    sim.stats.throttle()
    response = _json_response(
        {
            "error_code": "APIG.0308",
            "error_msg": f"The throttling threshold has been reached: {refusal}",
            "request_id": request[_REQUEST_ID],
        },
        status=429,
    )
    if quota.retry_after is not None:
        response.headers["Retry-After"] = f"{quota.retry_after:g}"
    return response


@web.middleware
async def _policy(request: web.Request, handler: Handler) -> web.StreamResponse:
    sim = request.app[SIMULATION]
    if not sim.forbidden:
        return await handler(request)
    endpoint = _endpoint_of(request)
    status = sim.forbidden.get((request.match_info.get("project_id", ""), endpoint))
    if status == 403:
        action = "list" if endpoint.endswith("list") else "get"
        return _error(
            403,
            "ModelArts.0204",
            f"Policy doesn't allow modelarts:service:{action} to be performed.",
        )
    if status == 404:
        return _json_response(
            {
                "error_code": "APIG.0101",
                "error_msg": "The API does not exist or has not been published in the environment",
                "request_id": request[_REQUEST_ID],
            },
            status=404,
        )
    return await handler(request)


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    sim = request.app[SIMULATION]
    if not sim.require_auth or _endpoint_of(request) not in _MODELARTS_ENDPOINTS:
        return await handler(request)
    refusal = _authenticate(request, await request.read())
    if refusal is not None:
        sim.stats.auth_failures += 1
        return refusal
    return await handler(request)


def _wrong_types(endpoint: str, service_id: str, variant: int) -> Any:
    if endpoint == "list":
        return {"total_count": 3, "count": 3, "services": "x"}
    if endpoint == "details":
        return {"service_id": service_id, "status": ["running"], "invocation_times": "lots"}
    if endpoint == "events":
        if variant % 2:
            return {"service_id": service_id, "total_count": 1, "count": 1, "events": {"a": 1}}
        bad_row = {
            "event_type": NORMAL,
            "event_info": "start to deploy service",
            "occur_time": "abc",
        }
        return {"service_id": service_id, "total_count": 1, "count": 1, "events": [bad_row]}
    if endpoint == "logs":
        return {"service_id": service_id, "logs": "x"}
    if endpoint == "monitor":
        return {"service_id": service_id, "monitors": [{"cpu_core_usage": "busy"}]}
    if endpoint == "v2_list":
        return {"total": 2, "data": [{"id": None, "status": "RUNNING"}]}
    if endpoint == "v2_details":
        return {"id": service_id, "status": "RUNNING", "version": {"instance_groups": "x"}}
    if endpoint == "v2_events":
        bad = {"id": "e1", "event_type": "NORMAL", "event_count": -3, "update_at": 1}
        return {"total": 1, "data": [bad]}
    return ["not", "an", "object"]


async def _malformed(
    request: web.Request, handler: Handler, endpoint: str, draw: FaultDraw
) -> web.StreamResponse:
    kind = draw.variant % 3
    if kind == 0:
        return web.Response(
            status=200,
            content_type="text/html",
            text="<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>",
        )
    if kind == 1:
        service_id = request.match_info.get("service_id", "")
        return _json_response(_wrong_types(endpoint, service_id, draw.variant // 3))
    response = await handler(request)
    body = response.body if isinstance(response, web.Response) else None
    if isinstance(body, bytes):
        # Cut mid-document: a client sees a 200 whose JSON ends abruptly.
        return web.Response(
            body=body[: max(1, len(body) // 2)],
            status=response.status,
            content_type="application/json",
            headers={k: v for k, v in response.headers.items() if k.lower() == "x-subject-token"},
        )
    return response


@web.middleware
async def _faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    sim = request.app[SIMULATION]
    faults = sim.faults
    endpoint = _endpoint_of(request)
    fixed = sim.service_faults.get((request.match_info.get("service_id", ""), endpoint))
    if fixed is not None:
        draw = FaultDraw(
            slow=fixed == "slow",
            drop=fixed == "drop",
            throttle=fixed == "throttle",
            error=fixed == "error",
            malformed=fixed == "malformed",
            variant=1,
        )
    elif endpoint not in faults.endpoints:
        return await handler(request)
    else:
        draw = faults.draw()
    if draw.slow:
        await asyncio.sleep(faults.slow_seconds)
    if draw.drop:
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)
    if draw.throttle:
        response = _error(429, "ModelArts.2799", "Too many requests, please try again later.")
        response.headers["Retry-After"] = f"{faults.retry_after:g}"
        return response
    if draw.error:
        if draw.variant % 2:
            return _error(500, "ModelArts.3505", "Failed to query the service.")
        return _json_response(
            {
                "error_code": "APIGW.0201",
                "error_msg": "Backend unavailable",
                "request_id": request[_REQUEST_ID],
            },
            status=503,
        )
    if draw.malformed:
        return await _malformed(request, handler, endpoint, draw)
    return await handler(request)


# ----- application -------------------------------------------------------------------------


def create_app(sim: Simulation) -> web.Application:
    """The aiohttp application serving `sim`."""
    app = web.Application(middlewares=[_observe, _quota, _policy, _auth, _faults])
    app[SIMULATION] = sim
    router = app.router
    v1 = "/v1/{project_id}/services"
    router.add_get(v1, list_services, name="list")
    router.add_get(v1 + "/{service_id}", show_service, name="details")
    router.add_get(v1 + "/{service_id}/events", list_events, name="events")
    router.add_get(v1 + "/{service_id}/logs", list_update_logs, name="logs")
    router.add_get(v1 + "/{service_id}/monitor", show_monitor, name="monitor")
    v2 = "/v2/{project_id}/services"
    router.add_get(v2, v2_list_services, name="v2_list")
    router.add_get(v2 + "/{service_id}", v2_show_service, name="v2_details")
    router.add_get(v2 + "/{service_id}/events", v2_list_events, name="v2_events")
    app.router.add_post("/v3/auth/tokens", issue_token, name="token")
    return app


@asynccontextmanager
async def serve(sim: Simulation, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve `sim` on host:port (0 picks a free port) and yield the base URL."""
    runner = web.AppRunner(create_app(sim), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in str(bound_host) else str(bound_host)
        yield f"http://{shown}:{bound_port}"
    finally:
        await runner.cleanup()
