"""How the cloud client reports what it does, without knowing about Prometheus."""

from __future__ import annotations

from typing import Protocol


class ApiObserver(Protocol):
    def request_done(self, endpoint: str, code: str, seconds: float) -> None: ...

    def retried(self, endpoint: str) -> None: ...

    def throttled(self, endpoint: str) -> None: ...

    def token_refreshed(self, ok: bool) -> None: ...
