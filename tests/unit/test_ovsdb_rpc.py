"""The OVSDB JSON-RPC client reads messages however the stream cuts them."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

from virtnet.services.ovsdb_rpc import OvsdbRpc


def test_messages_split_anywhere_and_echoes_in_between(tmp_path: Path) -> None:
    """Two echo requests in one chunk, the second cut between the two bytes of a character,
    then the answer: both echoes are answered with their parameters intact, and the answer
    is read whole."""
    path = tmp_path / "db.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)
    replies: list[object] = []

    def serve() -> None:
        conn, _ = server.accept()
        request = json.loads(conn.recv(65536))
        second = json.dumps({"method": "echo", "params": ["café"], "id": "e2"},
                            ensure_ascii=False).encode()  # fmt: skip
        cut = second.index("é".encode()) + 1
        conn.sendall(b'{"method": "echo", "params": [1], "id": "e1"}' + second[:cut])
        replies.append(json.loads(conn.recv(65536)))  # the first: the rest is not sent yet
        conn.sendall(second[cut:])
        replies.append(json.loads(conn.recv(65536)))
        answer = {"id": request["id"], "result": [{"rows": [{"name": "café"}]}], "error": None}
        conn.sendall(json.dumps(answer, ensure_ascii=False).encode())
        conn.close()

    thread = threading.Thread(target=serve)
    thread.start()
    with OvsdbRpc(f"unix:{path}", timeout=5) as db:
        assert db.transact("X", [{"op": "select"}]) == [{"rows": [{"name": "café"}]}]
    thread.join()
    server.close()
    assert replies == [{"id": "e1", "result": [1], "error": None},
                       {"id": "e2", "result": ["café"], "error": None}]  # fmt: skip
