"""OVN on one machine: a central database host and chassis, each a namespace of a :class:`Lab`.

What ``../shared/tools/ovn-sim.sh`` proved, as a fixture: the central namespace runs the
northbound and southbound ``ovsdb-server`` and ``ovn-northd``; every chassis namespace runs its
own ``ovsdb-server``, ``ovs-vswitchd`` (userspace datapath: no kernel module here) and
``ovn-controller``, with its Geneve endpoint on an OVS bridge (``br-phy``) whose uplink is a
veth into the underlay namespace's Linux bridge. Every daemon keeps its files in the
cluster's own directory under /run (the ``*_RUNDIR`` variables, or they would use the host's
/run/openvswitch) and is stopped by the pid it wrote; the lab removes the namespaces and
whatever still runs in them even when the test run is killed (:func:`reap_stale`).

Readiness is waited for on OVN's own signals (southbound Chassis rows, Geneve interfaces in
each chassis's database), never with sleeps.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from virtnet import pids
from virtnet.services.ovsdb_rpc import OvsdbRpc
from virtnet.testing.daemon import BIN
from virtnet.testing.netns import Namespace

NB_SCHEMA = "/usr/share/ovn/ovn-nb.ovsschema"
SB_SCHEMA = "/usr/share/ovn/ovn-sb.ovsschema"
OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
UNDERLAY = "172.31.0"  # /24 inside the lab's underlay namespace only
#: Geneve with OVN's options adds 58 bytes (IPv4 underlay): guests keep 1500 on a 1600 underlay
UNDERLAY_MTU = 1600
DIR_PREFIX = "virtnet-ovn-"


def _offload_off(ns: Namespace, ifname: str) -> None:
    """Veths feeding OVS's userspace datapath must not hand it partial checksums or GSO
    frames: with offload on, ping works and TCP across the tunnel dies."""
    ns.exec("ethtool", "-K", ifname, "tx", "off", "tso", "off", "gso", "off", check=False)


class _Daemons:
    """Daemons of one namespace, all files in ``directory``; stopped by their pid files.
    ``on_pid`` hears each daemon's pid as it starts (a lab's record)."""

    def __init__(
        self, ns: Namespace, directory: Path, on_pid: Callable[[int], None] | None = None
    ) -> None:
        self.ns = ns
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.names: list[str] = []
        self.on_pid = on_pid

    def env(self) -> dict[str, str]:
        d = str(self.dir)
        return {**os.environ, **{f"{p}_{k}": d for p in ("OVS", "OVN")
                                 for k in ("RUNDIR", "LOGDIR", "DBDIR", "SYSCONFDIR")}}  # fmt: skip

    def run(self, *args: str) -> str:
        done = subprocess.run(
            ["ip", "netns", "exec", self.ns.name, *args], env=self.env(), capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def start(self, tag: str, program: str, *args: str) -> None:
        files = [f"--pidfile={self.dir}/{tag}.pid", f"--log-file={self.dir}/{tag}.log"]
        self.run(program, "-vconsole:off", "--detach", "--no-chdir", *files, *args)
        if tag not in self.names:
            self.names.append(tag)
        pid = self.pid(tag)
        if self.on_pid is not None and pid is not None:
            self.on_pid(pid)

    def pid(self, tag: str) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((self.dir / f"{tag}.pid").read_text())
        return None

    def kill(self, tag: str) -> None:
        """SIGKILL, as a crash: no clean-up of its own (ovn-controller keeps its Chassis)."""
        pid = self.pid(tag)
        if pid is not None and pids.running(pid):
            os.kill(pid, 9)
            pids.wait(pid, 5.0)

    def stop(self) -> None:
        for tag in reversed(self.names):
            pid = self.pid(tag)
            if pid is not None:
                pids.terminate(pid)


@dataclass
class OvnCentral:
    """NB + SB databases and northd. ``nb``/``sb`` are unix remotes any namespace can use
    (sockets live on the file system); ``nb_tcp``/``sb_tcp`` are what chassis use."""

    ns: Namespace
    daemons: _Daemons
    ip: str

    @property
    def nb(self) -> str:
        return f"unix:{self.daemons.dir}/nb.sock"

    @property
    def sb(self) -> str:
        return f"unix:{self.daemons.dir}/sb.sock"

    @property
    def sb_tcp(self) -> str:
        return f"tcp:{self.ip}:6642"

    def nbctl(self, *args: str) -> str:
        return self.daemons.run("ovn-nbctl", f"--db={self.nb}", "--timeout=60", *args)

    def sbctl(self, *args: str) -> str:
        return self.daemons.run("ovn-sbctl", f"--db={self.sb}", "--timeout=60", *args)


@dataclass
class OvnChassis:
    name: str  # its system-id: the chassis name in the southbound database
    ns: Namespace
    daemons: _Daemons
    encap_ip: str

    @property
    def ovsdb(self) -> str:
        return f"unix:{self.daemons.dir}/db.sock"

    def vsctl(self, *args: str) -> str:
        return self.daemons.run("ovs-vsctl", f"--db={self.ovsdb}", "--timeout=30", *args)

    def env(self, nb: str) -> dict[str, str]:
        """What virtnet on this chassis needs: its OVS database, the northbound one and where
        its ovn-controller keeps its pid file."""
        return {"VIRTNET_OVSDB": self.ovsdb, "VIRTNET_OVN_NB": nb,
                "VIRTNET_OVN_RUNDIR": str(self.daemons.dir)}  # fmt: skip

    def crash(self) -> None:
        """The hypervisor's switch dies: ovs-vswitchd and ovn-controller, ``kill -9``."""
        self.daemons.kill("ovn-controller")
        self.daemons.kill("ovs-vswitchd")

    def revive(self) -> None:
        """Start what :meth:`crash` killed again, as the host's init would."""
        d = self.daemons
        d.start("ovs-vswitchd", "ovs-vswitchd", f"--unixctl={d.dir}/ovs-vswitchd.ctl",
                self.ovsdb, "--disable-system")  # fmt: skip
        d.start("ovn-controller", "ovn-controller", self.ovsdb)


@dataclass
class OvnHost:
    """virtnet on one chassis (or on the central host: a management host that is no chassis),
    driven through its CLI as an operator would, with its own state and run directories and
    the environment that configures the ovn backend there."""

    name: str
    ns: Namespace
    nb: str
    ovsdb: str | None
    dir: Path

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "VIRTNET_OVN_NB": self.nb,
            "VIRTNET_DAEMON": "never",
            "VIRTNET_STATE_DIR": str(self.dir / "state"),
            "VIRTNET_RUN_DIR": str(self.dir / "run"),
            "VIRTNET_OVN_RUNDIR": str(self.dir),  # a chassis's: its daemons' directory
        }
        env.pop("VIRTNET_OVSDB", None)
        if self.ovsdb:
            env["VIRTNET_OVSDB"] = self.ovsdb
        return env

    def cli(self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """``virtnet --netns <this host> ARGS``; ``check``: raise with its output if it fails."""
        done = subprocess.run(
            [str(BIN / "virtnet"), "--netns", self.ns.name, *args],
            env={**self.env(), **(env or {})},
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
        )
        if check and done.returncode:
            raise AssertionError(f"{self.name}: virtnet {' '.join(args)} -> {done.returncode}: "
                                 f"{done.stdout}{done.stderr}")  # fmt: skip
        return done


class NamespaceMaker(Protocol):
    """What makes the cluster's namespaces: a test's :class:`Lab`, or ``virtnet lab``'s
    builder (which records each one before it exists)."""

    prefix: str

    def netns(self, role: str) -> Namespace: ...


@dataclass
class OvnCluster:
    """``OvnCluster(lab).start(chassis=3)``: central + chassis ``hv1``..``hvN`` on an underlay.

    ``root`` holds the cluster's directory; ``on_pid`` hears every daemon's pid as it starts."""

    lab: NamespaceMaker
    root: Path = field(default_factory=lambda: Path("/run"))
    central: OvnCentral | None = None
    chassis: list[OvnChassis] = field(default_factory=list)
    underlay: Namespace | None = None
    on_pid: Callable[[int], None] | None = None

    def __post_init__(self) -> None:
        self.dir = self.root / f"{DIR_PREFIX}{self.lab.prefix}"

    def start(self, chassis: int | list[str] = 0) -> OvnCluster:
        """With ``chassis=0`` only the databases and northd (the fast tier); a number makes
        ``hv1``..``hvN``, a list the chassis of those names."""
        names = [f"hv{n}" for n in range(1, chassis + 1)] if isinstance(chassis, int) else chassis
        self.dir.mkdir(mode=0o700, exist_ok=True)
        try:
            if names:
                self.underlay = self.lab.netns("ul")
                self.underlay.ip("link", "add", "br-ul", "type", "bridge")
                self.underlay.ip("link", "set", "br-ul", "up")
            self.central = self._start_central()
            for index, name in enumerate(names, 1):
                self.chassis.append(self._start_chassis(name, index))
            if names:
                self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _uplink(self, ns: Namespace, ifname: str, peer: str) -> None:
        assert self.underlay is not None
        ns.ip("link", "add", ifname, "type", "veth", "peer", "name", peer, "netns",
              self.underlay.name)  # fmt: skip
        self.underlay.ip("link", "set", peer, "mtu", str(UNDERLAY_MTU), "master", "br-ul", "up")
        ns.ip("link", "set", ifname, "mtu", str(UNDERLAY_MTU), "up")
        _offload_off(ns, ifname)
        _offload_off(self.underlay, peer)

    def _start_central(self) -> OvnCentral:
        ns = self.lab.netns("central")
        d = _Daemons(ns, self.dir / "central", self.on_pid)
        ip = f"{UNDERLAY}.2"
        if self.underlay is not None:
            self._uplink(ns, "eth0", "central")
            ns.ip("addr", "add", f"{ip}/24", "dev", "eth0")
        d.run("ovsdb-tool", "create", f"{d.dir}/nb.db", NB_SCHEMA)
        d.run("ovsdb-tool", "create", f"{d.dir}/sb.db", SB_SCHEMA)
        for db, port in (("nb", 6641), ("sb", 6642)):
            remotes = [f"--remote=punix:{d.dir}/{db}.sock"]
            if self.underlay is not None:
                remotes.append(f"--remote=ptcp:{port}:{ip}")
            d.start(db, "ovsdb-server", f"--unixctl={d.dir}/{db}.ctl", f"{d.dir}/{db}.db",
                    *remotes)  # fmt: skip
        central = OvnCentral(ns, d, ip)
        central.nbctl("init")
        central.sbctl("init")
        d.start("northd", "ovn-northd", f"--unixctl={d.dir}/northd.ctl",
                f"--ovnnb-db={central.nb}", f"--ovnsb-db={central.sb}")  # fmt: skip
        return central

    def _start_chassis(self, name: str, n: int) -> OvnChassis:
        assert self.central is not None
        ns = self.lab.netns(name)
        d = _Daemons(ns, self.dir / name, self.on_pid)
        ip = f"{UNDERLAY}.{10 + n}"
        self._uplink(ns, "eth-ul", name)
        d.run("ovsdb-tool", "create", f"{d.dir}/conf.db", OVS_SCHEMA)
        d.start("ovsdb-server", "ovsdb-server", f"--unixctl={d.dir}/ovsdb-server.ctl",
                f"{d.dir}/conf.db", f"--remote=punix:{d.dir}/db.sock")  # fmt: skip
        ch = OvnChassis(name, ns, d, ip)
        ch.vsctl("--no-wait", "init")
        d.start("ovs-vswitchd", "ovs-vswitchd", f"--unixctl={d.dir}/ovs-vswitchd.ctl",
                ch.ovsdb, "--disable-system")  # fmt: skip
        # the Geneve endpoint: the userspace datapath tunnels from an address on an OVS bridge
        ch.vsctl("add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev",
                 "--", "add-port", "br-phy", "eth-ul")  # fmt: skip
        ns.ip("addr", "add", f"{ip}/24", "dev", "br-phy")
        ns.ip("link", "set", "br-phy", "up")
        ch.vsctl("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev",
                 "fail-mode=secure", "other-config:disable-in-band=true")  # fmt: skip
        ch.vsctl("set", "open_vswitch", ".", f"external_ids:system-id={name}",
                 f"external_ids:hostname={name}",
                 f"external_ids:ovn-remote={self.central.sb_tcp}",
                 "external_ids:ovn-encap-type=geneve", f"external_ids:ovn-encap-ip={ip}",
                 "external_ids:ovn-bridge-datapath-type=netdev")  # fmt: skip
        d.start("ovn-controller", "ovn-controller", ch.ovsdb)
        return ch

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Every chassis registered in the southbound database, and a Geneve tunnel from
        each to every other."""
        assert self.central is not None
        names = {c.name for c in self.chassis}
        with OvsdbRpc(self.central.sb) as sb:
            sb.wait("OVN_Southbound", "Chassis", [], ["name"],
                    lambda rows: names <= {r["name"] for r in rows}, timeout)  # fmt: skip
        for ch in self.chassis:
            with OvsdbRpc(ch.ovsdb) as db:
                db.wait("Open_vSwitch", "Interface", [["type", "==", "geneve"]], ["name"],
                        lambda rows: len(rows) >= len(self.chassis) - 1, timeout)  # fmt: skip

    def host(self, chassis: OvnChassis | None = None, name: str = "mgmt") -> OvnHost:
        """virtnet on ``chassis``; None: a management host ``name`` in the central namespace
        (no chassis: it defines, starts and stops networks, and plugs nothing)."""
        assert self.central is not None
        if chassis is None:
            nowhere = f"unix:{self.dir}/{name}/no-ovsdb.sock"  # never the machine's own OVS
            return OvnHost(name, self.central.ns, self.central.nb, nowhere, self.dir / name)
        return OvnHost(
            chassis.name, chassis.ns, self.central.nb, chassis.ovsdb, chassis.daemons.dir
        )

    def attach_provider(self, ch: OvnChassis, physnet: str, nic: str) -> str:
        """Bridge ``nic`` (a link already in the chassis's namespace, cabled to a LAN) into a
        provider bridge for ``physnet``, added to the chassis's bridge mappings; returns the
        bridge's name."""
        bridge = f"br-{physnet}"[:15]
        _offload_off(ch.ns, nic)
        ch.ns.ip("link", "set", nic, "up")
        found = ch.vsctl("--if-exists", "get", "open_vswitch", ".",
                         "external_ids:ovn-bridge-mappings").strip().strip('"')  # fmt: skip
        mappings = ",".join(filter(None, [found, f"{physnet}:{bridge}"]))
        ch.vsctl("add-br", bridge, "--", "set", "bridge", bridge, "datapath_type=netdev",
                 "--", "add-port", bridge, nic, "--", "set", "open_vswitch", ".",
                 f"external_ids:ovn-bridge-mappings={mappings}")  # fmt: skip
        return bridge

    def provider_bridge(self, ch: OvnChassis, physnet: str, outside: Namespace, cidr: str) -> None:
        """Give ``ch`` a provider bridge for ``physnet`` with a veth to ``outside`` (which gets
        ``cidr``): where a gateway chassis or a localnet port reaches the LAN."""
        ch.ns.ip("link", "add", "eth-ex", "type", "veth", "peer", "name", "eth0", "netns",
                 outside.name)  # fmt: skip
        outside.ip("link", "set", "eth0", "up")
        outside.ip("addr", "add", cidr, "dev", "eth0")
        _offload_off(outside, "eth0")
        self.attach_provider(ch, physnet, "eth-ex")

    def stop(self) -> None:
        for ch in reversed(self.chassis):
            ch.daemons.stop()
        if self.central is not None:
            self.central.daemons.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def reap_stale_dirs(min_age: float = 60.0) -> list[Path]:
    """Cluster directories whose daemons all exited (a killed run's), older than ``min_age``
    seconds (one being started right now has no pid files yet)."""
    import time

    removed = []
    for directory in Path("/run").glob(f"{DIR_PREFIX}*"):
        with contextlib.suppress(OSError):
            if time.time() - directory.stat().st_mtime < min_age:
                continue
        alive = False
        for pidfile in directory.glob("*/*.pid"):
            with contextlib.suppress(OSError, ValueError):
                alive = alive or pids.running(int(pidfile.read_text()))
        if not alive:
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed
