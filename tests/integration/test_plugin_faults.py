"""Fault isolation: a broken plugin breaks only itself, says who it is, and a new backend
is picked up without restarting virtnetd."""

from __future__ import annotations

import json
import shutil
import signal
import textwrap
import time
from pathlib import Path

import pytest

from virtnet.testing import Namespace
from virtnet.testing.daemon import Daemon
from virtnet.testing.fixtures import needs_root
from virtnet.testing.netns import Lab

pytestmark = [needs_root, pytest.mark.root]

NAT = """<network><name>plain</name><forward mode='nat'/><bridge name='vbrpl0'/>
  <ip address='10.94.0.1' prefix='24'/></network>"""

HEADER = """
from virtnet import hookimpl
from virtnet.backend import BackendInfo
from virtnet.model import ForwardMode
from virtnet.model.port import AttachmentKind

def info(name, api_version="1.0"):
    return BackendInfo(name=name, version="0.1", summary="test",
                       forward_modes=frozenset({ForwardMode.ISOLATED}),
                       attachments=frozenset({AttachmentKind.NONE}), api_version=api_version)
"""

PLUGINS = {
    # the guide's old example: shutil used, not imported
    "noimport": "import nosuchmodule_virtnet_test\nbackend = object()\n",
    "badimport": HEADER + "class B:\n    @hookimpl\n    def virtnet_backend_describe(self):\n"
    "        return info('badimport', shutil.which('ip'))\nbackend = B()\n",
    "describes_badly": HEADER + "class B:\n    @hookimpl\n    def virtnet_backend_describe(self):\n"
    "        raise RuntimeError('probe exploded')\nbackend = B()\n",
    "claims_badly": HEADER + "class B:\n    @hookimpl\n    def virtnet_backend_describe(self):\n"
    "        return info('claims_badly')\n"
    "    @hookimpl(tryfirst=True)\n    def virtnet_network_claim(self, network):\n"
    "        raise KeyError('claim exploded')\nbackend = B()\n",
    "too_new": HEADER + "class B:\n    @hookimpl\n    def virtnet_backend_describe(self):\n"
    "        return info('too_new', '2.0')\nbackend = B()\n",
    "plans_badly": HEADER + "class B:\n    @hookimpl\n    def virtnet_backend_describe(self):\n"
    "        return info('plans_badly')\n"
    "    @hookimpl\n    def virtnet_network_plan_start(self, network):\n"
    "        return 1 / 0\nbackend = B()\n",
}


def install(site: Path, name: str, source: str) -> None:
    """A distribution the way pip installs one: the module and a dist-info with its entry
    point."""
    site.mkdir(exist_ok=True)
    (site / f"{name}.py").write_text(textwrap.dedent(source))
    dist = site / f"{name}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[virtnet.drivers]\n{name} = {name}:backend\n")


@pytest.fixture
def broken_site(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    for name, source in PLUGINS.items():
        install(site, name, source)
    return {"PYTHONPATH": str(site)}


def test_broken_plugins_are_listed_and_the_rest_works(virtnet_cli, broken_site) -> None:  # type: ignore[no-untyped-def]
    listed = virtnet_cli("drivers", env=broken_site)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert any(line.startswith("linuxbridge ") for line in lines)
    unusable = {line.split(":")[0]: line for line in lines if "UNUSABLE" in line}
    assert set(unusable) == {"noimport", "badimport", "describes_badly", "claims_badly", "too_new"}
    assert (
        "import failed: noimport 0.1, virtnet.drivers: noimport = noimport:backend"
        in (unusable["noimport"])
    )
    assert "ModuleNotFoundError" in unusable["noimport"]
    assert "NameError: name 'shutil' is not defined" in unusable["badimport"]
    assert "RuntimeError: probe exploded" in unusable["describes_badly"]
    assert "(claim failed" in unusable["claims_badly"]
    assert "written for hook API 2.0" in unusable["too_new"]
    as_json = json.loads(virtnet_cli("drivers", "--json", env=broken_site).stdout)
    stages = {b["name"]: b.get("stage") for b in as_json if not b["usable"]}
    assert stages["noimport"] == "import" and stages["claims_badly"] == "claim"
    # an ordinary network is untouched by any of it
    made = virtnet_cli("net-create", "-", input=NAT, env=broken_site)
    assert made.returncode == 0, made.stderr
    info = json.loads(virtnet_cli("net-info", "plain", "--json", env=broken_site).stdout)
    assert info["backend"] == "linuxbridge"


def test_an_error_inside_a_backend_hook_names_the_backend(virtnet_cli, broken_site) -> None:  # type: ignore[no-untyped-def]
    iso = "<network><name>iso</name><bridge name='vbrpl1'/></network>"
    failed = virtnet_cli("net-create", "--backend", "plans_badly", "-", input=iso, env=broken_site)
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines() == [
        "error: backend 'plans_badly' (plans_badly 0.1) failed in virtnet_network_plan_start: "
        "ZeroDivisionError: division by zero"
    ]


def test_virtnetd_picks_up_a_backend_installed_after_it_started(
    lab: Lab, host_ns: Namespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from virtnet.testing.fixtures import run_dir_for_test

    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setenv("PYTHONPATH", str(site))
    daemon = Daemon(host_ns.name, tmp_path / "state", run_dir_for_test(), lab).start()
    try:
        before = json.loads(daemon.cli("drivers", "--json").stdout)
        assert "late" not in {b["name"] for b in before}
        install(site, "late", HEADER + "class B:\n    @hookimpl\n"
                "    def virtnet_backend_describe(self):\n        return info('late')\n"
                "backend = B()\n")  # fmt: skip
        after = json.loads(daemon.cli("drivers", "--json").stdout)
        assert {"late", "linuxbridge"} <= {b["name"] for b in after if b["usable"]}
        # SIGHUP does the same, for a deployment script that installs and pokes
        install(site, "later", HEADER + "class B:\n    @hookimpl\n"
                "    def virtnet_backend_describe(self):\n        return info('later')\n"
                "backend = B()\n")  # fmt: skip
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with daemon.client() as client:
                if "later" in {b["name"] for b in client.backends()}:
                    break
            time.sleep(0.1)
        else:
            pytest.fail("virtnetd did not load the backend on SIGHUP: " + daemon.log_text())
    finally:
        daemon.stop()
        shutil.rmtree(daemon.run_dir, ignore_errors=True)
