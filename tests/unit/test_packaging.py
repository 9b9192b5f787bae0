"""The card's layout is packaged whole: every folder under core/ is a listed package."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_every_core_subpackage_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {
        "virtnet" + ".".join(["", *list(p.parent.relative_to(ROOT / "core").parts)])
        for p in (ROOT / "core").rglob("__init__.py")
    }
    missing = on_disk - listed
    assert not missing, f"add to [tool.setuptools] packages: {sorted(missing)}"


def test_core_never_imports_a_driver() -> None:
    for path in (ROOT / "core").rglob("*.py"):
        text = path.read_text()
        for driver in ("virtnet_linuxbridge", "virtnet_ovs", "virtnet_macvtap"):
            assert f"import {driver}" not in text and f"from {driver}" not in text, path


def test_drivers_use_only_the_cores_public_api_and_never_each_other() -> None:
    drivers = {"linuxbridge", "ovs", "macvtap"}
    for path in (ROOT / "drivers").rglob("*.py"):
        own = path.relative_to(ROOT / "drivers").parts[0]
        text = path.read_text()
        for other in drivers - {own}:
            assert f"virtnet_{other}" not in text, f"{path} imports driver {other}"
        for private in ("virtnet.api", "virtnet.store", "virtnet.cli", "virtnet.plugins"):
            assert f"from {private} " not in text and f"import {private}\n" not in text, (
                f"{path} reaches into {private}, which is not part of the backend API"
            )


def test_the_tours_udhcpc_script_is_the_one_the_test_guests_use() -> None:
    from virtnet.testing.guest import _UDHCPC_SCRIPT

    assert (ROOT / "examples" / "udhcpc.sh").read_text() == _UDHCPC_SCRIPT
