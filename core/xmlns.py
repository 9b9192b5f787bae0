"""What a program needs to write virtnet's XML by hand, without importing the model: its
namespaces, and escaping. The CNI plugin and the libvirt hook run once per container or VM
start, where the model's import (lxml, ~70 ms) would be most of their time; and the
standard library's ``xml.sax.saxutils`` pulls in ``urllib`` (~25 ms) for two replacements.
"""

from __future__ import annotations

#: ``<virtnet:attachment>`` of a ``<networkport>``: what virtnet made for the guest.
ATTACHMENT_NS = "https://virtnet.dev/xmlns/attachment/1"
#: A domain's ``<metadata>`` for the libvirt hook: which interface goes on which network.
LIBVIRT_NS = "https://virtnet.dev/xmlns/libvirt/1"


def escape(text: str, entities: dict[str, str] | None = None) -> str:
    """``&``, ``<`` and ``>`` as entities, then ``entities`` (``xml.sax.saxutils.escape``)."""
    text = text.replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;")
    for char, entity in (entities or {}).items():
        text = text.replace(char, entity)
    return text


def quoted(value: str) -> str:
    """An attribute value in single quotes, escaped for them (and for line breaks)."""
    return "'" + escape(value, {"'": "&apos;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}) + "'"
