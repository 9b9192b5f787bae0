"""A network's start plan: the bridge (or an existing host bridge), then the core's L3 recipe."""

from __future__ import annotations

from virtnet.backend import Host
from virtnet.errors import Unsupported
from virtnet.model.network import ForwardMode, Network
from virtnet.plan import Plan
from virtnet.services.recipes import bandwidth_steps, ifb_name, l3_steps
from virtnet.services.steps import CreateBridge, RemovePortsInBulk, RequireBridge


def plan_start(net: Network, host: Host) -> Plan:
    bridge = net.bridge.name if net.bridge else None
    if not bridge:
        raise Unsupported("needs a bridge name", subject="network/bridge/@name")
    if net.mode is ForwardMode.BRIDGE:
        if net.bandwidth is not None:
            raise Unsupported(
                "a host bridge virtnet does not own cannot be shaped", subject="network/bandwidth"
            )
        return Plan([RequireBridge(bridge)], {"bridge": bridge, "owned": False})
    stp = True if net.bridge is None or net.bridge.stp is None else net.bridge.stp
    delay = (net.bridge.delay if net.bridge else None) or 0
    plan = Plan([CreateBridge(bridge, net.mac, net.mtu, stp, delay), RemovePortsInBulk(bridge)])
    steps, info = l3_steps(net, bridge, host)
    plan.add(*steps)
    assert net.uuid is not None
    plan.add(*bandwidth_steps(bridge, ifb_name(net.uuid), net.bandwidth, "network"))
    plan.info.update(info, bridge=bridge, owned=True)
    return plan
