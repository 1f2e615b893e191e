"""The one exception tree of the cloud boundary.

Every foreign failure (connection, TLS, timeout, JSON, HTTP status, IAM) is translated where it
enters::

    ModelArtsError
    ├── TransportError          no usable HTTP response: connection refused/reset, timeout, TLS
    ├── ApiError                the API answered with status >= 400 (status, code, message)
    │   ├── NotFoundError       404, e.g. ModelArts.3502 "service does not exist"
    │   └── AuthError           401 / 403: credentials rejected
    ├── MalformedResponseError  2xx whose body is not the JSON shape we expect
    └── CredentialsError        no usable credentials (IAM refused or unreachable)

Messages never contain secrets: tokens, passwords, keys and Authorization headers stay out.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType


class ModelArtsError(Exception):
    """Base of every failure talking to ModelArts or IAM."""

    def __init__(self, message: str, *, endpoint: str = "") -> None:
        super().__init__(message)
        self.endpoint = endpoint

    @property
    def reason(self) -> str:
        """The failure in plain words, for the status page and logs (never a secret)."""
        return str(self)

    def _without_endpoint(self, text: str) -> str:
        for prefix in (f"{self.endpoint} request failed: ", f"{self.endpoint}: "):
            if self.endpoint and text.startswith(prefix):
                return text[len(prefix) :]
        return text


class TransportError(ModelArtsError):
    """No usable HTTP response (connection error, timeout, TLS failure)."""

    @property
    def reason(self) -> str:
        return self._without_endpoint(str(self))  # "timed out after 10 s"


class MalformedResponseError(ModelArtsError):
    """A 2xx response whose body could not be parsed into the expected shape."""

    @property
    def reason(self) -> str:
        return f"malformed response: {self._without_endpoint(str(self))}"


class CredentialsError(ModelArtsError):
    """Credentials could not be obtained or were refused by IAM."""


class ApiError(ModelArtsError):
    """The API answered with an HTTP error status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        endpoint: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"HTTP {status} {code}: {message}", endpoint=endpoint)
        self.status = status
        self.code = code
        self.error_msg = message
        self.retry_after = retry_after

    @property
    def reason(self) -> str:
        """`HTTP 503 ModelArts.0001: message`, or `throttled (HTTP 429 APIG.0308)`."""
        code = f"HTTP {self.status}" + (f" {self.code}" if self.code != str(self.status) else "")
        if self.throttling:
            return f"throttled ({code})"
        return f"{code}: {self.error_msg}" if self.error_msg else code

    @property
    def retryable(self) -> bool:
        return self.status == 429 or self.status >= 500

    @property
    def throttling(self) -> bool:
        """The answer said "slow down" (the gateway's or ModelArts' throttling)."""
        return self.status == 429 or self.code in THROTTLING_CODES


# API Gateway flow control, and ModelArts' "too many requests" / "threshold" / "system busy".
THROTTLING_CODES = frozenset(
    {"APIG.0308", "APIGW.0308", "ModelArts.2799", "ModelArts.4206", "ModelArts.6101"}
)


class NotFoundError(ApiError):
    """404: the service (or project) does not exist."""


class AuthError(ApiError):
    """401/403: the credentials were rejected."""

    # The headers of the rejected request, so a token refresh can tell whether the token that
    # failed is still the current one. Kept out of the message and repr.
    used_headers: Mapping[str, str] = MappingProxyType({})


def api_error(
    status: int, code: str, message: str, *, endpoint: str, retry_after: float | None = None
) -> ApiError:
    """Build the most specific ApiError for a status."""
    cls: type[ApiError] = ApiError
    if status == 404:
        cls = NotFoundError
    elif status in (401, 403):
        cls = AuthError
    return cls(status, code, message, endpoint=endpoint, retry_after=retry_after)
