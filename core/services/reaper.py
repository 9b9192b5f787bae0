"""Deletes retired links in the background, whatever is pending in one kernel request.

Deleting a link costs ~15 ms in the kernel (``unregister_netdevice`` waits for RCU grace
periods), however small the link and whoever asks; deleting a hundred in one request costs
little more. An unplug or a network stop need not wait for it: :meth:`Netlink.retire
<virtnet.services.netlink.Netlink.retire>` takes the link out of service in ~1 ms (down, off
its bridge, renamed out of the way, in a link group) and the reaper deletes the group. A burst
of unplugs is one deletion: whatever is retired while a deletion runs goes in the next, and
so do the link groups of networks stopped meanwhile (moved into one group first:
:func:`~virtnet.services.netlink.delete_groups`).

One reaper thread per namespace, started on first use, with its own netlink socket (a
foreground request waits for the kernel's lock only, never for the deletion's grace periods).
:meth:`Reaper.settle` waits for it: before the process exits (atexit, and on close), and when
a name a retired link still holds is wanted again. Links a killed process left retired carry
their owner's label and no record owns them: ``virtnet gc`` (and virtnetd at start) removes
them, and any later reap of :data:`~virtnet.services.netlink.RETIRED_GROUP` there does too.
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import TYPE_CHECKING

from virtnet.host import enter_netns

if TYPE_CHECKING:
    from virtnet.services.netlink import Reap
    from virtnet.services.rtnl import Rtnl

log = logging.getLogger(__name__)

#: How long :meth:`Reaper.settle` waits at most: a kernel deletion of thousands of links
#: takes about a second.
SETTLE_TIMEOUT = 30.0


class Reaper:
    """Deletes link groups in namespace ``netns`` (None: the process's own) in the background.

    ``owner`` of :meth:`reap`: a group anyone could put a link in (a bridge's port group) is
    checked link by link first, and a link not labelled ``owner``'s leaves the group and
    stays (:func:`~virtnet.services.netlink.delete_groups`). ``checked=True`` skips that
    (one dump of every link) for the retired group, which only
    :meth:`~virtnet.services.netlink.Netlink.retire` fills after checking the label, one
    link per call: the reaper counts them, a burst of more than a deletion request should
    take is dumped and deleted in chunks.
    """

    def __init__(self, netns: str | None) -> None:
        self._netns = netns
        self._cond = threading.Condition()
        self._pending: dict[int, Reap] = {}
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._at_exit = False

    def reap(self, group: int, owner: str | None = None, *, checked: bool = False) -> None:
        from virtnet.services.netlink import Reap

        with self._cond:
            if self._closed:
                raise RuntimeError("the reaper is closed")
            before = self._pending.get(group)
            self._pending[group] = Reap(owner, checked, (before.links if before else 0) + 1)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"virtnet-reaper-{self._netns or 'host'}", daemon=True
                )
                self._thread.start()
            if not self._at_exit:
                atexit.register(self.settle)
                self._at_exit = True
            self._cond.notify_all()

    @property
    def idle(self) -> bool:
        with self._cond:
            return not self._pending and not self._busy

    def settle(self, timeout: float = SETTLE_TIMEOUT) -> bool:
        """Wait until every group handed over so far is deleted; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def close(self) -> None:
        if not self.settle():
            log.warning("link reaper still busy after %.0f s: leaving it", SETTLE_TIMEOUT)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=1.0)
        if self._at_exit:
            atexit.unregister(self.settle)

    def _run(self) -> None:
        from virtnet.services.rtnl import Rtnl

        netlink = None
        try:
            if self._netns is not None:
                enter_netns(self._netns)
            netlink = Rtnl()
            self._serve(netlink)
        except Exception as exc:  # the namespace is gone: so are its links
            log.warning("link reaper stopped: %s", exc)
        finally:
            if netlink is not None:
                netlink.close()
            with self._cond:  # a later reap starts a new thread
                self._thread, self._busy = None, False
                self._pending.clear()
                self._cond.notify_all()

    def _serve(self, netlink: Rtnl) -> None:
        from virtnet.services.netlink import delete_groups

        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closed)
                if not self._pending:
                    return
                work, self._pending, self._busy = self._pending, {}, True
            try:  # what piled up while the last batch was deleted goes in one request
                delete_groups(netlink, work)
            except Exception as exc:  # gc finds what is left: labelled, retired
                log.warning("cannot delete link groups %s: %s", [f"{g:#x}" for g in work], exc)
            with self._cond:
                self._busy = False
                self._cond.notify_all()


__all__ = ["Reaper"]
