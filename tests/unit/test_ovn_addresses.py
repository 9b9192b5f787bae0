"""The order in which an OVN network hands out addresses (virtnet_ovn.addresses): from the
cursor round the DHCP ranges, skipping the network's own address, reservations and what is
held. The claim itself (the northbound transaction) is tested in test_ovn_nb.py."""

from __future__ import annotations

import ipaddress
import itertools

from virtnet.model import parse_network
from virtnet_ovn.addresses import candidates, next_after

NET = parse_network("""<network><name>n</name><ip address='10.9.0.10' prefix='24'><dhcp>
  <range start='10.9.0.8' end='10.9.0.12'/><range start='10.9.0.200' end='10.9.0.201'/>
  <range start='10.9.0.11' end='10.9.0.13'/>
  <host mac='52:54:00:00:00:01' ip='10.9.0.9'/></dhcp></ip></network>""")


def ips(*last: int) -> list[str]:
    return [f"10.9.0.{n}" for n in last]


def test_from_the_start_without_a_cursor_skipping_own_and_reserved() -> None:
    assert list(candidates(NET, None, set())) == ips(8, 11, 12, 13, 200, 201)  # overlaps once


def test_from_the_cursor_round_to_it_again() -> None:
    assert list(candidates(NET, "10.9.0.12", set())) == ips(12, 13, 200, 201, 8, 11)
    assert list(candidates(NET, "10.9.0.201", set())) == ips(201, 8, 11, 12, 13, 200)


def test_a_cursor_between_ranges_or_past_them() -> None:
    assert list(candidates(NET, "10.9.0.100", set()))[:2] == ips(200, 201)
    assert list(candidates(NET, "10.9.0.250", set()))[:2] == ips(8, 11)


def test_held_addresses_are_skipped_and_a_full_range_yields_nothing() -> None:
    held = {ipaddress.IPv4Address(a) for a in ips(12, 13, 200)}
    assert next(candidates(NET, "10.9.0.12", held)) == "10.9.0.201"
    everything = {ipaddress.IPv4Address(a) for a in ips(8, 11, 12, 13, 200, 201)}
    assert list(candidates(NET, None, everything)) == []


def test_the_cursor_moves_past_what_was_handed_out_and_wraps() -> None:
    assert next_after(NET, "10.9.0.8") == "10.9.0.11"
    assert next_after(NET, "10.9.0.201") == "10.9.0.8"


def test_the_first_candidate_of_a_huge_range_is_as_cheap_as_of_a_small_one() -> None:
    big = parse_network("""<network><name>b</name><ip address='10.0.0.1' prefix='8'><dhcp>
      <range start='10.0.0.2' end='10.255.255.254'/></dhcp></ip></network>""")
    assert list(itertools.islice(candidates(big, "10.128.0.0", set()), 2)) == [
        "10.128.0.0", "10.128.0.1"]  # fmt: skip
