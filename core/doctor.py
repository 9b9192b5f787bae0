"""``virtnet doctor``: foreign firewalls that would drop guests' traffic, and what to do.

nftables evaluates every table's base chains on a hook; an ``accept`` in virtnet's own table
cannot override a ``drop`` in someone else's. So a host running Docker (its ``FORWARD`` chain
has policy DROP once it enables forwarding), firewalld (its ``filter_FORWARD`` and
``filter_INPUT`` chains reject what no zone allows) or ufw silently breaks virtnet's networks:
NAT stops, and with firewalld guests do not even get a DHCP lease.

:func:`diagnose` reads the ruleset (one JSON listing) and reports each foreign base chain on
the forward or input hook that drops by default (its policy, or an unconditional final
drop/reject rule), naming its owner when it is a known one. :func:`fix` installs the
documented coexistence rule for the known owners, for the bridges of the active networks:

* Docker: ``iptables -I DOCKER-USER -i BRIDGE -j ACCEPT`` and ``-o BRIDGE`` (the chain Docker
  keeps for its users' rules; iptables, since Docker's tables are iptables-nft's);
* firewalld: the bridge joins the ``trusted`` zone (``firewall-cmd --zone=trusted
  --change-interface=BRIDGE``, runtime), as libvirt puts its bridges in a zone of its own;
* anything else: nothing is changed; the report says which chain and what it would need.

virtnet changes another program's firewall only when asked (``--fix``), and only through that
program's own tools.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from virtnet.errors import OperationFailed

OURS = "virtnet"


@dataclass(frozen=True)
class Blocker:
    """A foreign base chain that drops what it does not know."""

    family: str
    table: str
    chain: str
    hook: str
    owner: str  # "docker", "firewalld", "ufw" or "unknown"
    how: str  # "policy drop" or "final rule reject"

    @property
    def where(self) -> str:
        return f"{self.family} {self.table} {self.chain}"

    def advice(self) -> str:
        forwarded = self.hook == "forward"
        what = (
            "forwarded traffic (NAT, routing)" if forwarded else "traffic to the host (DHCP, DNS)"
        )
        fixes = {
            "docker": "run 'virtnet doctor --fix' (adds ACCEPT rules for virtnet's bridges "
                      "to DOCKER-USER)",
            "firewalld": "run 'virtnet doctor --fix' (puts virtnet's bridges in the trusted "
                         "zone)",
            "ufw": "allow routed traffic on virtnet's bridges ('ufw route allow in on BRIDGE')",
            "unknown": "accept traffic on virtnet's bridges in that chain",
        }  # fmt: skip
        return (f"{self.owner}'s chain {self.where} ({self.how}) drops guests' {what}: "
                f"{fixes[self.owner]}")  # fmt: skip


def diagnose(ruleset: list[dict[str, Any]], bridges: list[str] | None = None) -> list[Blocker]:
    """The blockers in ``nft -j list ruleset`` output (its ``nftables`` array). With
    ``bridges``, a blocker whose table already lets each of them in (a rule matching it as
    the input interface: a coexistence rule, or a firewalld zone) is left out."""
    chains: dict[tuple[str, str], list[str]] = {}
    rules: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for item in ruleset:
        if "chain" in item:
            c = item["chain"]
            chains.setdefault((c["family"], c["table"]), []).append(c["name"])
        elif "rule" in item:
            r = item["rule"]
            rules.setdefault((r["family"], r["table"], r["chain"]), []).append(r)
    found = []
    for item in ruleset:
        c = item.get("chain")
        if not c or c.get("hook") not in ("forward", "input") or c["table"] == OURS:
            continue
        key = (c["family"], c["table"], c["name"])
        how = None
        if c.get("policy") == "drop":
            how = "policy drop"
        else:
            chain_rules = rules.get(key) or []
            last = chain_rules[-1] if chain_rules else None
            if last is not None and _unconditional_drop(last):
                how = "final rule " + next(iter(_verdict(last)))
        if how is None:
            continue
        table_rules = [r for k, rs in rules.items() if k[:2] == key[:2] for r in rs]
        if bridges and all(_lets_in(table_rules, b) for b in bridges):
            continue
        owner = _owner(c["table"], chains.get((c["family"], c["table"]), []))
        found.append(Blocker(c["family"], c["table"], c["name"], c["hook"], owner, how))
    return found


def _lets_in(rules: list[dict[str, Any]], bridge: str) -> bool:
    """Some rule matches ``bridge`` as the input interface and accepts, jumps or goes on."""
    for rule in rules:
        expr = rule.get("expr") or []
        matches = any(
            isinstance(e, dict) and "match" in e and e["match"].get("right") == bridge
            and e["match"].get("left", {}).get("meta", {}).get("key") == "iifname"
            for e in expr
        )  # fmt: skip
        if matches and set(_verdict(rule)) & {"accept", "jump", "goto"}:
            return True
    return False


def _verdict(rule: dict[str, Any]) -> dict[str, Any]:
    expr = rule.get("expr") or []
    return expr[-1] if expr and isinstance(expr[-1], dict) else {}


def _unconditional_drop(rule: dict[str, Any]) -> bool:
    expr = rule.get("expr") or []
    statements = [e for e in expr if not (isinstance(e, dict) and "counter" in e)]
    return len(statements) == 1 and bool(set(_verdict(rule)) & {"drop", "reject"})


def _owner(table: str, chains: list[str]) -> str:
    if table == "firewalld":
        return "firewalld"
    if "DOCKER-USER" in chains or "DOCKER" in chains:
        return "docker"
    if any(name.startswith("ufw") for name in chains):
        return "ufw"
    return "unknown"


def fix(blockers: list[Blocker], bridges: list[str]) -> list[str]:
    """Install the coexistence rules for ``bridges``; returns what was done."""
    done = []
    owners = {b.owner for b in blockers}
    if "docker" in owners:
        for bridge in bridges:
            for direction in ("-i", "-o"):
                rule = ["DOCKER-USER", direction, bridge, "-j", "ACCEPT"]
                if _run("iptables", "-C", *rule, check=False) != 0:
                    _run("iptables", "-I", *rule)
            done.append(f"DOCKER-USER accepts traffic in and out of {bridge}")
    if "firewalld" in owners:
        from virtnet.services import firewalld

        for bridge in bridges:
            firewalld.join_zone(bridge, "trusted")
            done.append(f"firewalld: {bridge} is in the trusted zone")
    return done


def _run(tool: str, *args: str, check: bool = True) -> int:
    binary = shutil.which(tool)
    if binary is None:
        raise OperationFailed(f"{tool} is not installed: cannot fix this firewall")
    result = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60,
                            check=False)  # fmt: skip
    if check and result.returncode != 0:
        reason = (result.stderr or result.stdout).strip().splitlines()
        raise OperationFailed(f"{tool} {' '.join(args)}: {reason[-1] if reason else 'failed'}")
    return result.returncode
