"""Shared fixtures: the namespace lab from virtnet.testing, and an API on temporary dirs."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from virtnet.api import Virtnet

pytest_plugins = ["virtnet.testing.fixtures"]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Virtnet]:
    """A Virtnet on private dirs with only the installed plugins (no namespace)."""
    with Virtnet(tmp_path / "state", tmp_path / "run") as vn:
        yield vn


BUILDER = Path(__file__).parent / "guest" / "build-guest.sh"
CACHE = Path(os.environ.get("VIRTNET_GUEST_DIR", "/var/cache/virtnet-test-guest"))


@pytest.fixture(scope="session")
def guest_image() -> Iterator[Path]:
    """A bootable test guest (kernel + busybox initramfs that takes a DHCP lease, pings the
    ``target=`` of its command line, and powers off), built once per machine."""
    if not (CACHE / "vmlinuz").exists() or not (CACHE / "initrd.gz").exists():
        done = subprocess.run(
            ["bash", str(BUILDER), str(CACHE)], capture_output=True, text=True, timeout=900
        )
        if done.returncode != 0:
            pytest.fail(f"building the guest failed: {done.stderr[-2000:]}")
    if shutil.which("qemu-system-x86_64") is None:
        pytest.fail("qemu-system-x86_64 is missing (Debian: qemu-system-x86)")
    yield CACHE
