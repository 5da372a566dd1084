#!/usr/bin/env bash
# The daemon with its cache off, every request a verification, with `[engine] multibuffer` "off"
# and "auto" side by side, per algorithm:
#   verify-64-ALG   POST /v1/verify, 64 distinct tokens per request, 16 connections
#   authz-ALG       GET /v1/authz, 64 distinct tokens, 64 connections (one token per request:
#                   the workers batch what queues up under load)
#
#   loadtest/multibuffer.sh [OUT.md]    # about 3 minutes; ROUNDS=3, DURATION=4 (seconds)
#
# Contestants alternate within each round (off, auto, off, auto, ...) so that the machine's drift
# weighs on both alike; a ratio is auto's throughput over off's, the median of the rounds.
# Without crypto_mb or AVX-512 IFMA, "auto" is the single path too and the ratios are ~1.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${1:-target/loadtest/multibuffer.md}
duration=${DURATION:-4}
rounds=${ROUNDS:-3}
work=target/loadtest/multibuffer
mkdir -p "$work" "$(dirname "$out")"
say() { echo "== $*" >&2; }

crypto/install.sh >/dev/null
say "building (release)"
cargo build --release -q -p tessera -p loadtest --bin tessera --bin tessera-loadtest
bin=${CARGO_TARGET_DIR:-target}/release
lt=$bin/tessera-loadtest

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
declare -A addr
start() { # NAME CMD...: a daemon that prints `listening on http://ADDR` first
  local name=$1; shift
  "$@" > "$work/$name.out" 2> "$work/$name.err" &
  pids+=($!)
  for _ in $(seq 1 100); do
    if grep -q '^listening on http://' "$work/$name.out" 2>/dev/null; then
      addr[$name]=$(sed -n 's|^listening on http://||p' "$work/$name.out" | head -1)
      return
    fi
    sleep 0.1
  done
  echo "multibuffer.sh: $* did not start:" >&2; cat "$work/$name.err" >&2; exit 1
}

rm -rf "$work/keys"
$lt keys --out "$work/keys" >/dev/null
secret=mb-secret
hash=$(printf '%s\n' "$secret" | $bin/tessera client hash-secret --iterations 1000)
iss=https://issuer.example
aud=api://orders
for mode in off auto; do
  cat > "$work/$mode.toml" <<TOML
[server]
listen = "127.0.0.1:0"
[engine]
cache_ttl_s = 0
negative_ttl_s = 0
multibuffer = "$mode"
[[issuers]]
issuer = "$iss"
audiences = ["$aud"]
jwks_file = "$root/$work/keys/jwks.json"
[[clients]]
id = "mb"
secret_hash = "$hash"
TOML
  start "$mode" $bin/tessera serve --config "$work/$mode.toml"
done
grep -h 'multibuffer:' "$work/off.err" "$work/auto.err" | sed 's/^/   /' >&2
export TESSERA_LOADTEST_CLIENT_SECRET=$secret
common=(--threads 2 --duration "${duration}s" --warmup 1s --quiet)
signed=(--keys "$work/keys" --iss "$iss" --aud "$aud")

run() { # NAME ARGS...: one harness run; prints its throughput (tokens for batches: x64 later)
  local name=$1; shift
  $lt "$@" "${common[@]}" --json "$work/$name.json" > /dev/null
  python3 - "$work/$name.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
bad = sum(n for _, n in r["errors"])
if bad:
    sys.exit(f"{sys.argv[1]}: {bad} errors {r['errors']}")
print(f"{r['throughput']:.0f}")
PY
}

rows=$work/rounds.txt
: > "$rows"
for round in $(seq 1 "$rounds"); do
  say "round $round/$rounds"
  for alg in RS256 ES256 EdDSA; do
    for mode in off auto; do
      echo "verify-64-$alg $mode $round $(run "v-$alg-$mode" verify-batch --batch 64 \
        --url "http://${addr[$mode]}" --connections 16 --client-id mb "${signed[@]}" \
        --mix "$alg=100" --distinct 1024)" >> "$rows"
      echo "authz-$alg $mode $round $(run "a-$alg-$mode" authz --url "http://${addr[$mode]}" \
        --connections 64 "${signed[@]}" --mix "$alg=100" --distinct 64)" >> "$rows"
    done
  done
done
lanes=$(curl -s "http://${addr[auto]}/metrics" | grep '^tessera_engine_multibuffer_' || true)

machine="$(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1); $(uname -sr)"
python3 - "$rows" "$out" "$machine" "$(date -u +%Y-%m-%dT%H:%MZ)" \
  "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$lanes" <<'PY'
import statistics, sys
rows, out, machine, date, commit, lanes = sys.argv[1:]
rate = {}
for line in open(rows):
    name, mode, r, per_s = line.split()
    rate.setdefault(name, {}).setdefault(mode, {})[int(r)] = float(per_s)
md = [f"Machine: {machine}. `loadtest/multibuffer.sh`, {date}, tree at {commit}; "
      "requests/s per round (verify-64: requests of 64 tokens), off → auto.", "",
      "| contestant | off (per round) | auto (per round) | auto / off (median) |",
      "|---|---|---|---|"]
for name, modes in rate.items():
    rounds = sorted(modes["off"])
    ratio = statistics.median(modes["auto"][r] / modes["off"][r] for r in rounds)
    fmt = lambda m: ", ".join(f"{modes[m][r]:.0f}" for r in rounds)
    md.append(f"| {name} | {fmt('off')} | {fmt('auto')} | {ratio:.2f}× |")
md += ["", "The `auto` daemon's lanes afterwards:", "", "```", lanes, "```"]
open(out, "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
