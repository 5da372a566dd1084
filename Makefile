# tessera: `make run` demonstrates verification, `make test` is what CI runs, `make bench`
# measures. Each target installs or checks what it needs itself.

SHELL := /bin/bash
CARGO ?= cargo
BIN := target/release/tessera
# The example tokens are issued 2026-01-01T00:00:00Z; verify them ten minutes later.
EXAMPLE_ARGS := --jwks examples/jwks.json --iss https://issuer.example --aud api://orders --now 1767226200

.PHONY: all run test lint bench examples toolchain

all: test

toolchain:
	@command -v $(CARGO) >/dev/null 2>&1 || { \
	  echo "make: cargo is missing; install Rust with rustup (https://rustup.rs), then rerun" >&2; exit 1; }
	@$(CARGO) fmt --version >/dev/null 2>&1 || { \
	  echo "make: rustfmt is missing: rustup component add rustfmt" >&2; exit 1; }
	@$(CARGO) clippy --version >/dev/null 2>&1 || { \
	  echo "make: clippy is missing: rustup component add clippy" >&2; exit 1; }

# Build the binary and verify the example tokens in examples/: one valid, the rest hostile.
run: toolchain
	$(CARGO) build --release -p tessera
	@echo "tessera verify $(EXAMPLE_ARGS) - < examples/NAME.jwt"
	@for f in examples/*.jwt; do \
	  code=0; out=$$($(BIN) verify $(EXAMPLE_ARGS) - < $$f) || code=$$?; \
	  printf '%-34s exit %s  %s\n' "$$f" "$$code" "$$out"; \
	  case "$$f:$$code" in */valid.jwt:0) ;; */valid.jwt:*) exit 1 ;; *:1) ;; *) exit 1 ;; esac; \
	done

test: toolchain lint
	@mkdir -p target
	set -o pipefail; $(CARGO) test --workspace --all-targets 2>&1 | tee target/test.log
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "tests: %d passed, %d failed\n", p, f }' target/test.log

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Criterion group `verify`, then the interleaved ratios (docs/BENCHMARKS.md).
bench: toolchain
	$(CARGO) bench -p benches

# Regenerate examples/ with a fresh key (the tokens change; their verdicts do not).
examples:
	$(CARGO) run -q -p tessera --example make-examples -- examples
