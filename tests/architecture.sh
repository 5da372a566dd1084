#!/usr/bin/env bash
# Checks the invariants of docs/ARCHITECTURE.md that a machine can check: which workspace crates
# may depend on cryptoki (FFI), the SQL clients (store), anyhow (binaries only) and hyper (HTTP), and that every crate
# forbids unsafe code. `make lint` runs it; each failure names the rule it breaks.
set -euo pipefail
cd "$(dirname "$0")/.."
failed=0

fail() {
  echo "architecture: $*" >&2
  failed=1
}

# The workspace crates that depend on $2 directly, through the dependency kinds $1
# (normal, dev, build; comma-separated), one name per line.
dependents() {
  cargo tree --workspace --locked -e "$1" -i "$2" --prefix none --depth 1 \
    | awk '$3 ~ /^\(\// { print $1 }' | sort -u
}

# `allowed KINDS DEP CRATE...`: only these crates may depend on DEP through those kinds.
allowed() {
  local kinds=$1 dep=$2
  shift 2
  local extra
  extra=$(comm -23 <(dependents "$kinds" "$dep") <(printf '%s\n' "$@" | sort -u))
  [ -z "$extra" ] || fail "$(echo $extra) depend(s) on $dep ($kinds); only $* may"
}

# Only pkcs11 reaches FFI, and only through cryptoki; tests and benchmarks go through pkcs11.
allowed normal,dev,build cryptoki pkcs11
# The other FFI: crypto_mb, opened at run time by multibuffer alone.
allowed normal,dev,build libloading multibuffer
# Only store speaks SQL: SQLite through rusqlite, PostgreSQL through tokio-postgres and its pool.
allowed normal,dev,build rusqlite store
allowed normal,dev,build tokio-postgres store
allowed normal,dev,build deadpool-postgres store
# Libraries return typed errors: anyhow only in the binaries.
allowed normal anyhow tessera loadtest
# loadtest is a library and a binary in one package: the library's modules (those lib.rs
# declares) must not use anyhow either.
for module in $(sed -n 's/^pub mod \([a-z0-9_]*\);$/\1/p' loadtest/src/lib.rs); do
  ! grep -q 'anyhow' "loadtest/src/$module.rs" \
    || fail "loadtest/src/$module.rs is in the loadtest library and uses anyhow"
done
# Who knows HTTP: engine (fetching remote key sets), server (the daemon), loadtest (the
# harness's clients), benches (the hello-world baseline), testkit (the daemon harness's
# clients), and the end-to-end tests of tessera.
allowed normal hyper engine server loadtest benches testkit
allowed normal,dev hyper engine server loadtest benches testkit tessera
# oauth decides and does no I/O: no runtime, no HTTP, no store.
for dep in tokio hyper store rusqlite tokio-postgres; do
  ! cargo tree --locked -p oauth -e normal --prefix none | awk '{ print $1 }' | grep -qx "$dep" \
    || fail "oauth depends on $dep; it does no I/O"
done
# The test kit is for tests only: no crate depends on it but as a dev-dependency (the
# inverted tree lists testkit itself).
allowed normal,build testkit testkit

# No unsafe code: the workspace lint in every member, and the attribute at every crate root.
# multibuffer is the one exception: unsafe code denied, and allowed in its ffi.rs alone.
for manifest in crates/*/Cargo.toml benches/Cargo.toml loadtest/Cargo.toml; do
  [ "$manifest" = crates/multibuffer/Cargo.toml ] && continue
  grep -Pzq '\[lints\]\nworkspace = true' "$manifest" \
    || fail "$manifest does not take the workspace lints (unsafe_code = \"forbid\")"
done
grep -q '^unsafe_code = "deny"$' crates/multibuffer/Cargo.toml \
  || fail "crates/multibuffer/Cargo.toml does not deny unsafe code"
grep -q '^#!\[deny(unsafe_code)\]' crates/multibuffer/src/lib.rs \
  || fail "crates/multibuffer/src/lib.rs lacks #![deny(unsafe_code)]"
allowing=$(grep -rl 'allow(unsafe_code)' crates/multibuffer/src | sort | tr '\n' ' ')
[ "$allowing" = "crates/multibuffer/src/ffi.rs " ] \
  || fail "unsafe code is allowed in multibuffer outside ffi.rs: $allowing"
if grep -rn 'allow(unsafe_code)' crates benches loadtest --include='*.rs' | grep -v '^crates/multibuffer/src/ffi.rs:' ; then
  fail "unsafe code allowed outside crates/multibuffer/src/ffi.rs"
fi
roots=$(ls crates/*/src/lib.rs crates/*/src/main.rs benches/src/lib.rs loadtest/src/lib.rs loadtest/src/main.rs \
  benches/src/bin/*.rs benches/src/bin/*/main.rs 2>/dev/null)
for root in $roots; do
  [ "$root" = crates/multibuffer/src/lib.rs ] && continue
  grep -q '^#!\[forbid(unsafe_code)\]' "$root" || fail "$root lacks #![forbid(unsafe_code)]"
done

if [ "$failed" = 0 ]; then
  echo "architecture: dependency and unsafe-code invariants hold"
fi
exit "$failed"
