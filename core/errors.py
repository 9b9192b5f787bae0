"""One exception hierarchy for the whole of virtnet.

Every error a user can cause or meet is a :class:`VirtnetError`. The CLI maps the classes to
exit codes (2 for :class:`InvalidInput`, 1 for the rest) and prints ``str(error)`` as one line;
embedders catch the class they care about. Each error names the object or field it is about,
so a message always says *what* is wrong and *where*.
"""

from __future__ import annotations


class VirtnetError(Exception):
    """Base class: an error virtnet expected and can explain in one line."""

    exit_code = 1

    def __init__(self, message: str, *, subject: str | None = None) -> None:
        self.subject = subject
        super().__init__(f"{subject}: {message}" if subject else message)


class InvalidInput(VirtnetError):
    """Input (XML, a name, an option) is malformed or inconsistent; nothing was changed.

    ``subject`` is the field in the form ``element/@attribute`` (or an option name), so a
    user sees e.g. ``ip/dhcp/range/@start: 10.0.1.5 is outside 192.168.1.0/24``.
    """

    exit_code = 2


class NotFound(VirtnetError):
    """A network, port or backend that was named does not exist."""


class Conflict(VirtnetError):
    """The request collides with existing state (a name in use, a network already active)."""


class Unsupported(VirtnetError):
    """The request is valid but no installed backend, or this host, can serve it.

    The message says what is missing (a kernel feature, a package, a backend) so the user
    knows what to install or change.
    """


class OperationFailed(VirtnetError):
    """A datapath operation failed part-way; what it had done was rolled back."""


class PermissionDenied(VirtnetError):
    """The caller may not do this (an ACL, a socket's owner): nothing was changed."""
