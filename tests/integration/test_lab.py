"""``virtnet lab``: the seed topology's full matrix on each backend, the second example, and
``lab down`` after a killed ``lab up``."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lxml.html
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
        assert f"network lan1: started on {backend}" in done.stdout
    if backend == "ovs":
        assert "network vlan1: started on ovs, 192.168.100.1/24" in done.stdout
    assert leftovers("arch") == []


def test_the_seed_lab_passes_its_whole_matrix_across_three_ovn_hosts() -> None:
    done = virtnet("lab", "run", "archnetwork-ovn.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "20/20 as expected" in done.stdout
    assert "OVN: hv1, hv2, hv3 registered" in done.stdout
    assert leftovers("archovn") == []


def rendered(page: Path, tmp_path: Path) -> Any:
    """The page as headless Chromium renders it (its DOM after layout), and a screenshot."""
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (Debian: chromium)")
    profile = tmp_path / "chromium-profile"  # never root's own
    base = ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
            f"--user-data-dir={profile}", "--window-size=1400,1000"]  # fmt: skip
    shot = tmp_path / "report.png"
    done = subprocess.run([*base, f"--screenshot={shot}", page.as_uri()], capture_output=True,
                          timeout=120, check=False)  # fmt: skip
    assert shot.stat().st_size > 10_000, done.stderr[-500:]  # a real picture, not a blank
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout  # fmt: skip
    return lxml.html.fromstring(dom)


def test_a_second_lab_shows_the_format_is_general(tmp_path: Path) -> None:
    report = tmp_path / "office.html"
    done = virtnet("lab", "run", "routed-office.yaml", "--report", str(report))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "7/7 as expected" in done.stdout
    assert leftovers("office") == []
    page = rendered(report, tmp_path)
    drawn = {t.text_content() for t in page.iter("{*}text", "text")}  # the SVG's labels
    for guest in ("server", "kiosk1", "kiosk2", "office"):
        assert any(guest in label for label in drawn), guest
    rows = page.xpath("//tbody/tr")
    assert len(rows) == 7 and all(r.get("class") == "ok" for r in rows)
    assert "7/7 as expected" in page.xpath("string(//p[@class='summary'])")


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
    report = tmp_path / "wrong.html"
    subprocess.run([sys.executable, "-m", "virtnet.cli", "lab", "run", str(tmp_path / "wrong.yaml"),
                    "--report", str(report)], capture_output=True, timeout=300, check=False)  # fmt: skip
    bad = rendered(report, tmp_path).xpath("//tbody/tr[@class='bad']/td/text()")
    assert bad[:2] == ["kiosk1", "kiosk2"] and "MISMATCH" in bad
    assert leftovers("office") == []
