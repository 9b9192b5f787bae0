"""``virtnet lab``: the seed topology's full matrix on each backend, the second example, and
``lab down`` after a killed ``lab up``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from virtnet.lab.build import ns_name
from virtnet.lab.record import LAB_ROOT
from virtnet.testing.fixtures import needs_root

pytestmark = [needs_root, pytest.mark.root, pytest.mark.slow]
EXAMPLES = Path(__file__).parents[2] / "examples"


def virtnet(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "virtnet.cli", *args],
        capture_output=True, text=True, timeout=timeout, cwd=EXAMPLES,
    )  # fmt: skip


def leftovers(lab: str) -> list[str]:
    prefix = ns_name(lab, "")
    names = [n for n in os.listdir("/run/netns") if n.startswith(prefix)]
    if (LAB_ROOT / lab).exists():
        names.append(str(LAB_ROOT / lab))
    procs = subprocess.run(["pgrep", "-af", f"{LAB_ROOT}/{lab}/"], capture_output=True, text=True)
    ovs = subprocess.run(["pgrep", "-af", "virtnet-ovs-"], capture_output=True, text=True)
    return names + procs.stdout.splitlines() + ovs.stdout.splitlines()


@pytest.mark.parametrize("backend", [None, "macvtap", "ovs"])
def test_the_seed_lab_passes_its_whole_matrix(backend: str | None) -> None:
    args = ["lab", "run", "archnetwork.yaml"] + (["--backend", backend] if backend else [])
    done = virtnet(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "23/23 as expected" in done.stdout
    if backend:
        assert f"network lan1: starting on {backend}" in done.stdout
    if backend == "ovs":
        assert "network vlan1: starting on ovs" in done.stdout
    assert leftovers("arch") == []


def test_a_second_lab_shows_the_format_is_general() -> None:
    done = virtnet("lab", "run", "routed-office.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "7/7 as expected" in done.stdout
    assert leftovers("office") == []


def test_lab_down_cleans_up_after_a_killed_lab_up() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "virtnet.cli", "lab", "up", "archnetwork.yaml"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=EXAMPLES,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # kill it half-way: networks up, guests being plugged
            if "guest b:" in line:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert leftovers("arch"), "the kill came too late to test anything"
    again = virtnet("lab", "up", "archnetwork.yaml")
    assert again.returncode != 0 and "lab down first" in again.stderr
    down = virtnet("lab", "down", "archnetwork.yaml")
    assert down.returncode == 0, down.stderr
    time.sleep(0.1)
    assert leftovers("arch") == []


def test_a_mismatch_exits_1_and_is_marked(tmp_path: Path) -> None:
    wrong = (
        (EXAMPLES / "routed-office.yaml")
        .read_text()
        .replace("{from: kiosk1, to: kiosk2, reach: false}", "{from: kiosk1, to: kiosk2}")
    )
    (tmp_path / "wrong.yaml").write_text(wrong)
    done = subprocess.run(
        [sys.executable, "-m", "virtnet.cli", "lab", "run", str(tmp_path / "wrong.yaml")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    assert "MISMATCH" in done.stdout and "6/7 as expected" in done.stdout
    assert leftovers("office") == []
