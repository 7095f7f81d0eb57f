"""Drive several page iterators at once and hand their pages over as they arrive.

Partitioned reads give each partition its own ``@odata.nextLink`` chain (a generator that sends one request
per page). A thread pool of ``workers`` drives the chains; a bounded queue hands their items to the one
consumer, so a slow consumer holds at most ``2 * workers`` pages in memory. Leaving the consumer loop early
(``break``, an exception) stops the workers after the request each has in flight; an exception raised in a
worker is re-raised in the consumer.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_ITEM, _ERROR, _DONE = "item", "error", "done"


def merge_threaded(sources: list[Callable[[], Iterable[T]]], workers: int) -> Iterator[T]:
    """Yield the items of every source (in arrival order), running at most ``workers`` sources at once."""
    inbox: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=2 * workers)
    stop = threading.Event()

    def offer(message: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                inbox.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def drive(source: Callable[[], Iterable[T]]) -> None:
        try:
            items = iter(source())
            while not stop.is_set():
                try:
                    item = next(items)  # sends the next request of this chain
                except StopIteration:
                    break
                if not offer((_ITEM, item)):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            offer((_ERROR, exc))
        finally:
            offer((_DONE, None))

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="d365kit-read")
    try:
        for source in sources:
            pool.submit(drive, source)
        running = len(sources)
        while running:
            kind, payload = inbox.get()
            if kind == _DONE:
                running -= 1
            elif kind == _ERROR:
                raise payload
            else:
                yield payload
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)


__all__ = ["merge_threaded"]
