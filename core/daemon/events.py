"""Fan-out of events to every subscribed connection, each with its own queue."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from queue import SimpleQueue
from typing import Any

from virtnet.events import Event


class EventHub:
    """A slow subscriber never blocks the publisher (unbounded queues, drained per client)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: list[SimpleQueue[dict[str, Any]]] = []

    def publish(self, event: Event) -> None:
        data = event.as_dict()
        with self._lock:
            queues = list(self._queues)
        for q in queues:
            q.put(data)

    @contextmanager
    def subscription(self) -> Iterator[SimpleQueue[dict[str, Any]]]:
        q: SimpleQueue[dict[str, Any]] = SimpleQueue()
        with self._lock:
            self._queues.append(q)
        try:
            yield q
        finally:
            with self._lock:
                self._queues.remove(q)

    def subscribers(self) -> int:
        with self._lock:
            return len(self._queues)
