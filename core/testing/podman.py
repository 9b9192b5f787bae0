"""A private podman for a test: its own storage, run and config directories, the CNI
network backend with virtnet-cni's directory as its plugin path, images built locally.

Nothing of the machine's podman is used or changed: ``CONTAINERS_CONF`` and the storage
options point every path into one directory, removed by :meth:`Podman.cleanup`. Containers
get their network namespaces from podman (in /run/netns, deleted with the container).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

#: The dynamic busybox of Debian and what it links: a whole userland in three files.
BUSYBOX_FILES = ("/bin/busybox", "/lib/x86_64-linux-gnu/libc.so.6",
                 "/lib/x86_64-linux-gnu/libresolv.so.2", "/lib64/ld-linux-x86-64.so.2")  # fmt: skip


class Podman:
    #: Where podman keeps a cache of image blobs whatever --root says; removed after a test
    #: only if the test made it (the machine's own podman may use it).
    BLOB_CACHE = Path("/var/lib/containers")

    def __init__(self, plugin_dir: Path) -> None:
        self.made_cache = not self.BLOB_CACHE.exists()
        # podman refuses a run root longer than 50 characters: a short one under /run
        self.dir = directory = Path(tempfile.mkdtemp(prefix="vtpodman-", dir="/run"))
        self.netd = directory / "net.d"
        self.netd.mkdir(parents=True)
        (directory / "tmp").mkdir()
        self.conf = directory / "containers.conf"
        self.conf.write_text(
            # podman asks for 1048576 open files and as many processes, which a root without
            # CAP_SYS_RESOURCE (this machine's sandbox) cannot grant, even at its own limits;
            # lowering always works, and a test's busybox needs little
            "[containers]\n"
            'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{directory / "events.log"}"\n'
            f'tmp_dir = "{directory / "tmp"}"\n'
            "[network]\n"
            'network_backend = "cni"\n'
            f'cni_plugin_dirs = ["{plugin_dir}"]\n'
            f'network_config_dir = "{self.netd}"\n'
        )

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = ["podman", "--root", str(self.dir / "root"), "--runroot", str(self.dir / "run"),
               "--storage-driver", "vfs", *args]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                              env={**os.environ, "CONTAINERS_CONF": str(self.conf)})  # fmt: skip

    def network(self, conflist: dict[str, Any]) -> None:
        """A CNI network list (podman 4.3's libcni speaks up to cniVersion 1.0.0)."""
        (self.netd / f"{conflist['name']}.conflist").write_text(json.dumps(conflist))

    def import_busybox(self, image: str) -> None:
        """An image of busybox and its libraries, made here (no registry is reachable)."""
        archive = self.dir / "busybox.tar"
        with tarfile.open(archive, "w") as tar:
            for path in BUSYBOX_FILES:
                tar.add(os.path.realpath(path), arcname=path.lstrip("/"))  # links: their files
            applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True,
                                     check=True).stdout.split()  # fmt: skip
            for applet in applets:  # sh, ip, ping, cat...: busybox under each name
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
        done = self("import", str(archive), image)
        if done.returncode != 0:
            raise RuntimeError(f"podman import: {done.stderr.strip()}")

    def cleanup(self) -> None:
        """Containers and storage go; podman's own processes end with their containers."""
        self("rm", "--all", "--force", "--time", "0", timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.made_cache:
            shutil.rmtree(self.BLOB_CACHE, ignore_errors=True)
