"""A virtnetd for a test: started inside a test namespace on private directories, stopped
(or killed) by its pid, with the thin client and the Python client pointed at it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from virtnet.client import Client, DaemonNotRunning
from virtnet.paths import socket_path
from virtnet.testing.netns import Lab

BIN = Path(sys.executable).parent


@dataclass
class Daemon:
    netns: str
    state_dir: Path
    run_dir: Path
    lab: Lab
    options: tuple[str, ...] = ("--interval", "0.5")
    proc: subprocess.Popen[str] | None = None
    #: extra environment (a backend's settings: ``VIRTNET_OVSDB``, ``VIRTNET_OVN_NB``)
    env: dict[str, str] = field(default_factory=dict)
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.run_dir / "virtnetd.log"

    @property
    def socket(self) -> Path:
        return socket_path(self.run_dir)

    @property
    def host_args(self) -> list[str]:
        return [
            "--netns",
            self.netns,
            "--state-dir",
            str(self.state_dir),
            "--run-dir",
            str(self.run_dir),
        ]

    def start(self, *options: str, timeout: float = 20.0) -> Daemon:
        """Start and wait until it answers; ``options`` replace the default ones."""
        self.run_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
        args = [str(BIN / "virtnetd"), *self.host_args, *(options or self.options)]
        with open(self.log, "a") as log:
            self.proc = self.lab.track(
                subprocess.Popen(
                    args,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    text=True,
                    env={**os.environ, **self.env},
                )
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"virtnetd exited {self.proc.returncode}: {self.log_text()}")
            try:
                with Client.connect(self.socket) as client:
                    client.hello()
                return self
            except DaemonNotRunning:
                time.sleep(0.05)
        raise RuntimeError(f"virtnetd did not answer in {timeout} s: {self.log_text()}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, and wait for the daemon to exit (it waits up to 30 s for the links its
        stops retired to be deleted: a benchmark that just stopped 1,000 networks gives it
        that)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """``kill -9``: nothing of the daemon's gets a chance to clean up."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)

    def client(self) -> Client:
        return Client.connect(self.socket)

    def cli(
        self,
        *args: str,
        input: str | None = None,
        env: dict[str, str] | None = None,
        client: str = "virtnet",
    ) -> subprocess.CompletedProcess[str]:
        """The thin ``virtnet`` client as a process; fails if the daemon does not answer.
        ``client``: ``virtnet`` (the compiled one) or ``virtnet-py`` (the Python one)."""
        return subprocess.run(
            [str(BIN / client), *self.host_args, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "VIRTNET_DAEMON": "require", **(env or {})},
        )

    def log_text(self) -> str:
        try:
            return self.log.read_text()[-4000:]
        except OSError:
            return ""
