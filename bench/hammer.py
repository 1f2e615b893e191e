"""Hostile scrapers in a process of their own: N clients fetching /metrics back to back.

`python -m bench.hammer URL --clients 50 --seconds 20` (half of the clients ask for gzip and
none decompresses: the CPU of this machine goes to the exporter, not to us). Prints
`SCRAPES <n>` when done. Bounded by --seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp


async def hammer(url: str, clients: int, seconds: float) -> int:
    done = 0
    stop = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=30)

    async def client(gzip: bool) -> None:
        nonlocal done
        headers = {"Accept-Encoding": "gzip" if gzip else "identity"}
        async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
            while time.monotonic() < stop:
                async with session.get(url, headers=headers) as resp:
                    await resp.read()
                    done += resp.status == 200

    await asyncio.gather(*(client(i % 2 == 0) for i in range(clients)))
    return done


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hammer")
    parser.add_argument("url")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    print(f"SCRAPES {asyncio.run(hammer(args.url, args.clients, args.seconds))}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
