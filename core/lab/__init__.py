"""Labs: whole topologies (LANs, a host, virtual networks, guests) from a YAML file, built
through virtnet's own API, with an expected-connectivity matrix checked by real traffic."""

from virtnet.lab.build import Builder, down
from virtnet.lab.check import check, table
from virtnet.lab.spec import LabSpec, load

__all__ = ["Builder", "LabSpec", "check", "down", "load", "table"]
