"""`modelarts-simulator`: serve a simulated fleet until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from collections.abc import Callable

from exporter import __version__
from exporter.simulator.app import serve
from exporter.simulator.scenario import DEFAULT_PROJECT_ID, Simulation

log = logging.getLogger("exporter.simulator")


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def _pair(separator: str, what: str) -> Callable[[str], tuple[str, str]]:
    def parse(text: str) -> tuple[str, str]:
        left, sep, right = text.partition(separator)
        if not sep or not left or not right:
            raise argparse.ArgumentTypeError(f"expected {what}")
        return left, right

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The simulator's command line."""
    parser = argparse.ArgumentParser(
        prog="modelarts-simulator",
        description="A fake ModelArts v1 + IAM API with life-like services (test data only).",
    )
    add = parser.add_argument
    add("--listen", type=_listen, default=("127.0.0.1", 8080), metavar="HOST:PORT")
    add("--services", type=int, default=5, help="number of v1 services (default 5)")
    add("--v2-services", type=int, default=0, help="number of v2 services (default 0)")
    add("--seed", type=int, default=0)
    add(
        "--project-id",
        action="append",
        dest="project_ids",
        metavar="ID",
        help=f"project to host services in; repeatable (default {DEFAULT_PROJECT_ID})",
    )
    add("--max-page-size", type=int, default=1000, help="server cap on 'limit'")
    add("--events-per-service", type=int, default=20)
    add("--token-ttl", type=_positive, default=86400.0, metavar="SECONDS")
    add("--static", action="store_true", help="no evolution over time (frozen fleet)")
    add(
        "--happening-interval",
        type=_positive,
        default=75.0,
        metavar="SECONDS",
        help="mean time between random happenings of one service (default 75)",
    )
    add("--require-auth", action="store_true", help="refuse requests without valid credentials")
    add(
        "--iam-user",
        action="append",
        default=[],
        type=_pair(":", "DOMAIN/USER:PASSWORD"),
        metavar="DOMAIN/USER:PASSWORD",
        help="an IAM user allowed to get tokens (fake credentials only); repeatable",
    )
    add(
        "--access-key",
        action="append",
        default=[],
        type=_pair(":", "AK:SK"),
        metavar="AK:SK",
        help="an accepted AK/SK pair (fake credentials only); repeatable",
    )
    add(
        "--static-token",
        action="append",
        default=[],
        metavar="TOKEN",
        help="a token accepted for the first project for ten years (fake only); repeatable",
    )
    add("--error-rate", type=_probability, default=0.0)
    add("--rate-429", type=_probability, default=0.0)
    add("--retry-after", type=float, default=1.0, metavar="SECONDS")
    add("--slow-rate", type=_probability, default=0.0)
    add("--slow-seconds", type=float, default=2.0)
    add("--malformed-rate", type=_probability, default=0.0)
    add("--drop-rate", type=_probability, default=0.0)
    add("--quota-per-second", type=int, default=None, metavar="N", help="account quota (429)")
    add("--quota-per-minute", type=int, default=None, metavar="N", help="account quota (429)")
    add("--strings", action="store_true", help="render numbers and booleans as JSON strings")
    add("--log.level", dest="log_level", default="info", choices=("debug", "info", "warn", "error"))
    add("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def build_simulation(args: argparse.Namespace) -> Simulation:
    """A Simulation configured from parsed arguments."""
    sim = Simulation(
        seed=args.seed,
        services=args.services,
        project_ids=args.project_ids or (DEFAULT_PROJECT_ID,),
        events_per_service=args.events_per_service,
        max_page_size=args.max_page_size,
        token_ttl=args.token_ttl,
        dynamic=not args.static,
        happening_interval=args.happening_interval,
        v2_services=args.v2_services,
    )
    sim.set_quota(args.quota_per_second, args.quota_per_minute)
    sim.require_auth = args.require_auth
    sim.string_numbers = args.strings
    for who, password in args.iam_user:
        domain_name, _, user_name = who.partition("/")
        if not user_name:
            raise ValueError("--iam-user: expected DOMAIN/USER:PASSWORD")
        sim.add_iam_user(domain_name=domain_name, user_name=user_name, password=password)
    for access_key, secret_key in args.access_key:
        sim.add_access_key(access_key, secret_key)
    first_project = next(iter(sim.project_names))
    for token in args.static_token:
        sim.add_static_token(token, first_project, time.time() + 10 * 365 * 86400)
    faults = sim.faults
    faults.error_rate = args.error_rate
    faults.rate_429 = args.rate_429
    faults.retry_after = args.retry_after
    faults.slow_rate = args.slow_rate
    faults.slow_seconds = args.slow_seconds
    faults.malformed_rate = args.malformed_rate
    faults.drop_rate = args.drop_rate
    return sim


async def _run(sim: Simulation, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serve(sim, host, port) as url:
        log.info(
            'msg="simulator listening" url=%s services=%d projects=%s require_auth=%s',
            url,
            len(sim.services),
            ",".join(sim.project_names),
            str(sim.require_auth).lower(),
        )
        await stop.wait()
    log.info('msg="simulator stopped"')


def main(argv: list[str] | None = None) -> int:
    """Entry point of `modelarts-simulator`; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {"warn": "WARNING"}.get(args.log_level, args.log_level.upper())
    logging.basicConfig(
        level=level, stream=sys.stderr, format="ts=%(asctime)s level=%(levelname)s %(message)s"
    )
    if args.services < 0 or args.max_page_size < 1 or args.events_per_service < 0:
        parser.error("--services and --events-per-service must be >= 0, --max-page-size >= 1")
    try:
        sim = build_simulation(args)
    except ValueError as exc:
        parser.error(str(exc))
    if args.require_auth and not (args.iam_user or args.access_key or args.static_token):
        log.warning('msg="--require-auth without any credential flag accepts no one"')
    host, port = args.listen
    try:
        asyncio.run(_run(sim, host, port))
    except OSError as exc:
        log.error('msg="cannot listen" address=%s:%d reason="%s"', host, port, exc.strerror or exc)
        return 2
    return 0
