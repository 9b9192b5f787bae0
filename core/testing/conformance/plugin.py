"""The conformance suite's pytest plugin: which backend, its description, prepared worlds.

``virtnet conformance BACKEND`` loads it; a vendor's own test suite can too
(``pytest -p virtnet.testing.conformance.plugin --pyargs virtnet.testing.conformance
--virtnet-backend mine``).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from virtnet.backend import BackendInfo
from virtnet.model.network import ForwardMode
from virtnet.model.port import AttachmentKind
from virtnet.testing.conformance.profiles import LOWER, Profile, profile
from virtnet.testing.netns import Lab
from virtnet.testing.world import World, make_world

PREPARE_GROUP = "virtnet.conformance"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--virtnet-backend", required=True, help="The backend under test.")


def describe(name: str) -> BackendInfo | None:
    from virtnet.api import Virtnet

    with tempfile.TemporaryDirectory() as tmp, Virtnet(Path(tmp) / "s", Path(tmp) / "r") as vn:
        return {b.name: b for b in vn.backends()}.get(name)


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--virtnet-backend"))


@pytest.fixture(scope="session")
def info(backend: str) -> BackendInfo:
    found = describe(backend)
    if found is None:
        pytest.fail(f"backend {backend!r} is not installed or not usable (see virtnet drivers)")
    return found


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every check that takes ``mode`` runs once per forward mode the backend claims; one that
    takes ``kind``, once per attachment kind (tap, veth, macvtap, macvlan) too."""
    found = describe(str(metafunc.config.getoption("--virtnet-backend")))
    if "mode" in metafunc.fixturenames:
        modes = sorted(found.forward_modes, key=list(ForwardMode).index) if found else []
        metafunc.parametrize("mode", modes, ids=[m.value for m in modes])
    if "kind" in metafunc.fixturenames:  # and, for traffic, once per attachment kind
        kinds = sorted(found.attachments - {AttachmentKind.NONE}) if found else []
        metafunc.parametrize("kind", kinds, ids=[k.value for k in kinds])


@dataclass
class Setup:
    """A world (host, outside, a Virtnet in the host) made ready for one mode."""

    world: World
    backend: str
    info: BackendInfo
    profile: Profile

    def define(self) -> str:
        net = self.world.vn.define_network(self.profile.xml, backend=self.backend)
        return net.name


def _prepare(backend: str, world: World) -> AbstractContextManager[dict[str, str]]:
    """The backend's own preparation (an OVS server, a bridge for bridge mode), if it ships
    one as a ``virtnet.conformance`` entry point: ``prepare(world)`` -> context manager."""
    for ep in metadata.entry_points(group=PREPARE_GROUP):
        if ep.name == backend:
            made: AbstractContextManager[dict[str, str]] = ep.load()(world)
            return made
    return contextlib.nullcontext({})


@pytest.fixture
def setup(lab: Lab, backend: str, info: BackendInfo, mode: ForwardMode) -> Iterator[Setup]:
    from virtnet.testing.fixtures import run_dir_for_test

    with make_world(lab, run_dir_for_test()) as world:
        # the direct modes' device: a veth whose other end is in the outside namespace
        lab.cable(world.host, LOWER, world.outside, "lan0")
        world.host.ip("link", "set", LOWER, "up")
        with _prepare(backend, world) as prepared:
            ready = describe(backend) or info  # now that its preparation ran
            if not ready.readiness.ok:
                problems = "; ".join(ready.readiness.problems)
                pytest.fail(f"backend {backend!r} is not ready: {problems}")
            chosen = profile(info, mode, prepared)
            if chosen is None:
                pytest.skip(f"{mode.value}: needs a bridge the backend does not own; its "
                            f"conformance hook ({PREPARE_GROUP}) did not make one")  # fmt: skip
            yield Setup(world, backend, info, chosen)
            for row in world.vn.list_networks(inactive=False):  # before the hook's teardown
                world.vn.destroy_network(row.name)


class Results:
    """Collects outcomes for ``virtnet conformance``'s summary and ``--json``."""

    def __init__(self) -> None:
        self.checks: list[dict[str, Any]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            reason = ""
            if report.skipped and isinstance(report.longrepr, tuple):
                reason = str(report.longrepr[2]).removeprefix("Skipped: ")
            elif report.failed:
                reason = str(report.longrepr).strip().splitlines()[-1][:300]
            self.checks.append(
                {"check": report.nodeid.split("::")[-1], "outcome": report.outcome,
                 "reason": reason}
            )  # fmt: skip

    def count(self, outcome: str) -> int:
        return sum(1 for c in self.checks if c["outcome"] == outcome)


__all__ = ["PREPARE_GROUP", "Results", "Setup"]
