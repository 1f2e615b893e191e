"""Offset pagination that never hands a caller a duplicated or missing row.

The v1 API pages by record offset and reports `total_count`; the server may cap `limit`, so a
short page does not mean the end. Reading in ascending order puts new rows at the end, but a late
row (older than rows already read) shifts every offset after it: the same row would be read twice.
Such a shift always changes `total_count`, so a read whose total moved is thrown away and redone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from exporter.modelarts.errors import MalformedResponseError

T = TypeVar("T")

MAX_PAGES = 10_000
ATTEMPTS = 3

FetchPage = Callable[[int], Awaitable[tuple[int, Sequence[T]]]]  # offset -> (total_count, rows)


async def _read_once(fetch: FetchPage[T], endpoint: str) -> list[T] | None:
    rows: list[T] = []
    total: int | None = None
    for _ in range(MAX_PAGES):
        page_total, page = await fetch(len(rows))
        if total is None:
            total = page_total
        elif page_total != total:
            return None
        rows.extend(page)
        if not page or len(rows) >= total:
            return rows if len(rows) == total else None
    raise MalformedResponseError(f"{endpoint}: pagination did not end", endpoint=endpoint)


async def read_all_consistent(fetch: FetchPage[T], *, endpoint: str) -> list[T]:
    """Every row, from a read during which the listing did not move (retried a few times)."""
    for _ in range(ATTEMPTS):
        rows = await _read_once(fetch, endpoint)
        if rows is not None:
            return rows
    raise MalformedResponseError(
        f"{endpoint}: the list kept changing while it was paged", endpoint=endpoint
    )


async def read_limit_pages(
    fetch: FetchPage[T],
    page_size: int,
    *,
    endpoint: str,
    key: Callable[[T], object],
    stop: Callable[[Sequence[T]], bool] = lambda page: False,
) -> list[T]:
    """The v2 way: `offset` must be a multiple of `limit`, so pages are `page_size` apart.
    Reads until `total` distinct rows (by `key`) arrived, or `stop(page)` says the rest is not
    needed. A read during which `total` moved (rows added or removed shift every page), or that
    reached the end with fewer distinct rows than `total` (rows re-sorted between two pages: one
    read twice, another skipped), is done again. A short page before the end means the server
    caps `limit` lower than asked: the read starts over with that page size, so that no offset
    skips rows. Rows come back de-duplicated, first occurrence kept."""
    for _ in range(ATTEMPTS):
        rows: dict[object, T] = {}
        total: int | None = None
        for index in range(MAX_PAGES):
            page_total, page = await fetch(index * page_size)
            if total is None:
                total = page_total
            elif page_total != total:
                break
            for row in page:
                rows.setdefault(key(row), row)
            if len(rows) >= total or (page and stop(page)):
                return list(rows.values())
            if not page:
                if index == 0:
                    return []  # an empty listing whose total says otherwise: nothing to read
                break
            if len(page) < page_size:
                page_size = len(page)
                break
        else:
            raise MalformedResponseError(f"{endpoint}: pagination did not end", endpoint=endpoint)
    raise MalformedResponseError(
        f"{endpoint}: the list kept changing while it was paged", endpoint=endpoint
    )
