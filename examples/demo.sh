#!/usr/bin/env bash
# `make lab` until the full seed lab lands (issue 6): the seed's VLAN 1 (NAT to LAN 2) and
# VLAN 2 (isolated) on a throw-away "host" namespace, with guests B and C as namespaces on
# veth ports, real DHCP from virtnet's dnsmasq, and the seed's traffic rules checked with ping.
# Everything it makes is removed on exit, even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
VN=".venv/bin/virtnet"
ID="vndemo$$"
HOST="$ID-host" LAN2="$ID-lan2" B="$ID-b" C="$ID-c"
RUN=$(mktemp -d -p /run "$ID.XXXX"); chmod 711 "$RUN"   # dnsmasq's user must reach its files
cleanup() {
  "$VN" --netns "$HOST" --state-dir "$RUN/state" --run-dir "$RUN/run" net-destroy vlan1 >/dev/null 2>&1 || true
  "$VN" --netns "$HOST" --state-dir "$RUN/state" --run-dir "$RUN/run" net-destroy vlan2 >/dev/null 2>&1 || true
  for ns in "$C" "$B" "$LAN2" "$HOST"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$RUN"
}
trap cleanup EXIT
run() { echo "\$ virtnet $*"; "$VN" --netns "$HOST" --state-dir "$RUN/state" --run-dir "$RUN/run" "$@"; }
check() {  # check WANT(yes|no) FROM-NS TARGET TEXT
  if ip netns exec "$2" ping -c1 -W1 "$3" >/dev/null 2>&1; then got=yes; else got=no; fi
  printf '  %-44s %-3s %s\n' "$4" "$got" "$([ "$got" = "$1" ] && echo ok || echo 'UNEXPECTED')"
  [ "$got" = "$1" ]
}
lease() {  # lease NS IFNAME: take a DHCP lease the way a guest OS would
  ip netns exec "$1" python3 -c 'import virtnet.testing.guest as g, virtnet.testing.netns as n, sys
print(g.dhcp_lease(n.Namespace(sys.argv[1]), sys.argv[2]))' "$1" "$2"
}

for ns in "$HOST" "$LAN2" "$B" "$C"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n "$HOST" link add eth1 type veth peer name eth0 netns "$LAN2"      # the uplink, LAN 2
ip -n "$HOST" addr add 198.51.100.1/24 dev eth1; ip -n "$HOST" link set eth1 up
ip -n "$LAN2" addr add 198.51.100.2/24 dev eth0; ip -n "$LAN2" link set eth0 up
# LAN 2 even knows a route to VLAN 1: NAT, not a missing route, must keep it out
ip -n "$LAN2" route add 192.168.100.0/24 via 198.51.100.1

run net-define examples/vlan1-nat.xml
run net-define examples/vlan2-isolated.xml
run net-start vlan1
run net-start vlan2
run net-port-create vlan1 --netns "$B" --ifname eth0 --mac 52:54:00:00:01:0b
run net-port-create vlan2 --netns "$B" --ifname eth1
run net-port-create vlan2 --netns "$C" --ifname eth0
echo "guest B eth0 lease: $(PATH=".venv/bin:$PATH" lease "$B" eth0)   (reserved for its MAC)"
echo "guest B eth1 lease: $(PATH=".venv/bin:$PATH" lease "$B" eth1)"
echo "guest C eth0 lease: $(PATH=".venv/bin:$PATH" lease "$C" eth0)"
run net-list --all
run net-dhcp-leases vlan1
echo "traffic (want, got):"
check yes "$B" 198.51.100.2 "guest B -> LAN 2 host (NAT via VLAN 1)"
check yes "$B" 192.168.200.1 "guest B -> host on VLAN 2"
check yes "$C" 192.168.200.1 "guest C -> host on VLAN 2"
check no "$C" 198.51.100.2 "guest C -> LAN 2 host (isolated, no route)"
check no "$LAN2" 192.168.100.11 "LAN 2 host -> guest B (no inbound through NAT)"
run net-destroy vlan1
run net-destroy vlan2
echo "demo finished; namespaces and state are being removed"
