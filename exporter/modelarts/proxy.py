"""Outbound proxies from the standard environment variables, resolved once per endpoint (aiohttp's
`trust_env=True` looks them up per request, in a thread).

NO_PROXY is read as curl, requests and urllib read it, with the union of their forms: `*`;
a host name matching the host or a parent domain (`x.com` and `.x.com` both cover `a.x.com`);
an IP address or CIDR block (`10.0.0.0/8`, `::1`) covering IP hosts; and any of these with
`:port`, which then covers that port only.
"""

from __future__ import annotations

import ipaddress
import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _split_entry(entry: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]:port`, `v6` or `cidr` → (host or network, port or None)."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return host, int(port) if port.isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
    return entry, None


def _covers(
    entry: str, host: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None
) -> bool:
    if ip is not None:
        try:
            return ip in ipaddress.ip_network(entry, strict=False)
        except ValueError:
            pass
    domain = entry.lstrip(".")
    return bool(domain) and (host == domain or host.endswith("." + domain))


def bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether NO_PROXY (`no_proxy`) sends requests to `host`:`port` directly."""
    host = host.lower().strip("[]")
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if entry == "*":
            return True
        if not entry:
            continue
        name, entry_port = _split_entry(entry)
        if entry_port is not None and entry_port != port:
            continue
        if _covers(name, host, ip):
            return True
    return False


def proxy_for(url: str, environ_proxies: Mapping[str, str] | None = None) -> str | None:
    """The proxy HTTP(S)_PROXY / NO_PROXY choose for `url`, or None for a direct connection."""
    proxies = (
        urllib.request.getproxies_environment() if environ_proxies is None else environ_proxies
    )
    parts = urlsplit(url)
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)
    except ValueError:
        port = 0
    if bypassed(parts.hostname or "", port, proxies.get("no", "")):
        return None
    return proxies.get(parts.scheme) or proxies.get("all")
