"""Shared fixtures: the namespace lab from virtnet.testing, and an API on temporary dirs."""

from __future__ import annotations

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
