# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all venv demo test lint typecheck unit sim-long clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Tools the tests drive (redis-cli, redis-benchmark; redis-server, the reference the
# compatibility tests compare every reply with; nftables as root, for packet loss; fuse3
# as root, for power cuts; iproute2 as root, for network namespaces); installed when missing.
systools:
	@command -v redis-cli >/dev/null 2>&1 && command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-tools and redis-server (redis-cli, redis-benchmark, the reference Redis)"; \
	  (apt-get update -qq && apt-get install -y -qq redis-tools redis-server >/dev/null) || \
	  echo "warning: could not install redis-tools/redis-server; tests that need them will be skipped"; }
	@[ "$$(id -u)" != 0 ] || command -v nft >/dev/null 2>&1 || { \
	  echo "installing nftables (packet loss in chaos runs)"; \
	  (apt-get update -qq && apt-get install -y -qq nftables >/dev/null) || \
	  echo "warning: could not install nftables; packet-loss tests will be skipped"; }
	@[ "$$(id -u)" != 0 ] || command -v fusermount3 >/dev/null 2>&1 || { \
	  echo "installing fuse3 (libfuse 3, for the lazy file system of power-cut chaos runs)"; \
	  (apt-get update -qq && apt-get install -y -qq fuse3 >/dev/null) || \
	  echo "warning: could not install fuse3; power-cut tests will be skipped"; }
	@[ "$$(id -u)" != 0 ] || command -v ip >/dev/null 2>&1 || { \
	  echo "installing iproute2 (network namespaces for the multi-address cluster test)"; \
	  (apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null) || \
	  echo "warning: could not install iproute2; the network-namespace test will be skipped"; }

demo: $(STAMP)
	$(BIN)/pyxos demo

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

test: $(STAMP) systools lint typecheck
	$(BIN)/pytest -q

# The long runs, documented in the README; not part of CI.
sim-long: $(STAMP)
	$(BIN)/pyxos sim --seeds 10000 --nodes 3
	$(BIN)/pyxos sim --seeds 2000 --nodes 5
	$(BIN)/pyxos sim --seeds 2000 --scenario duelling
	$(BIN)/pyxos sim --seeds 2000 --scenario membership
	$(BIN)/pyxos sim --seeds 1000 --scenario membership --nodes 5
	$(BIN)/pyxos sim --seeds 1000 --workload kv-expiry

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
