"""How the ovn backend tells a running ovn-controller from the traces a dead one leaves (its
pid file, its control socket, its chassis row): the live one is tested against the real
daemon in tests/integration/test_ovn_cluster.py."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from virtnet_ovn.controller import controller_problem


def test_no_pid_file_says_where_it_looked(tmp_path: Path) -> None:
    problem = controller_problem(str(tmp_path))
    assert problem is not None and str(tmp_path / "ovn-controller.pid") in problem


def test_a_pid_file_left_by_a_killed_process(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "ovn-controller.pid").write_text(f"{dead.pid}\n")
    problem = controller_problem(str(tmp_path))
    assert problem is not None and f"its pid {dead.pid}" in problem and "is gone" in problem


def test_a_live_pid_whose_control_socket_nobody_answers(tmp_path: Path) -> None:
    """The pid was reused by another process, or ovn-controller is wedged: the stale socket
    file refuses connections."""
    pid = os.getpid()
    (tmp_path / "ovn-controller.pid").write_text(f"{pid}\n")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / f"ovn-controller.{pid}.ctl"))
    stale.close()  # the file stays, nobody listens
    assert controller_problem(str(tmp_path), ask=False) is None  # the cheap look is fooled
    problem = controller_problem(str(tmp_path))
    assert problem is not None and "does not answer" in problem


def test_garbage_in_the_pid_file(tmp_path: Path) -> None:
    (tmp_path / "ovn-controller.pid").write_text("not a pid")
    problem = controller_problem(str(tmp_path))
    assert problem is not None and "unreadable" in problem
