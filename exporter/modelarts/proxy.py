"""Outbound proxies from the standard environment variables, resolved once per endpoint (a
lookup per request, as aiohttp's `trust_env=True` did, was once the largest CPU cost of a poll)."""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit


def _bypassed(host: str, no_proxy: str) -> bool:
    """NO_PROXY as curl reads it: `*`, or entries matching the host or a parent domain."""
    host = host.lower().strip("[]")
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if entry == "*":
            return True
        domain = entry.lstrip(".")
        if domain and (host == domain or host.endswith("." + domain)):
            return True
    return False


def proxy_for(url: str, environ_proxies: Mapping[str, str] | None = None) -> str | None:
    """The proxy HTTP(S)_PROXY / NO_PROXY choose for `url`, or None for a direct connection."""
    proxies = (
        urllib.request.getproxies_environment() if environ_proxies is None else environ_proxies
    )
    parts = urlsplit(url)
    if _bypassed(parts.hostname or "", proxies.get("no", "")):
        return None
    return proxies.get(parts.scheme)
