"""The card's layout is packaged whole: every folder under core/ is a listed package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

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
    drivers = {"linuxbridge", "ovs", "macvtap", "ovn"}
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


def test_the_manual_pages_are_what_the_commands_say() -> None:
    """docs/man is written from click's and argparse's definitions: an option added or gone
    changes the page (regenerate: ``python -m virtnet.manpage docs/man``); groff reads the
    pages without a warning; the install puts them where ``man`` looks beside bin/."""
    from importlib.metadata import version

    from virtnet.manpage import pages

    for name, text in pages(version("virtnet")).items():
        shipped = ROOT / "docs" / "man" / name
        assert shipped.read_text() == text, f"stale: python -m virtnet.manpage docs/man ({name})"
        section = name.rsplit(".", 1)[1]
        assert (Path(sys.prefix) / "share" / "man" / f"man{section}" / name).exists()
        if shutil.which("groff"):
            checked = subprocess.run(["groff", "-man", "-ww", "-z", str(shipped)],
                                     capture_output=True, text=True, check=False)  # fmt: skip
            assert checked.returncode == 0 and checked.stderr == "", checked.stderr
    page = pages("0")["virtnet.1"]
    assert ".SS net\\-port\\-create [OPTIONS] NETWORK" in page and "\\fB\\-\\-count" in page


def test_bash_completion_is_shipped_and_found_where_bash_completion_looks() -> None:
    """The shipped script is click's own (regenerate: ``_VIRTNET_COMPLETE=bash_source virtnet
    > contrib/bash-completion/virtnet``); installed under share/bash-completion, bash's loader
    finds it through XDG_DATA_DIRS (a system install: /usr/local/share, searched anyway) and
    it completes a command."""
    from click.shell_completion import BashComplete

    from virtnet.cli import cli

    shipped = ROOT / "contrib" / "bash-completion" / "virtnet"
    made = BashComplete(cli, {}, "virtnet", "_VIRTNET_COMPLETE").source()
    assert shipped.read_text().strip() == made.strip()
    loader = Path("/usr/share/bash-completion/bash_completion")
    if not loader.exists():
        pytest.skip("bash-completion is not installed (Debian: bash-completion)")
    script = (
        f"source {loader}; _completion_loader virtnet; "
        "COMP_WORDS=(virtnet net-st); COMP_CWORD=1; _virtnet_completion virtnet; "
        'echo "${COMPREPLY[@]}"'
    )
    bin_dir = Path(sys.prefix) / "bin"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "XDG_DATA_DIRS": f"{Path(sys.prefix) / 'share'}:/usr/share"}  # fmt: skip
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env,
                          timeout=60, check=False)  # fmt: skip
    assert done.stdout.split() == ["net-start"], done.stderr
