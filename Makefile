# FlowLens: `make run` starts everything, `make test` runs the tests. Both install what they need.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/flowlens.yaml
# snmpd: the real SNMP agent the poller's tests walk; snmp (snmpwalk): what they check its answers against
DEB_PACKAGES := softflowd nfdump tcpdump nmap chromium snmpd snmp
# lz4: also a store dependency (its ring blocks); here for bench/blocks.py and its tests
# aiosmtpd: the SMTP server the notifier tests deliver email to (tests/integration/test_notifier.py)
# pytest-xdist: make test runs two test files at a time (most tests wait on services, not the CPU)
PIP_TEST := "pytest>=8" "hypothesis>=6.100" "lxml>=5" "httpx>=0.27" "playwright>=1.45" "netflow==0.12.2" "lz4>=4" "aiosmtpd>=1.4" "pytest-xdist>=3.5"

.PHONY: install run test fuzz bench clean debs compose-test

install: $(STAMP)

$(STAMP): Makefile libs/flowmodel/pyproject.toml services/*/pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e libs/flowmodel -e services/collector -e services/store -e services/analyzer -e services/web -e services/notifier -e services/poller
	$(BIN)/pip install -q $(PIP_TEST)
	touch $(STAMP)

# Debian packages the integration tests and benchmarks drive (real exporters, nfcapd, a browser).
debs:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

run: install
	$(BIN)/flowlens up --config $(CONFIG)

test: install debs
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=25 tests

# deploy/docker-compose.yml run for real (tests/compose/test_compose.py): podman with runc and netavark
# (crun fails on hybrid cgroups; CNI turns DNS off on internal networks), mmdebstrap for a base image
# without a registry, podman-compose in its own venv beside the cached base image. Minutes: not in `make test`.
COMPOSE_DEBS := podman runc netavark aardvark-dns mmdebstrap
COMPOSE_VENV := $(HOME)/.cache/flowlens/podman-compose-venv

compose-test: install
	@$(MAKE) --no-print-directory debs DEB_PACKAGES="$(COMPOSE_DEBS)"
	test -x $(COMPOSE_VENV)/bin/podman-compose || { $(PY) -m venv $(COMPOSE_VENV) && $(COMPOSE_VENV)/bin/pip install -q "podman-compose==1.6.0"; }
	FLOWLENS_COMPOSE_TEST=1 $(BIN)/python -m pytest -x -q -rs tests/compose

# 1,000,000 mutated corpus datagrams per decoder (bench/fuzz.py, 2 processes), then the hypothesis
# suites of tests/fuzz (decoders, query protocol, bus codec) at 10,000 examples each; niced: the
# machine is shared. Both run even when the first finds something (saved in tests/artifacts/fuzz/).
fuzz: install
	@status=0; nice -n 10 $(BIN)/python -m bench.fuzz --cases 1000000 --workers 2 || status=1; \
	FLOWLENS_FUZZ_EXAMPLES=10000 nice -n 10 $(BIN)/python -m pytest -q tests/fuzz -p no:cacheprovider || status=1; \
	exit $$status

bench: install debs
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) data tests/artifacts
