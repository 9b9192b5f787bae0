"""The in-tree backends pass the conformance suite vendors run (``virtnet conformance``),
each claimed forward mode with its checks; what is skipped is skipped for a stated reason."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from virtnet.testing.fixtures import needs_root

pytestmark = [needs_root, pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(1800)]

#: Skips that are expected: check -> the reasons it may give.
EXPECTED_SKIPS = {
    "test_the_forward_mode_means_what_libvirt_says": ("no reach beyond the network",),
    "test_a_guest_cannot_send_from_another_address": ("does not claim", "no address plan"),
    "test_isolated_ports_do_not_reach_each_other": ("does not claim", "no address plan"),
    "test_drift_reports_a_deleted_port_link_and_bridge": ("the port lives in the guest only",),
    "test_guests_get_addresses_and_talk": ("one guest per device",),
}


@pytest.mark.parametrize("backend", ["linuxbridge", "macvtap", "ovs"])
def test_in_tree_backend_passes_the_conformance_suite(backend: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "virtnet.cli", "conformance", backend, "--json"],
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    result = json.loads(done.stdout)
    failed = [c for c in result["checks"] if c["outcome"] == "failed"]
    assert not failed, failed
    for check in result["checks"]:
        if check["outcome"] == "skipped":
            name = check["check"].split("[")[0]
            reasons = EXPECTED_SKIPS.get(name, ())
            assert any(reason in check["reason"] for reason in reasons), check
    assert result["passed"] >= 30 and done.returncode == 0, done.stderr
