"""The OVN backend's fast tier: real NB/SB databases and ovn-northd, no chassis.

Two virtnet "hosts" (management hosts with their own state) share one northbound database:
what one defines the other sees, what virtnet writes is checked with ``ovn-nbctl``, and
what OVN compiles from it with ``ovn-trace``.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from virtnet.errors import OperationFailed
from virtnet.model import parse_network
from virtnet.model.network import Network
from virtnet.services.ovsdb_rpc import OvsdbRpc
from virtnet.testing.netns import Lab
from virtnet.testing.ovn import OvnCluster, OvnHost
from virtnet_ovn import nb, ports

OVN = "xmlns:ovn='https://virtnet.dev/xmlns/ovn/1'"


@pytest.fixture(scope="module")
def cluster() -> Iterator[OvnCluster]:
    lab = Lab()
    made = OvnCluster(lab)
    try:
        yield made.start(chassis=0)
    finally:
        made.stop()
        lab.cleanup()


@pytest.fixture
def two_hosts(cluster: OvnCluster) -> tuple[OvnHost, OvnHost]:
    tag = uuid.uuid4().hex[:6]
    return cluster.host(name=f"a{tag}"), cluster.host(name=f"b{tag}")


def _name() -> str:
    return "n" + uuid.uuid4().hex[:8]


def _define(host: OvnHost, xml: str, tmp: Path, *extra: str) -> None:
    path = tmp / "net.xml"
    path.write_text(xml)
    host.cli("net-define", *extra, str(path))


def _find(cluster: OvnCluster, table: str, *conditions: str) -> list[dict[str, object]]:
    """Rows of ``table`` as ovn-nbctl prints them (JSON), to check what virtnet wrote with a
    tool that is not virtnet's."""
    assert cluster.central is not None
    out = cluster.central.nbctl("--format=json", "find", table, *conditions)
    data = json.loads(out)
    return [dict(zip(data["headings"], row, strict=True)) for row in data["data"]]


def _map(value: object) -> dict[str, object]:
    assert isinstance(value, list) and value[0] == "map"
    return dict(value[1])


def test_a_definition_made_on_one_host_is_seen_on_every_other(
    two_hosts: tuple[OvnHost, OvnHost], cluster: OvnCluster, tmp_path: Path
) -> None:
    a, b = two_hosts
    name = _name()
    xml = f"<network><name>{name}</name><ip address='10.61.0.1' prefix='24'/></network>"
    _define(a, xml, tmp_path, "--backend", "ovn")
    rows = json.loads(b.cli("net-list", "--all", "--json").stdout)
    assert [(r["name"], r["active"], r["persistent"]) for r in rows if r["name"] == name] == [
        (name, False, True)
    ]
    assert "10.61.0.1" in b.cli("net-dumpxml", name).stdout
    b.cli("net-autostart", name)
    mine = [r for r in json.loads(a.cli("net-list", "--all", "--json").stdout) if r["name"] == name]
    assert mine[0]["autostart"] is True
    switch = _find(cluster, "Logical_Switch", f"external_ids:{nb.NAME_KEY}={name}")
    assert [s["name"] for s in switch] == [f"vn-{name}"]
    a.cli("net-undefine", name)
    assert name not in b.cli("net-list", "--all").stdout
    assert not _find(cluster, "Logical_Switch", f"external_ids:{nb.NAME_KEY}={name}")


NAT_XML = """<network><name>{name}</name><forward mode='nat'/><mtu size='1400'/>
  <domain name='lab.example'/>
  <dns><host ip='10.62.0.5'><hostname>db</hostname></host></dns>
  <ip address='10.62.0.1' prefix='24'><dhcp>
    <range start='10.62.0.100' end='10.62.0.150'><lease expiry='2' unit='hours'/></range>
  </dhcp></ip>
  <metadata><ovn:uplink {ovn} physnet='physnet1' address='198.51.100.254/24'
    gateway='198.51.100.1' chassis='hv3 hv2'/></metadata>
</network>"""


def test_start_writes_the_network_into_the_northbound_database(
    two_hosts: tuple[OvnHost, OvnHost], cluster: OvnCluster, tmp_path: Path
) -> None:
    a, b = two_hosts
    name = _name()
    _define(a, NAT_XML.format(name=name, ovn=OVN), tmp_path)  # the uplink claims it for ovn
    b.cli("net-start", name)
    info = json.loads(a.cli("net-info", name, "--json").stdout)
    assert info["active"] and info["backend"] == "ovn"
    u = info["uuid"]
    (router,) = _find(cluster, "Logical_Router", f"external_ids:{nb.NETWORK_KEY}={u}")
    assert router["name"] == f"vn-{name}-router"
    (snat,) = _find(cluster, "NAT", f"external_ids:{nb.NETWORK_KEY}={u}")
    assert (snat["type"], snat["external_ip"], snat["logical_ip"]) == (
        "snat",
        "198.51.100.254",
        "10.62.0.0/24",
    )
    chassis = _find(cluster, "Gateway_Chassis", f"external_ids:{nb.NETWORK_KEY}={u}")
    assert sorted((c["chassis_name"], c["priority"]) for c in chassis) == [
        ("hv2", 99),
        ("hv3", 100),
    ]
    (dhcp,) = _find(cluster, "DHCP_Options", f"external_ids:{nb.NETWORK_KEY}={u}")
    options = _map(dhcp["options"])
    assert dhcp["cidr"] == "10.62.0.0/24"
    assert (options["server_id"], options["router"], options["lease_time"]) == (
        "10.62.0.1",
        "10.62.0.1",
        "7200",
    )
    assert (options["mtu"], options["domain_name"], options["dns_server"]) == (
        "1400",
        '"lab.example"',
        "10.62.0.1",
    )
    (dns,) = _find(cluster, "DNS", f"external_ids:{nb.NETWORK_KEY}={u}")
    assert _map(dns["records"]) == {"db": "10.62.0.5"}
    (route,) = _find(cluster, "Logical_Router_Static_Route", f"external_ids:{nb.NETWORK_KEY}={u}")
    assert (route["ip_prefix"], route["nexthop"]) == ("0.0.0.0/0", "198.51.100.1")
    (localnet,) = _find(cluster, "Logical_Switch_Port", "type=localnet",
                        f"external_ids:{nb.NETWORK_KEY}={u}")  # fmt: skip
    assert _map(localnet["options"]) == {"network_name": "physnet1"}
    a.cli("net-destroy", name)
    a.cli("net-undefine", name)


def test_destroy_removes_exactly_what_virtnet_made(
    two_hosts: tuple[OvnHost, OvnHost], cluster: OvnCluster, tmp_path: Path
) -> None:
    """Foreign rows with the names virtnet uses survive; a defined network keeps only its
    (inactive) switch; a transient one leaves nothing."""
    assert cluster.central is not None
    a, b = two_hosts
    name = _name()
    cluster.central.nbctl("ls-add", f"vn-{name}")  # an operator's switch and router, same names
    cluster.central.nbctl("lr-add", f"vn-{name}-router")
    cluster.central.nbctl("create", "DHCP_Options", "cidr=10.62.0.0/24")
    try:
        _define(a, NAT_XML.format(name=name, ovn=OVN), tmp_path)
        a.cli("net-start", name)
        u = json.loads(a.cli("net-info", name, "--json").stdout)["uuid"]
        assert _find(cluster, "Logical_Router", f"external_ids:{nb.NETWORK_KEY}={u}")
        b.cli("net-destroy", name)
        for table in ("Logical_Router", "NAT", "DHCP_Options", "DNS", "Gateway_Chassis",
                      "Logical_Switch_Port", "Logical_Router_Static_Route"):  # fmt: skip
            assert not _find(cluster, table, f"external_ids:{nb.NETWORK_KEY}={u}"), table
        (kept,) = _find(cluster, "Logical_Switch", f"external_ids:{nb.NETWORK_KEY}={u}")
        assert nb.LIVE_KEY not in _map(kept["external_ids"])  # defined, inactive
        assert len(_find(cluster, "Logical_Switch", f"name=vn-{name}")) == 2  # ours + foreign
        assert _find(cluster, "Logical_Router", f"name=vn-{name}-router")  # the operator's
        assert _find(cluster, "DHCP_Options", "cidr=10.62.0.0/24")  # and its DHCP options
        a.cli("net-undefine", name)
        assert len(_find(cluster, "Logical_Switch", f"name=vn-{name}")) == 1
        transient = _name()
        path = tmp_path / "t.xml"
        path.write_text(f"<network><name>{transient}</name><ip address='10.63.0.1' "
                        "prefix='24'/></network>")  # fmt: skip
        b.cli("net-create", "--backend", "ovn", str(path))
        assert transient in a.cli("net-list").stdout
        a.cli("net-destroy", transient)
        assert not _find(cluster, "Logical_Switch", f"external_ids:{nb.NAME_KEY}={transient}")
    finally:
        cluster.central.nbctl("--if-exists", "ls-del", f"vn-{name}")
        cluster.central.nbctl("--if-exists", "lr-del", f"vn-{name}-router")
        for row in _find(cluster, "DHCP_Options", "cidr=10.62.0.0/24"):
            cluster.central.nbctl("destroy", "DHCP_Options", str(row["_uuid"][1]))  # type: ignore[index]


def test_port_security_as_ovn_compiles_it(
    two_hosts: tuple[OvnHost, OvnHost], cluster: OvnCluster, tmp_path: Path
) -> None:
    """A guest's port takes the next free address of the DHCP range and gets port security
    for it; ovn-trace (OVN's own logical pipeline) drops what a spoofer sends and delivers the
    honest guest's packet."""
    assert cluster.central is not None
    a, _ = two_hosts
    name = _name()
    xml = (f"<network><name>{name}</name><ip address='10.64.0.1' prefix='24'><dhcp>"
           "<range start='10.64.0.10' end='10.64.0.20'/></dhcp></ip></network>")  # fmt: skip
    _define(a, xml, tmp_path, "--backend", "ovn")
    a.cli("net-start", name)
    u = json.loads(a.cli("net-info", name, "--json").stdout)["uuid"]
    macs = ["52:54:00:64:00:01", "52:54:00:64:00:02"]
    net = a_network(a, name)
    with OvsdbRpc(cluster.central.nb) as db:
        for mac in macs:  # what a chassis's plug writes (CreateLogicalPort), without a chassis
            ports.create_port(db, net, mac.replace(":", ""), mac, [], True, False, "nowhere")
    made = {p["name"]: p["addresses"] for p in _find(cluster, "Logical_Switch_Port",
                                                      f"external_ids:{nb.NETWORK_KEY}={u}")}  # fmt: skip
    assert made == {"525400640001": "52:54:00:64:00:01 10.64.0.10",
                     "525400640002": "52:54:00:64:00:02 10.64.0.11"}  # fmt: skip
    cluster.central.nbctl("--wait=sb", "sync")

    def trace(source: str) -> str:
        flow = (f'inport == "525400640001" && eth.src == {macs[0]} && eth.dst == {macs[1]} && '
                f"ip4.src == {source} && ip4.dst == 10.64.0.11 && ip.ttl == 64 && icmp4")  # fmt: skip
        return cluster.central.daemons.run(
            "ovn-trace", f"--db={cluster.central.sb}", "--minimal", f"vn-{name}", flow
        )

    assert 'output("525400640002")' in trace("10.64.0.10")  # the honest guest's packet
    assert "output(" not in trace("10.64.0.99")  # a spoofed source: dropped at the inport
    a.cli("net-destroy", name)
    a.cli("net-undefine", name)


def a_network(host: OvnHost, name: str) -> Network:
    return parse_network(host.cli("net-dumpxml", name).stdout)


def test_two_hosts_defining_one_name_at_once_one_wins(
    two_hosts: tuple[OvnHost, OvnHost], cluster: OvnCluster, tmp_path: Path
) -> None:
    name = _name()
    results: list[int] = []
    paths = []
    for index, host in enumerate(two_hosts):
        path = tmp_path / f"{index}.xml"
        path.write_text(f"<network><name>{name}</name><uuid>{uuid.uuid4()}</uuid></network>")
        paths.append((host, path))

    def define(host: OvnHost, path: Path) -> None:
        results.append(
            host.cli("net-define", "--backend", "ovn", str(path), check=False).returncode
        )

    threads = [threading.Thread(target=define, args=p) for p in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results)[0] == 0 and sorted(results)[1] != 0
    assert len(_find(cluster, "Logical_Switch", f"external_ids:{nb.NAME_KEY}={name}")) == 1
    two_hosts[0].cli("net-undefine", name)


def test_a_start_that_loses_does_not_stop_the_network_another_host_runs(
    two_hosts: tuple[OvnHost, OvnHost], cluster: OvnCluster, tmp_path: Path
) -> None:
    a, b = two_hosts
    name = _name()
    _define(a, NAT_XML.format(name=name, ovn=OVN), tmp_path)
    a.cli("net-start", name)
    u = json.loads(a.cli("net-info", name, "--json").stdout)["uuid"]
    failed = b.cli("net-start", name, check=False)
    assert failed.returncode != 0 and "already active" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1
    assert _find(cluster, "Logical_Router", f"external_ids:{nb.NETWORK_KEY}={u}")
    assert name in b.cli("net-list").stdout
    b.cli("net-destroy", name)
    b.cli("net-undefine", name)


def test_an_unreachable_northbound_database_is_one_line_and_changes_nothing(
    cluster: OvnCluster, tmp_path: Path
) -> None:
    host = cluster.host(name="down" + uuid.uuid4().hex[:6])
    down = {"VIRTNET_OVN_NB": f"unix:{tmp_path}/nothing.sock"}
    path = tmp_path / "n.xml"
    path.write_text("<network><name>nowhere</name></network>")
    failed = host.cli("net-define", "--backend", "ovn", str(path), check=False, env=down)
    assert failed.returncode != 0
    assert failed.stderr.count("\n") == 1 and "Traceback" not in failed.stderr
    assert "unreachable" in failed.stderr or "cannot run" in failed.stderr
    local = host.cli("net-list", "--all", env=down)
    assert "nowhere" not in local.stdout
    assert (
        not (host.dir / "state" / "virtnet.db").exists()
        or "nowhere" not in host.cli("net-list", "--all", env=down).stdout
    )


def test_a_bad_uplink_is_bad_input(two_hosts: tuple[OvnHost, OvnHost], tmp_path: Path) -> None:
    a, _ = two_hosts
    for attributes, words in (
        ("physnet='a b'", "physnet"),
        ("physnet='p' address='10.0.0.1'", "prefix length"),
        ("physnet='p' address='10.0.0.1/24' gateway='192.0.2.1'", "not in"),
    ):
        path = tmp_path / "bad.xml"
        path.write_text(f"<network><name>{_name()}</name><forward mode='nat'/><metadata>"
                        f"<ovn:uplink {OVN} {attributes}/></metadata></network>")  # fmt: skip
        done = a.cli("net-define", str(path), check=False)
        assert done.returncode == 2, done.stderr
        assert "ovn:uplink" in done.stderr and words in done.stderr
        assert done.stderr.count("\n") == 1


ADDRESSES = """<network><name>{name}</name><ip address='10.65.0.1' prefix='24'><dhcp>
  <range start='10.65.0.10' end='10.65.0.29'/>
  <host mac='52:54:00:65:00:99' ip='10.65.0.15'/></dhcp></ip></network>"""


def _port(net: Network, index: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{net.name}/{index}"))


@pytest.fixture
def addressed(
    two_hosts: tuple[OvnHost, OvnHost], tmp_path: Path
) -> Iterator[tuple[OvnHost, Network]]:
    """A running network of ADDRESSES (a range of 20 and one reservation) and the host that
    started it; gone after the test."""
    a, _ = two_hosts
    name = _name()
    _define(a, ADDRESSES.format(name=name), tmp_path, "--backend", "ovn")
    a.cli("net-start", name)
    try:
        yield a, a_network(a, name)
    finally:
        a.cli("net-destroy", name, check=False)
        a.cli("net-undefine", name)


def _plug(db: OvsdbRpc, net: Network, index: int, *declared: str) -> list[str]:
    """What a chassis's plug writes (CreateLogicalPort), for a port numbered ``index``."""
    mac = f"52:54:00:65:{index // 256:02x}:{index % 256:02x}"
    return ports.create_port(db, net, _port(net, index), mac, list(declared), True, False,
                             "nowhere")  # fmt: skip


def _held(cluster: OvnCluster, u: str) -> list[str]:
    assert cluster.central is not None
    out = cluster.central.nbctl("--bare", "--columns=addresses", "find", "Address_Set",
                                f"name={nb.address_set_name(u)}")  # fmt: skip
    return sorted(out.split(), key=lambda a: tuple(int(x) for x in a.split(".")))


def test_hosts_plugging_at_once_never_share_an_address(
    addressed: tuple[OvnHost, Network], cluster: OvnCluster
) -> None:
    """Four plugging threads (each its own connection, as four hosts) race for the next
    address of one range: every port gets its own, the network's address set holds exactly
    the ports' addresses, and the reserved address is never handed out dynamically."""
    maker, net = addressed
    assert cluster.central is not None and net.uuid is not None
    got: list[str] = []
    errors: list[BaseException] = []

    def host(first: int) -> None:
        try:
            with OvsdbRpc(cluster.central.nb) as db:  # type: ignore[union-attr]
                for index in range(first, first + 4):
                    got.extend(_plug(db, net, index))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=host, args=(n * 10,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(got) == 16 and len(set(got)) == 16, got
    assert "10.65.0.15" not in got  # reserved for its MAC
    assert _held(cluster, net.uuid) == sorted(got, key=lambda x: tuple(map(int, x.split("."))))
    listed = cluster.central.nbctl("--bare", "--columns=addresses", "find", "Logical_Switch_Port",
                                   f"external_ids:{nb.NETWORK_KEY}={net.uuid}")  # fmt: skip
    assert sorted(w for w in listed.split() if w.startswith("10.")) == sorted(got)
    maker.cli("net-destroy", net.name)
    assert _held(cluster, net.uuid) == []  # the set went with the network


def test_a_released_address_waits_for_the_range_to_come_round(
    addressed: tuple[OvnHost, Network], cluster: OvnCluster
) -> None:
    """An unplugged port gives its address back, but the next guest gets the one after the
    last handed out (other guests' caches still point at the old one); once the range has
    come round, the freed one is used again. A declared address another port holds is
    refused with a line naming it; the reserved one goes to its MAC."""
    _, net = addressed
    assert cluster.central is not None and net.uuid is not None
    with OvsdbRpc(cluster.central.nb) as db:
        assert _plug(db, net, 1) == ["10.65.0.10"]
        assert _plug(db, net, 2) == ["10.65.0.11"]
        ports.delete_port(db, _port(net, 1), None)
        assert _held(cluster, net.uuid) == ["10.65.0.11"]
        assert _plug(db, net, 3) == ["10.65.0.12"]  # not .10 yet
        with pytest.raises(OperationFailed, match=r"address 10\.65\.0\.12 is held by another"):
            _plug(db, net, 4, "10.65.0.12")
        assert ports.create_port(db, net, _port(net, 99), "52:54:00:65:00:99", [], True, False,
                                 "nowhere") == ["10.65.0.15"]  # fmt: skip
        plugged = [_plug(db, net, 10 + n)[0] for n in range(17)]  # .13 .. .29, not .15
        assert plugged[-1] == "10.65.0.10"  # the range came round to the freed address
        with pytest.raises(OperationFailed, match="DHCP range is full"):
            _plug(db, net, 40)


def test_a_lost_address_set_is_rebuilt_from_the_ports(
    addressed: tuple[OvnHost, Network], cluster: OvnCluster
) -> None:
    """A network started before virtnet kept the set, or whose set someone deleted: the next
    plug rebuilds it from the ports, and does not hand out their addresses again."""
    _, net = addressed
    assert cluster.central is not None and net.uuid is not None
    with OvsdbRpc(cluster.central.nb) as db:
        assert _plug(db, net, 1) == ["10.65.0.10"]
        cluster.central.nbctl("destroy", "Address_Set", nb.address_set_name(net.uuid))
        assert _plug(db, net, 2) == ["10.65.0.11"]
    assert _held(cluster, net.uuid) == ["10.65.0.10", "10.65.0.11"]


def test_a_plug_racing_a_stop_from_another_host_says_the_network_is_gone(
    addressed: tuple[OvnHost, Network], cluster: OvnCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The network is stopped from another host between the plug's read of its switch and
    its transaction: the plug fails with the line naming that (not "hosts took the address",
    which would send its user after a race that never was) and leaves no port behind."""
    maker, net = addressed
    assert cluster.central is not None and net.uuid is not None
    real = ports.add_port

    def stopped_first(*args: object, **kwargs: object) -> None:
        maker.cli("net-destroy", net.name)
        monkeypatch.setattr(ports, "add_port", real)
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ports, "add_port", stopped_first)
    stopped = r"not running in OVN \(stopped from another host"
    with OvsdbRpc(cluster.central.nb) as db, pytest.raises(OperationFailed, match=stopped):
        _plug(db, net, 1)
    assert cluster.central.nbctl("--bare", "--columns=name", "find", "Logical_Switch_Port",
                                 f"external_ids:{nb.NETWORK_KEY}={net.uuid}") == ""  # fmt: skip
