"""The core's shared datapath services, offered to every backend through ``ctx.services``.

:class:`Services` owns one netlink socket, one libnftables context and the dnsmasq manager for
one host (network namespace). They are created on first use, so commands that only read
state never import pyroute2. Kernel state is per namespace and per *thread*, so every use goes
through :meth:`Services.call`: when the host is another namespace than the caller's, the call
runs on a worker thread that entered it once; otherwise it runs inline. The caller's own
namespace never changes. The services' sockets are made on that thread too, whichever
thread asks for them first: a socket belongs to the namespace it was made in, for good.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, ParamSpec, TypeVar

from virtnet.host import enter_netns, netns_path

if TYPE_CHECKING:
    from virtnet.backend import Host
    from virtnet.services.dnsmasq import Dnsmasq
    from virtnet.services.firewall import Firewall
    from virtnet.services.netlink import Netlink
    from virtnet.services.nft import Nft
    from virtnet.services.ovsdb import Ovsdb
    from virtnet.services.reaper import Reaper

P = ParamSpec("P")
T = TypeVar("T")


def _in_netns(name: str) -> bool:
    """Is the calling thread already in namespace ``name``?"""
    try:
        mine = os.stat("/proc/thread-self/ns/net")
        theirs = os.stat(netns_path(name))
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def _key(host: Host) -> tuple[str | None, str]:
    return host.netns, str(host.run_dir)


class Services:
    #: The long-lived services of each host a :class:`~virtnet.api.Virtnet` serves (see
    #: :meth:`share`), which :meth:`once` reuses.
    _shared: ClassVar[dict[tuple[str | None, str], Services]] = {}

    def __init__(self, host: Host) -> None:
        self.host = host
        #: virtnet's nftables tables stay when the last network stops (Virtnet(keep_tables=True))
        self.keep_tables = False
        self._worker: ThreadPoolExecutor | None = None
        self._worker_thread: int | None = None
        if host.netns is not None and not _in_netns(host.netns):
            netns = host.netns
            self._worker = ThreadPoolExecutor(
                max_workers=1,
                thread_name_prefix=f"virtnet-{netns}",
                initializer=self._enter,
                initargs=(netns,),
            )

    def _enter(self, netns: str) -> None:
        enter_netns(netns)
        self._worker_thread = threading.get_ident()

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` in the host's namespace (inline when the caller is already there)."""
        if self._worker is None or threading.get_ident() == self._worker_thread:
            return fn(*args, **kwargs)
        return self._worker.submit(fn, *args, **kwargs).result()

    def share(self) -> None:
        """Offer these services to :meth:`once` callers of the same host (the API does, so a
        backend's drift check in a long-lived process reuses its sockets and caches)."""
        Services._shared[_key(self.host)] = self

    @cached_property
    def netlink(self) -> Netlink:
        from virtnet.services.netlink import Netlink

        return self.call(Netlink)  # its sockets belong to the namespace they are made in

    @cached_property
    def reaper(self) -> Reaper:
        """Deletes the links retired in this host's namespace, in the background."""
        from virtnet.services.reaper import Reaper

        return Reaper(self.host.netns)

    @cached_property
    def nft(self) -> Nft:
        from virtnet.services.nft import Nft

        return self.call(Nft)

    @cached_property
    def firewall(self) -> Firewall:
        from virtnet.services.firewall import Firewall
        from virtnet.services.nft_query import NftQuery

        return Firewall(self.nft, self.call(NftQuery))

    @cached_property
    def ovsdb(self) -> Ovsdb:
        from virtnet.services.ovsdb import Ovsdb

        return Ovsdb()

    @cached_property
    def dnsmasq(self) -> Dnsmasq:
        from virtnet.services.dnsmasq import Dnsmasq

        return Dnsmasq()

    @classmethod
    def once(cls, host: Host, fn: Callable[..., T], *args: object) -> T:
        """``fn(services, *args)`` in ``host``'s namespace (read-only hooks such as drift
        checks, which get no ApplyContext): with the host's shared services if a process
        keeps some (:meth:`share`), else with services made for this one call."""
        shared = cls._shared.get(_key(host))
        if shared is not None:
            return shared.call(fn, shared, *args)
        services = cls(host)
        try:
            return services.call(fn, services, *args)
        finally:
            services.close()

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until the links retired so far are deleted (nothing to wait for when this
        host never retired one: no reaper is made for the asking); False on timeout."""
        if "reaper" not in self.__dict__:
            return True
        return self.reaper.settle() if timeout is None else self.reaper.settle(timeout)

    def close(self) -> None:
        if Services._shared.get(_key(self.host)) is self:
            del Services._shared[_key(self.host)]
        if "reaper" in self.__dict__:
            self.reaper.close()
        if "netlink" in self.__dict__:
            self.call(self.netlink.close)
        if "firewall" in self.__dict__:
            self.firewall.elements.close()
        if "ovsdb" in self.__dict__:
            self.ovsdb.close()
        if self._worker is not None:
            self._worker.shutdown(wait=True)


__all__ = ["Services"]
