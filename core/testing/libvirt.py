"""Debian's libvirtd with its QEMU driver, in a test's network namespace and a private mount
namespace: its own /etc/libvirt (a qemu.conf for running as root without cgroups, security
drivers or per-domain namespaces; the hooks the test gives), /run/libvirt, /var/lib/libvirt.

libvirt resolves its build's default QEMU user before it reads qemu.conf, and Debian's is
``libvirt-qemu``, which a machine without libvirt-daemon-system lacks: the sandbox sees a
private /etc/passwd and /etc/group that have it. Nothing outside the namespaces changes;
libvirtd and the QEMUs it starts run in the test's namespace and are killed by pid.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

from virtnet.testing.netns import Lab, Namespace

QEMU_CONF = """user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = [ ]
cgroup_controllers = [ ]
stdio_handler = "file"
"""

SETUP = r"""
set -eu
for d in /run/libvirt /var/lib/libvirt /etc/libvirt /var/log/libvirt /var/cache/libvirt; do
  mkdir -p $d; mount -t tmpfs tmpfs $d
done
cp /etc/passwd /etc/group /run/libvirt/
echo 'libvirt-qemu:x:64055:64055::/nonexistent:/usr/sbin/nologin' >> /run/libvirt/passwd
printf 'libvirt-qemu:x:64055:\nkvm:x:64056:\n' >> /run/libvirt/group
mount --bind /run/libvirt/passwd /etc/passwd
mount --bind /run/libvirt/group /etc/group
printf '%s' "$QEMU_CONF" > /etc/libvirt/qemu.conf
mkdir -p /etc/libvirt/hooks
if [ -n "$HOOK" ]; then
  printf '%s' "$HOOK" > /etc/libvirt/hooks/qemu; chmod 755 /etc/libvirt/hooks/qemu
fi
CD=/usr/lib/x86_64-linux-gnu/libvirt/connection-driver  # the QEMU driver alone
mkdir -p /run/libvirt/cd; cp $CD/libvirt_driver_qemu.so /run/libvirt/cd/
mount --bind /run/libvirt/cd $CD
exec libvirtd --pid-file=/run/libvirt/sandbox.pid
"""


class Libvirtd:
    def __init__(self, ns: Namespace, lab: Lab, log: Path, hook: str = "") -> None:
        self.ns, self.lab, self.log, self.hook = ns, lab, log, hook
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 30) -> Libvirtd:
        env = {**os.environ, "QEMU_CONF": QEMU_CONF, "HOOK": self.hook,
               "LIBVIRT_LOG_OUTPUTS": "3:stderr"}  # fmt: skip
        with open(self.log, "a") as out:
            self.proc = self.lab.track(subprocess.Popen(
                ["ip", "netns", "exec", self.ns.name, "unshare", "-m", "--propagation",
                 "private", "bash", "-c", SETUP],
                stdout=out, stderr=subprocess.STDOUT, env=env, text=True,
            ))  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"libvirtd exited: {self.log.read_text()[-2000:]}")
            if self.virsh("version", check=False).returncode == 0:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"libvirtd did not answer: {self.log.read_text()[-2000:]}")

    def virsh(self, *args: str, check: bool = True, timeout: float = 120
              ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """virsh in libvirtd's mount namespace (its socket is on the private /run/libvirt)."""
        assert self.proc is not None
        cmd = ["nsenter", "-t", str(self.proc.pid), "-m", "-n", "virsh", "-q", "-c",
               "qemu:///system", *args]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"virsh {shlex.join(args)}: {done.stderr.strip()}")
        return done

    def stop(self) -> None:
        """libvirtd and every QEMU it started, by pid: the processes of the namespace that
        share libvirtd's private mount namespace (the test's own processes do not)."""
        if self.proc is None:
            return
        try:
            mine = os.readlink(f"/proc/{self.proc.pid}/ns/mnt")
        except OSError:
            mine = None
        for pid in self.ns.pids() if mine else []:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/ns/mnt") == mine:
                    os.kill(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
