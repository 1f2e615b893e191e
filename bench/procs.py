"""Child processes of the benchmark and what /proc says about them.

Every child is started by us, remembered by its PID and ended by that PID (SIGTERM, then SIGKILL
after a grace period); nothing is ever looked up or signalled by name.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def child_env() -> dict[str, str]:
    """The environment for children: the exporter honours proxy variables, and a proxy between
    it and the loopback simulator would be measured instead of the exporter."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else "")
    return env


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def spawn(name: str, argv: list[str], log_path: Path) -> Child:
    """Start `argv` with stdout and stderr going to `log_path` (a file, so no pipe can fill)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Child(name, proc, log_path)


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


async def wait_listening(child: Child, within: float) -> str:
    """The URL a child prints as `LISTENING <url>`; fails if it exits or the timeout passes."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            text = child.log_path.read_text(errors="replace")
        except OSError:
            text = ""
        for line in text.splitlines():
            if line.startswith("LISTENING "):
                return line.split(" ", 1)[1].strip()
        if child.proc.poll() is not None:
            raise RuntimeError(
                f"{child.name} exited with {child.proc.returncode}:\n{child.log_tail()}"
            )
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{child.name} did not start listening within {within:.0f}s")


async def stop(child: Child, grace: float = 10.0) -> None:
    """End one child by its PID: SIGTERM, then SIGKILL if it is still there after `grace`."""
    proc = child.proc
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(max(1, int(grace / 0.05))):
        if proc.poll() is not None:
            break
        await asyncio.sleep(0.05)
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        for _ in range(100):
            if proc.poll() is not None:
                break
            await asyncio.sleep(0.05)


def free_port() -> int:
    """A loopback port free right now (the exporter takes a fixed port on its command line)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name may contain spaces and parentheses; the fields start after the last ")".
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLK_TCK


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB, from /proc/<pid>/status."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]
