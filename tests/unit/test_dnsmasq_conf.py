"""dnsmasq configuration rendered from the model: content, and refusal of injection."""

from __future__ import annotations

from pathlib import Path

import pytest

from virtnet.errors import InvalidInput
from virtnet.model import parse_network
from virtnet.services.dnsmasq import parse_leases
from virtnet.services.dnsmasq_conf import (
    DnsmasqFiles,
    needs_dnsmasq,
    render_addn_hosts,
    render_conf,
    render_dhcp_hosts,
    reserved_ip,
)

FILES = DnsmasqFiles(Path("/run/vn/dnsmasq/u1"))

NAT = """<network><name>default</name><uuid>9c2a3a3e-58b1-4bb6-9df9-6b2c0b7c1f00</uuid>
  <forward mode='nat'/><bridge name='virbr0'/><domain name='lab.test' localOnly='yes'/>
  <dns forwardPlainNames='no'>
    <forwarder addr='8.8.8.8'/><forwarder domain='corp.test' addr='10.0.0.53'/>
    <txt name='info' value='hello, world'/>
    <srv service='ldap' protocol='tcp' domain='lab.test' target='db' port='389' priority='1' weight='5'/>
    <host ip='192.168.122.50'><hostname>db</hostname><hostname>db2</hostname></host>
  </dns>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp><range start='192.168.122.2' end='192.168.122.254'><lease expiry='2' unit='hours'/></range>
      <host mac='52:54:00:00:00:99' name='fixed' ip='192.168.122.99'/></dhcp>
  </ip>
  <ip family='ipv6' address='fd00:1::1' prefix='64'>
    <dhcp><range start='fd00:1::100' end='fd00:1::1ff'/><host id='0:1:0:1:2:3' name='six' ip='fd00:1::5'/></dhcp>
  </ip>
</network>"""


def conf_lines(xml: str) -> list[str]:
    net = parse_network(xml)
    return render_conf(net, "virbr0", FILES, "dnsmasq", "nogroup").splitlines()


def test_nat_network_config_matches_libvirts_choices() -> None:
    lines = conf_lines(NAT)
    for expected in (
        "strict-order",
        "except-interface=lo",
        "interface=virbr0",
        "listen-address=192.168.122.1",
        "listen-address=fd00:1::1",
        "domain=lab.test",
        "local=/lab.test/",
        "domain-needed",
        "no-resolv",
        "server=8.8.8.8",
        "server=/corp.test/10.0.0.53",
        'txt-record=info,"hello, world"',
        "srv-host=_ldap._tcp.lab.test,db,389,1,5",
        "dhcp-range=192.168.122.2,192.168.122.254,255.255.255.0,7200",
        "dhcp-range=fd00:1::100,fd00:1::1ff,64",
        "dhcp-no-override",
        "dhcp-authoritative",
        "dhcp-lease-max=511",
        "enable-ra",
        "user=dnsmasq",
        f"dhcp-hostsfile={FILES.hosts}",
        f"addn-hosts={FILES.addn_hosts}",
        f"dhcp-leasefile={FILES.leases}",
        f"dhcp-script={FILES.script}",
        f"pid-file={FILES.pid}",
    ):
        assert expected in lines, expected
    assert "dhcp-option=3" not in lines  # a NAT network routes


def test_reservations_and_dns_hosts_are_files_dnsmasq_rereads() -> None:
    net = parse_network(NAT)
    assert (
        render_dhcp_hosts(net)
        == "52:54:00:00:00:99,192.168.122.99,fixed\nid:0:1:0:1:2:3,[fd00:1::5],six\n"
    )
    assert render_addn_hosts(net) == "192.168.122.50 db db2\n"
    assert reserved_ip(net, "52:54:00:00:00:99") == ["192.168.122.99"]
    assert reserved_ip(net, "52:54:00:00:00:98") == []


def test_isolated_network_advertises_no_router() -> None:
    lines = conf_lines(
        "<network><name>i</name><uuid>9c2a3a3e-58b1-4bb6-9df9-6b2c0b7c1f01</uuid>"
        "<bridge name='virbr0'/><ip address='10.0.0.1' prefix='24'><dhcp>"
        "<range start='10.0.0.2' end='10.0.0.9'/></dhcp></ip>"
        "<ip family='ipv6' address='fd00::1' prefix='64'/></network>"
    )
    assert "dhcp-option=3" in lines and "ra-param=*,0,0" in lines
    assert "dhcp-range=fd00::1,ra-only" in lines  # libvirt writes the host address


def test_dns_disabled_and_no_dhcp_needs_no_dnsmasq() -> None:
    net = parse_network(
        "<network><name>q</name><bridge name='b'/><dns enable='no'/>"
        "<ip address='10.0.0.1' prefix='24'/></network>"
    )
    assert not needs_dnsmasq(net)
    net.ips[0].address = "10.0.0.1"
    with_dhcp = parse_network(
        "<network><name>q</name><bridge name='b'/><dns enable='no'/>"
        "<ip address='10.0.0.1' prefix='24'><dhcp><range start='10.0.0.5' end='10.0.0.6'/>"
        "</dhcp></ip></network>"
    )
    assert needs_dnsmasq(with_dhcp)
    assert "port=0" in render_conf(with_dhcp, "b", FILES, "u", "g").splitlines()


@pytest.mark.parametrize(
    ("fragment", "subject"),
    [
        ("<dns><txt name='t' value='a\"b'/></dns>", "network/dns/txt/@value"),
        ("<dns><txt name='t' value='back\\slash'/></dns>", "network/dns/txt/@value"),
    ],
)
def test_values_dnsmasq_could_misread_are_refused(fragment: str, subject: str) -> None:
    net = parse_network(
        f"<network><name>x</name><uuid>9c2a3a3e-58b1-4bb6-9df9-6b2c0b7c1f02</uuid>"
        f"<bridge name='b'/>{fragment}<ip address='10.0.0.1' prefix='24'/></network>"
    )
    with pytest.raises(InvalidInput) as err:
        render_conf(net, "b", FILES, "u", "g")
    assert err.value.subject == subject


def test_line_breaks_never_reach_the_file() -> None:
    net = parse_network(
        "<network><name>x</name><bridge name='b'/><ip address='10.0.0.1' prefix='24'>"
        "<tftp root='/srv&#10;dhcp-script=/bin/evil'/></ip></network>"
    )
    with pytest.raises(InvalidInput, match="line breaks") as err:
        render_conf(net, "b", FILES, "u", "g")
    assert err.value.subject == "network/ip/tftp/@root"


def test_lease_file_parses_ipv4_and_ipv6() -> None:
    text = (
        "1795515810 52:54:00:aa:bb:cc 10.0.0.15 g1 01:52:54:00:aa:bb:cc\n"
        "0 52:54:00:aa:bb:cd 10.0.0.16 * *\n"
        "duid 00:01:00:01:2c:aa\n"
        "1795515811 1234 fd00::5 six 00:01:00:01\n"
    )
    leases = parse_leases(text)
    assert [(lease.mac, lease.ip, lease.hostname) for lease in leases] == [
        ("52:54:00:aa:bb:cc", "10.0.0.15", "g1"),
        ("52:54:00:aa:bb:cd", "10.0.0.16", None),
        (None, "fd00::5", "six"),
    ]
    assert leases[0].client_id == "01:52:54:00:aa:bb:cc" and leases[1].expiry == 0
    assert leases[2].iaid == "1234"


def test_lease_scripts_guard_with_nftables_or_openflow() -> None:
    from virtnet.services.dnsmasq import lease_script

    nft = lease_script()
    # leases have their own sets: a lease going never removes a reservation
    assert 'element bridge virtnet leased$family $elements"' in nft
    assert "allowed$family" not in nft
    assert 'case "$mac" in $x:$x:$x:$x:$x:$x) ;; *) exit 0 ;; esac' in nft  # checked first
    flows = lease_script("unix:/run/ovs/br0.mgmt")
    assert "target='unix:/run/ovs/br0.mgmt'" in flows and "nft" not in flows
    assert 'add-flow "$target" "cookie=$cookie,$1,actions=$2"' in flows
    assert "table=2,priority=101,ip,dl_src=$mac,nw_src=$ip" in flows  # reservations: 100


def test_dnsmasq_checks_a_configuration_before_it_replaces_the_running_one(
    tmp_path: Path,
) -> None:
    import shutil

    from virtnet.services.dnsmasq import Dnsmasq

    if shutil.which("dnsmasq") is None and not Path("/usr/sbin/dnsmasq").exists():
        pytest.skip("dnsmasq is not installed")
    files = DnsmasqFiles(tmp_path)
    assert Dnsmasq().check_conf(files, "port=0\nsrv-host=_x._tcp,a,389\n") is None
    problem = Dnsmasq().check_conf(files, "port=0\nsrv-host=_x._tcp,a,99999\n")
    assert problem is not None and "invalid port" in problem
    assert list(tmp_path.iterdir()) == []  # the trial file is gone


OPTIONS = """<network xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/1.0'>
  <name>raw</name><uuid>6f1f4e5c-8a43-4e0f-9d1c-1a2b3c4d5e70</uuid><forward mode='nat'/>
  <ip address='10.9.0.1' prefix='24'/>
  <dnsmasq:options><dnsmasq:option value='cname=*.apps.example,master.example'/>
  </dnsmasq:options></network>"""


def test_raw_dnsmasq_options_need_the_hosts_opt_in(tmp_path: Path) -> None:
    from virtnet.backend import Host
    from virtnet.errors import Unsupported
    from virtnet.model.validate import validate_network
    from virtnet.services.recipes import l3_steps

    net = parse_network(OPTIONS)
    validate_network(net)
    with pytest.raises(Unsupported, match="VIRTNET_DNSMASQ_OPTIONS=allow"):
        l3_steps(net, "vb0", Host(tmp_path, tmp_path))
    steps, _ = l3_steps(net, "vb0", Host(tmp_path, tmp_path, allow_dnsmasq_options=True))
    conf = next(s.conf for s in steps if hasattr(s, "conf"))
    assert conf.splitlines()[-1] == "cname=*.apps.example,master.example"
    bad = OPTIONS.replace("master.example'", "m&#10;dhcp-option=6,6.6.6.6'")
    with pytest.raises(InvalidInput, match="one printable"):
        validate_network(parse_network(bad))


def test_dnsmasq_lines_mean_what_libvirts_mean() -> None:
    lines = conf_lines(
        "<network><name>l</name><uuid>9c2a3a3e-58b1-4bb6-9df9-6b2c0b7c1f02</uuid>"
        "<forward mode='nat'/><bridge name='virbr0'/><mtu size='7000'/>"
        "<dns forwardPlainNames='no'><forwarder domain='www.example.com'/>"
        "<srv service='a' protocol='udp' target='t.example.com' priority='55' weight='555'/>"
        "<srv service='b' protocol='tcp' target='t.example.com' port='6666' weight='666'/>"
        "<srv service='c' protocol='tcp' target='t.example.com' port='3333' priority='33'/>"
        "</dns><ip address='192.168.122.1' prefix='24' localPtr='yes'><dhcp>"
        "<range start='192.168.122.2' end='192.168.122.254'/></dhcp></ip>"
        "<ip family='ipv6' address='2001:db8:ac10:fe01::1' prefix='64' localPtr='yes'>"
        "<dhcp><host id='0:1:0:1:2a:3b' ip='2001:db8:ac10:fe01::5'/></dhcp></ip></network>"
    )
    for expected in (
        "domain-needed",
        "local=//",  # plain names never leave
        "server=/www.example.com/#",  # that domain to the usual servers, not "local only"
        "srv-host=_a._udp,t.example.com,1,55,555",
        "srv-host=_b._tcp,t.example.com,6666,0,666",
        "srv-host=_c._tcp,t.example.com,3333,33",
        "dhcp-option=option:mtu,7000",
        "local=/122.168.192.in-addr.arpa/",
        "local=/1.0.e.f.0.1.c.a.8.b.d.0.1.0.0.2.ip6.arpa/",
        "dhcp-range=2001:db8:ac10:fe01::1,static,64",
    ):
        assert expected in lines, expected
    assert not any("ra-only" in line for line in lines)  # a static DHCPv6 subnet is no RA-only one


def test_local_ptr_needs_a_prefix_of_whole_labels() -> None:
    from virtnet.model.validate import validate_network

    net = parse_network("<network><name>p</name><ip address='10.1.2.1' prefix='20' "
                        "localPtr='yes'/></network>")  # fmt: skip
    with pytest.raises(InvalidInput, match="multiple of 8"):
        validate_network(net)


def test_upstream_servers_come_from_resolv_confs_nameserver_lines_only() -> None:
    from virtnet.services.dnsmasq_conf import upstream

    text = upstream(
        "# generated\nsearch example.org\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\n"
        "nameserver 2001:db8::53 # trailing\nnameserver not-an-address\n"
        "nameserver 192.0.2.54\nserver=/evil/1.2.3.4\nnameserver fe80::2%eth0\\n\n"
    )
    assert text.splitlines()[1:] == [
        "server=192.0.2.53",
        "server=fe80::1%eth0",
        "server=2001:db8::53",
        "server=192.0.2.54",
    ]
    assert upstream("").splitlines()[1:] == []


def test_dns_without_its_own_forwarders_reads_virtnets_servers_file() -> None:
    plain = conf_lines(
        "<network><name>p</name><forward mode='nat'/><bridge name='b'/>"
        "<ip address='10.1.0.1' prefix='24'/></network>"
    )
    assert "no-resolv" in plain and f"servers-file={FILES.servers}" in plain
    isolated = conf_lines(
        "<network><name>i</name><bridge name='b'/><ip address='10.1.0.1' prefix='24'/></network>"
    )
    assert "no-resolv" in isolated and not [x for x in isolated if "servers-file" in x]
    assert not [x for x in conf_lines(NAT) if "servers-file" in x]  # its own forwarders


def test_dhcpv4_only_options_stay_off_an_ipv6_only_network() -> None:
    v6_only = NAT.split("<ip address='192.168.122.1'")[0] + (
        "<ip family='ipv6' address='fd00:1::1' prefix='64'><dhcp>"
        "<range start='fd00:1::100' end='fd00:1::1ff'/></dhcp></ip></network>"
    )
    lines = conf_lines(v6_only)
    assert "dhcp-authoritative" in lines  # DHCPv6 replies with preference 255
    for v4_only in ("dhcp-no-override", "no-ping", "dhcp-ignore-clid"):
        assert v4_only not in lines
    assert {"dhcp-no-override", "no-ping", "dhcp-ignore-clid"} <= set(conf_lines(NAT))


SHAREABLE = """<network><name>s</name><uuid>11111111-2222-3333-4444-555555555555</uuid>
  <forward mode='nat'/><bridge name='vbs'/><mtu size='1400'/>
  <ip address='10.9.0.1' prefix='24'><dhcp><range start='10.9.0.10' end='10.9.0.19'/>
  <host mac='52:54:00:00:00:09' ip='10.9.0.9'/><bootp file='pxe.0' server='10.9.0.2'/>
  </dhcp></ip></network>"""


def test_a_shared_dnsmasqs_member_is_only_lines_by_interface_and_tag() -> None:
    from virtnet.services.dnsmasq_conf import lease_max, render_group_conf, render_member

    net = parse_network(SHAREABLE)
    member = DnsmasqFiles(Path("/run/vn/dnsmasq-shared/g0"), net.uuid)
    lines = render_member(net, "vbs", member).splitlines()
    tag = "v111111112222333"
    assert lines == [
        f"# network uuid {net.uuid}",
        "# lease-max 11",  # ten in the range and the reservation
        "interface=vbs",
        "listen-address=10.9.0.1",
        f"dhcp-range=set:{tag},10.9.0.10,10.9.0.19,255.255.255.0",
        f"dhcp-boot=tag:{tag},pxe.0,,10.9.0.2",
        f"dhcp-option=tag:{tag},option:mtu,1400",
        f"dhcp-hostsfile=/run/vn/dnsmasq-shared/g0/nets/{net.uuid}.hosts",
    ]
    assert lease_max(net) == 11
    group = render_group_conf(member, "dnsmasq", "nogroup", 11).splitlines()
    assert "conf-dir=/run/vn/dnsmasq-shared/g0/nets,*.conf" in group
    assert "servers-file=/run/vn/dnsmasq-servers.conf" in group
    assert {"dhcp-lease-max=11", "dhcp-authoritative", "no-ping", "bind-dynamic"} <= set(group)
    # what the member's status records brings it back
    assert DnsmasqFiles.from_dict(member.as_dict()) == member
    assert member.leases == Path("/run/vn/dnsmasq-shared/g0/leases")


@pytest.mark.parametrize(
    ("change", "shareable"),
    [
        ("", True),
        ("<dns><host ip='10.9.0.5'><hostname>h</hostname></host></dns>", False),
        ("<domain name='lab.test'/>", False),
        ("<dns enable='no'/>", False),
        ("<ip family='ipv6' address='fd00:9::1' prefix='64'/>", False),
    ],
)
def test_only_a_network_without_dns_of_its_own_may_share(change: str, shareable: bool) -> None:
    from virtnet.services.dnsmasq_conf import shareable as can_share

    net = parse_network(SHAREABLE.replace("<mtu size='1400'/>", change))
    assert can_share(net) is shareable
    isolated = parse_network(SHAREABLE.replace("<forward mode='nat'/>", ""))
    assert not can_share(isolated)  # its no-resolv would be everyone's


def test_the_sharing_setting_is_a_number_of_networks() -> None:
    from virtnet.host import dnsmasq_shared

    assert dnsmasq_shared("32") == 32 and dnsmasq_shared("") == 0
    for bad in ("many", "-1", "100000"):
        with pytest.raises(InvalidInput) as caught:
            dnsmasq_shared(bad)
        assert caught.value.subject == "VIRTNET_DNSMASQ_SHARED"


def test_a_starting_network_joins_the_first_group_with_room(tmp_path: Path) -> None:
    from virtnet.services.dnsmasq_group import GROUPS, pick

    assert pick(tmp_path, 2) == tmp_path / GROUPS / "g0"
    for name in ("a", "b", "c"):
        nets = tmp_path / GROUPS / "g0" / "nets"
        if name == "c":
            nets = tmp_path / GROUPS / "g1" / "nets"
        nets.mkdir(parents=True, exist_ok=True)
        (nets / f"{name}.conf").write_text("")
        (nets / f"{name}.hosts").write_text("")  # (only the parts count)
    assert pick(tmp_path, 2) == tmp_path / GROUPS / "g1"
    assert pick(tmp_path, 1) == tmp_path / GROUPS / "g2"
