"""The ModelArts client of one project: v1 and v2 endpoints, pagination, retries, and translation
of every failure into the exception tree of `exporter.modelarts.errors`."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from exporter.modelarts.auth import RequestAuth
from exporter.modelarts.errors import (
    ApiError,
    AuthError,
    CredentialsError,
    MalformedResponseError,
    ModelArtsError,
    TransportError,
    api_error,
)
from exporter.modelarts.limits import RequestLimiter
from exporter.modelarts.models import (
    AggregatedEvent,
    Event,
    EventRead,
    MonitorReading,
    ServiceDetails,
    ServiceSummary,
    UpdateRecord,
    parse_details,
    parse_event_page,
    parse_monitor,
    parse_service_page,
    parse_update_logs,
    parse_v2_details,
    parse_v2_event_page,
    parse_v2_service_page,
)
from exporter.modelarts.observer import ApiObserver
from exporter.modelarts.pagination import MAX_PAGES, read_all_consistent, read_limit_pages
from exporter.modelarts.signing import canonical_query
from exporter.modelarts.transport import HttpFailure, Transport, origin_for

MAX_RETRY_AFTER = 120.0
V2_PAGE_SIZE = 500  # the v2 API's maximum `limit`


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 3
    base: float = 0.5
    cap: float = 30.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter exponential backoff for retry number `attempt` (0-based)."""
        ceiling: float = min(self.cap, self.base * 2**attempt)
        return rng.uniform(0.5, 1.0) * ceiling


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def _error_fields(body: bytes) -> tuple[str, str]:
    """error_code / error_msg from a ModelArts, gateway or IAM error body (best effort)."""
    try:
        data = json.loads(body)
    except ValueError:
        return "", body[:200].decode("utf-8", "replace")
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for code_key, msg_key in (
                ("error_code", "error_msg"),
                ("errorCode", "errorMsg"),
                ("code", "message"),
            ):
                if code_key in item:
                    return str(item[code_key]), str(item.get(msg_key, ""))[:300]
            stack.extend(item.values())
    return "", ""


def _decode(body: bytes, endpoint: str) -> Any:
    try:
        # UTF-8 text parses without json's encoding detection; anything else (a BOM, UTF-16)
        # takes the general path, so nothing json.loads(bytes) accepts is refused here.
        return json.loads(body.decode())
    except ValueError:
        pass
    try:
        return json.loads(body)
    except ValueError:
        raise MalformedResponseError(
            f"{endpoint}: response is not JSON", endpoint=endpoint
        ) from None


def events_query(
    page_size: int, offset: int, start_time: int | None
) -> tuple[list[tuple[str, object]], str]:
    """The events request's parameters and their canonical query string, written out directly:
    it is built for every service in every cycle, and the general encoder is costlier."""
    params: list[tuple[str, object]] = [
        ("sort_by", "occur_time"),
        ("order", "asc"),
        ("offset", offset),
        ("limit", page_size),
    ]
    query = f"limit={page_size}&offset={offset}&order=asc&sort_by=occur_time"
    if start_time is not None:
        params.append(("start_time", start_time))
        query = f"{query}&start_time={start_time}"
    return params, query


class _Unchanged(Exception):
    pass


class ModelArtsClient:
    """One project's view of the ModelArts v1 service API."""

    def __init__(
        self,
        http: Transport,
        *,
        endpoint: str,
        project_id: str,
        auth: RequestAuth,
        limiter: RequestLimiter,
        observer: ApiObserver,
        timeout: float,
        retry: RetryPolicy,
        page_size: int = 1000,
        proxy: str | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._http = http
        self._endpoint = endpoint.rstrip("/")
        self._origin = origin_for(self._endpoint, proxy)
        self._host = self._origin.host_header
        self._base_path = urlsplit(self._endpoint).path.rstrip("/")
        self.project_id = project_id
        self._auth = auth
        self._limiter = limiter
        self._observer = observer
        self._timeout = timeout
        self._retry = retry
        self._page_size = page_size
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._auth_blocked_until = 0.0
        self._auth_failures = 0
        self._paths: dict[tuple[str, ...], str] = {}

    def __repr__(self) -> str:
        return f"ModelArtsClient(endpoint={self._endpoint!r}, project_id={self.project_id!r})"

    def _path(self, *parts: str, generation: str = "v1") -> str:
        key = (generation, *parts)
        path = self._paths.get(key)
        if path is None:
            quoted = "/".join(quote(p, safe="") for p in parts)
            path = f"{self._base_path}/{generation}/{quote(self.project_id, safe='')}/services" + (
                f"/{quoted}" if parts else ""
            )
            if len(self._paths) > 100_000:  # bounded: services come and go over months
                self._paths.clear()
            self._paths[key] = path
        return path

    # -- endpoints ----------------------------------------------------------------------------

    async def get_details(self, service_id: str) -> ServiceDetails:
        raw = await self._get("details", self._path(service_id), [])
        return parse_details(raw)

    async def get_update_logs(self, service_id: str) -> tuple[UpdateRecord, ...]:
        raw = await self._get("logs", self._path(service_id, "logs"), [])
        return parse_update_logs(raw)

    async def list_services(self, workspace_id: str | None = None) -> list[ServiceSummary]:
        """Every service of the project (all pages, de-duplicated by id)."""
        found: dict[str, ServiceSummary] = {}
        offset = 0
        for _ in range(MAX_PAGES):
            params: list[tuple[str, object]] = [("offset", offset), ("limit", self._page_size)]
            if workspace_id is not None:
                params.append(("workspace_id", workspace_id))
            page = parse_service_page(await self._get("list", self._path(), params))
            for item in page.services:
                found.setdefault(item.service_id, item)
            offset += len(page.services)
            if not page.services or offset >= page.total_count:
                return list(found.values())
        raise MalformedResponseError("list: pagination did not end", endpoint="list")

    async def list_events(
        self, service_id: str, start_time: int | None, *, previous: bytes | None = None
    ) -> EventRead:
        """Every event with occur_time >= start_time (all history when None), oldest first;
        never a row twice or a row missing (see `pagination`).

        In steady state the same window of events is read every cycle. When the read is one page
        whose body is byte-for-byte the one `previous` fingerprints (same query, same rows, same
        total), nothing can have changed and `events` is None: the body is not even parsed."""
        path = self._path(service_id, "events")
        single_page: list[bytes] = []

        async def fetch(offset: int) -> tuple[int, tuple[Event, ...]]:
            params, query = events_query(self._page_size, offset, start_time)
            body = await self._get_raw("events", path, params, query)
            if offset == 0:
                fingerprint = hashlib.blake2b(
                    body, digest_size=16, key=str(start_time).encode()
                ).digest()
                if previous is not None and fingerprint == previous:
                    raise _Unchanged
                single_page[:] = [fingerprint]
            else:
                single_page.clear()
            page = parse_event_page(_decode(body, "events"))
            return page.total_count, page.events

        try:
            events = await read_all_consistent(fetch, endpoint="events")
        except _Unchanged:
            return EventRead(events=None, fingerprint=previous)
        return EventRead(events=events, fingerprint=single_page[0] if single_page else None)

    async def get_monitor(self, service_id: str) -> MonitorReading:
        raw = await self._get("monitor", self._path(service_id, "monitor"), [])
        return parse_monitor(raw)

    # -- v2 (new-generation) endpoints --------------------------------------------------------

    async def v2_get_details(self, service_id: str) -> ServiceDetails:
        raw = await self._get("v2_details", self._path(service_id, generation="v2"), [])
        return parse_v2_details(raw)

    async def v2_list_services(self, workspace_id: str | None = None) -> list[ServiceSummary]:
        """Every v2 service of the project, oldest first by create_at so that new services
        land on the last page (see `read_limit_pages`), de-duplicated by id."""
        path = self._path(generation="v2")

        async def fetch(offset: int) -> tuple[int, tuple[ServiceSummary, ...]]:
            params: list[tuple[str, object]] = [
                ("limit", V2_PAGE_SIZE),
                ("offset", offset),
                ("sort_dir", "ASC"),
                ("sort_key", "create_at"),
            ]
            if workspace_id is not None:
                params.append(("workspace_id", workspace_id))
            return parse_v2_service_page(await self._get("v2_list", path, params))

        return await read_limit_pages(
            fetch, V2_PAGE_SIZE, endpoint="v2_list", key=lambda item: item.service_id
        )

    async def v2_list_events(
        self, service_id: str, stop_before: int | None
    ) -> list[AggregatedEvent]:
        """Aggregated events, most recently updated first, until the whole history
        (stop_before None) or a page that reaches records last updated before `stop_before`
        (ms): an event that occurred again has a new update_at, so it sorts before those. A
        record that grows while the pages are read moves to the front: it can be read twice
        (and is counted once), never missed."""
        path = self._path(service_id, "events", generation="v2")

        async def fetch(offset: int) -> tuple[int, tuple[AggregatedEvent, ...]]:
            params: list[tuple[str, object]] = [
                ("limit", V2_PAGE_SIZE),
                ("offset", offset),
                ("sort_dir", "DESC"),
                ("sort_key", "update_at"),
            ]
            return parse_v2_event_page(await self._get("v2_events", path, params))

        def older_than_needed(page: Sequence[AggregatedEvent]) -> bool:
            return stop_before is not None and min(e.update_at for e in page) < stop_before

        return await read_limit_pages(
            fetch,
            V2_PAGE_SIZE,
            endpoint="v2_events",
            key=lambda event: event.id,
            stop=older_than_needed,
        )

    # -- transport ----------------------------------------------------------------------------

    async def _get(self, endpoint: str, path: str, params: Sequence[tuple[str, object]]) -> Any:
        """GET with credentials, budget, retries; returns the decoded JSON body."""
        return _decode(await self._get_raw(endpoint, path, params), endpoint)

    async def _get_raw(
        self,
        endpoint: str,
        path: str,
        params: Sequence[tuple[str, object]],
        query: str | None = None,
    ) -> bytes:
        """GET with credentials, budget, retries; returns the body of a 2xx response.
        `query`, when given, is `canonical_query(params)` already."""
        if query is None and params:
            query = canonical_query(params)
        target = f"{path}?{query}" if query else path  # sent byte-for-byte as it is signed
        attempt = 0
        refreshed = False
        while True:
            self._check_auth_gate(endpoint)
            try:
                result = await self._attempt(endpoint, path, params, target)
            except AuthError as err:
                if (
                    err.status == 401
                    and not refreshed
                    and await self._auth.refresh_after_401(err.used_headers)
                ):
                    refreshed = True
                    continue
                if err.status == 401 or err.code == "ModelArts.0206":
                    self._trip_auth_gate()
                raise
            except (TransportError, ApiError) as err:
                if isinstance(err, ApiError) and err.throttling:
                    self._observer.throttled(endpoint)
                    self._limiter.throttled()
                retryable = isinstance(err, TransportError) or (
                    isinstance(err, ApiError) and err.retryable
                )
                if not retryable or attempt >= self._retry.retries:
                    raise
                delay = self._retry.backoff(attempt, self._rng)
                if isinstance(err, ApiError) and err.retry_after is not None:
                    delay = max(delay, min(err.retry_after, MAX_RETRY_AFTER))
                attempt += 1
                self._observer.retried(endpoint)
                await self._sleep(delay)
            else:
                self._auth_failures = 0
                return result

    async def _attempt(
        self, endpoint: str, path: str, params: Sequence[tuple[str, object]], target: str
    ) -> bytes:
        headers = await self._auth.headers(method="GET", host=self._host, path=path, query=params)
        async with self._limiter.slot():
            started = time.monotonic()
            try:
                resp = await self._http.request(
                    self._origin, "GET", target, headers, timeout=self._timeout
                )
            except HttpFailure as err:
                self._observer.request_done(endpoint, "error", time.monotonic() - started)
                raise TransportError(
                    f"{endpoint} request failed: {err}", endpoint=endpoint
                ) from None
        status = resp.status
        body = resp.body
        retry_after = _retry_after(resp.headers.get("retry-after")) if status >= 400 else None
        self._observer.request_done(endpoint, str(status), time.monotonic() - started)
        if status >= 400:
            code, message = _error_fields(body)
            failure = api_error(
                status, code or str(status), message, endpoint=endpoint, retry_after=retry_after
            )
            if isinstance(failure, AuthError):
                failure.used_headers = headers
            raise failure
        return body

    # -- credentials circuit breaker ------------------------------------------------------------

    def _check_auth_gate(self, endpoint: str) -> None:
        remaining = self._auth_blocked_until - time.monotonic()
        if remaining > 0:
            raise CredentialsError(
                f"credentials were rejected; next attempt in {remaining:.0f}s", endpoint=endpoint
            )

    def _trip_auth_gate(self) -> None:
        # The API gateway locks an access key after five bad signatures: back off instead of
        # sending every service's request with credentials that were just refused.
        self._auth_failures += 1
        self._auth_blocked_until = time.monotonic() + min(300.0, 2.0 ** (self._auth_failures - 1))


__all__ = ["ModelArtsClient", "ModelArtsError", "RetryPolicy"]
