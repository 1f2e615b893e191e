"""IAM password tokens, AK/SK signing and secret hygiene, against the simulator."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import yaml

from exporter.config import AuthConfig, Secret
from exporter.simulator import Simulation, serve
from tests.harness import (
    free_port,
    manual_poller,
    one,
    parse_samples,
    pick,
    running_exporter,
    scrape,
    sim_config,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "Pa55-w0rd-never-logged"
AK = "AKTESTKEY0000000001"
SK = "SKTESTSECRET00000000000000000000never-logged"


def password_auth(url: str, password: str = PASSWORD) -> AuthConfig:
    return AuthConfig(
        method="password",
        iam_endpoint=url,
        domain_name="demo-domain",
        user_name="monitor",
        password=Secret(password),
    )


def secured_sim(**kwargs: object) -> Simulation:
    sim = Simulation(seed=21, services=3, dynamic=False, **kwargs)  # type: ignore[arg-type]
    sim.require_auth = True
    sim.add_iam_user(domain_name="demo-domain", user_name="monitor", password=PASSWORD)
    sim.add_access_key(AK, SK)
    return sim


@pytest.mark.e2e
async def test_ten_second_tokens_for_a_minute_without_gaps() -> None:
    sim = secured_sim(token_ttl=10.0)
    async with serve(sim) as api_url:
        config = sim_config(api_url, auth=password_auth(api_url), interval=1.0)
        async with running_exporter(config) as (url, exporter):
            await wait_until(exporter.ready, what="first cycle")
            failures = 0
            samples = await scrape(url)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                await asyncio.sleep(1.0)
                samples = await scrape(url)
                # no gap in the data: every service keeps its series all minute long
                assert len(pick(samples, "modelarts_service_info")) == 3
                failures = int(
                    sum(pick(samples, "modelarts_exporter_api_requests_total", code="401"))
                )
            refreshes = one(samples, "modelarts_exporter_token_refreshes_total")
            # one token per 9 s (refreshed with 10% of its 10 s lifetime left), plus the first
            assert 6 <= refreshes <= 9, refreshes
            assert one(samples, "modelarts_exporter_token_refresh_failures_total") == 0
            # at most one rejected request per expiry (here: none, tokens are renewed early)
            assert failures <= refreshes
            assert all(v == 1 for v in pick(samples, "modelarts_exporter_collect_success"))
            assert sim.stats.count("token") == refreshes


async def test_token_rejected_by_modelarts_is_refreshed_once_and_retried() -> None:
    sim = secured_sim()
    async with (
        serve(sim) as api_url,
        manual_poller(sim_config(api_url, auth=password_auth(api_url))) as (poller, exporter),
    ):
        project = poller.project_ids[0]
        await poller.run_cycle(project)
        assert sim.stats.count("token") == 1
        sim.revoke_tokens()  # every issued token is now refused with 401
        await poller.run_cycle(project)
        samples = parse_samples(exporter.exposition.body(gzipped=False).decode())
        # concurrent requests that hit the 401 shared a single refresh
        assert sim.stats.count("token") == 2
        assert all(v == 1 for v in pick(samples, "modelarts_exporter_collect_success"))
        assert one(samples, "modelarts_exporter_token_refreshes_total") == 2


async def test_wrong_password_is_counted_and_backs_off() -> None:
    sim = secured_sim()
    async with serve(sim) as api_url:
        config = sim_config(api_url, auth=password_auth(api_url, "wrong"), interval=0.1)
        async with running_exporter(config) as (url, exporter):
            await wait_until(exporter.ready, what="first cycle")
            await asyncio.sleep(3.0)
            samples = await scrape(url)
            # ~30 cycles in 3 s, but IAM is asked with exponential backoff (1 s, 2 s, ...)
            assert 1 <= sim.stats.count("token") <= 3
            assert one(
                samples, "modelarts_exporter_token_refresh_failures_total"
            ) == sim.stats.count("token")
            assert pick(samples, "modelarts_exporter_build_info") == [1]  # own metrics still served
            assert all(v == 0 for v in pick(samples, "modelarts_exporter_collect_success"))


async def test_aksk_every_request_verifies() -> None:
    sim = secured_sim()
    auth = AuthConfig(method="aksk", access_key=Secret(AK), secret_key=Secret(SK))
    async with (
        serve(sim) as api_url,
        manual_poller(sim_config(api_url, auth=auth)) as (poller, exporter),
    ):
        for _ in range(3):
            await poller.run_cycle(poller.project_ids[0])
        total = sum(sim.stats.by_endpoint().values())
        assert total >= 3 * 3 * 2
        assert sim.stats.signature_verified == total
        assert sim.stats.auth_failures == 0
        samples = parse_samples(exporter.exposition.body(gzipped=False).decode())
        assert len(pick(samples, "modelarts_service_info")) == 3


async def test_aksk_wrong_secret_reported_and_backed_off() -> None:
    sim = secured_sim()
    auth = AuthConfig(method="aksk", access_key=Secret(AK), secret_key=Secret("not-the-secret"))
    async with serve(sim) as api_url:
        config = sim_config(
            api_url, auth=auth, interval=0.1, discovery=False, services=tuple(sim.services)
        )
        async with running_exporter(config) as (url, exporter):
            await wait_until(exporter.ready, what="first cycle")
            await asyncio.sleep(3.0)
            samples = await scrape(url)
    rejected = sim.stats.auth_failures
    # the first cycle sends one request per service; afterwards the client waits 1 s, 2 s, ...
    assert 1 <= rejected <= 3 * 2 * 3, rejected
    # the list comes first in every cycle: the rejection is reported there
    assert pick(samples, "modelarts_exporter_api_requests_total", endpoint="list", code="401")
    assert all(v == 0 for v in pick(samples, "modelarts_exporter_collect_success"))


@pytest.mark.parametrize("method", ["password", "aksk", "aksk-wrong", "password-wrong"])
async def test_debug_logs_never_contain_secrets(tmp_path: Path, method: str) -> None:
    sim = secured_sim(token_ttl=3.0)
    async with serve(sim) as api_url:
        project = next(iter(sim.services.values())).project_id
        (tmp_path / "sk").write_text(SK + "\n")
        auth: dict[str, object]
        if method.startswith("password"):
            auth = {
                "method": "password",
                "iam_endpoint": api_url,
                "domain_name": "demo-domain",
                "user_name": "monitor",
                "password": PASSWORD if method == "password" else PASSWORD + "x",
            }
        else:
            auth = {
                "method": "aksk",
                "access_key": AK,
                "secret_key_file": str(tmp_path / "sk") if method == "aksk" else None,
            }
            if method == "aksk-wrong":
                auth["secret_key"] = SK[::-1]
                del auth["secret_key_file"]
        config = {
            "auth": auth,
            "projects": [
                {
                    "project_id": project,
                    "region": "cn-north-4",
                    "endpoint": api_url,
                    "discovery": {"enabled": True},
                }
            ],
            "polling": {"interval": "300ms", "discovery_interval": "1s", "retries": 1},
        }
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(config))
        port = free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter",
                f"--config.file={path}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=debug",
            ],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            await asyncio.sleep(5.0)  # a few token lifetimes / failures
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{port}/metrics") as r,
            ):
                metrics_text = await r.text()
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
    logs = err.decode()
    assert "level=debug" in logs or "level=info" in logs  # the logs were captured
    issued = list(sim.identity._tokens)  # every token the fake IAM handed out
    for secret in [PASSWORD, SK, SK[::-1], *issued]:
        assert secret not in logs
        assert secret not in metrics_text
    assert "Authorization" not in logs and "X-Auth-Token" not in logs
    assert proc.returncode == 0


async def test_outbound_tls_is_verified_and_ca_file_adds_a_private_ca(tmp_path: Path) -> None:
    import ssl
    from dataclasses import replace

    import trustme
    from aiohttp import web

    from exporter.config import TlsConfig
    from exporter.simulator import create_app

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    sim = Simulation(seed=22, services=2, dynamic=False)
    runner = web.AppRunner(create_app(sim), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
        await site.start()
        port = runner.addresses[0][1]
        base = sim_config(f"https://127.0.0.1:{port}", retries=0)
        async with manual_poller(base) as (poller, exporter):  # system roots only: refused
            await poller.run_cycle(poller.project_ids[0])
            samples = parse_samples(exporter.exposition.body(gzipped=False).decode())
            assert pick(samples, "modelarts_service_info") == []
            assert pick(
                samples, "modelarts_exporter_api_requests_total", endpoint="list", code="error"
            )
        trusted = replace(base, tls=TlsConfig(ca_file=str(tmp_path / "ca.pem")))
        async with manual_poller(trusted) as (poller, exporter):
            await poller.run_cycle(poller.project_ids[0])
            samples = parse_samples(exporter.exposition.body(gzipped=False).decode())
            assert len(pick(samples, "modelarts_service_info")) == 2
    finally:
        await runner.cleanup()
