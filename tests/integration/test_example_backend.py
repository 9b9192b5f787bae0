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
