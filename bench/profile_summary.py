"""Summarise py-spy's raw (collapsed-stack) output: where the exporter's CPU goes.

`python -m bench.profile_summary PROFILE.txt [--top N]` prints, as shares of all samples, a
breakdown by category of code, the functions with the most self time, the most inclusive time,
and the entry points (the frame right under the event loop's Handle._run, i.e. which callback
or task the time was spent for).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _parse(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        frames_text, _, count = line.rpartition(" ")
        if not frames_text or not count.isdigit():
            continue
        stacks.append(([_short(f) for f in frames_text.split(";")], int(count)))
    return stacks


def _short(frame: str) -> str:
    """`func (file:line)` -> `file:func`: lines differ per sample, functions are what matter."""
    m = _FRAME.match(frame)
    if m is None:
        return frame
    path = m.group("file")
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{path}:{m.group('func')}"


# Checked from the innermost frame outwards; the first frame that matches names the category,
# so time is charged to the code that burns it (json under parse_details is JSON decoding).
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("JSON decoding (json)", ("json/",)),
    ("exposition render + gzip (metrics/collector.py)", ("exporter/metrics/collector.py",)),
    ("own metrics (prometheus_client)", ("prometheus_client/", "exporter/metrics/own.py")),
    ("response parsing (modelarts/models.py)", ("exporter/modelarts/models.py",)),
    ("event / update counting (polling/events.py)", ("exporter/polling/events.py",)),
    ("query canonicalisation (modelarts/signing.py)", ("exporter/modelarts/signing.py",)),
    ("rate limiter (modelarts/limits.py)", ("exporter/modelarts/limits.py",)),
    ("aiohttp server (serving /metrics)", ("aiohttp/web",)),
    (
        "HTTP client (aiohttp + modelarts/transport.py)",
        ("exporter/modelarts/transport.py", "aiohttp/", "yarl/", "multidict/"),
    ),
    ("client logic (modelarts/client.py, pagination, auth)", ("exporter/modelarts/",)),
    ("poller logic (polling/poller.py, snapshot)", ("exporter/polling/",)),
    ("executor threads", ("concurrent/futures", "threading.py")),
    ("urllib quoting", ("urllib/",)),
    (
        "event loop, tasks, sockets",
        ("asyncio/", "selectors.py", "contextlib.py", "<frozen _collections_abc>", "socket.py"),
    ),
)


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, needles in CATEGORIES:
            if any(n in frame for n in needles):
                return name
    return "other"


def _entry(frames: list[str]) -> str:
    """What the event loop was running: the frame after the last Handle._run, or the thread."""
    for i in range(len(frames) - 1, -1, -1):
        if frames[i].endswith(":Handle._run") and i + 1 < len(frames):
            return frames[i + 1]
    if frames and "threading.py" in frames[0]:
        return "(worker thread) " + (frames[5] if len(frames) > 5 else frames[-1])
    return frames[-1] if frames else "?"


def summarise(path: Path, top: int = 25) -> str:
    stacks = _parse(path)
    total = sum(n for _, n in stacks) or 1
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    entries: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    for frames, n in stacks:
        categories[_category(frames)] += n
        if frames:
            own[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
        entries[_entry(frames)] += n
    out = [f"{total} samples ({path.name})", "", "by category (innermost matching frame):"]
    out += [f"{100 * n / total:6.1f}%  {c}" for c, n in categories.most_common()]
    out += ["", "self time:"]
    out += [f"{100 * n / total:6.1f}%  {f}" for f, n in own.most_common(top)]
    out += ["", "inclusive time (excluding the interpreter's and event loop's own frames):"]
    skip = ("runpy", "asyncio/runners.py", "asyncio/base_events.py", "asyncio/events.py")
    kept = [(f, n) for f, n in inclusive.most_common() if not f.startswith(skip)]
    out += [f"{100 * n / total:6.1f}%  {f}" for f, n in kept[:top]]
    out += ["", "by event-loop callback / task entry point:"]
    out += [f"{100 * n / total:6.1f}%  {f}" for f, n in entries.most_common(top)]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_summary")
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    print(summarise(args.profile, args.top), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
