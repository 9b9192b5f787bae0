"""The doctor's reading of a ruleset (the real thing is in tests/integration/test_doctor.py)."""

from __future__ import annotations

from typing import Any

from virtnet.doctor import diagnose


def chain(family: str, table: str, name: str, hook: str | None = None,
          policy: str = "accept") -> dict[str, Any]:  # fmt: skip
    body: dict[str, Any] = {"family": family, "table": table, "name": name}
    if hook:
        body.update(hook=hook, type="filter", prio=0, policy=policy)
    return {"chain": body}


def rule(family: str, table: str, chain_name: str, *expr: dict[str, Any]) -> dict[str, Any]:
    return {"rule": {"family": family, "table": table, "chain": chain_name, "expr": list(expr)}}


def iif(name: str) -> dict[str, Any]:
    return {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": name}}


DOCKER = [
    chain("ip", "filter", "FORWARD", "forward", "drop"),
    chain("ip", "filter", "DOCKER-USER"),
    rule("ip", "filter", "FORWARD", {"counter": None}, {"jump": {"target": "DOCKER-USER"}}),
]
FIREWALLD = [
    chain("inet", "firewalld", "filter_INPUT", "input"),
    rule("inet", "firewalld", "filter_INPUT", {"reject": {"type": "icmpx"}}),
]


def test_docker_and_firewalld_are_named() -> None:
    found = diagnose(DOCKER + FIREWALLD)
    assert [(b.owner, b.where, b.how) for b in found] == [
        ("docker", "ip filter FORWARD", "policy drop"),
        ("firewalld", "inet firewalld filter_INPUT", "final rule reject"),
    ]
    assert "doctor --fix" in found[0].advice()


def test_virtnets_own_table_and_accepting_chains_are_not_problems() -> None:
    ours = [chain("inet", "virtnet", "forward", "forward", "drop")]
    fine = [chain("inet", "other", "fwd", "forward"), rule("inet", "other", "fwd", iif("x"),
                                                           {"drop": None})]  # fmt: skip
    assert diagnose(ours + fine) == []


def test_a_coexistence_rule_for_every_bridge_clears_the_problem() -> None:
    fixed = [*DOCKER, rule("ip", "filter", "DOCKER-USER", iif("br0"), {"accept": None})]
    assert diagnose(fixed, ["br0"]) == []
    assert [b.owner for b in diagnose(fixed, ["br0", "br1"])] == ["docker"]


def test_an_unknown_drop_policy_is_reported_with_generic_advice() -> None:
    [found] = diagnose([chain("ip", "mine", "fw", "forward", "drop")])
    assert found.owner == "unknown" and "accept traffic on virtnet's bridges" in found.advice()
