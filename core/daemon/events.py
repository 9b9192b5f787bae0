"""Fan-out of events to every subscribed connection, each with its own queue, and the recent
past for a subscriber that was away.

Every event gets a sequence number, and the daemon a ``boot`` id (random, per start). A stack
that restarts, or whose connection broke, subscribes again with the last ``seq`` and ``boot``
it saw: it gets every event it missed, in order, then the live stream; if those are no longer
kept (more than :data:`KEEP` since) or the daemon restarted, it gets one ``events-lost``
event instead, which means "read the state again" (networks, ports, leases), as Kubernetes'
watches answer "410 Gone". Nothing is lost silently.
"""

from __future__ import annotations

import collections
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from queue import SimpleQueue
from typing import Any

from virtnet.events import Event

#: Events kept for subscribers that come back: minutes of a busy host's life, ~2 MB at most.
KEEP = 4096
LOST = "events-lost"


class EventHub:
    """A slow subscriber never blocks the publisher (unbounded queues, drained per client)."""

    def __init__(self, keep: int = KEEP) -> None:
        self._lock = threading.Lock()
        self._queues: list[SimpleQueue[dict[str, Any]]] = []
        self._recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep)
        self.boot = uuid.uuid4().hex
        self.seq = 0

    def publish(self, event: Event) -> None:
        with self._lock:
            self.seq += 1
            data = {**event.as_dict(), "seq": self.seq, "boot": self.boot}
            self._recent.append(data)
            queues = list(self._queues)
        for q in queues:
            q.put(data)

    def position(self) -> dict[str, Any]:
        with self._lock:
            return {"boot": self.boot, "seq": self.seq}

    @contextmanager
    def subscription(
        self, since: int | None = None, boot: str | None = None
    ) -> Iterator[SimpleQueue[dict[str, Any]]]:
        """A queue of the events from now on; with ``since`` (and the ``boot`` it came from),
        first those after it, or one ``events-lost`` event if they are not all kept."""
        q: SimpleQueue[dict[str, Any]] = SimpleQueue()
        with self._lock:  # replay and subscribe at one moment: nothing falls in between
            if since is not None:
                for missed in self._missed(since, boot):
                    q.put(missed)
            self._queues.append(q)
        try:
            yield q
        finally:
            with self._lock:
                self._queues.remove(q)

    def _missed(self, since: int, boot: str | None) -> list[dict[str, Any]]:
        oldest = self._recent[0]["seq"] if self._recent else self.seq + 1
        if boot == self.boot and oldest - 1 <= since <= self.seq:
            return [e for e in self._recent if e["seq"] > since]
        why = "the daemon restarted" if boot != self.boot else "they are no longer kept"
        return [{
            "kind": LOST, "network": "", "port": None, "seq": self.seq, "boot": self.boot,
            "time": time.time(),
            "detail": {"since": since, "why": f"events after {since} are lost: {why}; "
                       "read networks, ports and leases again"},
        }]  # fmt: skip

    def subscribers(self) -> int:
        with self._lock:
            return len(self._queues)
