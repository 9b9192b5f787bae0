"""The CLI as a user meets it: real processes, exit codes, one-line errors, concurrency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest


def virtnet(
    tmp_path: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        "-m",
        "virtnet.cli",
        "--state-dir",
        str(tmp_path / "s"),
        "--run-dir",
        str(tmp_path / "r"),
        *args,
    ]
    return subprocess.run(
        cmd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


NAT = "<network><name>{}</name><forward mode='nat'/><ip address='{}' prefix='24'/></network>"


def test_define_list_dumpxml_autostart_undefine(tmp_path: Path) -> None:
    (tmp_path / "d.xml").write_text(NAT.format("default", "192.168.122.1"))
    done = virtnet(tmp_path, "net-define", str(tmp_path / "d.xml"))
    assert done.returncode == 0 and "Network default defined" in done.stdout
    listed = virtnet(tmp_path, "net-list", "--all")
    assert listed.stdout.splitlines()[0].split() == ["Name", "State", "Autostart", "Persistent"]
    assert listed.stdout.splitlines()[2].split() == ["default", "inactive", "no", "yes"]
    assert virtnet(tmp_path, "net-list").stdout.count("default") == 0  # active only
    xml = virtnet(tmp_path, "net-dumpxml", "default").stdout
    assert "<bridge name='virbr0' stp='off' delay='0'/>" in xml and "<uuid>" in xml
    assert virtnet(tmp_path, "net-dumpxml", "--inactive", "default").stdout == xml
    assert virtnet(tmp_path, "net-autostart", "default").returncode == 0
    pin = "<host mac='52:54:00:00:00:42' ip='192.168.122.42'/>"
    updated = virtnet(tmp_path, "net-update", "default", "add", "ip-dhcp-host", pin)
    assert updated.stdout.strip() == "Updated network default persistent config", updated.stderr
    rows = json.loads(virtnet(tmp_path, "net-list", "--inactive", "--json").stdout)
    assert rows[0]["autostart"] is True and rows[0]["bridge"] == "virbr0"
    uuid = virtnet(tmp_path, "net-uuid", "default").stdout.strip()
    assert virtnet(tmp_path, "net-name", uuid).stdout.strip() == "default"
    info = virtnet(tmp_path, "net-info", "default").stdout
    assert "Persistent:     yes" in info and f"UUID:           {uuid}" in info
    assert virtnet(tmp_path, "net-autostart", "--disable", "default").returncode == 0
    assert virtnet(tmp_path, "net-undefine", "default").returncode == 0
    assert json.loads(virtnet(tmp_path, "net-list", "--all", "--json").stdout) == []


def test_define_from_stdin(tmp_path: Path) -> None:
    assert virtnet(tmp_path, "net-define", "-", stdin=NAT.format("s", "10.0.0.1")).returncode == 0


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("<network><name>x", "error: network: malformed XML"),
        ("<network><name>a/b</name></network>", "error: network/name: 'a/b' must not contain '/'"),
        (
            "<network><name>n</name><bridge name='waytoolongbridgename'/></network>",
            "error: network/bridge/@name: interface name 'waytoolongbridgename' is longer than 15 bytes",
        ),
        (
            NAT.format("other", "192.168.122.77").replace("24", "16"),
            "error: network/ip/@address: subnet 192.168.0.0/16 overlaps 192.168.122.0/24 of network 'base'",
        ),
    ],
    ids=["malformed", "bad-name", "bad-ifname", "overlap"],
)
def test_bad_input_exits_2_with_one_line_and_changes_nothing(
    tmp_path: Path, xml: str, message: str
) -> None:
    virtnet(tmp_path, "net-define", "-", stdin=NAT.format("base", "192.168.122.1"))
    before = virtnet(tmp_path, "net-list", "--all", "--json").stdout
    done = virtnet(tmp_path, "net-define", "-", stdin=xml)
    assert done.returncode == 2
    assert done.stderr.startswith(message)
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert virtnet(tmp_path, "net-list", "--all", "--json").stdout == before


def test_usage_errors_exit_2_and_operation_errors_exit_1(tmp_path: Path) -> None:
    assert virtnet(tmp_path, "net-frob").returncode == 2
    assert virtnet(tmp_path, "net-start").returncode == 2
    missing = virtnet(tmp_path, "net-start", "ghost")
    assert missing.returncode == 1 and missing.stderr == "error: network 'ghost' does not exist\n"
    assert virtnet(tmp_path, "net-name", "nope").returncode == 2
    assert virtnet(tmp_path, "net-define", str(tmp_path / "absent.xml")).returncode == 2


def test_verbose_shows_the_traceback(tmp_path: Path) -> None:
    done = virtnet(tmp_path, "-v", "net-start", "ghost")
    assert done.returncode == 1 and "Traceback" in done.stderr


def test_netns_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    done = virtnet(tmp_path, "--netns", "no-such-ns-virtnet", "net-list")
    assert done.returncode == 2  # bad input: the option names nothing
    assert "network namespace 'no-such-ns-virtnet' does not exist" in done.stderr
    assert not Path("/run/netns/no-such-ns-virtnet").exists()


def test_twenty_processes_at_once_lose_nothing(tmp_path: Path) -> None:
    def define(i: int) -> subprocess.CompletedProcess[str]:
        return virtnet(tmp_path, "net-define", "-", stdin=NAT.format(f"n{i}", f"10.{i}.0.1"))

    with ThreadPoolExecutor(20) as pool:
        done = list(pool.map(define, range(20)))
    # all of them create the databases: once in CI one said "database is locked" (SQLite's
    # switch of a new file to WAL while another opens it); they now open it under the lock
    assert [d.returncode for d in done] == [0] * 20, [d.stderr for d in done if d.returncode]
    rows = json.loads(virtnet(tmp_path, "net-list", "--all", "--json").stdout)
    assert sorted(r["name"] for r in rows) == sorted(f"n{i}" for i in range(20))
    bridges = [r["bridge"] for r in rows]
    assert len(set(bridges)) == 20  # each define saw the others: no bridge name handed out twice


def test_twenty_processes_racing_for_one_subnet_let_exactly_one_win(tmp_path: Path) -> None:
    def define(i: int) -> int:
        return virtnet(
            tmp_path, "net-define", "-", stdin=NAT.format(f"n{i}", "10.77.0.1")
        ).returncode

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(define, range(20)))
    assert sorted(codes) == [0] + [2] * 19


def test_drivers_lists_none_without_backends(tmp_path: Path) -> None:
    done = virtnet(tmp_path, "drivers", "--json", env={"VIRTNET_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert done.returncode == 0 and json.loads(done.stdout) == []


@pytest.mark.parametrize(
    "args",
    [
        ["net-info", "a/b"],
        ["net-info", "../../etc/passwd"],
        ["net-info", ""],
        ["net-info", "a\nb"],
        ["net-info", "x" * 300],
        ["net-port-create", "n", "--owner", "-1"],
        ["net-port-create", "n", "--owner", "1099511627776"],
        ["net-port-create", "n", "--no-such-option"],
        ["no-such-command"],
        ["--netns", "a/b", "net-list"],
        ["--netns", "", "net-list"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str]) -> None:
    done = virtnet(tmp_path, *args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr


@pytest.mark.parametrize(
    ("data", "accepted"),
    [
        (b"<network><name>u8</name></network>", True),
        (b"\xef\xbb\xbf<network><name>bom</name></network>", True),
        ("<network><name>u16</name></network>".encode("utf-16"), True),
        ("<network><name>l1\xe9</name></network>".encode("latin-1"), False),
        (b"<network><name>\xff\xfe\x00</name></network>"[:0] + b"\x80\x81", False),
    ],
)
def test_definitions_in_other_encodings(tmp_path: Path, data: bytes, accepted: bool) -> None:
    path = tmp_path / "net.xml"
    path.write_bytes(data)
    done = virtnet(tmp_path, "net-define", str(path))
    assert done.returncode == (0 if accepted else 2), done.stderr
    assert "Traceback" not in done.stderr
    if not accepted:
        assert done.stderr.startswith("error: FILE: ") and "not UTF-8" in done.stderr


def test_without_root_the_error_says_what_is_needed(tmp_path: Path) -> None:
    """Against a state directory of root's, as ``make lab`` leaves /var/lib/virtnet (the
    default one may not exist yet on a fresh machine, and there is nothing to refuse)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a command as another user")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    env = {**os.environ, "VIRTNET_STATE_DIR": str(state), "VIRTNET_RUN_DIR": str(tmp_path / "r")}
    done = subprocess.run([sys.executable, "-m", "virtnet.cli", "net-list"], user="nobody",
                          cwd="/", env=env, capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("error: permission denied") and "as root" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_shell_completion_offers_commands_and_this_hosts_networks(tmp_path: Path) -> None:
    (tmp_path / "d.xml").write_text(NAT.format("default", "192.168.122.1"))
    assert virtnet(tmp_path, "net-define", str(tmp_path / "d.xml")).returncode == 0
    words = f"virtnet --state-dir {tmp_path / 's'} --run-dir {tmp_path / 'r'} net-start de"
    env = {"_VIRTNET_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": "6"}
    done = subprocess.run([sys.executable, "-m", "virtnet.cli"], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60, check=False)  # fmt: skip
    assert done.stdout.split() == ["plain,default"], done.stderr
    env["COMP_WORDS"] = f"virtnet --state-dir {tmp_path / 'none'} net-info "
    env["COMP_CWORD"] = "4"
    done = subprocess.run([sys.executable, "-m", "virtnet.cli"], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60, check=False)  # fmt: skip
    assert done.stdout.strip() == "" and not (tmp_path / "none").exists()  # read-only


def test_looking_creates_nothing(tmp_path: Path) -> None:
    """drivers and a listing of a host where nothing was ever defined leave no directories."""
    assert virtnet(tmp_path, "drivers").returncode == 0
    listed = virtnet(tmp_path, "net-list", "--all", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    assert not (tmp_path / "s").exists() and not (tmp_path / "r").exists()
