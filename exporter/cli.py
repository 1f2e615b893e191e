"""Command line: flags (Prometheus exporter conventions), exit codes, signals, run loop.

Exit codes: 0 normal stop, 1 invalid configuration or flags, 2 unexpected startup failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.metadata
import logging
import os
import platform
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

from exporter import __version__, webconfig
from exporter.app import Exporter, RunOptions, build_app
from exporter.config import (
    AuthConfig,
    Config,
    ConfigError,
    DiscoveryConfig,
    PollingConfig,
    ProjectConfig,
    Secret,
    load_config,
)
from exporter.logs import LEVELS, setup_logging

log = logging.getLogger("exporter")

DEFAULT_CONFIG = "modelarts-exporter.yaml"
DEFAULT_LISTEN = ":39130"
SHUTDOWN_TIMEOUT = 10.0
# The web server's limits (README "Reliability"). An idle connection, or one whose request head
# is not complete, is closed this many seconds after its last response (or after it opened):
# aiohttp's own default is an hour, which lets slow clients hold sockets at will.
SERVER_LIMITS = {
    "keepalive_timeout": 30.0,
    "max_line_size": 8190,  # request line and each header line, bytes
    "max_field_size": 8190,  # one header, bytes
    "max_headers": 128,  # headers per request
}


class UsageError(Exception):
    """A bad flag value: exit 1 with the message."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="modelarts-exporter",
        description="Prometheus exporter for Huawei Cloud ModelArts inference services.",
    )
    p.add_argument(
        "--config.file",
        dest="config_file",
        metavar="PATH",
        default=None,
        help=f"YAML configuration (env MODELARTS_EXPORTER_CONFIG; default {DEFAULT_CONFIG})",
    )
    p.add_argument(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="validate the configuration (and web configuration) and exit",
    )
    p.add_argument(
        "--web.listen-address", dest="listen", default=DEFAULT_LISTEN, metavar="HOST:PORT"
    )
    p.add_argument(
        "--web.telemetry-path", dest="telemetry_path", default="/metrics", metavar="PATH"
    )
    p.add_argument(
        "--web.config.file",
        dest="web_config",
        default=None,
        metavar="PATH",
        help="exporter-toolkit web configuration: TLS and basic auth",
    )
    p.add_argument(
        "--web.enable-lifecycle",
        dest="enable_lifecycle",
        action="store_true",
        help="allow POST /-/reload (SIGHUP always reloads)",
    )
    p.add_argument("--log.level", dest="log_level", default="info", choices=sorted(LEVELS))
    p.add_argument("--log.format", dest="log_format", default="logfmt", choices=("logfmt", "json"))
    p.add_argument(
        "--demo",
        action="store_true",
        help="run against an in-process simulator with a built-in configuration",
    )
    p.add_argument("--shard", type=int, default=0, help="this replica's shard index (0-based)")
    p.add_argument(
        "--total-shards",
        dest="total_shards",
        type=int,
        default=1,
        help="number of replicas splitting the services",
    )
    p.add_argument(
        "--event-loop",
        dest="event_loop",
        default="auto",
        choices=("auto", "asyncio", "uvloop"),
        help="auto: uvloop when it is installed (the [uvloop] extra), else asyncio's own",
    )
    p.add_argument("--version", action="store_true", help="print the version and exit")
    return p


def parse_listen(address: str) -> tuple[str | None, int]:
    """':39130' -> all interfaces; '127.0.0.1:9000'; '[::1]:9000'."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"--web.listen-address: invalid address {address!r} (want HOST:PORT)")
    host = host.strip("[]")
    return (host or None), int(port_text)


@dataclass(frozen=True)
class Args:
    config_file: str
    config_check: bool
    host: str | None
    port: int
    telemetry_path: str
    web_config: str | None
    log_level: str
    log_format: str
    demo: bool
    options: RunOptions
    event_loop: str = "auto"


def parse_args(argv: Sequence[str]) -> Args | None:
    ns = build_parser().parse_args(list(argv))
    if ns.version:
        return None
    if ns.total_shards < 1:
        raise UsageError("--total-shards: must be >= 1")
    if not 0 <= ns.shard < ns.total_shards:
        raise UsageError(f"--shard: must be in [0, {ns.total_shards - 1}]")
    if not ns.telemetry_path.startswith("/"):
        raise UsageError("--web.telemetry-path: must start with /")
    host, port = parse_listen(ns.listen)
    config_file = ns.config_file or os.environ.get("MODELARTS_EXPORTER_CONFIG") or DEFAULT_CONFIG
    return Args(
        config_file=config_file,
        config_check=ns.config_check,
        host=host,
        port=port,
        telemetry_path=ns.telemetry_path,
        web_config=ns.web_config,
        log_level=ns.log_level,
        log_format=ns.log_format,
        demo=ns.demo,
        event_loop=ns.event_loop,
        options=RunOptions(
            telemetry_path=ns.telemetry_path,
            shard=ns.shard,
            total_shards=ns.total_shards,
            enable_lifecycle=ns.enable_lifecycle,
        ),
    )


def event_loop_factory(choice: str) -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    """The loop factory for `--event-loop` (None: asyncio's default) and its name, for the log."""
    if choice == "asyncio":
        return None, "asyncio"
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise UsageError(
                "--event-loop=uvloop: uvloop is not installed"
                " (pip install 'modelarts-exporter[uvloop]')"
            ) from None
        return None, "asyncio"
    return uvloop.new_event_loop, f"uvloop {importlib.metadata.version('uvloop')}"


def demo_config(endpoint: str, project_id: str) -> Config:
    """The built-in configuration of --demo: everything the simulator serves, polled briskly."""
    return Config(
        auth=AuthConfig(method="token", token=Secret("demo-token")),
        projects=(
            ProjectConfig(
                project_id=project_id,
                region="cn-north-4",
                endpoint=endpoint,
                discovery=DiscoveryConfig(enabled=True),
            ),
        ),
        polling=PollingConfig(
            interval=2.0,
            logs_interval=60.0,
            monitor_interval=10.0,
            discovery_interval=10.0,
            timeout=5.0,
            max_concurrency=8,
            max_requests_per_second=50.0,
            stale_after=60.0,
            events_lookback=600.0,
        ),
    )


@contextlib.asynccontextmanager
async def _demo_simulator() -> AsyncIterator[Config]:
    from exporter.simulator import DEFAULT_PROJECT_ID, Simulation, serve

    # A mixed fleet: classic (v1) services, a seed whose fleet includes auto-stop ones, and
    # new-generation (v2) services beside them.
    sim = Simulation(seed=3, services=8, v2_services=4)
    async with serve(sim) as url:
        log.info("demo simulator started", extra={"url": url, "services": len(sim.services)})
        yield demo_config(url, DEFAULT_PROJECT_ID)


def tune_gc() -> None:
    """Make full garbage collections rare: every cycle allocates (and frees) hundreds of
    thousands of small objects, and a full pass over the long-lived state, which holds no
    cycles worth collecting, took hundreds of milliseconds at thousands of services and stalled
    scrapes. What was allocated at start-up is frozen out of collection altogether.

    The middle generation is collected about once every ten cycles instead of several times
    per cycle: what a cycle builds (snapshots, rendered lines) lives one cycle and is freed by
    reference counting before that collection would walk it."""
    gc.collect()
    gc.freeze()
    gen0, _, _ = gc.get_threshold()
    gc.set_threshold(gen0, 1000, 1000)


async def _serve(args: Args, config: Config | None, web_cfg: webconfig.WebConfig | None) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        if config is None:
            config = await stack.enter_async_context(_demo_simulator())
        loader = None if args.demo else (lambda: load_config(args.config_file))
        exporter = Exporter(config, args.options, loader=loader)
        app = build_app(exporter)
        live = None
        if args.web_config is not None and web_cfg is not None:
            live = webconfig.LiveWebConfig(args.web_config, web_cfg)
            live.attach(app)
        runner = web.AppRunner(
            app,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            access_log=None,
            **SERVER_LIMITS,  # type: ignore[arg-type]
        )
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        ssl_context = None
        if live is not None:
            # users, headers and certificates follow their files (exporter-toolkit re-reads too)
            ssl_context = live.tls.context if live.tls is not None else None
            reloader = webconfig.start_web_config_reloader(live)
            stack.callback(reloader.cancel)
        site = web.TCPSite(runner, args.host, args.port, ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as err:
            log.error(
                "cannot listen",
                extra={
                    "address": f"{args.host or ''}:{args.port}",
                    "error": err.strerror or str(err),
                },
            )
            return 2
        scheme = "https" if ssl_context else "http"
        log.info(
            "listening",
            extra={
                "address": f"{scheme}://{args.host or '0.0.0.0'}:{args.port}",
                "telemetry_path": args.telemetry_path,
            },
        )

        def on_hup() -> None:
            task = loop.create_task(exporter.reload())
            task.add_done_callback(lambda t: t.exception())

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, on_hup)
        await stop.wait()
        log.info("shutting down")
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as err:
        print(f"modelarts-exporter: {err}", file=sys.stderr)
        return 1
    if args is None:
        print(f"modelarts-exporter {__version__} (python {platform.python_version()})")
        return 0
    try:
        loop_factory, loop_name = event_loop_factory(args.event_loop)
    except UsageError as err:
        print(f"modelarts-exporter: {err}", file=sys.stderr)
        return 1
    setup_logging(args.log_level, args.log_format)
    config: Config | None = None
    web_cfg: webconfig.WebConfig | None = None
    try:
        if not args.demo or args.config_check:
            config = load_config(args.config_file)
        if args.web_config:
            web_cfg = webconfig.load_web_config(args.web_config)
    except ConfigError as err:
        for problem in err.problems:
            print(f"{args.config_file}: {problem}", file=sys.stderr)
        return 1
    except webconfig.WebConfigError as err:
        for problem in err.problems:
            print(f"{args.web_config}: {problem}", file=sys.stderr)
        return 1
    if args.config_check:
        print(f"{args.config_file}: configuration is valid", file=sys.stderr)
        return 0
    tune_gc()
    log.info("starting", extra={"version": __version__, "event_loop": loop_name})
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(_serve(args, config, web_cfg))
    except KeyboardInterrupt:
        return 0
