"""Overlap the runtime with the solves: pull the next item of an iterator on a thread while this one works.

The calibration passes alternate a runtime call (onnxruntime or torch, which release the GIL and use their
own threads) with numpy's float64 products on the result. ``prefetched`` runs the iterator one item ahead
on a worker thread, so the runtime computes chunk c+1 while numpy accumulates chunk c.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def prefetched(items: Iterable[T], ahead: int = 1) -> Iterator[T]:
    """The items of ``items`` in order, produced up to ``ahead`` items early on a worker thread. An
    exception raised while producing is raised here, at the item where it happened."""
    box: queue.Queue = queue.Queue(maxsize=max(1, ahead))
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
            put(_Failed(error))
            return
        put(_DONE)

    worker = threading.Thread(target=produce, daemon=True, name="sepconv-prefetch")
    worker.start()
    try:
        while True:
            item = box.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()
