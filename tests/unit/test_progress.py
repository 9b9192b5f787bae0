"""The live progress line: drawn on a terminal only, results always on stdout."""

from __future__ import annotations

import io

import pytest

from virtnet.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_pipe_gets_the_results_and_no_progress() -> None:
    err, out = io.StringIO(), io.StringIO()
    with Progress("lab x", total=3, stream=err, out=out) as progress:
        progress.step("network a: starting")
        progress.say("  network a: started")
        progress.step("guest b")
    assert err.getvalue() == "" and out.getvalue() == "  network a: started\n"


def test_a_terminal_sees_the_step_count_and_a_clean_line_at_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TERM", "xterm")
    err, out = Terminal(), io.StringIO()
    with Progress("lab x", total=4, stream=err, out=out) as progress:
        progress.step("network a: starting")
        assert err.getvalue().endswith("lab x [....................] 1/4 0.0s network a: starting")
        progress.step("network b: starting")
        progress.say("  network a: started")
        assert "2/4" in err.getvalue().rsplit("\r", 1)[-1]  # redrawn under the result
        assert progress.line(80).startswith("lab x [#####...............] 2/4")
    assert err.getvalue().endswith("\r\x1b[K")  # nothing left behind on the terminal
    assert out.getvalue() == "  network a: started\n"


def test_the_line_fits_the_terminal_and_a_dumb_one_gets_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    progress = Progress("bench", stream=Terminal(), out=io.StringIO())
    progress.step("x" * 200)
    assert len(progress.line(40)) == 40 and progress.line(40).endswith("…")
    assert progress.line(80).startswith("bench [1] ")  # no total: a count only
    monkeypatch.setenv("TERM", "dumb")
    assert not Progress("bench", stream=Terminal()).live
