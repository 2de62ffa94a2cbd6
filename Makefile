# coldswap: two commands matter, `make upgrade-drill` and `make test`.
# Both install what they need (idempotently) and build once.

SHELL := /bin/bash
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
BIN := $(TARGET_DIR)/release/coldswap
FROM ?= mariadb-10.11.18
TO ?= mariadb-10.11.19
MYSQL ?= mysql-9.7.4
# make upgrade-drill FLAVOR=mysql runs drills/mysql.toml instead of drill.toml.
DRILL_CONFIG ?= $(if $(filter mysql,$(FLAVOR)),drills/mysql.toml,drill.toml)

.PHONY: all deps build dists test lint unit upgrade-drill bench soak images tools report-screenshot clean

all: build

# System packages (Debian): only what is missing is installed.
deps:
	@scripts/install-deps.sh

build: deps
	$(CARGO) build --release --workspace

# Server binaries unpacked from pinned Debian packages into ~/.cache/coldswap/dist
# (MySQL 9.7 from Debian sid through a private apt state; no root needed).
dists: build
	$(BIN) -q dist fetch $(FROM) $(TO) $(MYSQL)

# Server images for the container backend, built from Debian packages (no
# registry): skipped when they exist, and when no Docker engine answers
# (the container tests then report themselves skipped, or fail under CI).
images:
	@if docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then \
	  docker/build-image.sh bookworm coldswap/mariadb:10.11 mariadb && \
	  docker/build-image.sh trixie coldswap/mariadb:11.8 mariadb && \
	  docker/build-image.sh sid coldswap/mysql:9.7 mysql; \
	else echo "images: no Docker engine answers; container images not built"; fi

# Test-only tools: check-jsonschema validates the GitHub workflow offline
# (actionlint's PyPI package fetches its binary from GitHub at install time,
# which this machine cannot reach).
tools:
	@command -v check-jsonschema >/dev/null || python3 -m pip install -q check-jsonschema==0.39.0

# House habits, checked: formatting, clippy with warnings as errors, and the
# layout's seams (no backend-kind branch outside crates/db/src/backend, no
# import cycle in db or drill).
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	python3 scripts/check-seams.py

test: dists images tools lint
	$(CARGO) test --release --workspace -- --test-threads=$${COLDSWAP_TEST_THREADS:-2}

unit:
	$(CARGO) test --release --workspace --lib --bins

# The whole rehearsal with drill.toml (FLAVOR=mysql: drills/mysql.toml).
# coldswap exits 3 when a threshold fails, 1 when the drill could not finish;
# make reports either as its own exit code 2 (see the README).
# BACKEND=container, DRILL_ARGS="--scale 0.2 --cold 60s" override the config.
upgrade-drill: dists $(if $(filter container,$(BACKEND)),$(if $(SKIP_IMAGES),,images))
	$(BIN) drill --config $(DRILL_CONFIG) $(if $(BACKEND),--backend $(BACKEND)) $(DRILL_ARGS)

# Render the newest report.html in headless Chromium (offline) to a PNG.
report-screenshot:
	@scripts/install-deps.sh chromium
	scripts/screenshot.sh target/drill/latest/report.html target/drill/latest/report.png

# Speed figures beside their peers, in target/bench/results.json.
bench: dists
	@scripts/install-deps.sh sysbench
	$(TARGET_DIR)/release/coldswap-bench --out target/bench $(BENCH_ARGS)

# The load process's memory over a 30-minute soak at the drill's rate
# (load_rss_growth_mib_per_hour, into the same results file).
# SOAK_MINUTES=5 for a shorter look.
SOAK_MINUTES ?= 30
soak: dists
	$(TARGET_DIR)/release/coldswap-bench --out target/bench --only soak --soak-minutes $(SOAK_MINUTES)

clean:
	$(CARGO) clean
