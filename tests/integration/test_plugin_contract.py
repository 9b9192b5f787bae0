"""The backend contract end to end: a vendor backend installed through the entry-point group,
driven by the CLI inside a throw-away namespace, making real kernel objects; failure
rollback and crash recovery through the undo journal."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from virtnet.testing import Namespace
from virtnet.testing.fixtures import needs_root

pytestmark = [needs_root, pytest.mark.root]

ISOLATED = "<network><name>iso</name><bridge name='vbr{tag}'/></network>"


@pytest.fixture
def vendor_env(tmp_path: Path) -> dict[str, str]:
    """Install the vendor backend the way pip would: a dist-info with an entry point."""
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(Path(__file__).parent / "vendor" / "vendor_backend.py", site)
    dist = site / "vendor_backend-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vendor-backend\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[virtnet.drivers]\nvendor = vendor_backend:backend\n")
    return {"PYTHONPATH": str(site)}


def test_vendor_backend_is_found_through_entry_points(virtnet_cli, vendor_env) -> None:  # type: ignore[no-untyped-def]
    out = virtnet_cli("drivers", "--json", env=vendor_env, check=True)
    backends = {b["name"]: b for b in json.loads(out.stdout)}
    assert backends["vendor"]["forward_modes"] == ["isolated"]
    assert backends["vendor"]["ready"] is True


def test_start_and_destroy_make_and_remove_real_links(
    virtnet_cli, vendor_env, host_ns: Namespace, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    xml = tmp_path / "n.xml"
    xml.write_text(ISOLATED.format(tag="t1"))
    before = host_ns.links()
    assert virtnet_cli("net-define", str(xml), env=vendor_env).returncode == 0
    dry = virtnet_cli("net-start", "--dry-run", "iso", env=vendor_env)
    assert dry.stdout.splitlines() == [
        "backend: vendor (claimed by plugin vendor)",
        "  1. create bridge vbrt1",
        "  2. create veth vbrt1x",
        "  3. set vbrt1 up",
    ]
    assert host_ns.links() == before  # a dry run changes nothing
    started = virtnet_cli("net-start", "iso", env=vendor_env)
    assert started.returncode == 0, started.stderr
    assert {"vbrt1", "vbrt1x"} <= host_ns.links()
    info = json.loads(virtnet_cli("net-info", "iso", "--json", env=vendor_env).stdout)
    assert info["active"] and info["backend"] == "vendor" and info["status"]["bridge"] == "vbrt1"
    assert virtnet_cli("net-check", "iso", env=vendor_env).returncode == 0
    host_ns.ip("link", "del", "vbrt1")
    drift = virtnet_cli("net-check", "iso", env=vendor_env)
    assert drift.returncode == 1 and "bridge vbrt1 is missing" in drift.stdout
    assert virtnet_cli("net-destroy", "iso", env=vendor_env).returncode == 0
    assert host_ns.links() == before


def test_failure_half_way_rolls_back_everything(
    virtnet_cli, vendor_env, host_ns: Namespace, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    xml = tmp_path / "n.xml"
    xml.write_text(ISOLATED.format(tag="t2"))
    before = host_ns.links()
    virtnet_cli("net-define", str(xml), env=vendor_env, check=True)
    failed = virtnet_cli("net-start", "iso", env={**vendor_env, "VENDOR_FAIL": "raise"})
    assert failed.returncode == 1
    assert "fail on purpose: injected failure" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert host_ns.links() == before
    listed = json.loads(virtnet_cli("net-list", "--all", "--json", env=vendor_env).stdout)
    assert [(r["name"], r["active"]) for r in listed] == [("iso", False)]


def test_crash_half_way_is_undone_by_the_next_run(
    virtnet_cli, vendor_env, host_ns: Namespace, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    xml = tmp_path / "n.xml"
    xml.write_text(ISOLATED.format(tag="t3"))
    before = host_ns.links()
    virtnet_cli("net-define", str(xml), env=vendor_env, check=True)
    crashed = virtnet_cli("net-start", "iso", env={**vendor_env, "VENDOR_FAIL": "crash"})
    assert crashed.returncode == 9
    assert {"vbrt3", "vbrt3x"} <= host_ns.links()  # the killed process left them behind
    journal = virtnet_cli.run_dir / "journal" / "network-iso.jsonl"
    assert journal.exists()
    virtnet_cli("net-list", env=vendor_env, check=True)  # any next run recovers
    assert host_ns.links() == before
    assert not journal.exists()
    started = virtnet_cli("net-start", "iso", env=vendor_env)
    assert started.returncode == 0, started.stderr
    virtnet_cli("net-destroy", "iso", env=vendor_env, check=True)


def test_start_without_a_claiming_backend_is_a_clear_error(virtnet_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    xml = tmp_path / "n.xml"
    xml.write_text(
        "<network><name>natty</name><forward mode='nat'/><ip address='10.8.0.1' prefix='24'/></network>"
    )
    virtnet_cli("net-define", str(xml), check=True)
    failed = virtnet_cli("net-start", "natty", env={"VIRTNET_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert failed.returncode == 1
    assert "no installed backend serves forward mode 'nat'" in failed.stderr


def test_the_conformance_suite_catches_a_vendor_whose_undo_deletes_a_namesake(
    vendor_env: dict[str, str],
) -> None:
    """This vendor's undo runs `ip link del NAME` without looking at the label: with a
    bridge of the same name already there, its failed start deletes that bridge. The suite
    must say so (the core's own steps would have left it alone)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "virtnet.cli", "conformance", "vendor", "-k", "namesake", "--json"],
        capture_output=True, text=True, timeout=600, check=False,
        env={**__import__("os").environ, **vendor_env},
    )  # fmt: skip
    result = json.loads(done.stdout)
    assert done.returncode == 1 and result["failed"] == 1, result
    assert (
        "test_a_namesake_survives_a_failed_start_and_plug[isolated]"
        in (result["checks"][-1]["check"])
    )
