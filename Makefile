# coldswap: two commands matter, `make upgrade-drill` and `make test`.
# Both install what they need (idempotently) and build once.

SHELL := /bin/bash
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
BIN := $(TARGET_DIR)/release/coldswap
FROM ?= mariadb-10.11.18
TO ?= mariadb-10.11.19

.PHONY: all deps build dists test unit upgrade-drill bench images report-screenshot clean

all: build

# System packages (Debian): only what is missing is installed.
deps:
	@scripts/install-deps.sh

build: deps
	$(CARGO) build --release --workspace

# Server binaries unpacked from pinned Debian packages into ~/.cache/coldswap/dist.
dists: build
	$(BIN) -q dist fetch $(FROM) $(TO)

test: dists
	$(CARGO) test --release --workspace -- --test-threads=$${COLDSWAP_TEST_THREADS:-2}

unit:
	$(CARGO) test --release --workspace --lib --bins

# The whole rehearsal with drill.toml; exits 3 when a threshold fails.
# BACKEND=container, DRILL_ARGS="--scale 0.2 --cold 60s" override drill.toml.
upgrade-drill: dists
	$(BIN) drill --config drill.toml $(if $(BACKEND),--backend $(BACKEND)) $(DRILL_ARGS)

# Render the newest report.html in headless Chromium (offline) to a PNG.
report-screenshot:
	@scripts/install-deps.sh chromium
	scripts/screenshot.sh target/drill/latest/report.html target/drill/latest/report.png

# Speed figures beside their peers, in target/bench/results.json.
bench: dists
	@scripts/install-deps.sh sysbench
	$(TARGET_DIR)/release/coldswap-bench --out target/bench $(BENCH_ARGS)

clean:
	$(CARGO) clean
