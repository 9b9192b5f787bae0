"""The daemon's pure parts: the thin client's JSON and options, the protocol's error mapping,
event formatting, per-thread output, autostart order."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st

from virtnet import rpc, thin
from virtnet.api import Repair, Virtnet
from virtnet.cli_event import format_event
from virtnet.daemon import stdio
from virtnet.daemon.main import _parser, read_config, settle
from virtnet.daemon.methods import to_json
from virtnet.daemon.monitor import Monitor, autostart_order
from virtnet.errors import Conflict, InvalidInput, NotFound
from virtnet.paths import resolve_dirs, socket_path

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)


@given(json_values)
def test_the_thin_client_json_matches_the_json_module(value: object) -> None:
    assert json.loads(thin.encode(value)) == value
    assert thin.decode(json.dumps(value)) == value


def test_the_thin_client_rejects_trailing_garbage() -> None:
    with pytest.raises(ValueError):
        thin.decode('{"a": 1} x')


@pytest.mark.parametrize(
    ("argv", "chosen", "rest"),
    [
        (["net-list"], {}, ["net-list"]),
        (["--netns", "h1", "-v", "net-start", "x"], {"netns": "h1"}, ["-v", "net-start", "x"]),
        (
            ["--run-dir=/r", "--state-dir", "/s", "net-list"],
            {"run_dir": "/r", "state_dir": "/s"},
            ["net-list"],
        ),
        (
            ["net-port-create", "n", "--netns", "guest"],
            {},
            ["net-port-create", "n", "--netns", "guest"],
        ),
        (["--netns"], {}, ["--netns"]),
    ],
)
def test_host_options_are_split_from_the_command(
    argv: list[str], chosen: dict[str, str], rest: list[str]
) -> None:
    assert thin.split_globals(argv) == (chosen, rest)


@pytest.mark.parametrize(
    "chosen", [{}, {"netns": "h1"}, {"run_dir": "/tmp/r"}, {"run_dir": "rel", "netns": "x"}]
)
def test_the_thin_client_finds_the_socket_where_the_daemon_puts_it(
    chosen: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VIRTNET_RUN_DIR", raising=False)
    expected = socket_path(resolve_dirs(None, chosen.get("run_dir"), chosen.get("netns"))[1])
    assert thin.socket_for(chosen) == str(expected)


@pytest.mark.parametrize(
    "error",
    [
        InvalidInput("bad", subject="network/ip/@address"),
        NotFound("network 'x' does not exist"),
        Conflict("already active"),
    ],
)
def test_errors_cross_the_wire_as_the_same_class(error: Exception) -> None:
    message = json.loads(rpc.error_from_exception(7, error))  # type: ignore[arg-type]
    back = rpc.exception_from_error(message["error"])
    assert type(back) is type(error) and str(back) == str(error)
    assert back.subject == error.subject  # type: ignore[attr-defined]
    assert message["error"]["data"]["exit_code"] == error.exit_code  # type: ignore[attr-defined]


def test_events_print_on_one_line() -> None:
    line = format_event(
        {
            "kind": "lease-added",
            "network": "default",
            "port": None,
            "detail": {"mac": "52:54:00:00:00:01", "ip": "10.0.0.5", "expiry": 1700000000},
            "time": 1764617401.25,
        }
    )
    assert line == (
        "2025-12-01 19:30:01.250+0000: lease-added network=default expiry=1700000000 "
        "ip=10.0.0.5 mac=52:54:00:00:00:01"
    )


def test_each_thread_writes_to_its_own_client() -> None:
    stdio.install()
    seen: dict[int, list[str]] = {0: [], 1: []}

    def run(n: int) -> None:
        with stdio.redirected(seen[n].append, seen[n].append):
            for _ in range(50):
                click.echo(f"thread {n}")

    threads = [threading.Thread(target=run, args=(n,)) for n in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n in (0, 1):
        assert "".join(seen[n]) == f"thread {n}\n" * 50


def test_autostart_starts_bridge_makers_first(tmp_path: Path) -> None:
    with Virtnet(tmp_path / "s", tmp_path / "r") as vn:
        vn.define_network(
            "<network><name>a-onto</name><forward mode='bridge'/><bridge name='br9'/></network>"
        )
        vn.define_network(
            "<network><name>z-nat</name><forward mode='nat'/><bridge name='br9'/>"
            "<ip address='10.9.0.1' prefix='24'/></network>"
        )
        vn.define_network("<network><name>m-off</name><bridge name='br8'/></network>")
        for name in ("a-onto", "z-nat"):
            vn.set_autostart(name)
        assert autostart_order(vn) == ["z-nat", "a-onto"]
        summary = to_json(vn.list_networks())
        assert [row["name"] for row in summary] == ["a-onto", "m-off", "z-nat"]
        assert to_json(vn.get_network("z-nat"))["xml"].startswith("<network>")


def test_the_daemon_config_file_is_read_and_checked(tmp_path: Path) -> None:
    good = tmp_path / "good.conf"
    good.write_text("[virtnetd]\ngroup = virtnet\ninterval = 2.5\nrepair = no\n")
    assert read_config(good) == {"group": "virtnet", "interval": 2.5, "repair": False}
    good.write_text("[virtnetd]\ndnsmasq_shared = 32\n")
    assert read_config(good) == {"dnsmasq_shared": 32}
    good.write_text("[virtnetd]\ngroup = virtnet\ninterval = 2.5\nrepair = no\n")
    args = settle(_parser().parse_args(["--config", str(good), "--interval", "1"]))
    assert (args.group, args.interval, args.repair, args.autostart) == ("virtnet", 1.0, False, True)
    for text, subject in (
        ("[virtnetd]\ncolour = blue\n", "colour"),
        ("[virtnetd]\ninterval = soon\n", "interval"),
        ("[virtnetd]\ninterval = -1\n", "interval"),
        ("[virtnetd]\nrepair = perhaps\n", "repair"),
        ("[virtnetd]\ndnsmasq_shared = lots\n", "dnsmasq_shared"),
        ("[virtnetd]\ndnsmasq_shared = 1000\n", "dnsmasq_shared"),
        ("[other]\n", str(tmp_path / "bad.conf")),
    ):
        bad = tmp_path / "bad.conf"
        bad.write_text(text)
        with pytest.raises(InvalidInput) as error:
            read_config(bad)
        assert subject in str(error.value)
    with pytest.raises(InvalidInput, match="--config"):
        read_config(tmp_path / "missing.conf")
    assert read_config(Path(__file__).parents[2] / "contrib" / "virtnetd.conf") == {}


def test_raw_dnsmasq_options_are_a_daemon_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from virtnet.host import make_host

    monkeypatch.setenv("VIRTNET_DNSMASQ_OPTIONS", "")  # undone after the test, whatever sets it
    assert not make_host(tmp_path, tmp_path).allow_dnsmasq_options
    conf = tmp_path / "on.conf"
    conf.write_text("[virtnetd]\ndnsmasq_options = yes\n")
    settle(_parser().parse_args(["--config", str(conf)]))
    assert make_host(tmp_path, tmp_path).allow_dnsmasq_options


def test_the_monitor_says_once_what_it_cannot_repair(caplog: pytest.LogCaptureFixture) -> None:
    """The monitor's own logic, over a stand-in for the API: drift nobody here can fix (a NIC
    down) is logged when it appears, not on every pass; a repair is logged each time."""
    down = ["forward device eth1 is down"]
    results = iter(
        [Repair(down, down, []), Repair(down, down, []), Repair([], [], []), Repair(down, [], [])]
    )

    class Api:
        class host:
            netns = None

        class store:
            @staticmethod
            def active_network(name: str) -> object:
                return object()

        @staticmethod
        def repair_network(name: str) -> Repair:
            return next(results)

    monitor = Monitor(Api(), threading.RLock())  # type: ignore[arg-type]
    with caplog.at_level("WARNING", logger="virtnetd"):
        for _ in range(4):
            monitor._repair("n1")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "network n1 drifted: forward device eth1 is down",
        "network n1: still: forward device eth1 is down",
        "network n1 drifted: forward device eth1 is down",
        "network n1: repaired",
    ]


def test_a_metrics_address_is_host_port_or_a_unix_path() -> None:
    import socket as sock

    from virtnet.daemon.metrics import parse_address

    assert parse_address("127.0.0.1:9472") == (sock.AF_INET, ("127.0.0.1", 9472))
    assert parse_address("[::1]:9472") == (sock.AF_INET6, ("::1", 9472))
    assert parse_address("unix:/run/virtnet/metrics.sock") == (
        sock.AF_UNIX,
        "/run/virtnet/metrics.sock",
    )
    for bad in ("9472", "localhost", "127.0.0.1:0", "127.0.0.1:70000", "unix:relative"):
        with pytest.raises(InvalidInput):
            parse_address(bad)


def test_operation_times_land_in_cumulative_buckets() -> None:
    from virtnet.daemon.metrics import Metrics

    metrics = Metrics()
    for seconds in (0.0005, 0.003, 0.003, 7.0):
        metrics.observe("start_network", seconds)

    class Empty:
        @staticmethod
        def list_networks() -> list[object]:
            return []

        @staticmethod
        def dropped_packets() -> dict[str, int]:
            return {}

    text = metrics.exposition(Empty())
    assert 'virtnet_operation_seconds_bucket{operation="start_network",le="0.001"} 1' in text
    assert 'virtnet_operation_seconds_bucket{operation="start_network",le="0.005"} 3' in text
    assert 'virtnet_operation_seconds_bucket{operation="start_network",le="+Inf"} 4' in text
    assert 'virtnet_operation_seconds_count{operation="start_network"} 4' in text


def test_a_subscriber_that_comes_back_gets_what_it_missed_or_is_told_it_cannot() -> None:
    from virtnet.daemon.events import LOST, EventHub
    from virtnet.events import Event, EventKind

    hub = EventHub(keep=3)
    for name in ("a", "b", "c", "d"):
        hub.publish(Event(EventKind.NETWORK_DEFINED, name))
    position = hub.position()
    assert position["seq"] == 4
    with hub.subscription(since=2, boot=hub.boot) as q:  # 3 and 4 are kept
        assert [q.get_nowait()["network"] for _ in range(2)] == ["c", "d"]
        assert q.empty()
        hub.publish(Event(EventKind.NETWORK_DEFINED, "e"))
        assert q.get_nowait()["seq"] == 5  # then the live stream
    with hub.subscription(since=5, boot=hub.boot) as q:
        assert q.empty()  # up to date: nothing to replay
    for since, boot, why in ((1, hub.boot, "no longer kept"), (4, "other", "restarted"),
                             (99, hub.boot, "no longer kept")):  # fmt: skip
        with hub.subscription(since=since, boot=boot) as q:
            lost = q.get_nowait()
            assert lost["kind"] == LOST and why in lost["detail"]["why"] and q.empty()
