"""A strict reader over one XML element, shared by the network and port parsers.

It hands out attributes and children by name and remembers what was read; :meth:`finish`
then rejects whatever was not, so an element or attribute virtnet does not support is an
error naming its path (``network/ip[2]/dhcp/@foo``), never silently dropped.
"""

from __future__ import annotations

import re

from lxml import etree

from virtnet.errors import InvalidInput

_BOOL_WORDS = {"yes": True, "no": False, "on": True, "off": False}

# Entities are not expanded, no DTD is loaded, nothing is fetched from the network: a network
# definition may come from an untrusted caller (billion laughs, XXE).
_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True
)


#: Largest definition accepted (bytes) and most elements in it: a network with 10,000 DHCP
#: reservations is about 0.7 MB; anything far larger is a mistake or an attack, refused in
#: microseconds instead of parsed for a minute into gigabytes (docs/security.md).
MAX_DOCUMENT_BYTES = 4 << 20
MAX_ELEMENTS = 100_000


def parse_document(text: str | bytes, root: str) -> etree._Element:
    """Parse ``text`` and check its root element is ``root``."""
    data = text.encode(errors="surrogateescape") if isinstance(text, str) else text
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InvalidInput(
            f"document of {len(data):,} bytes is over the limit of {MAX_DOCUMENT_BYTES:,}",
            subject=root,
        )
    if data.count(b"<") > MAX_ELEMENTS:
        raise InvalidInput(f"document has more than {MAX_ELEMENTS:,} elements", subject=root)
    try:
        element = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        # libxml2's text repeats the position ("..., line 2, column 1 (<string>, line 2)")
        reason = re.sub(r", line \d+, column \d+$", "", exc.msg or "").strip() or "not XML"
        line, column = exc.position if exc.position else (exc.lineno, 0)
        raise InvalidInput(
            f"malformed XML at line {line}, column {column}: {reason}", subject=root
        ) from None
    if element.tag != root:
        raise InvalidInput(f"expected a <{root}> document, got <{element.tag}>", subject=root)
    for node in element.iter():
        if isinstance(node, etree._Entity):
            raise InvalidInput("XML entities are not allowed", subject=root)
    return element


class Node:
    """One element being read; ``path`` is how errors name it."""

    def __init__(self, element: etree._Element, path: str) -> None:
        self.element = element
        self.path = path
        self._read_attrs: set[str] = set()
        self._read_children: set[int] = set()

    # attributes -------------------------------------------------------------------------
    def attr(self, name: str, *, required: bool = False) -> str | None:
        self._read_attrs.add(name)
        value = self.element.get(name)
        if value is None and required:
            raise InvalidInput("attribute is required", subject=f"{self.path}/@{name}")
        return value

    def req(self, name: str) -> str:
        value = self.attr(name, required=True)
        assert value is not None
        return value

    def int_attr(
        self, name: str, *, minimum: int = 0, maximum: int = 2**32 - 1, required: bool = False
    ) -> int | None:
        raw = self.attr(name, required=required)
        if raw is None:
            return None
        try:
            value = int(raw.strip(), 0 if raw.strip().lower().startswith("0x") else 10)
        except ValueError:
            raise InvalidInput(
                f"{raw!r} is not an integer", subject=f"{self.path}/@{name}"
            ) from None
        if not minimum <= value <= maximum:
            raise InvalidInput(
                f"{value} is out of range {minimum}..{maximum}", subject=f"{self.path}/@{name}"
            )
        return value

    def bool_attr(self, name: str) -> bool | None:
        raw = self.attr(name)
        if raw is None:
            return None
        if raw not in _BOOL_WORDS:
            raise InvalidInput(f"{raw!r} is not 'yes' or 'no'", subject=f"{self.path}/@{name}")
        return _BOOL_WORDS[raw]

    def choice_attr(self, name: str, choices: tuple[str, ...]) -> str | None:
        raw = self.attr(name)
        if raw is not None and raw not in choices:
            raise InvalidInput(
                f"{raw!r} is not one of {', '.join(choices)}", subject=f"{self.path}/@{name}"
            )
        return raw

    # children ---------------------------------------------------------------------------
    def children(self, tag: str) -> list[Node]:
        found = []
        for index, c in enumerate(self.element):
            if c.tag == tag:
                found.append(c)
                self._read_children.add(index)
        if len(found) == 1:
            return [Node(found[0], f"{self.path}/{tag}")]
        return [Node(c, f"{self.path}/{tag}[{i}]") for i, c in enumerate(found, 1)]

    def child(self, tag: str) -> Node | None:
        found = self.children(tag)
        if len(found) > 1:
            raise InvalidInput("element may appear only once", subject=f"{self.path}/{tag}")
        return found[0] if found else None

    def take_all(self) -> list[etree._Element]:
        """Every child element, all marked as read (for ``<metadata>``'s foreign content)."""
        self._read_children.update(range(len(self.element)))
        return [c for c in self.element if isinstance(c.tag, str)]

    def text(self) -> str:
        return (self.element.text or "").strip()

    def raw_text(self) -> str:
        """The text as written, white space included (``<description>``)."""
        return self.element.text or ""

    def finish(self) -> None:
        """Reject any attribute or child element that no reader asked for."""
        for raw_name in self.element.attrib:
            name = str(raw_name)
            if name not in self._read_attrs:
                raise InvalidInput(
                    "attribute is not supported by virtnet", subject=f"{self.path}/@{name}"
                )
        for index, child in enumerate(self.element):
            if not isinstance(child.tag, str):
                continue  # processing instructions
            if index not in self._read_children:
                raise InvalidInput(
                    "element is not supported by virtnet", subject=f"{self.path}/{child.tag}"
                )
