"""The exporter under tracemalloc, for finding what holds its memory (`--memprofile`).

`python -m bench.traced_exporter --dump=PATH <exporter flags>`: on SIGUSR1 the live allocations
are written to PATH, grouped by source line and by file. Tracing slows the exporter and adds its
own memory, so a run with it says where memory goes, not how much CPU or RSS there is.
"""

from __future__ import annotations

import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

from exporter.cli import main as exporter_main

TOP = 40


def _dump(path: Path) -> None:
    snapshot = tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__),)
    )
    total = sum(stat.size for stat in snapshot.statistics("filename"))
    lines = [f"traced live memory: {total / 2**20:.1f} MiB", "", "by file:"]
    for stat in snapshot.statistics("filename")[:TOP]:
        frame = stat.traceback[0]
        lines.append(
            f"{stat.size / 2**20:9.1f} MiB {100 * stat.size / total:5.1f}% {stat.count:9d} "
            f"{frame.filename}"
        )
    lines += ["", "by line:"]
    for stat in snapshot.statistics("lineno")[:TOP]:
        frame = stat.traceback[0]
        lines.append(
            f"{stat.size / 2**20:9.1f} MiB {100 * stat.size / total:5.1f}% {stat.count:9d} "
            f"{frame.filename}:{frame.lineno}"
        )
    current, peak = tracemalloc.get_traced_memory()
    lines += ["", f"traced now {current / 2**20:.1f} MiB, traced peak {peak / 2**20:.1f} MiB"]
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    argv = sys.argv[1:]
    if not argv or not argv[0].startswith("--dump="):
        usage = "usage: python -m bench.traced_exporter --dump=PATH <exporter flags>"
        print(usage, file=sys.stderr)
        return 2
    path = Path(argv[0].removeprefix("--dump="))

    def on_usr1(signum: int, frame: FrameType | None) -> None:
        _dump(path)

    tracemalloc.start(1)
    signal.signal(signal.SIGUSR1, on_usr1)
    return exporter_main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
