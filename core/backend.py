"""What a backend tells the core about itself, and what the core tells a backend about the host.

These are the value types of the hook contract (:mod:`virtnet.hookspecs`). They are frozen
dataclasses so that a backend's answer cannot be changed behind its back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from virtnet.model.network import ForwardMode
from virtnet.model.port import AttachmentKind

#: Feature words a backend may list in :attr:`BackendInfo.features`.
FEATURE_VLAN = "vlan"  # 802.1Q tags and trunks on ports
FEATURE_PORT_ISOLATION = "port-isolation"  # <port isolated='yes'/>
FEATURE_BANDWIDTH = "bandwidth"  # <bandwidth> shaping
FEATURE_ANTI_SPOOFING = "anti-spoofing"  # per-port MAC/IP source checks


@dataclass(frozen=True)
class Readiness:
    """Whether this host can run the backend now, and why not.

    ``problems`` make every start on this backend fail with :class:`~virtnet.errors.Unsupported`;
    ``notes`` are limits worth knowing (e.g. "no openvswitch kernel module: userspace
    datapath") that do not stop it.
    """

    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class BackendInfo:
    """A backend's self-description, returned by ``virtnet_backend_describe``."""

    name: str
    version: str
    summary: str
    forward_modes: frozenset[ForwardMode]
    attachments: frozenset[AttachmentKind]
    features: frozenset[str] = frozenset()
    readiness: Readiness = field(default_factory=Readiness)
    #: The hook API the backend was written for (:data:`virtnet.hookspecs.API_VERSION` when
    #: it was built); a backend that does not say is taken as written for 1.0.
    api_version: str = "1.0"

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "usable": True,
            "version": self.version,
            "api_version": self.api_version,
            "summary": self.summary,
            "forward_modes": sorted(m.value for m in self.forward_modes),
            "attachments": sorted(a.value for a in self.attachments),
            "features": sorted(self.features),
            "ready": self.readiness.ok,
            "problems": list(self.readiness.problems),
            "notes": list(self.readiness.notes),
        }


@dataclass(frozen=True)
class Host:
    """The host virtnet acts on: a network namespace and virtnet's directories in it.

    ``netns`` is None for the namespace the process runs in. ``state_dir`` holds persistent
    definitions; ``run_dir`` holds runtime state that a reboot should forget (like /run).
    """

    state_dir: Path
    run_dir: Path
    netns: str | None = None
    #: libvirt's <dnsmasq:options> reach dnsmasq only where the host's operator allows them
    #: (``VIRTNET_DNSMASQ_OPTIONS=allow``, or ``dnsmasq_options = yes`` in virtnetd.conf):
    #: they are raw configuration lines, around every check virtnet makes
    allow_dnsmasq_options: bool = False
    #: networks one dnsmasq may serve (``VIRTNET_DNSMASQ_SHARED=N``, ``dnsmasq_shared = N``
    #: in virtnetd.conf; :mod:`virtnet.services.dnsmasq_group`); 0 or 1: one per network
    dnsmasq_shared: int = 0

    def run_path(self, *parts: str) -> Path:
        return self.run_dir.joinpath(*parts)

    @property
    def scope(self) -> str:
        """This virtnet's scope in ownership labels (:func:`virtnet.ownership.scope_of`)."""
        from virtnet.ownership import scope_of

        return scope_of(self.state_dir)
