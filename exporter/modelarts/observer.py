"""How the cloud client reports what it does, without knowing about Prometheus."""

from __future__ import annotations

from typing import Protocol


class ApiObserver(Protocol):
    def request_done(self, endpoint: str, code: str, seconds: float) -> None: ...

    def retried(self, endpoint: str) -> None: ...

    def token_refreshed(self, ok: bool) -> None: ...


class NullObserver:
    """An observer that forgets everything (tests, tools)."""

    def request_done(self, endpoint: str, code: str, seconds: float) -> None:
        pass

    def retried(self, endpoint: str) -> None:
        pass

    def token_refreshed(self, ok: bool) -> None:
        pass
