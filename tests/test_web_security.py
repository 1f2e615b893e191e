"""The exporter process with --web.config.file (TLS, mTLS, basic auth) and configuration reloads."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import aiohttp
import bcrypt
import pytest
import trustme
import yaml

from exporter.simulator import Simulation, serve
from tests.harness import Samples, free_port, one, parse_samples, pick, wait_until

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "s3cret-scrape-password"
TIMEOUT = aiohttp.ClientTimeout(total=10)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@contextmanager
def exporter_process(
    *args: str, log: Path | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """The exporter as a process; its log goes to `log` when given (else it is discarded)."""
    port = free_port()
    with contextlib.ExitStack() as files:
        stderr = files.enter_context(log.open("wb")) if log is not None else subprocess.PIPE
        proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", f"--web.listen-address=127.0.0.1:{port}", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.communicate()


async def _status(url: str, **kwargs: object) -> int | None:
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http, http.get(url, **kwargs) as resp:  # type: ignore[arg-type]
            await resp.read()
            return resp.status
    except (aiohttp.ClientError, ssl.SSLError, ConnectionError):
        return None


@pytest.fixture
def pki(tmp_path: Path) -> tuple[trustme.CA, trustme.LeafCert, Path]:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("prometheus@example.com")
    (tmp_path / "server.crt").write_bytes(b"".join(b.bytes() for b in server.cert_chain_pems))
    (tmp_path / "server.key").write_bytes(server.private_key_pem.bytes())
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    return ca, client, tmp_path


def _client_ctx(ca: trustme.CA, cert: trustme.LeafCert | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    if cert is not None:
        cert.configure_cert(ctx)
    return ctx


async def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    async def open_() -> bool:
        assert proc.poll() is None, proc.communicate()[1].decode()
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        await writer.wait_closed()
        return True

    await wait_until(open_, timeout=20, interval=0.1, what="exporter listening")


async def test_tls_with_basic_auth(pki: tuple[trustme.CA, trustme.LeafCert, Path]) -> None:
    ca, _, d = pki
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    (d / "web.yml").write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"},
                "basic_auth_users": {"prometheus": hashed},
            }
        )
    )
    with exporter_process("--demo", f"--web.config.file={d / 'web.yml'}") as (proc, port):
        await _wait_listening(port, proc)
        https = f"https://127.0.0.1:{port}"
        ctx = _client_ctx(ca)
        assert await _status(f"http://127.0.0.1:{port}/metrics") is None  # plain HTTP refused
        assert await _status(f"{https}/metrics", ssl=ctx) == 401
        assert (
            await _status(f"{https}/metrics", ssl=ctx, headers=basic("prometheus", "nope")) == 401
        )
        assert (
            await _status(f"{https}/metrics", ssl=ctx, headers=basic("intruder", PASSWORD)) == 401
        )
        assert await _status(f"{https}/-/ready", ssl=ctx) == 401
        assert await _status(f"{https}/-/healthy", ssl=ctx) == 200  # stays open
        assert (
            await _status(f"{https}/metrics", ssl=ctx, headers=basic("prometheus", PASSWORD)) == 200
        )
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as http,
            http.get(f"{https}/metrics", ssl=ctx, headers=basic("prometheus", PASSWORD)) as resp,
        ):
            assert "modelarts_exporter_build_info" in await resp.text()
    _, err = proc.communicate() if proc.returncode is None else (b"", b"")
    assert PASSWORD.encode() not in err


async def test_mtls_requires_a_client_certificate(
    pki: tuple[trustme.CA, trustme.LeafCert, Path],
) -> None:
    ca, client, d = pki
    (d / "web.yml").write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {
                    "cert_file": "server.crt",
                    "key_file": "server.key",
                    "client_auth_type": "RequireAndVerifyClientCert",
                    "client_ca_file": "ca.crt",
                }
            }
        )
    )
    with exporter_process("--demo", f"--web.config.file={d / 'web.yml'}") as (proc, port):
        await _wait_listening(port, proc)
        https = f"https://127.0.0.1:{port}/metrics"
        assert await _status(https, ssl=_client_ctx(ca)) is None
        assert await _status(https, ssl=_client_ctx(ca, client)) == 200


def test_config_check_validates_the_web_config(tmp_path: Path) -> None:
    (tmp_path / "web.yml").write_text("tls_server_config:\n  cert_file: missing.crt\nbogus: 1\n")
    (tmp_path / "c.yaml").write_text(
        "auth: {method: token, token: t}\n"
        "projects: [{project_id: p1, region: cn-north-4, endpoint: 'http://127.0.0.1:9',"
        " services: [s]}]\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            f"--config.file={tmp_path / 'c.yaml'}",
            f"--web.config.file={tmp_path / 'web.yml'}",
            "--config.check",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert "tls_server_config" in result.stderr and "bogus" in result.stderr
    assert "Traceback" not in result.stderr


@asynccontextmanager
async def _metrics_of(port: int) -> AsyncIterator[Samples]:
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as r,
    ):
        yield parse_samples(await r.text())


def _config_yaml(project: str, api_url: str, services: list[str]) -> str:
    """A configuration watching `services` of the simulator at `api_url`, polled fast."""
    project_doc = {
        "project_id": project,
        "region": "cn-north-4",
        "endpoint": api_url,
        "services": services,
    }
    return yaml.safe_dump(
        {
            "auth": {"method": "token", "token": "t"},
            "projects": [project_doc],
            "polling": {"interval": "300ms"},
        }
    )


async def test_http_reload_is_refused_without_the_lifecycle_flag_and_sighup_still_works(
    tmp_path: Path,
) -> None:
    sim = Simulation(seed=42, services=3, dynamic=False)
    first, second, *_ = list(sim.services)
    project = sim.services[first].project_id
    async with serve(sim) as api_url:

        def write(services: list[str]) -> str:
            return _config_yaml(project, api_url, services)

        path = tmp_path / "c.yaml"
        path.write_text(write([first]))
        with exporter_process(f"--config.file={path}") as (proc, port):
            await _wait_listening(port, proc)

            async def has(sid: str) -> bool:
                async with _metrics_of(port) as s:
                    return bool(pick(s, "modelarts_service_info", service_id=sid))

            await wait_until(lambda: has(first), timeout=10, what="first service")
            path.write_text(write([first, second]))
            async with (
                aiohttp.ClientSession(timeout=TIMEOUT) as http,
                http.post(f"http://127.0.0.1:{port}/-/reload") as resp,
            ):
                assert resp.status == 403
                assert "--web.enable-lifecycle" in await resp.text()
            await asyncio.sleep(1.0)  # three cycles: a reload would have shown by now
            assert not await has(second)
            proc.send_signal(signal.SIGHUP)
            await wait_until(lambda: has(second), timeout=10, what="SIGHUP reload")
        assert proc.returncode == 0


async def test_reload_broken_then_fixed_via_http_and_sighup(tmp_path: Path) -> None:
    sim = Simulation(seed=41, services=4, dynamic=False)
    first, second, *_ = list(sim.services)
    project = sim.services[first].project_id
    async with serve(sim) as api_url:

        def write(services: list[str]) -> str:
            return _config_yaml(project, api_url, services)

        path = tmp_path / "c.yaml"
        path.write_text(write([first]))
        with exporter_process(f"--config.file={path}", "--web.enable-lifecycle") as (proc, port):
            await _wait_listening(port, proc)

            async def has(sid: str) -> bool:
                async with _metrics_of(port) as s:
                    return bool(pick(s, "modelarts_service_info", service_id=sid))

            await wait_until(lambda: has(first), timeout=10, what="first service")
            path.write_text("auth: {method: token\nprojects: [")  # broken YAML
            async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
                async with http.post(f"http://127.0.0.1:{port}/-/reload") as resp:
                    assert resp.status == 500
                    assert "invalid" in (await resp.text())
                async with http.get(f"http://127.0.0.1:{port}/-/reload") as resp:
                    assert resp.status == 405
            async with _metrics_of(port) as s:
                assert one(s, "modelarts_exporter_config_last_reload_successful") == 0
                assert pick(s, "modelarts_service_info", service_id=first)  # still serving
                before = one(s, "modelarts_service_invocations_total", service_id=first)
            path.write_text(write([first, second]))
            proc.send_signal(signal.SIGHUP)

            async def applied() -> bool:
                async with _metrics_of(port) as s:
                    return one(s, "modelarts_exporter_config_last_reload_successful") == 1 and bool(
                        pick(s, "modelarts_service_info", service_id=second)
                    )

            await wait_until(applied, timeout=10, what="reload applied")
            async with _metrics_of(port) as s:
                # the service that stayed watched kept its series through the reload
                assert one(s, "modelarts_service_invocations_total", service_id=first) >= before
                assert one(s, "modelarts_exporter_watched_services") == 2
        assert proc.returncode == 0


async def test_users_and_headers_follow_the_web_config_file(tmp_path: Path) -> None:
    """A revoked password stops working without a restart; a broken file changes nothing."""
    old_hash = bcrypt.hashpw(b"old-password", bcrypt.gensalt(rounds=4)).decode()
    new_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web_yml = tmp_path / "web.yml"

    def write(users: dict[str, str], header: str) -> None:
        doc = {
            "basic_auth_users": users,
            "http_server_config": {"headers": {"X-Config-Generation": header}},
        }
        # Written aside and renamed, as configuration management does: never half a file.
        (tmp_path / "web.tmp").write_text(yaml.safe_dump(doc))
        (tmp_path / "web.tmp").replace(web_yml)

    async def answer(user: str, password: str) -> tuple[int, str | None]:
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as http,
            http.get(f"http://127.0.0.1:{port}/metrics", headers=basic(user, password)) as resp,
        ):
            await resp.read()
            return resp.status, resp.headers.get("X-Config-Generation")

    write({"alice": old_hash}, "1")
    log = tmp_path / "exporter.log"
    with exporter_process("--demo", f"--web.config.file={web_yml}", log=log) as (proc, port):
        await _wait_listening(port, proc)
        assert await answer("alice", "old-password") == (200, "1")
        write({"bob": new_hash}, "2")  # alice revoked, bob added

        async def switched() -> bool:
            return await answer("bob", PASSWORD) == (200, "2")

        await wait_until(switched, timeout=15, interval=0.2, what="new users applied")
        assert await answer("alice", "old-password") == (401, "2")
        web_yml.write_text("basic_auth_users: [not, a, mapping]\n")
        await asyncio.sleep(3)  # more than one check interval: the broken file was read
        assert await answer("bob", PASSWORD) == (200, "2")
        assert await answer("alice", "old-password") == (401, "2")
        assert proc.poll() is None
    stderr = log.read_text()
    assert "web config reload failed" in stderr and "basic_auth_users" in stderr
    assert new_hash not in stderr and old_hash not in stderr
