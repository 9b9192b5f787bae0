# The two commands a fresh Debian 12 machine needs, as root:
#   make lab    - the main job: the seed topology as a lab, its connectivity matrix checked
#   make test   - lint, type-check and the whole test suite
# Both install what they need first (Debian packages with apt-get, then .venv). Package
# scripts may not start services (policy-rc.d): docker.io and firewalld are only started by
# the tests, inside their own namespaces (virtnet.testing.foreign), libvirtd in a private
# mount namespace (virtnet.testing.libvirt), podman on private storage (virtnet.testing.podman).

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
DEBS := python3-venv python3-nftables nftables dnsmasq-base openvswitch-switch qemu-system-x86 cpio \
        python3-openvswitch iproute2 iputils-ping busybox tcpdump ethtool \
        docker.io firewalld python3-matplotlib graphviz python3-prometheus-client chromium \
        bash-completion gcc libc6-dev podman libvirt-daemon libvirt-clients libvirt-daemon-driver-qemu ovn-central ovn-host
SOURCES := pyproject.toml bin/virtnet bin/virtnet-client.c docs/man/virtnet.1 docs/man/virtnetd.8 contrib/bash-completion/virtnet $(shell find core drivers -name '*.py' -o -name 'py.typed' 2>/dev/null)
STAMP := $(VENV)/.installed

.PHONY: install test unit lint lab bench clean dist

install: $(STAMP)

# A normal (not editable) install, so the suite tests what users get; redone when sources change.
$(STAMP): $(SOURCES)
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  made_policy=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1; \
	  fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  rc=$$?; [ -n "$$made_policy" ] && rm -f /usr/sbin/policy-rc.d; [ $$rc -eq 0 ]; \
	fi
	@# Debian's interpreter with system site-packages: it sees python3-nftables and
	@# python3-openvswitch, which match the system's libnftables and OVS (docs/architecture.md).
	@[ -x $(PY) ] || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check '.[test]'
	@# The compiled thin client (bin/virtnet-client.c) becomes `virtnet`; the Python launcher it hands
	@# in-process commands to is installed beside it as virtnet-py (docs/architecture.md).
	install -m 755 bin/virtnet $(VENV)/bin/virtnet-py
	$(CC) -std=c11 -O2 -Wall -Wextra -Werror -D_FORTIFY_SOURCE=2 -fstack-protector-strong \
	  -o $(VENV)/bin/virtnet.new bin/virtnet-client.c && mv -f $(VENV)/bin/virtnet.new $(VENV)/bin/virtnet
	@mkdir -p .typecheck && ln -sfn ../core .typecheck/virtnet \
	  && ln -sfn ../drivers/linuxbridge .typecheck/virtnet_linuxbridge \
	  && ln -sfn ../drivers/macvtap .typecheck/virtnet_macvtap \
	  && ln -sfn ../drivers/ovs .typecheck/virtnet_ovs \
	  && ln -sfn ../examples/backends/ptp/src/virtnet_ptp .typecheck/virtnet_ptp
	@touch $(STAMP)

lint: install
	$(VENV)/bin/ruff check core drivers tests bench examples
	$(VENV)/bin/ruff format --check core drivers tests bench examples
	$(VENV)/bin/mypy -p virtnet -p virtnet_linuxbridge -p virtnet_macvtap -p virtnet_ovs -p virtnet_ovn -p virtnet_ptp

unit: install
	$(PY) -m pytest -q tests/unit

# Not -q: a file per line with the share done, so a 20-minute run shows where it is.
test: lint
	@echo "running the suite (~20 min on 2 cores; real namespaces, dnsmasq, OVS, QEMU)"
	$(PY) -m pytest -p no:cacheprovider --durations=15 tests

# An sdist and a wheel of virtnet in dist/ (PEP 517 through setuptools itself: no network,
# no build isolation), the package a vendor's backend depends on.
dist: install
	rm -rf dist build
	$(PY) -c "from setuptools import build_meta as b; b.build_sdist('dist'); b.build_wheel('dist')" >/dev/null
	@ls dist

lab: install
	cd examples && ../$(VENV)/bin/virtnet lab run archnetwork.yaml
	cd examples && ../$(VENV)/bin/virtnet lab run archnetwork-ovn.yaml

clean:
	rm -rf $(VENV) .typecheck build dist *.egg-info
