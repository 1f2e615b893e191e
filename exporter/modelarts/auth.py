"""Credentials for ModelArts requests: a static token, IAM password tokens, or AK/SK signing.

Every strategy turns (method, host, path, query) into the headers to send. Secrets live only in
`Secret` objects and in the outgoing headers; they never reach a log line, an exception or a repr.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import urlsplit

from exporter.config import AuthConfig, ProjectConfig, Secret, iam_endpoint_for
from exporter.modelarts.errors import CredentialsError, TransportError
from exporter.modelarts.observer import ApiObserver
from exporter.modelarts.proxy import proxy_for
from exporter.modelarts.signing import sign_request
from exporter.modelarts.transport import HttpFailure, Transport, origin_for

JSON_CONTENT_TYPE = "application/json"


class RequestAuth(Protocol):
    """Adds credentials to one ModelArts request."""

    async def headers(
        self, *, method: str, host: str, path: str, query: Sequence[tuple[str, object]]
    ) -> dict[str, str]: ...

    async def refresh_after_401(self, used: Mapping[str, str]) -> bool:
        """Called once after a 401; True when a retry with fresh credentials makes sense."""
        ...


class StaticTokenAuth:
    """`auth.method: token`: one token, sent as X-Auth-Token."""

    def __init__(self, token: Secret) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "StaticTokenAuth(token=***)"

    async def headers(
        self, *, method: str, host: str, path: str, query: Sequence[tuple[str, object]]
    ) -> dict[str, str]:
        return {"Content-Type": JSON_CONTENT_TYPE, "X-Auth-Token": self._token.reveal()}

    async def refresh_after_401(self, used: Mapping[str, str]) -> bool:
        return False


class AkSkAuth:
    """`auth.method: aksk`: SDK-HMAC-SHA256 request signing."""

    def __init__(
        self,
        project_id: str,
        access_key: Secret,
        secret_key: Secret,
        security_token: Secret | None = None,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._project_id = project_id
        self._ak = access_key
        self._sk = secret_key
        self._security_token = security_token
        self._now = now

    def __repr__(self) -> str:
        return f"AkSkAuth(project_id={self._project_id!r}, keys=***)"

    async def headers(
        self, *, method: str, host: str, path: str, query: Sequence[tuple[str, object]]
    ) -> dict[str, str]:
        given = {"Content-Type": JSON_CONTENT_TYPE, "X-Project-Id": self._project_id}
        if self._security_token is not None:
            given["X-Security-Token"] = self._security_token.reveal()
        signed = sign_request(
            method=method,
            host=host,
            path=path,
            query=query,
            headers=given,
            body=None,
            access_key=self._ak.reveal(),
            secret_key=self._sk.reveal(),
            now=self._now(),
        )
        return signed.headers

    async def refresh_after_401(self, used: Mapping[str, str]) -> bool:
        return False


@dataclass(frozen=True)
class IamToken:
    value: Secret
    issued_at: float
    expires_at: float

    def refresh_due(self, now: float) -> bool:
        """Refresh when less than 10% of the lifetime (at most one hour) remains."""
        lifetime = max(0.0, self.expires_at - self.issued_at)
        margin = min(0.1 * lifetime, 3600.0)
        return now >= self.expires_at - margin


def _parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class IamPasswordAuth:
    """`auth.method: password`: a project-scoped IAM token, cached and refreshed before expiry.

    Concurrent requests share one refresh (single flight). A failed refresh backs off
    exponentially so a wrong password never turns into a tight loop against IAM."""

    MIN_BACKOFF = 1.0
    MAX_BACKOFF = 300.0

    def __init__(
        self,
        http: Transport,
        *,
        iam_endpoint: str,
        domain_name: str,
        user_name: str,
        password: Secret,
        project_id: str,
        timeout: float,
        observer: ApiObserver,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        url = iam_endpoint.rstrip("/") + "/v3/auth/tokens?nocatalog=true"
        self._origin = origin_for(url, proxy_for(url))
        parts = urlsplit(url)
        self._target = f"{parts.path}?{parts.query}"
        self._domain_name = domain_name
        self._user_name = user_name
        self._password = password
        self._project_id = project_id
        self._timeout = timeout
        self._observer = observer
        self._clock = clock
        self._monotonic = monotonic
        self._token: IamToken | None = None
        self._lock = asyncio.Lock()
        self._failures = 0
        self._blocked_until = 0.0
        self._last_error = ""

    def __repr__(self) -> str:
        return f"IamPasswordAuth(user={self._user_name!r}, project_id={self._project_id!r})"

    async def headers(
        self, *, method: str, host: str, path: str, query: Sequence[tuple[str, object]]
    ) -> dict[str, str]:
        token = await self.token()
        return {"Content-Type": JSON_CONTENT_TYPE, "X-Auth-Token": token.reveal()}

    async def refresh_after_401(self, used: Mapping[str, str]) -> bool:
        async with self._lock:
            current = self._token
            if current is not None and current.value.reveal() == used.get("X-Auth-Token"):
                self._token = None  # the token we used was rejected; the next call refreshes
        return True

    async def token(self) -> Secret:
        """A valid token, refreshed if due; raises CredentialsError."""
        current = self._token
        if current is not None and not current.refresh_due(self._clock()):
            return current.value
        async with self._lock:
            current = self._token
            now = self._clock()
            if current is not None and not current.refresh_due(now):
                return current.value
            if self._monotonic() < self._blocked_until:
                if current is not None and now < current.expires_at:
                    return current.value  # still valid; keep using it while IAM misbehaves
                raise CredentialsError(
                    f"IAM token unavailable: {self._last_error}", endpoint="token"
                )
            try:
                self._token = await self._fetch()
            except (CredentialsError, TransportError) as err:
                self._failures += 1
                backoff = min(self.MAX_BACKOFF, self.MIN_BACKOFF * 2 ** (self._failures - 1))
                self._blocked_until = self._monotonic() + backoff
                self._last_error = str(err)
                self._observer.token_refreshed(False)
                if current is not None and now < current.expires_at:
                    return current.value
                raise
            self._failures = 0
            self._blocked_until = 0.0
            self._observer.token_refreshed(True)
            return self._token.value

    def _body(self) -> bytes:
        return json.dumps(
            {
                "auth": {
                    "identity": {
                        "methods": ["password"],
                        "password": {
                            "user": {
                                "name": self._user_name,
                                "password": self._password.reveal(),
                                "domain": {"name": self._domain_name},
                            }
                        },
                    },
                    "scope": {"project": {"id": self._project_id}},
                }
            }
        ).encode()

    async def _fetch(self) -> IamToken:
        started = time.monotonic()
        try:
            resp = await self._http.request(
                self._origin,
                "POST",
                self._target,
                {"Content-Type": "application/json;charset=utf8"},
                self._body(),
                timeout=self._timeout,
            )
        except HttpFailure as err:
            self._observer.request_done("token", "error", time.monotonic() - started)
            raise TransportError(f"IAM request failed: {err}", endpoint="token") from None
        status, raw = resp.status, resp.body
        subject = resp.headers.get("x-subject-token", "")
        self._observer.request_done("token", str(status), time.monotonic() - started)
        if status != 201 or not subject:
            raise CredentialsError(
                f"IAM refused the token request: HTTP {status}", endpoint="token"
            )
        try:
            token = json.loads(raw)["token"]
            issued = _parse_iso(token["issued_at"])
            expires = _parse_iso(token["expires_at"])
        except (ValueError, KeyError, TypeError):
            raise CredentialsError("IAM token response malformed", endpoint="token") from None
        return IamToken(value=Secret(subject), issued_at=issued, expires_at=expires)


def build_auth(
    auth: AuthConfig,
    project: ProjectConfig,
    *,
    http: Transport,
    timeout: float,
    observer: ApiObserver,
) -> RequestAuth:
    """The credentials strategy for one project."""
    if auth.method == "token":
        assert auth.token is not None
        return StaticTokenAuth(auth.token)
    if auth.method == "aksk":
        assert auth.access_key is not None and auth.secret_key is not None
        return AkSkAuth(project.project_id, auth.access_key, auth.secret_key, auth.security_token)
    assert auth.password is not None
    return IamPasswordAuth(
        http,
        iam_endpoint=auth.iam_endpoint or iam_endpoint_for(project.region),
        domain_name=auth.domain_name or "",
        user_name=auth.user_name or "",
        password=auth.password,
        project_id=project.project_id,
        timeout=timeout,
        observer=observer,
    )
