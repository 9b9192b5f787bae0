"""Every code block in the docs is run or checked, so the docs cannot rot.

Labelled blocks are code: ``python`` blocks run for real (in a throw-away namespace, with a
virtnetd when they use the client), or, when their first line is ``# from PATH``, must be a
verbatim excerpt of that file (the example backend, which the conformance suite runs);
``toml``, ``xml``, ``yaml``, ``json`` and ``ini`` (virtnetd.conf) blocks are parsed (a pyproject excerpt must agree with
the file it names; an ``xml`` block is a network, or a domain fragment the libvirt hook reads); ``sh`` blocks are syntax-checked and every ``virtnet`` command and ``make``
target they use must exist. Unlabelled and ``console`` blocks are transcripts and diagrams.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from virtnet.cli import cli
from virtnet.model import parse_network
from virtnet.testing.daemon import Daemon
from virtnet.testing.fixtures import run_dir_for_test
from virtnet.testing.netns import Lab

ROOT = Path(__file__).resolve().parents[2]
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md",
        ROOT / "examples" / "backends" / "ptp" / "README.md"]  # fmt: skip
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)


def blocks() -> list[tuple[str, str, str]]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for number, match in enumerate(FENCE.finditer(text), 1):
            lang, body = match[1], match[2]
            if lang and lang != "console":
                found.append((f"{doc.relative_to(ROOT)}#{number}-{lang}", lang, body))
    return found


BLOCKS = blocks()


def test_every_link_between_the_docs_leads_somewhere() -> None:
    """Relative links resolve to files of the project (anchors: to a heading there)."""
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            assert file.is_file() or file.is_dir(), f"{doc.name}: {target} leads nowhere"
            assert ROOT in file.parents or file == ROOT, f"{doc.name}: {target} is outside"
            if anchor and file.suffix == ".md":
                headings = re.findall(r"^#+ (.*)$", file.read_text(), re.M)
                slugs = {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}
                assert anchor in slugs, f"{doc.name}: no heading for #{anchor} in {file.name}"


def test_the_docs_have_code_to_check() -> None:
    assert any("backend-guide" in name for name, _, _ in BLOCKS)


@pytest.mark.parametrize(("lang", "body"), [(b[1], b[2]) for b in BLOCKS],
                         ids=[b[0] for b in BLOCKS])  # fmt: skip
def test_code_block(lang: str, body: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    first = body.splitlines()[0] if body.strip() else ""
    if lang == "python" and first.startswith("# from "):
        source = (ROOT / first.removeprefix("# from ").strip()).read_text()
        excerpt = body.split("\n", 1)[1]
        assert excerpt in source, f"no longer a verbatim excerpt of {first[7:]}"
    elif lang == "python":
        run_python(body, tmp_path, request)
    elif lang == "toml":
        data = tomllib.loads(body)
        named = re.search(r"\((\S+pyproject\.toml)\)", first)
        if named:
            assert_subset(data, tomllib.loads((ROOT / named[1]).read_text()))
    elif lang == "xml" and body.lstrip().startswith("<network"):
        parse_network(body)
    elif lang == "xml":  # a libvirt domain's fragment for the libvirt hook: it must read it
        from virtnet.libvirt_hook import read_domain

        uuid = "00000000-0000-4000-8000-000000000000"
        assert read_domain(f"<domain><name>doc</name><uuid>{uuid}</uuid>{body}</domain>")[2]
    elif lang == "yaml":
        assert yaml.safe_load(body)
    elif lang == "json":
        json.loads(body)
    elif lang == "sh":
        check_shell(body)
    elif lang == "ini":  # a virtnetd settings file: virtnetd must read it
        from virtnet.daemon.main import read_config

        path = tmp_path / "virtnetd.conf"
        path.write_text(body)
        assert read_config(path)
    else:
        pytest.fail(f"no way to check a {lang!r} block: label it, or add a checker here")


def assert_subset(part: object, whole: object, where: str = "") -> None:
    if isinstance(part, dict):
        assert isinstance(whole, dict), where
        for key, value in part.items():
            assert key in whole, f"{where}.{key} is not in the file"
            assert_subset(value, whole[key], f"{where}.{key}")
    else:
        assert part == whole, f"{where}: {part!r} != {whole!r}"


def check_shell(body: str) -> None:
    done = subprocess.run(["bash", "-n"], input=body, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
    for line in body.splitlines():
        words = line.split("#")[0].split()
        if words[:1] == ["virtnet"]:
            command = next((w for w in words[1:] if not w.startswith("-") and
                            words[words.index(w) - 1] not in ("--netns",)), None)  # fmt: skip
            assert command in cli.commands, f"{line!r}: no command {command!r}"
        if words[:1] == ["make"] and len(words) > 1:
            assert words[1] in targets, f"{line!r}: no make target {words[1]!r}"
        for word in words:  # a script of the project's that a command runs
            if re.fullmatch(r"(bench|examples|tests|bin)/[\w./-]+\.(py|sh)", word):
                assert (ROOT / word).is_file(), f"{line!r}: no file {word}"


def run_python(body: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """In a throw-away namespace, with virtnet's directories of its own (and a virtnetd
    serving it if the block uses the client)."""
    if os.geteuid() != 0:
        pytest.skip("python blocks run in a network namespace: root only")
    lab: Lab = request.getfixturevalue("lab")
    ns = lab.netns("docs")
    run_dir = run_dir_for_test()
    env = {**os.environ, "VIRTNET_STATE_DIR": str(tmp_path / "state"),
           "VIRTNET_RUN_DIR": str(run_dir), "VIRTNET_DAEMON": "never"}  # fmt: skip
    body = body.replace('netns="myhost"', f'netns="{ns.name}"')  # the tour's host namespace
    daemon = None
    if "Client.connect" in body:
        daemon = Daemon(ns.name, tmp_path / "state", run_dir, lab).start()
    try:
        done = subprocess.run(["ip", "netns", "exec", ns.name, sys.executable, "-c", body],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                              check=False)  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    finally:
        if daemon is not None:
            daemon.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
