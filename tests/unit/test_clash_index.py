"""The clash index answers what validate_against answers, as its networks come and go."""

from __future__ import annotations

import functools
import random

import pytest

from virtnet.errors import VirtnetError
from virtnet.model import parse_network
from virtnet.model.clashes import ClashIndex
from virtnet.model.network import Network
from virtnet.model.validate import validate_against

UUIDS = [f"6d3c1a2b-0000-4000-8000-{n:012x}" for n in range(6)]
parsed = functools.lru_cache(maxsize=None)(parse_network)  # read only here


def xml(rng: random.Random, name: str) -> str:
    """A network with a random uuid, bridge and subnets from small pools, so clashes of every
    kind happen: IPv4 /16 to /28 and IPv6 /48 to /64 over a few prefixes."""
    ips = []
    for _ in range(rng.randint(0, 2)):
        if rng.random() < 0.7:
            prefix = rng.choice([16, 20, 24, 24, 26, 28])
            ips.append(f"<ip address='10.{rng.randint(0, 3)}.{rng.randint(0, 3) * 16}.1' "
                       f"prefix='{prefix}'/>")  # fmt: skip
        else:
            prefix = rng.choice([48, 56, 64])
            ips.append(f"<ip family='ipv6' address='fd00:{rng.randint(0, 2)}:{rng.randint(0, 3)}::1' "
                       f"prefix='{prefix}'/>")  # fmt: skip
    uuid = f"<uuid>{rng.choice(UUIDS)}</uuid>" if rng.random() < 0.5 else ""
    mode = rng.choice(["nat", "route", "open"])
    return (f"<network><name>{name}</name>{uuid}<forward mode='{mode}'/>"
            f"<bridge name='vb{rng.randint(0, 8)}'/>{''.join(ips)}</network>")  # fmt: skip


def error(check: object, net: Network) -> VirtnetError | None:
    try:
        check(net)  # type: ignore[operator]
    except VirtnetError as exc:
        return exc
    return None


@pytest.mark.parametrize("seed", range(8))
def test_the_index_agrees_with_validate_against(seed: int) -> None:
    """Clash or no clash as validate_against says; a clash it names is one validate_against
    finds with that network alone (with several, which is named first may differ)."""
    rng = random.Random(seed)
    index = ClashIndex(parsed)
    held: dict[str, str] = {}
    clashes = 0
    for step in range(300):
        if held and rng.random() < 0.3:  # one goes, or changes
            name = rng.choice(sorted(held))
            if rng.random() < 0.5:
                del held[name]
            else:
                held[name] = xml(rng, name)
        else:
            held[f"n{step}"] = xml(rng, f"n{step}")
        index.sync(held.values())
        new = parse_network(xml(rng, rng.choice([*held, "fresh"])))
        others = {name: parsed(x) for name, x in held.items()}
        expected = error(lambda n, o=others: validate_against(n, o.values()), new)  # type: ignore[misc]
        got = error(index.check, new)
        assert (got is None) == (expected is None), (step, new, got, expected)
        if got is not None:
            clashes += 1
            named = str(got).split("network ")[-1].strip("'")
            alone = error(lambda n, o=others[named]: validate_against(n, [o]), new)  # type: ignore[misc]
            assert alone is not None and (type(alone), alone.subject) == (type(got), got.subject)
        assert index.bridges == {
            o.bridge.name for o in others.values() if o.bridge and o.bridge.name
        }
    assert clashes > 50  # the pools make clashes of every kind common


def test_a_changed_definition_replaces_the_old_one() -> None:
    index = ClashIndex(parse_network)
    old = "<network><name>a</name><forward mode='nat'/><bridge name='vba'/><ip address='10.9.0.1' prefix='24'/></network>"
    index.sync([old])
    clash = parse_network(
        "<network><name>b</name><bridge name='vbb'/><ip address='10.9.0.9' prefix='24'/></network>"
    )
    with pytest.raises(
        VirtnetError, match=r"subnet 10\.9\.0\.0/24 overlaps 10\.9\.0\.0/24 of network 'a'"
    ):
        index.check(clash)
    index.sync([old.replace("10.9.0.1", "10.8.0.1")])
    index.check(clash)  # no longer
    index.sync([])
    assert index.bridges == set() and index._spans == {4: [], 6: []}
