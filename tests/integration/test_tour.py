"""The README's five-minute tour, run as a newcomer would type it: every command must work,
and the guest must really hold an address at the end of its DHCP step.

The tour's namespaces (``myhost``, ``guest1``) are replaced by the test's own, its state
goes to private directories, and its sample output lines are skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from virtnet.testing import Lab
from virtnet.testing.fixtures import needs_root, run_dir_for_test

pytestmark = [needs_root, pytest.mark.root]

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = (".", "ip", "virtnet")


def tour() -> list[str]:
    """The tour's commands, continuation lines joined, sample output left out."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## A five-minute tour\n\n```sh\n(.*?)^```", text, re.S | re.M)
    assert block is not None, "the README has no tour"
    commands: list[str] = []
    pending = ""
    for line in block[1].splitlines():
        if pending:
            pending += " " + line.strip()
        elif line.split(" ", 1)[0] in COMMANDS:
            pending = line
        if pending and not pending.endswith("\\"):
            commands.append(pending)
            pending = ""
        elif pending:
            pending = pending[:-1]
    return commands


def test_the_readme_tour_works_as_written(lab: Lab) -> None:
    host, guest = lab.netns("host"), lab.netns("guest1")
    run = run_dir_for_test()
    env = {**os.environ, "VIRTNET_STATE_DIR": str(run / "state"),
           "VIRTNET_RUN_DIR": str(run / "run"), "VIRTNET_DAEMON": "never",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # fmt: skip
    names = {"myhost": host.name, "guest1": guest.name}
    seen: dict[str, str] = {}
    try:
        for command in tour():
            if command.startswith((". ", "ip netns add", "ip netns del")):
                continue  # the venv is on PATH; the lab made the namespaces and removes them
            line = re.sub(r"\b(myhost|guest1)\b", lambda m: names[m[1]], command)
            done = subprocess.run(["bash", "-c", line], cwd=ROOT, env=env, capture_output=True,
                                  text=True, timeout=120, check=False)  # fmt: skip
            assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
            seen[command] = done.stdout + done.stderr
        address = next(out for cmd, out in seen.items() if cmd.startswith("ip -n guest1"))
        assert re.search(r"192\.168\.100\.1\d\d/24", address), address  # the lease, applied
        started = next(out for cmd, out in seen.items() if cmd.endswith("nftables, dnsmasq"))
        assert "warning: forward device 'eth1' does not exist" in started  # no eth1 in myhost
        leases = next(out for cmd, out in seen.items() if "net-dhcp-leases" in cmd)
        assert "192.168.100." in leases
        assert not host.links() - {"lo"}, "the tour's net-destroy left links behind"
    finally:
        subprocess.run(["virtnet", "--netns", host.name, "net-destroy", "vlan1"], env=env,
                       capture_output=True, timeout=60, check=False)  # fmt: skip
        shutil.rmtree(run, ignore_errors=True)
