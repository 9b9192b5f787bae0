"""A third-party backend, as a vendor would ship it: a module plus an entry point.

It serves isolated networks by making a real Linux bridge with ``ip`` (a vendor may use any
tool) and has switches, through environment variables, to fail or crash part-way so the
core's rollback and crash recovery can be tested on real kernel objects.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

from virtnet import hookimpl
from virtnet.apply import ApplyContext
from virtnet.backend import BackendInfo, Host
from virtnet.model import ForwardMode, Network
from virtnet.model.port import AttachmentKind
from virtnet.plan import CallStep, Plan


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _delete_link(ctx: ApplyContext, args: dict[str, Any]) -> None:
    subprocess.run(["ip", "link", "del", args["ifname"]], capture_output=True)  # gone is fine


def _boom(ctx: ApplyContext) -> None:
    if os.environ.get("VENDOR_FAIL") == "crash":
        os._exit(9)  # a killed process: nothing after this runs
    raise RuntimeError("injected failure")


class VendorBackend:
    @hookimpl
    def virtnet_backend_describe(self, host: Host) -> BackendInfo:
        return BackendInfo(
            name="vendor",
            version="0.1",
            summary="a vendor's test backend",
            forward_modes=frozenset({ForwardMode.ISOLATED}),
            attachments=frozenset({AttachmentKind.NONE}),
        )

    @hookimpl
    def virtnet_network_claim(self, network: Network) -> str | None:
        return "vendor" if network.mode == ForwardMode.ISOLATED else None

    @hookimpl
    def virtnet_undo_actions(self) -> dict[str, Any]:
        return {"vendor.link.delete": _delete_link}

    @hookimpl
    def virtnet_network_plan_start(self, network: Network) -> Plan:
        assert network.bridge is not None and network.bridge.name
        br = network.bridge.name
        plan = Plan(info={"bridge": br})
        plan.add(
            CallStep(
                f"create bridge {br}",
                lambda ctx: _ip("link", "add", br, "type", "bridge"),
                "vendor.link.delete",
                {"ifname": br},
            )
        )
        extra = br[:12] + "x"
        plan.add(
            CallStep(
                f"create veth {extra}",
                lambda ctx: _ip("link", "add", extra, "type", "veth", "peer", "name", extra + "p"),
                "vendor.link.delete",
                {"ifname": extra},
            )
        )
        if os.environ.get("VENDOR_FAIL"):
            plan.add(CallStep("fail on purpose", _boom))
        plan.add(CallStep(f"set {br} up", lambda ctx: _ip("link", "set", br, "up")))
        return plan

    @hookimpl
    def virtnet_network_check(self, network: Network, status: dict[str, Any]) -> list[str]:
        done = subprocess.run(["ip", "link", "show", status["bridge"]], capture_output=True)
        return [] if done.returncode == 0 else [f"bridge {status['bridge']} is missing"]


backend = VendorBackend()
