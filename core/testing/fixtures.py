"""pytest fixtures: ``lab`` (namespaces removed after the test, even on failure),
``host_ns`` (a namespace playing a virtnet host), ``virtnet_cli`` (runs the CLI inside it
with private state and run directories, in-process) and ``virtnetd`` (a daemon serving it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from virtnet.testing.daemon import Daemon
from virtnet.testing.netns import Lab, Namespace
from virtnet.testing.world import World, make_world

RUN_DIR_PREFIX = "virtnet-test-"

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"
)


def pytest_sessionstart(session: pytest.Session) -> None:
    """What a killed run (of the suite, or of ``virtnet conformance``) left goes first."""
    if os.geteuid() == 0 and shutil.which("ip") is not None:
        from virtnet.testing.netns import reap_stale

        reap_stale()


@pytest.fixture
def lab() -> Iterator[Lab]:
    made = Lab()
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture
def host_ns(lab: Lab) -> Namespace:
    return lab.netns("host")


CliRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def virtnet_cli(host_ns: Namespace, tmp_path: Path) -> Iterator[CliRunner]:
    """``virtnet_cli("net-list", "--all")`` runs ``virtnet --netns <host>`` as a process."""
    state, run = tmp_path / "state", run_dir_for_test()

    def call(
        *args: str, input: str | None = None, check: bool = False, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = [
            sys.executable,
            "-m",
            "virtnet.cli",
            "--netns",
            host_ns.name,
            "--state-dir",
            str(state),
            "--run-dir",
            str(run),
            *args,
        ]
        return subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
            env={**os.environ, **(env or {})},
        )

    call.state_dir = state  # type: ignore[attr-defined]
    call.run_dir = run  # type: ignore[attr-defined]

    yield call
    # Tear down whatever the test left active, through virtnet itself.
    listed = call("net-list", "--json")
    for row in json.loads(listed.stdout or "[]") if listed.returncode == 0 else []:
        call("net-destroy", row["name"])
    shutil.rmtree(run, ignore_errors=True)


@pytest.fixture
def virtnetd(lab: Lab, host_ns: Namespace, tmp_path: Path) -> Iterator[Daemon]:
    """A running virtnetd serving ``host_ns`` (``.cli(...)`` runs the thin client against it).

    Afterwards the networks left active are destroyed through it and it is stopped; the lab
    then removes the namespace and kills anything still running there.
    """
    run = run_dir_for_test()
    try:
        daemon = Daemon(host_ns.name, tmp_path / "state", run, lab).start()
    except BaseException:  # a daemon that never came up leaves no run dir behind
        shutil.rmtree(run, ignore_errors=True)
        raise
    yield daemon
    if daemon.proc is not None and daemon.proc.poll() is None:
        listed = daemon.cli("net-list", "--json")
        for row in json.loads(listed.stdout or "[]") if listed.returncode == 0 else []:
            daemon.cli("net-destroy", row["name"])
        daemon.stop()
    shutil.rmtree(daemon.run_dir, ignore_errors=True)


def run_dir_for_test() -> Path:
    """A fresh run dir on a tmpfs, as a host's (:func:`~virtnet.testing.netns.run_base`):
    dnsmasq, after dropping privileges, must be able to reach its files there (pytest's
    tmp_path is private to root). Its maker is written in it, so
    :func:`virtnet.testing.netns.reap_stale` removes it once that process is gone."""
    from virtnet.testing.netns import mark_owner, run_base

    made = Path(tempfile.mkdtemp(prefix=RUN_DIR_PREFIX, dir=run_base()))
    made.chmod(0o711)
    mark_owner(made)
    return made


@pytest.fixture
def world(lab: Lab) -> Iterator[World]:
    """A host namespace with an uplink to an outside peer, and a Virtnet acting in it."""
    with make_world(lab, run_dir_for_test()) as made:
        yield made
