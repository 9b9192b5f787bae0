"""virtnet-ptp: a routed point-to-point backend (see README.md)."""

from virtnet_ptp.plugin import PtpBackend

#: The object virtnet registers (entry point ``virtnet.drivers: ptp``).
backend = PtpBackend()

__all__ = ["PtpBackend", "backend"]
