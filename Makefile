# tessera: `make run` starts the daemon in development mode, `make test` is what CI runs, `make bench`
# measures. Each target installs or checks what it needs itself.

SHELL := /bin/bash
CARGO ?= cargo
BIN := target/release/tessera
# The example tokens are issued 2026-01-01T00:00:00Z; verify them ten minutes later.
EXAMPLE_ARGS := --jwks examples/jwks.json --iss https://issuer.example --aud api://orders --now 1767226200

.PHONY: all run test lint bench examples toolchain hsm-deps test-deps crypto-deps

all: test

toolchain:
	@command -v $(CARGO) >/dev/null 2>&1 || { \
	  echo "make: cargo is missing; install Rust with rustup (https://rustup.rs), then rerun" >&2; exit 1; }
	@$(CARGO) fmt --version >/dev/null 2>&1 || { \
	  echo "make: rustfmt is missing: rustup component add rustfmt" >&2; exit 1; }
	@$(CARGO) clippy --version >/dev/null 2>&1 || { \
	  echo "make: clippy is missing: rustup component add clippy" >&2; exit 1; }

# SoftHSM and pkcs11-tool (apt-get as root; a clear message otherwise).
hsm-deps:
	hsm/install.sh

# crypto_mb for the vectorised verification path, into crypto/lib (see crypto/README.md).
crypto-deps:
	crypto/install.sh >/dev/null

# Where `make run` serves.
LISTEN ?= 127.0.0.1:8080

# openssl, nginx and Caddy for the end-to-end tests (apt-get as root; a clear message otherwise).
test-deps:
	tests/deps.sh

# Build the binary, verify the example tokens in examples/ (one valid, the rest hostile), then
# start the daemon on $(LISTEN) in development mode: signing keys in the development SoftHSM
# token (an ES256 key is created if there is none), its own keys trusted, the introspection
# client dev/dev-secret. Prints ready-to-paste curl commands with a freshly signed token.
run: toolchain hsm-deps crypto-deps
	$(CARGO) build --release -p tessera
	@echo "== tessera verify $(EXAMPLE_ARGS) - < examples/NAME.jwt"
	@for f in examples/*.jwt; do \
	  code=0; out=$$($(BIN) verify $(EXAMPLE_ARGS) - < $$f) || code=$$?; \
	  printf '%-34s exit %s  %s\n' "$$f" "$$code" "$$out"; \
	  case "$$f:$$code" in */valid.jwt:0) ;; */valid.jwt:*) exit 1 ;; *:1) ;; *) exit 1 ;; esac; \
	done
	@set -e; chmod 600 hsm/dev-pin hsm/dev-so-pin; \
	  export SOFTHSM2_CONF=$$(hsm/setup.sh $(BIN)) TESSERA_HSM_PIN_FILE=hsm/dev-pin; \
	  echo "== development HSM token: SOFTHSM2_CONF=$$SOFTHSM2_CONF"; \
	  $(BIN) keys list | grep -q ' ES256 *active ' || $(BIN) keys generate --alg ES256 >/dev/null; \
	  $(BIN) keys list; \
	  token=$$($(BIN) token sign --alg ES256 --ttl 1h --typ at+jwt \
	    --claims '{"iss":"http://$(LISTEN)","sub":"demo","scope":"orders:read","client_id":"make-run"}'); \
	  echo "== tessera serve --dev --listen $(LISTEN)   (Ctrl-C stops it)"; \
	  echo "   Once it says 'listening', try from another terminal:"; \
	  echo "   curl -i http://$(LISTEN)/v1/authz -H 'Authorization: Bearer $$token'"; \
	  echo "   curl -s -u dev:dev-secret http://$(LISTEN)/introspect -d 'token=$$token'"; \
	  echo "   curl -s http://$(LISTEN)/.well-known/jwks.json"; \
	  echo "   curl -s http://$(LISTEN)/metrics"; \
	  exec $(BIN) serve --dev --listen $(LISTEN)

test: toolchain hsm-deps crypto-deps test-deps lint
	$(CARGO) build -p tessera
	hsm/setup.sh target/debug/tessera >/dev/null
	@mkdir -p target
	set -o pipefail; $(CARGO) test --workspace --all-targets 2>&1 | tee target/test.log
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "tests: %d passed, %d failed\n", p, f }' target/test.log

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	tests/architecture.sh

# Where criterion writes its results (as criterion decides: CRITERION_HOME, else under cargo's
# target directory).
CRITERION_DIR := $(or $(CRITERION_HOME),$(or $(CARGO_TARGET_DIR),target)/criterion)

# The criterion suites (verify, engine, sign), the interleaved ratios (their tables also in
# target/bench/ratios.md, their figures in target/bench/ratios.json), then the short load suite:
# the daemon under tessera-loadtest next to a hyper hello-world and the in-process engine
# (target/loadtest/suite.md and suite.json), and the daemon's memory at its cache bound
# (target/loadtest/memory.md). Last, bench-report rewrites the section of
# docs/BENCHMARKS.md between its `make bench` markers from these results; the rest of that file is
# hand-written. Criterion keeps the results of ids it no longer measures: only those written
# after target/bench/started are reported.
bench: toolchain hsm-deps crypto-deps
	@mkdir -p target/bench
	date +%s > target/bench/started
	$(CARGO) bench -p benches --bench verify --bench engine --bench sign
	set -o pipefail; $(CARGO) bench -p benches --bench ratios -- --json "$(CURDIR)/target/bench/ratios.json" \
	  | tee target/bench/ratios.md
	loadtest/suite.sh target/loadtest/suite.md
	loadtest/memory.sh target/loadtest/memory.md
	$(CARGO) run --release -q -p benches --bin bench-report -- --since "$$(cat target/bench/started)" \
	  --criterion "$(CRITERION_DIR)" --ratios target/bench/ratios.json \
	  --suite target/loadtest/suite.json --memory target/loadtest/memory.json --write docs/BENCHMARKS.md

# Regenerate examples/ with a fresh key (the tokens change; their verdicts do not).
examples:
	$(CARGO) run -q -p tessera --example make-examples -- examples
