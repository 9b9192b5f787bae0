"""The compiled thin client (bin/virtnet-client.c, installed as ``virtnet``) against a
scripted daemon: it sends, byte for byte in meaning, the request the Python thin client
(``virtnet-py``) sends, prints what either prints, and answers a broken or hostile daemon
with one line and exit 1 (never a crash, a hang or a write past a buffer)."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
CLIENTS = ("virtnet", "virtnet-py")
RESULT = b'{"jsonrpc":"2.0","id":1,"result":{"exit_code":0}}\n'
MALFORMED = b"error: virtnetd sent a malformed reply\n"

pytestmark = pytest.mark.skipif(
    not (BIN / "virtnet-py").exists(), reason="the compiled client is installed by make install"
)


class ScriptedDaemon:
    """A socket that takes one request per connection, keeps it, and sends ``reply`` in
    pieces of ``chunk`` bytes (a reply split anywhere must be read whole)."""

    def __init__(self, run_dir: Path) -> None:
        run_dir.mkdir(exist_ok=True)
        self.path = run_dir / "virtnetd.sock"
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(self.path))
        self.server.listen(4)
        self.reply = RESULT
        self.chunk = 1 << 16
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                request = b""
                while not request.endswith(b"\n"):
                    got = conn.recv(1 << 20)
                    if not got:
                        break
                    request += got
                self.requests.append(request)
                for at in range(0, len(self.reply), self.chunk):
                    try:
                        conn.sendall(self.reply[at : at + self.chunk])
                    except OSError:
                        break

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[ScriptedDaemon]:
    scripted = ScriptedDaemon(tmp_path / "run")
    yield scripted
    scripted.close()


def run(
    client: str, tmp_path: Path, *argv: bytes, stdin: bytes = b"", **env: str
) -> tuple[int, bytes, bytes]:
    import subprocess

    done = subprocess.run(
        [str(BIN / client), *argv],
        input=stdin,
        capture_output=True,
        cwd=tmp_path,
        timeout=30,
        env={
            "PATH": os.environ["PATH"],
            "VIRTNET_RUN_DIR": str(tmp_path / "run"),
            "VIRTNET_DAEMON": "require",
            **env,
        },
    )
    return done.returncode, done.stdout, done.stderr


def test_both_clients_send_the_same_request(daemon: ScriptedDaemon, tmp_path: Path) -> None:
    """Host options, -v, UTF-8 and non-UTF-8 words, standard input with any bytes, files
    named (twice, a directory, /dev/null, a missing one) and relative state dirs."""
    (tmp_path / "a.xml").write_bytes(b"<network>\x00\xff\xfe caf\xc3\xa9</network>")
    (tmp_path / "dir").mkdir()
    cases: list[tuple[tuple[bytes, ...], bytes, dict[str, str]]] = [
        ((b"net-list",), b"", {}),
        ((b"--netns", b"ns1", b"-v", b"net-info", 'caf\xe9 \U0001f600 "\\\t'.encode()), b"", {}),
        ((b"--state-dir=./a/../b//c/", b"net-info", b"\xff\xfe\xc3(\xed\xa0\x80"), b"", {}),
        ((b"net-define", b"-"), bytes(range(256)) * 3, {"VIRTNET_STATE_DIR": "rel/st"}),
        ((b"net-define", b"a.xml", b"a.xml", b"dir", b"/dev/null", b"missing"), b"", {}),
        ((b"--verbose", b"--netns=x", b"--state-dir", b"/s//t/..", b"net-list", b"-"), b"x", {}),
    ]
    for argv, stdin, env in cases:
        sent = []
        for client in CLIENTS:
            daemon.requests.clear()
            assert run(client, tmp_path, *argv, stdin=stdin, **env) == (0, b"", b""), client
            (request,) = daemon.requests
            assert request.endswith(b"\n") and request.count(b"\n") == 1
            sent.append(json.loads(request))
        assert sent[0] == sent[1], argv
    assert sent[0]["params"]["host"] == {"state_dir": "/s", "netns": "x"}


def test_both_clients_print_what_the_daemon_sends(daemon: ScriptedDaemon, tmp_path: Path) -> None:
    """Output on either stream (any text, split anywhere), other notifications ignored, the
    exit code of the result or of an error, and a daemon that hangs up."""
    cases: list[tuple[bytes, int]] = [
        (
            b'{"jsonrpc":"2.0","method":"output","params":{"fd":1,"data":"h\\u00e9llo \\u2603 '
            b'\\ud83d\\ude00 caf\xc3\xa9\\n\\"\\\\\\/\\b\\f\\r\\t"}}\n'
            b'{"jsonrpc":"2.0","method":"progress","params":{"step":1}}\n'
            b'{"jsonrpc":"2.0","method":"output","params":{"fd":2,"data":"warn\\n"}}\n'
            b'{"jsonrpc":"2.0","method":"output","params":{"data":"default fd\\n"}}\n'
            b'{"jsonrpc":"2.0","id":1,"result":{"exit_code":3}}\n',
            1,
        ),
        (
            b'{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"boom","data":{"exit_code":2}}}\n',
            7,
        ),
        (b'{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"bad request"}}\n', 1 << 16),
        (b'{"jsonrpc":"2.0","id":1,"result":{}}\n', 5),
        (b'{"jsonrpc":"2.0","method":"output","params":{"fd":1,"data":"half"}}\n', 1 << 16),
        (b"", 1 << 16),
    ]
    for reply, chunk in cases:
        daemon.reply, daemon.chunk = reply, chunk
        compiled, python = (run(client, tmp_path, b"net-list") for client in CLIENTS)
        assert compiled == python, reply
    daemon.reply = cases[0][0]
    code, out, err = run("virtnet", tmp_path, b"net-list")
    assert (code, err) == (3, b"warn\n")
    assert out == 'héllo ☃ 😀 café\n"\\/\b\f\r\tdefault fd\n'.encode()


@pytest.mark.parametrize(
    "reply",
    [
        b"not json\n",
        b"[1,2]\n",
        b'{"result":{"exit_code":0}} trailing\n',
        b'{"result":{"exit_code":"0"' + b"\n",
        b'{"method":"output","params":{"data":"unterminated}}\n',
        b'{"method":"output","params":{"data":"bad \\x escape"}}\n',
        b'{"method":"output","params":{"data":"raw \x01 control"}}\n',
        b'{"method":"output","params":{"data":"\\u12"}}\n',
        b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"\n",
        b"[" * 100000 + b"\n",
        b'{"result":{"exit_code":--1}}\n',
        b"\x00\n",
        b'{"result":nul}\n',
    ],
)
def test_a_broken_or_hostile_daemon_gets_one_line_and_exit_1(
    daemon: ScriptedDaemon, tmp_path: Path, reply: bytes
) -> None:
    daemon.reply = reply
    code, out, err = run("virtnet", tmp_path, b"net-list")
    assert (code, out, err) == (1, b"", MALFORMED)


def test_odd_but_valid_replies(daemon: ScriptedDaemon, tmp_path: Path) -> None:
    """An exit code out of range or not a number counts as 1; a lone surrogate that stands
    for a byte (Python's surrogateescape) is that byte; any other is '?'."""
    for huge in (b"1e300", b"1e999", b"-1e999"):
        daemon.reply = b'{"result":{"exit_code":' + huge + b"}}\n"
        assert run("virtnet", tmp_path, b"net-list") == (1, b"", b"")
    daemon.reply = b'{"result":{"exit_code":null}}\n'
    assert run("virtnet", tmp_path, b"net-list") == (1, b"", b"")
    daemon.reply = b'{"result":{"exit_code":258}}\n'
    assert run("virtnet", tmp_path, b"net-list") == (2, b"", b"")
    daemon.reply = (
        b'{"method":"output","params":{"data":"\\udcff\\ud800x"}}\n{"result":{"exit_code":0}}\n'
    )
    assert run("virtnet", tmp_path, b"net-list") == (0, b"\xff?x", b"")


def test_without_a_daemon_both_say_the_same_line(tmp_path: Path) -> None:
    """No socket, a socket path too long for the kernel, a socket nobody listens on."""
    (tmp_path / "run").mkdir()
    long_dir = str(tmp_path / ("d" * 120))
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "run" / "virtnetd.sock"))
    stale.close()  # bound, never listened: ECONNREFUSED
    for env in ({}, {"VIRTNET_RUN_DIR": long_dir}):
        compiled, python = (run(client, tmp_path, b"net-list", **env) for client in CLIENTS)
        assert compiled == python
        assert compiled[0] == 1 and compiled[2].startswith(b"error: ")
        assert compiled[2].count(b"\n") == 1 and b"None" not in compiled[2], compiled
    bogus = [run(client, tmp_path, b"net-list", VIRTNET_DAEMON="sometimes") for client in CLIENTS]
    assert bogus[0] == bogus[1] == (
        2, b"", b"error: VIRTNET_DAEMON: 'sometimes' is not auto, never or require\n"
    )  # fmt: skip
