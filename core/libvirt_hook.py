"""``virtnet-libvirt-hook``: libvirt domains on virtnet networks, through libvirt's qemu hook.

libvirt runs ``/etc/libvirt/hooks/qemu NAME OPERATION SUBOPERATION EXTRA`` with the domain's
XML on stdin at each step of a domain's life. A domain names, in its ``<metadata>``, which of
its ``<interface type='ethernet'>`` goes on which virtnet network (and portgroup)::

    <metadata>
      <virtnet:interfaces xmlns:virtnet="https://virtnet.dev/xmlns/libvirt/1">
        <virtnet:interface dev="vnv-web1" network="default" portgroup="web"/>
      </virtnet:interfaces>
    </metadata>
    ...
    <interface type='ethernet'>
      <mac address='52:54:00:6a:00:01'/>
      <target dev='vnv-web1' managed='no'/>
      <model type='virtio'/>
    </interface>

At ``prepare begin`` (before libvirt opens anything) the hook asks virtnetd for a tap port
named ``dev`` with the interface's MAC and the portgroup; libvirt then opens that existing
tap (``managed='no'``) and hands it to QEMU. At ``release end`` (the domain is gone, however
it ended) the ports go. A port's uuid comes from the domain's uuid and ``dev``: a repeated
prepare finds it, a release needs nothing else. A failure is one line on stderr and exit 1,
which libvirt reports and which stops the domain's start; what the failed prepare made is
removed first.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from virtnet.client import Client, DaemonNotRunning
from virtnet.errors import NotFound, VirtnetError
from virtnet.xmlns import ATTACHMENT_NS, LIBVIRT_NS, escape, quoted

XMLNS = LIBVIRT_NS
NAMESPACE = uuid.UUID("8f0b5a0e-2c31-4d0b-9a77-6f3b9d1f4c2a")  # of this hook's port uuids


class HookError(Exception):
    pass


@dataclass(frozen=True)
class Wanted:
    """One domain interface on a virtnet network."""

    dev: str
    network: str
    portgroup: str | None
    mac: str

    def port_uuid(self, domain_uuid: str) -> str:
        return str(uuid.uuid5(NAMESPACE, f"{domain_uuid}/{self.dev}"))


def read_domain(xml: str) -> tuple[str, str, list[Wanted]]:
    """(name, uuid, interfaces on virtnet networks) of a domain's XML."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise HookError(f"the domain XML from libvirt does not parse: {exc}") from None
    name, domain_uuid = root.findtext("name") or "", root.findtext("uuid") or ""
    macs: dict[str, tuple[str | None, str | None, str | None]] = {}
    for iface in root.findall("devices/interface"):
        target, mac = iface.find("target"), iface.find("mac")
        if target is None or not target.get("dev"):
            continue
        address = mac.get("address") if mac is not None else None
        macs[str(target.get("dev"))] = (iface.get("type"), target.get("managed"), address)
    wanted = []
    for item in root.findall(f"metadata/{{{XMLNS}}}interfaces/{{{XMLNS}}}interface"):
        dev, network = item.get("dev") or "", item.get("network") or ""
        if not dev or not network:
            raise HookError("a virtnet:interface needs dev= and network=")
        kind, managed, address = macs.get(dev, (None, None, None))
        if kind != "ethernet" or managed != "no":
            raise HookError(
                f"interface {dev}: give it <interface type='ethernet'> with "
                f"<target dev='{dev}' managed='no'/>: virtnet makes the tap"
            )
        if not address:
            raise HookError(f"interface {dev}: give it a <mac address=...> (anti-spoofing lets "
                            "only the port's MAC through)")  # fmt: skip
        wanted.append(Wanted(dev, network, item.get("portgroup"), address))
    return name, domain_uuid, wanted


def port_xml(want: Wanted, domain: str, domain_uuid: str) -> str:
    group = f"<group>{escape(want.portgroup)}</group>" if want.portgroup else ""
    return (
        f"<networkport><uuid>{want.port_uuid(domain_uuid)}</uuid>"
        f"<owner><name>{escape(domain)}</name><uuid>{escape(domain_uuid)}</uuid></owner>"
        f"{group}<mac address={quoted(want.mac)}/>"
        f"<virtnet:attachment xmlns:virtnet='{ATTACHMENT_NS}' kind='tap' "
        f"ifname={quoted(want.dev)}/></networkport>"
    )


def prepare(vn: Client, domain: str, domain_uuid: str, wanted: list[Wanted]) -> None:
    made: list[str] = []
    try:
        for want in wanted:
            uid = want.port_uuid(domain_uuid)
            try:
                vn.call("get_port", uuid=uid)
                continue  # a repeated prepare: the port is there
            except NotFound:
                pass
            vn.create_port(want.network, port_xml(want, domain, domain_uuid))
            made.append(uid)
    except BaseException:
        for uid in made:
            with contextlib.suppress(VirtnetError):
                vn.delete_port(uid)
        raise


def release(vn: Client, domain_uuid: str, wanted: list[Wanted]) -> None:
    for want in wanted:
        with contextlib.suppress(NotFound):  # released already: a release is idempotent
            vn.delete_port(want.port_uuid(domain_uuid))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    operation = tuple(args[1:3]) if len(args) >= 3 else ()
    if operation not in (("prepare", "begin"), ("release", "end")):
        return 0  # every other step of a domain's life: nothing to do
    try:
        domain, domain_uuid, wanted = read_domain(sys.stdin.read())
        if not wanted:
            return 0
        try:
            vn = Client.connect(os.environ.get("VIRTNET_SOCKET") or None, timeout=60)
        except DaemonNotRunning as exc:
            raise HookError(f"virtnetd does not answer: {exc}") from None
        with vn:
            if operation == ("prepare", "begin"):
                prepare(vn, domain, domain_uuid, wanted)
            else:
                release(vn, domain_uuid, wanted)
        return 0
    except (HookError, VirtnetError) as exc:
        print(f"virtnet: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
