"""The out-of-tree example backend (examples/backends/ptp) as a vendor ships it: virtnet built
as a wheel and installed into a fresh venv, the backend installed beside it from its own
pyproject.toml, found through its entry point, and passing ``virtnet conformance``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from virtnet.hookspecs import API_VERSION
from virtnet.testing.fixtures import needs_root

pytestmark = [needs_root, pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "backends" / "ptp"


def run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=900, check=False)  # fmt: skip
    assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (Debian's interpreter with its nftables and OVS bindings, as the README's
    set-up makes) with virtnet from a built wheel and the example from its source tree."""
    tmp = tmp_path_factory.mktemp("vendor")
    dist = tmp / "dist"
    build = "from setuptools import build_meta as b; import sys; print(b.build_wheel(sys.argv[1]))"
    wheel = dist / run(sys.executable, "-c", build, dist).stdout.strip().splitlines()[-1]
    env = tmp / "venv"
    run("/usr/bin/python3", "-m", "venv", "--system-site-packages", env)
    pip = [env / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    run(*pip, f"{wheel}[test]")
    run(*pip, "--no-build-isolation", EXAMPLE)
    return env


def test_the_example_is_found_through_its_entry_point(venv: Path, tmp_path: Path) -> None:
    listed = run(venv / "bin" / "virtnet", "--state-dir", tmp_path / "s", "--run-dir",
                 tmp_path / "r", "drivers", "--json")  # fmt: skip
    found = {b["name"]: b for b in json.loads(listed.stdout)}
    assert found["ptp"]["usable"] and found["ptp"]["api_version"] == API_VERSION
    assert found["ptp"]["forward_modes"] == ["isolated", "nat", "route"]


def test_the_example_passes_the_conformance_suite(venv: Path) -> None:
    done = subprocess.run([str(venv / "bin" / "virtnet"), "conformance", "ptp", "--json"],
                          capture_output=True, text=True, timeout=1800, check=False)  # fmt: skip
    result = json.loads(done.stdout)
    failed = [c for c in result["checks"] if c["outcome"] == "failed"]
    assert not failed, failed
    assert result["passed"] >= 25 and done.returncode == 0


BESIDE = """
import shutil
from virtnet.api import Virtnet
from virtnet.model.port import Attachment, AttachmentKind, NetworkPort
from virtnet.testing import Lab, can_ping
from virtnet.testing.fixtures import run_dir_for_test

run = run_dir_for_test()  # dnsmasq (its user) must reach it
lab = Lab()
try:
    host, guest = lab.netns("both"), lab.netns("g")
    with Virtnet(run / "state", run / "run", netns=host.name) as vn:
        vn.create_network("<network><name>p</name><forward mode='nat'/>"
                          "<ip address='10.88.1.1' prefix='24'/></network>", backend="ptp")
        vn.create_network("<network><name>b</name><forward mode='nat'/><bridge name='vbb0'/>"
                          "<ip address='10.88.2.1' prefix='24'/></network>")
        link = Attachment(kind=AttachmentKind.VETH, netns=guest.name, addresses=["10.88.1.9"])
        vn.create_port("p", NetworkPort(network="p", attachment=link))
        guest.ip("addr", "add", "10.88.1.9/32", "dev", "eth0")
        guest.ip("route", "add", "10.88.1.1", "dev", "eth0")
        assert can_ping(guest, "10.88.1.1"), "before"
        vn.destroy_network("b")  # the last bridged network: the ptp one still needs the table
        assert vn.check_network("p") == [], vn.check_network("p")
        kept = host.exec("nft", "list", "set", "inet", "virtnet", "same_p", check=False)
        assert '"vp' in kept.stdout, kept.stdout + kept.stderr  # its range of links, still there
        host.exec("nft", "delete", "table", "inet", "virtnet")  # and its check says when not
        assert any("missing" in line for line in vn.check_network("p")), vn.check_network("p")
        vn.repair_network("p")
        assert vn.check_network("p") == [], vn.check_network("p")
        assert can_ping(guest, "10.88.1.1"), "after"
        print("ok")
finally:
    lab.cleanup()
    shutil.rmtree(run, ignore_errors=True)
"""


def test_a_routed_network_keeps_its_firewall_when_the_last_bridged_one_stops(venv: Path) -> None:
    """virtnet's tables go when no network uses them: a network of links by prefix (its
    elements are ranges of names) counts as one."""
    done = run(venv / "bin" / "python", "-c", BESIDE)
    assert done.stdout.strip().endswith("ok")
