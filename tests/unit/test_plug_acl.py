"""The plug socket's ACL (qemu-bridge-helper's rules, with users and groups) and the bridge
helper's reading of QEMU's command line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from virtnet.bridge_helper import mac_from_cmdline
from virtnet.plug_acl import AclError, allowed, read_rules

EVERYONE = frozenset({"users"})


def acl(tmp_path: Path, text: str, name: str = "bridge.conf", mode: int = 0o644) -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.skipif(os.geteuid() != 0, reason="the ACL must be root's: the test writes as root")
def test_deny_wins_nothing_is_allowed_by_default_and_rules_name_users_or_groups(
    tmp_path: Path,
) -> None:
    extra = acl(tmp_path, "allow lab @kvm\ndeny lab mallory\n", "extra.conf")
    rules = read_rules(acl(tmp_path, f"# VMs\nallow default\nallow all alice  # admin\n"
                                     f"include {extra}\n"))  # fmt: skip
    assert allowed(rules, "default", "bob", EVERYONE)  # a rule naming no one: everyone
    assert not allowed(rules, "lab", "bob", EVERYONE)  # nothing allows: denied
    assert allowed(rules, "lab", "bob", frozenset({"kvm"}))
    assert not allowed(rules, "lab", "mallory", frozenset({"kvm"}))  # deny wins
    assert allowed(rules, "anything", "alice", EVERYONE)
    assert not allowed(read_rules(acl(tmp_path, "allow all\ndeny all\n")), "x", "a", EVERYONE)


@pytest.mark.skipif(os.geteuid() != 0, reason="the ACL must be root's: the test writes as root")
def test_an_acl_others_could_edit_or_a_malformed_line_refuses_everything(tmp_path: Path) -> None:
    with pytest.raises(AclError, match="writable by no one else"):
        read_rules(acl(tmp_path, "allow all\n", mode=0o666))
    with pytest.raises(AclError, match=r"bridge.conf:2: expected 'allow\|deny"):
        read_rules(acl(tmp_path, "allow x\npermit all\n"))
    with pytest.raises(AclError, match="an empty user or group"):
        read_rules(acl(tmp_path, "allow x @\n"))
    loop = acl(tmp_path, "", "loop.conf")
    loop.write_text(f"include {loop}\n")
    with pytest.raises(AclError, match="nest deeper"):
        read_rules(loop)
    with pytest.raises(AclError, match="No such file"):
        read_rules(tmp_path / "missing.conf")
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)  # anyone could swap the file for another
    with pytest.raises(AclError, match="writable by others"):
        read_rules(acl(shared, "allow all\n"))
    (tmp_path / "d").mkdir()
    acl(tmp_path / "d", "allow lab bob\n", "lab.conf")  # an include relative to its file
    assert read_rules(acl(tmp_path / "d", "include lab.conf\n"))[0].who == "bob"


def test_the_helper_finds_the_mac_of_the_nic_on_its_network() -> None:
    qemu = ["qemu-system-x86_64", "-m", "256",
            "-netdev", "bridge,id=n0,br=lan,helper=/usr/bin/virtnet-bridge-helper",
            "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:aa:00:01",
            "-netdev", '{"type":"bridge","id":"n1","br":"wan"}',
            "-device", "e1000,mac=52:54:00:aa:00:02,netdev=n1",
            "-nic", "bridge,br=dmz,mac=52:54:00:aa:00:03,model=virtio"]  # fmt: skip
    assert mac_from_cmdline(qemu, "lan") == "52:54:00:aa:00:01"
    assert mac_from_cmdline(qemu, "wan") == "52:54:00:aa:00:02"  # QEMU's JSON form
    assert mac_from_cmdline(qemu, "dmz") == "52:54:00:aa:00:03"  # -nic
    assert mac_from_cmdline(qemu, "other") is None
    two = [
        *qemu,
        "-netdev",
        "bridge,id=n2,br=lan",
        "-device",
        "e1000,netdev=n2,mac=52:54:00:aa:00:09",
    ]
    assert mac_from_cmdline(two, "lan") is None  # two NICs on it: the helper cannot tell
    no_mac = ["-netdev", "bridge,id=n0,br=lan", "-device", "virtio-net-pci,netdev=n0"]
    assert mac_from_cmdline(no_mac, "lan") is None  # QEMU would pick one: say so instead
    default_bridge = [
        "-netdev",
        "bridge,id=a,,b",
        "-device",
        "e1000,netdev=a,,b,mac=52:54:00:aa:00:04",
    ]
    assert mac_from_cmdline(default_bridge, "br0") == "52:54:00:aa:00:04"  # ",," escapes


def test_the_cni_plugin_takes_the_mac_a_runtime_asks_for() -> None:
    from virtnet.cni import Plugin

    conf = {"cniVersion": "1.1.0", "name": "pods", "type": "virtnet-cni"}
    asked = {**conf, "runtimeConfig": {"mac": "52:54:00:00:00:07"}}
    assert Plugin({}, asked)._requested_mac() == "52:54:00:00:00:07"
    args = {"CNI_ARGS": "IgnoreUnknown=1;MAC=52:54:00:00:00:08"}
    assert Plugin(args, conf)._requested_mac() == "52:54:00:00:00:08"
    assert Plugin({}, conf)._requested_mac() is None  # then one of its own, 0a:58:...
