"""Proxies from the environment: resolved once per endpoint, and really used."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from exporter.modelarts.proxy import proxy_for
from exporter.simulator import Simulation, serve
from tests.harness import exposed, manual_poller, pick, sim_config


@pytest.mark.parametrize(
    ("url", "env", "expected"),
    [
        ("https://modelarts.x.com", {"https": "http://p:3128"}, "http://p:3128"),
        ("http://127.0.0.1:8080", {"http": "http://p:1"}, "http://p:1"),
        ("https://modelarts.x.com", {"http": "http://p:1"}, None),
        ("https://modelarts.x.com", {"https": "http://p:1", "no": "x.com"}, None),
        ("https://modelarts.x.com", {"https": "http://p:1", "no": ".x.com"}, None),
        ("https://modelarts.x.com", {"https": "http://p:1", "no": "y.com, *"}, None),
        ("https://modelarts.x.com", {"https": "http://p:1", "no": "odelarts.x.com"}, "http://p:1"),
        # CIDR blocks and addresses cover IP hosts (requests, curl 7.86+); names never match them
        ("http://10.1.2.3:8080", {"http": "http://p:1", "no": "10.0.0.0/8"}, None),
        ("http://10.1.2.3:8080", {"http": "http://p:1", "no": "10.1.2.3"}, None),
        ("http://11.1.2.3:8080", {"http": "http://p:1", "no": "10.0.0.0/8"}, "http://p:1"),
        ("http://[::1]:8080", {"http": "http://p:1", "no": "::1"}, None),
        ("http://[fd00::5]:80", {"http": "http://p:1", "no": "fd00::/8"}, None),
        ("https://modelarts.x.com", {"https": "http://p:1", "no": "10.0.0.0/8"}, "http://p:1"),
        # host:port covers that port only (requests, urllib); the scheme's default port counts
        ("https://modelarts.x.com", {"https": "http://p:1", "no": "x.com:443"}, None),
        ("https://modelarts.x.com:8443", {"https": "http://p:1", "no": "x.com:443"}, "http://p:1"),
        ("http://127.0.0.1:9000", {"http": "http://p:1", "no": "127.0.0.1:9000"}, None),
        ("http://[::1]:9000", {"http": "http://p:1", "no": "[::1]:9000"}, None),
        ("http://[::1]:9001", {"http": "http://p:1", "no": "[::1]:9000"}, "http://p:1"),
        # ALL_PROXY when the scheme has none (curl, requests)
        ("https://modelarts.x.com", {"all": "http://p:2"}, "http://p:2"),
        ("https://modelarts.x.com", {"all": "http://p:2", "https": "http://p:1"}, "http://p:1"),
    ],
)
def test_proxy_choice(url: str, env: dict[str, str], expected: str | None) -> None:
    assert proxy_for(url, env) == expected


async def test_requests_go_through_the_proxy_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []

    async def forward(request: web.Request) -> web.Response:
        seen.append(str(request.url))
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                request.url, headers={"X-Auth-Token": request.headers.get("X-Auth-Token", "")}
            ) as resp,
        ):
            return web.Response(
                status=resp.status, body=await resp.read(), content_type="application/json"
            )

    proxy = web.Application()
    proxy.router.add_route("GET", "/{tail:.*}", forward)
    runner = web.AppRunner(proxy, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        sim = Simulation(seed=51, services=2, dynamic=False)
        async with serve(sim) as api_url, manual_poller(sim_config(api_url)) as (poller, exporter):
            await poller.run_cycle(poller.project_ids[0])
            assert len(pick(exposed(exporter), "modelarts_service_info")) == 2
        assert seen and all(u.startswith(api_url) for u in seen)
        assert sim.stats.count() == len(seen)
    finally:
        await runner.cleanup()
