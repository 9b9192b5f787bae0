"""virtnet graph's DOT text, from views built by hand (no kernel)."""

from __future__ import annotations

from virtnet.graph import NetworkView, quote, to_dot
from virtnet.model import parse_network
from virtnet.model.port import Attachment, AttachmentKind, NetworkPort

NAT = """<network><name>lan</name><forward mode='nat' dev='eth1'/><bridge name='br7'/>
<ip address='10.5.0.1' prefix='24'/></network>"""
ISOLATED = "<network><name>quiet</name><ip address='10.6.0.1' prefix='24'/></network>"


def test_quote_escapes_what_dot_would_read_as_syntax() -> None:
    assert quote('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'


def test_every_network_port_lease_and_uplink_is_drawn() -> None:
    veth = NetworkPort(network="lan", uuid="u1", mac="52:54:00:00:00:01",
                       attachment=Attachment(kind=AttachmentKind.VETH, ifname="vnet1",
                                             netns="c1"))  # fmt: skip
    tap = NetworkPort(network="lan", uuid="u2", mac="52:54:00:00:00:02", isolated=True,
                      attachment=Attachment(kind=AttachmentKind.TAP, ifname="vm2",
                                            spoof_check=False))  # fmt: skip
    views = [
        NetworkView(
            parse_network(NAT),
            True,
            "linuxbridge",
            [veth, tap],
            {"52:54:00:00:00:01": ["10.5.0.50"]},
        ),
        NetworkView(parse_network(ISOLATED), False),
    ]
    dot = to_dot(views)
    assert dot.startswith("digraph virtnet {") and dot.rstrip().endswith("}")
    assert 'label="lan (nat, 10.5.0.1/24)"' in dot and 'label="quiet (isolated, ' in dot
    assert "container c1:eth0\\nveth vnet1\\n52:54:00:00:00:01\\nlease 10.5.0.50" in dot
    assert "VM (tap)\\ntap vm2\\n52:54:00:00:00:02\\nno lease\\nNO anti-spoofing, isolated" in dot
    assert '"net:lan" -> "dev:eth1" [label="nat", dir=both];' in dot
    assert '"net:quiet" [label="bridge (named at start)\\ninactive"' in dot
    assert dot.count("subgraph cluster_") == 2 and dot.count('\n  "dev:eth1" [label') == 1
