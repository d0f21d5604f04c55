"""Work done ahead on threads while the loop stores the results one by one, in order.

The loop stores each generated draft, settles its credit and commits before it
looks at the next one (so a crash loses at most one draft's work).  Rendering
the next drafts meanwhile on a few threads changes none of that: results come
back in the order asked for, exactly as a plain loop would produce them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered(
    fn: Callable[[T], R], items: Iterable[T], workers: int, catch: tuple[type[BaseException], ...] = ()
) -> Generator[R | BaseException, None, None]:
    """Yield ``fn(item)`` for each item, in order, computing up to ``workers`` ahead on threads.

    An exception of a type in ``catch`` is yielded in place of its result; any
    other propagates from the item it belongs to, as in a plain loop.  With
    ``workers <= 1`` nothing runs on another thread.  When the caller stops
    early, work not yet started is cancelled and running work is waited for.
    """
    if workers <= 1:
        for item in items:
            try:
                yield fn(item)
            except catch as exc:
                yield exc
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="creative-loop-ahead")
    pending: deque[Future[R]] = deque()
    todo = iter(items)
    try:
        for item in todo:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                break
        while pending:
            future = pending.popleft()
            for item in todo:
                pending.append(pool.submit(fn, item))
                break
            try:
                yield future.result()
            except catch as exc:
                yield exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
