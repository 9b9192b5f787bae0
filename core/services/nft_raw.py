"""A network's chains, rules and map elements as raw nf_tables netlink, without libnftables.

libnftables fills its cache with every chain of every table before it adds anything: with
1,000 networks (5,000 chains) one chain and two rules cost 12 ms, into a table of their own
too, and a network's start and stop grew from 9 to 124 ms over 1,000 networks. A network's
statements use a small part of nft's language, always the same shapes
(:mod:`virtnet.services.firewall_rules`), so :func:`compile_script` turns them into the
netlink messages nft itself would send (the bytecode ``nft --debug=netlink`` prints), in
one batch: one transaction, as atomic as libnftables' own, at a cost that does not depend on
the size of the ruleset. A statement outside those shapes makes it answer None, and the
caller runs the script through libnftables instead: the fast path never guesses.

tests/unit/test_nft_raw_shapes.py holds the shapes; tests/integration/test_nft_raw.py proves that
the kernel lists exactly the same ruleset whichever way a network's rules went in.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from virtnet.services.nft_elements import FAMILIES, IFNAMSIZ, NLA_F_NESTED, _attr, concat

NFT_MSG_DELTABLE, NFT_MSG_NEWCHAIN, NFT_MSG_DELCHAIN = 2, 3, 5
TABLE_NAME = 1
NFT_MSG_NEWRULE, NFT_MSG_DELRULE = 6, 8
NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM = 12, 14
NLM_F_CREATE, NLM_F_APPEND = 0x400, 0x800

# attributes (linux/netfilter/nf_tables.h)
CHAIN_TABLE, CHAIN_NAME = 1, 3
RULE_TABLE, RULE_CHAIN, RULE_EXPRESSIONS = 1, 2, 4
LIST_ELEM, EXPR_NAME, EXPR_DATA = 1, 1, 2
DATA_VALUE, DATA_VERDICT, VERDICT_CODE, VERDICT_CHAIN = 1, 2, 1, 2
ELEM_LIST_TABLE, ELEM_LIST_SET, ELEM_LIST_ELEMENTS = 1, 2, 3
ELEM_KEY, ELEM_DATA, ELEM_FLAGS, ELEM_USERDATA, ELEM_KEY_END = 1, 2, 3, 6, 10
ELEM_INTERVAL_END = 1
NF_ACCEPT, NFT_JUMP, NFT_RETURN = 1, -3, -5
META = {"nfproto": 15, "l4proto": 16, "iifname": 6, "oifname": 7, "iiftype": 8}
NFPROTO = {"ip": 2, "ip6": 10}
L4PROTO = {"tcp": 6, "udp": 17, "ipv6-icmp": 58}
CT_STATE = {"invalid": 1, "established": 2, "related": 4, "new": 8}
#: (header base, offset, length) of the fields the rules match: link 0, network 1, transport 2
FIELDS = {
    ("ether", "daddr"): (0, 0, 6),
    ("ether", "saddr"): (0, 6, 6),
    ("ip", "saddr"): (1, 12, 4),
    ("ip", "daddr"): (1, 16, 4),
    ("ip6", "saddr"): (1, 8, 16),
    ("ip6", "daddr"): (1, 24, 16),
    ("udp", "dport"): (2, 2, 2),
}
REG_VERDICT = 0
ARPHRD_ETHER = 1


@dataclass(frozen=True)
class SetShape:
    """A set or map of virtnet's inet table as its elements are encoded: ``fields``, each
    ``ifname`` (an interface, or a prefix of names as ``"vnet*"``), ``addr`` (an address, or
    a prefix in an interval set) or ``ether``; ``interval`` sets hold ranges (one field: an
    rbtree, a start and an end element after it; several: pipapo, one element with a key and
    an inclusive key end); ``verdict`` maps jump to a chain."""

    fields: tuple[str, ...]
    interval: bool = False
    verdict: bool = False


#: Every set a network's statements add to (:func:`virtnet.services.firewall_rules.inet_base`
#: declares them; a unit test holds the two together).
SETS = {
    "links": SetShape(("ifname",)),
    "same": SetShape(("ifname", "ifname")),
    "same_p": SetShape(("ifname", "ifname"), interval=True),
    "bridge_mac": SetShape(("ifname", "ether")),
    **{f"{kind}{v}{ct}": SetShape(("ifname",))
       for v in "46" for kind, ct in (("out", ""), ("in", ""), ("in", "_ct"))},
    **{f"{kind}{v}{ct}_dev": SetShape(("ifname", "ifname"))
       for v in "46" for kind, ct in (("out", ""), ("in", ""), ("in", "_ct"))},
    **{f"isolated{v}": SetShape(("addr",)) for v in "46"},
    **{f"masq{v}": SetShape(("addr",), interval=True) for v in "46"},
    **{f"masq{v}_dev": SetShape(("addr", "ifname"), interval=True) for v in "46"},
    **{f"nat{v}": SetShape(("addr",), interval=True, verdict=True) for v in "46"},
}  # fmt: skip


@dataclass(frozen=True)
class RawMessage:
    """One nf_tables message of a batch: its type, flags, family and attributes."""

    kind: int
    flags: int
    family: int
    body: bytes


def compile_script(script: str) -> list[RawMessage] | None:
    """The script's statements as messages of one batch, or None if one is not a shape this
    module knows (the caller then uses libnftables)."""
    messages: list[RawMessage] = []
    for line in script.splitlines():
        if not line.strip():
            continue
        try:
            made = _statement(_words(line))
        except (ValueError, KeyError, IndexError):
            return None
        if made is None:
            return None
        messages += made
    return messages


def _words(line: str) -> list[str]:
    """A statement's words, quotes removed. Quoted strings in these statements are interface
    names (:func:`virtnet.services.nft.quote`: no spaces, quotes or backslashes), so a
    split on spaces is exact; anything else raises, and libnftables gets the script."""
    words = line.split()
    for index, word in enumerate(words):
        if word.startswith('"'):
            if len(word) < 2 or not word.endswith('"') or '"' in word[1:-1]:
                raise ValueError(line)
            words[index] = word[1:-1]
        elif '"' in word or "\\" in word:
            raise ValueError(line)
    return words


def _u32(value: int) -> bytes:
    return struct.pack(">I", value)


def _i32(value: int) -> bytes:
    return struct.pack(">i", value)


def _str(value: str) -> bytes:
    return value.encode() + b"\0"


def _nested(kind: int, *parts: bytes) -> bytes:
    return _attr(kind | NLA_F_NESTED, b"".join(parts))


def _expr(name: str, *attrs: bytes) -> bytes:
    return _nested(LIST_ELEM, _attr(EXPR_NAME, _str(name)), _nested(EXPR_DATA, *attrs))


def _value(data: bytes) -> bytes:
    return _attr(DATA_VALUE, data)


def _verdict(code: int, chain: str | None = None) -> bytes:
    parts = [_attr(VERDICT_CODE, _i32(code))]
    if chain is not None:
        parts.append(_attr(VERDICT_CHAIN, _str(chain)))
    return _nested(DATA_VERDICT, *parts)


# --- expressions, as nft's netlink_linearize emits them -------------------------------------
def meta(key: str) -> bytes:
    return _expr("meta", _attr(2, _u32(META[key])), _attr(1, _u32(1)))


def cmp(data: bytes, op: int = 0) -> bytes:
    return _expr("cmp", _attr(1, _u32(1)), _attr(2, _u32(op)), _nested(3, _value(data)))


def payload(base: int, offset: int, length: int) -> bytes:
    return _expr("payload", _attr(1, _u32(1)), _attr(2, _u32(base)), _attr(3, _u32(offset)),
                 _attr(4, _u32(length)))  # fmt: skip


def bitwise(mask: bytes) -> bytes:
    return _expr("bitwise", _attr(1, _u32(1)), _attr(2, _u32(1)), _attr(3, _u32(len(mask))),
                 _nested(4, _value(mask)), _nested(5, _value(bytes(len(mask)))))  # fmt: skip


def lookup(set_name: str) -> bytes:
    return _expr("lookup", _attr(1, _str(set_name)), _attr(2, _u32(1)))


def immediate(register: int, data: bytes) -> bytes:
    return _expr("immediate", _attr(1, _u32(register)), _nested(2, _value(data)))


def verdict(code: int, chain: str | None = None) -> bytes:
    return _expr("immediate", _attr(1, _u32(REG_VERDICT)), _nested(2, _verdict(code, chain)))


def reject() -> bytes:  # inet's plain ``reject``: icmpx port-unreachable
    return _expr("reject", _attr(1, _u32(2)), _attr(2, b"\x01"))


# --- statements ------------------------------------------------------------------------------
def _statement(words: list[str]) -> list[RawMessage] | None:
    verb, what = words[0], words[1]
    family = FAMILIES[words[2]]
    table = words[3]
    if verb == "delete" and what == "table" and len(words) == 4:  # with all it holds
        return [RawMessage(NFT_MSG_DELTABLE, 0, family, _attr(TABLE_NAME, _str(table)))]
    if verb == "add" and what == "chain" and len(words) == 5:
        body = _attr(CHAIN_TABLE, _str(table)) + _attr(CHAIN_NAME, _str(words[4]))
        return [RawMessage(NFT_MSG_NEWCHAIN, NLM_F_CREATE, family, body)]
    if verb == "delete" and what == "chain" and len(words) == 5:
        body = _attr(CHAIN_TABLE, _str(table)) + _attr(CHAIN_NAME, _str(words[4]))
        return [RawMessage(NFT_MSG_DELCHAIN, 0, family, body)]
    if verb == "flush" and what == "chain" and len(words) == 5:
        body = _attr(RULE_TABLE, _str(table)) + _attr(RULE_CHAIN, _str(words[4]))
        return [RawMessage(NFT_MSG_DELRULE, 0, family, body)]
    if verb == "add" and what == "rule" and words[2] == "inet":
        expressions = _rule(words[5:])
        if expressions is None:
            return None
        body = (_attr(RULE_TABLE, _str(table)) + _attr(RULE_CHAIN, _str(words[4]))
                + _nested(RULE_EXPRESSIONS, *expressions))  # fmt: skip
        return [RawMessage(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, family, body)]
    if what == "element" and verb in ("add", "delete"):
        return _elements(verb == "add", family, table, words[4], words[5:])
    return None


def _rule(words: list[str]) -> list[bytes] | None:
    """A rule's expressions: matches left to right (with the dependencies nft adds: the
    protocol before an address, the interface type before an Ethernet header), then its
    verdict or NAT statement, which must end it."""
    out: list[bytes] = []
    needs: set[str] = set()  # the dependencies already in the rule

    def need(what: str, *expressions: bytes) -> None:
        if what not in needs:
            needs.add(what)
            out.extend(expressions)

    words = list(words)
    while words:
        word = words.pop(0)
        if word in ("iifname", "oifname"):
            out += [meta(word), cmp(_ifname(words.pop(0)))]
        elif word == "ether":
            field, operand = words.pop(0), words.pop(0)
            need("ether", meta("iiftype"), cmp(struct.pack("=H", ARPHRD_ETHER)))
            out.append(payload(*FIELDS["ether", field]))
            out.append(lookup(operand[1:]) if operand.startswith("@") else cmp(_mac(operand)))
        elif word in ("ip", "ip6") and words[0] in ("saddr", "daddr"):
            field, operand = words.pop(0), words.pop(0)
            need(word, meta("nfproto"), cmp(bytes([NFPROTO[word]])))
            out += _address(FIELDS[word, field], operand)
        elif word == "ct" and words[0] == "state":
            words.pop(0)
            bits = sum(CT_STATE[s] for s in words.pop(0).split(","))
            out += [_expr("ct", _attr(2, _u32(0)), _attr(1, _u32(1))),
                    bitwise(struct.pack("=I", bits)), cmp(bytes(4), op=1)]  # fmt: skip
        elif word == "udp" and words[0] == "dport":
            words.pop(0)
            need("udp", meta("l4proto"), cmp(bytes([L4PROTO["udp"]])))
            out += [payload(*FIELDS["udp", "dport"]), cmp(struct.pack(">H", int(words.pop(0))))]
        elif word == "meta" and words[0] == "l4proto":
            words.pop(0)
            out += [meta("l4proto"), cmp(bytes([L4PROTO[words.pop(0)]]))]
        elif word in ("accept", "reject", "return") and not words:
            out.append({"accept": verdict(NF_ACCEPT), "return": verdict(NFT_RETURN),
                        "reject": reject()}[word])  # fmt: skip
        elif word == "masquerade":
            out += _masquerade(words)
            words = []
        elif word == "snat" and words[:2] == ["ip", "to"]:
            out += _snat(words[2:])
            words = []
        else:
            return None
    return out if out else None


def _ifname(name: str) -> bytes:
    raw = name.encode()
    if name.endswith("*"):  # a prefix: compared over its own length
        return raw[:-1]
    if len(raw) >= IFNAMSIZ:
        raise ValueError(name)
    return raw.ljust(IFNAMSIZ, b"\0")


def _mac(text: str) -> bytes:
    raw = bytes.fromhex(text.replace(":", ""))
    if len(raw) != 6:
        raise ValueError(text)
    return raw


def _address(field: tuple[int, int, int], text: str) -> list[bytes]:
    """An address or prefix, as nft matches it: a whole-byte prefix as a shorter load, any
    other as a masked one."""
    base, offset, length = field
    network = ipaddress.ip_network(text, strict=True)
    if network.max_prefixlen != length * 8:
        raise ValueError(text)
    packed = network.network_address.packed
    if network.prefixlen % 8 == 0:
        size = network.prefixlen // 8
        if size == 0:
            raise ValueError(text)  # matches everything: nft drops the match
        return [payload(base, offset, size), cmp(packed[:size])]
    return [payload(base, offset, length), bitwise(network.netmask.packed), cmp(packed)]


def _ports(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    return int(low), int(high or low)


def _masquerade(words: list[str]) -> list[bytes]:
    if not words:
        return [_expr("masq")]
    if len(words) != 2 or words[0] != "to" or not words[1].startswith(":"):
        raise ValueError(words)
    low, high = _ports(words[1][1:])
    return [immediate(1, struct.pack(">H", low)), immediate(2, struct.pack(">H", high)),
            _expr("masq", _attr(1, _u32(2)), _attr(2, _u32(1)), _attr(3, _u32(2)))]  # fmt: skip


def _snat(words: list[str]) -> list[bytes]:
    if len(words) != 1:
        raise ValueError(words)
    addresses, _, ports = words[0].partition(":")
    first, _, last = addresses.partition("-")
    out = [immediate(1, ipaddress.IPv4Address(first).packed)]
    attrs = [_attr(1, _u32(0)), _attr(2, _u32(NFPROTO["ip"])), _attr(3, _u32(1))]
    register = 2
    if last:
        out.append(immediate(register, ipaddress.IPv4Address(last).packed))
        attrs.append(_attr(4, _u32(register)))
        register += 1
    if ports:
        low, high = _ports(ports)
        out += [immediate(register, struct.pack(">H", low)),
                immediate(register + 1, struct.pack(">H", high))]  # fmt: skip
        attrs += [_attr(5, _u32(register)), _attr(6, _u32(register + 1)), _attr(7, _u32(2))]
    return [*out, _expr("nat", *attrs)]


def _elements(
    add: bool, family: int, table: str, set_name: str, words: list[str]
) -> list[RawMessage] | None:
    """``{ F1 . F2 [comment TEXT] }`` or ``{ KEY : jump CHAIN }`` (add), ``{ F1 . F2 }``
    (delete): one element of a set in :data:`SETS`, its fields in the set's order."""
    if words[0] != "{" or words[-1] != "}":
        return None
    inner = words[1:-1]
    shape = SETS[set_name]
    target = comment = None
    if add and shape.verdict:
        if len(inner) < 3 or inner[-3:-1] != [":", "jump"]:
            return None
        target, inner = inner[-1], inner[:-3]
    elif add and len(inner) > 2 and inner[-2] == "comment":
        comment, inner = inner[-1], inner[:-2]
    if inner[1::2] != ["."] * (len(inner) // 2) or len(inner) != 2 * len(shape.fields) - 1:
        return None
    elements = b"".join(_element_attrs(shape, inner[0::2], target, comment))
    body = (_attr(ELEM_LIST_TABLE, _str(table)) + _attr(ELEM_LIST_SET, _str(set_name))
            + _nested(ELEM_LIST_ELEMENTS, elements))  # fmt: skip
    kind = NFT_MSG_NEWSETELEM if add else NFT_MSG_DELSETELEM
    return [RawMessage(kind, NLM_F_CREATE if add else 0, family, body)]


def element_key(set_name: str, fields: list[str]) -> bytes:
    """The first element attribute of ``fields`` in ``set_name`` without data: what a
    ``GETSETELEM`` asks for (:meth:`virtnet.services.nft_query.NftQuery.has`)."""
    return next(_element_attrs(SETS[set_name], fields, None, None))


def _element_attrs(
    shape: SetShape, fields: list[str], target: str | None, comment: str | None
) -> Iterator[bytes]:
    ranges = [_field(kind, text) for kind, text in zip(shape.fields, fields, strict=True)]
    extra = [_nested(ELEM_DATA, _verdict(NFT_JUMP, target))] if target else []
    if comment is not None:  # nft's element comment (libnftnl's NFTNL_UDATA_SET_ELEM_COMMENT)
        text = _str(comment)
        if len(text) > 128:
            raise ValueError(comment)
        extra.append(_attr(ELEM_USERDATA, bytes([0, len(text)]) + text))
    starts, ends = [r[0] for r in ranges], [r[1] for r in ranges]
    if len(ranges) > 1:  # concatenations: fields padded to 32 bits; pipapo's end inclusive
        key = _nested(ELEM_KEY, _value(concat(*starts)))
        if shape.interval:
            key += _nested(ELEM_KEY_END, _value(concat(*ends)))
        elif starts != ends:
            raise ValueError(fields)
        yield _nested(LIST_ELEM, key, *extra)
        return
    (start,), (end,) = starts, ends
    if not shape.interval:
        if start != end:
            raise ValueError(fields)
        yield _nested(LIST_ELEM, _nested(ELEM_KEY, _value(start)), *extra)
        return
    # an rbtree interval: its start, and the first key after it as its end
    after = int.from_bytes(end, "big") + 1
    if after >= 2 ** (8 * len(end)):
        raise ValueError(fields)
    yield _nested(LIST_ELEM, _nested(ELEM_KEY, _value(start)), *extra)
    yield _nested(LIST_ELEM, _nested(ELEM_KEY, _value(after.to_bytes(len(end), "big"))),
                  _attr(ELEM_FLAGS, _u32(ELEM_INTERVAL_END)))  # fmt: skip


def _field(kind: str, text: str) -> tuple[bytes, bytes]:
    """A field's first and last key: the same for one value, a range for a prefix."""
    if kind == "ifname":
        if text.endswith("*"):  # a prefix of names: every name that starts with it
            stem = text[:-1].encode()
            if not stem or len(stem) >= IFNAMSIZ:
                raise ValueError(text)
            return stem.ljust(IFNAMSIZ, b"\0"), stem.ljust(IFNAMSIZ, b"\xff")
        raw = _ifname(text)
        return raw, raw
    if kind == "ether":
        raw = _mac(text)
        return raw, raw
    network = ipaddress.ip_network(text, strict=True)
    return network.network_address.packed, network.broadcast_address.packed
