"""What a lab made, written down before it is made, so ``lab down`` can always clean up.

The record is a JSON file per lab under ``/run/virtnet-lab/NAME/``; every namespace is
recorded *before* it is created and every process right after it starts, with an fsync, so
a ``lab up`` killed at any point leaves a record that ``lab down`` can finish from.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

LAB_ROOT = Path("/run/virtnet-lab")


@dataclass
class Record:
    lab: str
    namespaces: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    host: str | None = None  # the namespace playing the virtnet host
    addresses: dict[str, str] = field(default_factory=dict)  # endpoint -> address, for checks
    backend: str | None = None
    ovsdb: str | None = None  # the lab's own Open vSwitch, if it runs one (its db socket)
    ovn_nb: str | None = None  # an OVN lab's northbound database
    central: str | None = None  # an OVN lab's central namespace (its management virtnet)

    @property
    def directory(self) -> Path:
        return LAB_ROOT / self.lab

    @property
    def state_dir(self) -> Path:
        return self.directory / "state"

    @property
    def run_dir(self) -> Path:
        return self.directory / "run"

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o711)
        LAB_ROOT.chmod(0o711)  # dnsmasq's user must reach run/dnsmasq below it
        tmp = self.directory / "record.json.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(asdict(self), indent=1).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.directory / "record.json")

    def add_namespace(self, name: str) -> None:
        self.namespaces.append(name)
        self.save()

    def add_pid(self, pid: int) -> None:
        self.pids.append(pid)
        self.save()

    @classmethod
    def load(cls, lab: str) -> Record | None:
        path = LAB_ROOT / lab / "record.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return cls(**data)
