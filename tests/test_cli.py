"""The command line as users run it: flags, --config.check exit codes, startup failures."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

ROOT = Path(__file__).resolve().parents[1]


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "MODELARTS_EXPORTER_CONFIG"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=ROOT,
    )


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("modelarts-exporter ")


def test_config_check_accepts_the_example() -> None:
    result = run(
        "--config.file=config.example.yaml",
        "--config.check",
        env={"MODELARTS_TOKEN": "t0ken-value"},
    )
    assert result.returncode == 0, result.stderr
    assert "t0ken-value" not in result.stderr + result.stdout


def test_config_check_via_environment_variable() -> None:
    result = run(
        "--config.check",
        env={"MODELARTS_TOKEN": "x", "MODELARTS_EXPORTER_CONFIG": "config.example.yaml"},
    )
    assert result.returncode == 0, result.stderr


GOOD = """
auth: {method: token, token: abc}
projects:
  - project_id: 0123456789abcdef0123456789abcdef
    region: cn-north-4
    endpoint: http://127.0.0.1:9  # nothing listens there: tests never leave loopback
    services: [s1]
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD.replace("project_id: 0123456789abcdef0123456789abcdef", "region2: x"),
            "projects[0].project_id: required",
        ),
        (GOOD + "bogus: 1\n", "bogus: unknown key"),
        (GOOD + "polling: {interval: 5x}\n", "polling.interval: invalid duration"),
    ],
)
def test_config_check_rejects_with_key_path(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    result = run(f"--config.file={path}", "--config.check")
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("broken", ["ca_file", "key_file", "name_pattern"])
def test_config_check_validates_what_start_up_will_need(tmp_path: Path, broken: str) -> None:
    """What start-up parses (the CA bundle, the web certificate and key, regexes) is parsed by
    --config.check too: the check cannot pass on a file that start-up would then refuse."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    served, other = ca.issue_cert("127.0.0.1"), ca.issue_cert("localhost")
    served.cert_chain_pems[0].write_to_path(str(tmp_path / "web.crt"))
    (other if broken == "key_file" else served).private_key_pem.write_to_path(
        str(tmp_path / "web.key")
    )
    if broken == "ca_file":
        (tmp_path / "ca.pem").write_text("this is not PEM\n")
    pattern = "prod-(" if broken == "name_pattern" else "^prod-"
    (tmp_path / "c.yaml").write_text(
        GOOD.replace("services: [s1]", f"discovery: {{enabled: true, name_pattern: '{pattern}'}}")
        + "tls: {ca_file: ca.pem}\n"
    )
    (tmp_path / "web.yml").write_text(
        "tls_server_config: {cert_file: web.crt, key_file: web.key}\n"
    )
    args = [f"--config.file={tmp_path / 'c.yaml'}", f"--web.config.file={tmp_path / 'web.yml'}"]
    result = run(*args, "--config.check")
    assert result.returncode == 1, result.stderr
    expected = {
        "ca_file": 'tls.ca_file: "ca.pem": no PEM certificate in it',
        "key_file": "tls_server_config.key_file: cannot be used with cert_file",
        "name_pattern": "projects[0].discovery.name_pattern: invalid regular expression",
    }[broken]
    assert expected in result.stderr
    assert "Traceback" not in result.stderr and "configuration is valid" not in result.stderr


def test_missing_config_file_exits_1(tmp_path: Path) -> None:
    result = run(f"--config.file={tmp_path / 'nope.yaml'}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "flags",
    [
        ["--shard=2", "--total-shards=2"],
        ["--web.listen-address=nonsense"],
        ["--log.level=loud"],
        ["--event-loop=trio"],
    ],
)
def test_bad_flags_exit_1(flags: list[str]) -> None:
    result = run("--demo", *flags)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr


def test_port_in_use_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(GOOD)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run(f"--config.file={path}", f"--web.listen-address=127.0.0.1:{port}")
    assert result.returncode == 2, result.stderr
    assert "cannot listen" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_json_logs_and_telemetry_path(tmp_path: Path, loop: str) -> None:
    import json
    import signal
    import time
    import urllib.request

    from tests.harness import free_port

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter",
            "--demo",
            "--log.format=json",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.telemetry-path=/custom",
            f"--event-loop={loop}",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        body = b""
        deadline = time.monotonic() + 20
        # the demo's mixed fleet: both generations, and resource usage from the monitor API
        wanted = (b'generation="v1"', b'generation="v2"', b"modelarts_service_model_cpu_cores{")
        while time.monotonic() < deadline and not all(w in body for w in wanted):
            time.sleep(0.2)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/custom", timeout=5) as r:
                    body = r.read()
            except OSError:
                continue
        assert all(w in body for w in wanted), body[-2000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    lines = [json.loads(line) for line in err.decode().splitlines() if line.strip()]
    assert any(entry["msg"] == "listening" for entry in lines)
    # the whole demo (simulator, polling over loopback, /metrics) ran on the chosen loop
    assert [e["event_loop"].split()[0] for e in lines if e["msg"] == "starting"] == [loop]
    assert all({"ts", "level", "msg"} <= set(entry) for entry in lines)
