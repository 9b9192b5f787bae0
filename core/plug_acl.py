"""Who may plug a VM into which network without root: qemu-bridge-helper's ACL file, with
virtnet networks where QEMU has bridges, and an optional user or ``@group`` after the name.

::

    # /etc/virtnet/bridge.conf
    allow default            # every user (qemu-bridge-helper's rule: no one named)
    allow lab @kvm           # members of group kvm
    deny  lab mallory        # deny wins over allow, wherever it is written
    allow all alice          # alice: every network
    include /etc/virtnet/bridge.d/lab.conf

As in qemu-bridge-helper: nothing is allowed unless a rule allows it, and a matching ``deny``
wins. qemu-bridge-helper is set-uid root and can only tell users apart by which included files
they can read; virtnetd knows the caller (``SO_PEERCRED``), so a rule names them. The files
are read at every request (an edit takes effect at once) and must be owned by root and
writable by no one else: an ACL another user could edit would let them grant themselves.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from virtnet.errors import PermissionDenied, VirtnetError

DEFAULT_ACL = Path("/etc/virtnet/bridge.conf")
MAX_INCLUDE_DEPTH = 8


class AclError(VirtnetError):
    """The ACL file cannot be trusted or read: every request is refused, saying why."""


@dataclass(frozen=True)
class Rule:
    allow: bool
    network: str | None  # None: every network ("all")
    who: str | None  # None: every user; "@group" or a user name

    def matches(self, network: str, user: str, groups: frozenset[str]) -> bool:
        if self.network is not None and self.network != network:
            return False
        if self.who is None:
            return True
        return self.who[1:] in groups if self.who.startswith("@") else self.who == user


def read_rules(path: Path, depth: int = 0) -> list[Rule]:
    """The rules of ``path`` and the files it includes, in order."""
    if depth > MAX_INCLUDE_DEPTH:
        raise AclError(f"{path}: includes nest deeper than {MAX_INCLUDE_DEPTH}")
    _check_trusted(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AclError(f"{path}: {exc}") from None
    rules: list[Rule] = []
    for number, raw in enumerate(text.splitlines(), 1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        where = f"{path}:{number}"
        verb = words[0]
        if verb == "include" and len(words) == 2:
            rules += read_rules(path.parent / words[1], depth + 1)  # relative: to this file
        elif verb in ("allow", "deny") and len(words) in (2, 3):
            who = words[2] if len(words) == 3 else None
            if who is not None and not who.lstrip("@"):
                raise AclError(f"{where}: an empty user or group")
            rules.append(Rule(verb == "allow", None if words[1] == "all" else words[1], who))
        else:
            raise AclError(f"{where}: expected 'allow|deny NETWORK|all [USER|@GROUP]' or "
                           f"'include FILE', not {raw.strip()!r}")  # fmt: skip
    return rules


def _check_trusted(path: Path) -> None:
    try:
        st = path.stat()
    except OSError as exc:
        raise AclError(f"{path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise AclError(f"{path}: not a regular file")
    if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise AclError(f"{path}: must be owned by root and writable by no one else")
    for directory in path.absolute().parents:  # nor replaceable through its directories
        mode = directory.stat().st_mode
        if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
            raise AclError(f"{path}: its directory {directory} is writable by others")


def allowed(rules: list[Rule], network: str, user: str, groups: frozenset[str]) -> bool:
    """qemu-bridge-helper's decision: some rule allows, and no rule denies."""
    matching = [r for r in rules if r.matches(network, user, groups)]
    return any(r.allow for r in matching) and not any(not r.allow for r in matching)


def identity(uid: int, gid: int) -> tuple[str, frozenset[str]]:
    """A caller's user name and every group it is in (primary and supplementary), from the
    system's databases: a uid with no name is a number, in no group but its gid's."""
    try:
        user = pwd.getpwuid(uid).pw_name
        gids = set(os.getgrouplist(user, gid))
    except KeyError:
        user, gids = str(uid), {gid}
    names = set()
    for g in gids:
        try:
            names.add(grp.getgrgid(g).gr_name)
        except KeyError:
            names.add(str(g))
    return user, frozenset(names)


def check(path: Path, network: str, uid: int, gid: int) -> None:
    """Raise unless ``uid`` may plug into ``network`` (root always may)."""
    if uid == 0:
        return
    user, groups = identity(uid, gid)
    if not allowed(read_rules(path), network, user, groups):
        raise PermissionDenied(f"user {user} may not use network {network!r} (ACL {path})")
