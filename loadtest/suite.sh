#!/usr/bin/env bash
# The short load suite: the daemon under tessera-loadtest next to its baselines, on this machine.
#
#   loadtest/suite.sh [OUT.md]       # about 4 minutes; ROUNDS=5, DURATION=4 (seconds) by default
#
# Contestants, one after the other, ROUNDS times over (the VM's clock drift then hits all alike);
# a target counts as met when the median of the rounds' ratios meets it:
#   hello              GET / on the hyper hello-world (benches/src/bin/hello.rs): the HTTP limit,
#                      measured before and after authz and introspect and averaged
#   authz, introspect  the daemon with one ES256 token: every verdict from the cache
#   authz-noclaims     the same, with `[authz.headers] claims = ""` (no X-Auth-Claims)
#   authz-ALG          the daemon with its cache off (cache_ttl_s = 0), 64 distinct tokens of ALG:
#                      every request verifies a signature (RS256, ES256, EdDSA)
#   verify-64          POST /v1/verify with 64 distinct ES256 tokens per request, cache off, 16
#                      connections (64 x 64 tokens would exceed what the engine admits: 503)
#   engine             the in-process engine (benches/src/bin/engine-rate.rs), cache off, 64-token
#                      batches from 8 concurrent callers: the baseline of verify-64
# The ratios: authz / hello and introspect / hello (target 0.85), and verify-64's tokens per
# second / engine's (target 0.85).
#
# Where the machine has two CPUs or more, every server (and engine-rate) runs pinned to the last
# CPU (`taskset`: the daemon then sizes its runtime and its engine to that one core) and the load
# generator on the others, so the ratios compare the servers' own work per request, not the
# generator's share of the same cores. PIN=0 shares all cores instead (the layout of earlier
# reports, where the generator's CPU counted against the servers, as wrk's does).
#
# Writes a markdown report to OUT.md (default target/loadtest/suite.md) and prints it, and the same
# figures as JSON beside it (OUT.json: target/loadtest/suite.json), which bench-report reads:
#   {"format": 1, "date", "commit", "machine", "rounds", "duration_s", "threads",
#    "contestants": [{"name", "unit", "connections", "throughput": [per round], "p99_us": [...]}],
#    "ratios": [{"name", "target", "values": [per round]}]}
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${1:-target/loadtest/suite.md}
duration=${DURATION:-4}
rounds=${ROUNDS:-5}
work=target/loadtest/suite
mkdir -p "$work" "$(dirname "$out")"

say() { echo "== $*" >&2; }

say "building (release)"
cargo build --release -q -p tessera -p loadtest -p benches --bin tessera --bin tessera-loadtest \
  --bin hello --bin engine-rate
# Where cargo put them: CARGO_TARGET_DIR if set (relative to the repository root), else target.
bin=${CARGO_TARGET_DIR:-target}/release
lt=$bin/tessera-loadtest

cpus=$(nproc)
if [ "${PIN:-1}" = 1 ] && [ "$cpus" -ge 2 ]; then
  last=$((cpus - 1))
  serve=(taskset -c "$last")
  load_cpus=$(seq -s, 0 $((last - 1)))
  threads=$last
  layout="servers pinned to CPU $last, the load on CPUs $load_cpus"
else
  serve=()
  load_cpus=
  threads=2
  layout="servers and load sharing all CPUs"
fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# start NAME CMD...: starts a server that writes `listening on http://ADDR` first; sets
# addr[NAME]. Not in a subshell, so that its pid is remembered for the clean-up.
declare -A addr
start() {
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
  echo "suite.sh: $* did not start:" >&2; cat "$work/$name.err" >&2; exit 1
}

rm -rf "$work/keys"
$lt keys --out "$work/keys" >/dev/null
secret=suite-secret
hash=$(printf '%s\n' "$secret" | $bin/tessera client hash-secret --iterations 1000)
iss=https://issuer.example
aud=api://orders
config() { # $1: extra [engine] lines
  cat <<EOF
[server]
listen = "127.0.0.1:0"
[engine]
$1
[[issuers]]
issuer = "$iss"
audiences = ["$aud"]
jwks_file = "$root/$work/keys/jwks.json"
[[clients]]
id = "suite"
secret_hash = "$hash"
EOF
}
config "" > "$work/cached.toml"
{ config ""; printf '[authz.headers]\nclaims = ""\n'; } > "$work/noclaims.toml"
config $'cache_ttl_s = 0\nnegative_ttl_s = 0' > "$work/uncached.toml"

start hello "${serve[@]}" $bin/hello
start cached "${serve[@]}" $bin/tessera serve --config "$work/cached.toml"
start noclaims "${serve[@]}" $bin/tessera serve --config "$work/noclaims.toml"
start uncached "${serve[@]}" $bin/tessera serve --config "$work/uncached.toml"
hello=${addr[hello]} cached=${addr[cached]} noclaims=${addr[noclaims]} uncached=${addr[uncached]}
export TESSERA_LOADTEST_CLIENT_SECRET=$secret
common=(--threads "$threads" --duration "${duration}s" --warmup 1s --quiet)
[ -n "$load_cpus" ] && common+=(--cpus "$load_cpus")
signed=(--keys "$work/keys" --iss "$iss" --aud "$aud")

# run NAME ARGS...: one harness run, its throughput printed.
run() {
  local name=$1; shift
  $lt "$@" "${common[@]}" --json "$work/$name.json" > /dev/null
  python3 - "$work/$name.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
bad = sum(n for _, n in r["errors"])
if bad:
    sys.exit(f"{sys.argv[1]}: {bad} errors {r['errors']}")
print(f"{r['throughput']:.0f} {r['latency_us']['p99']}")
PY
}

declare -A rate p99
for round in $(seq 1 "$rounds"); do
  say "round $round/$rounds"
  # hello before and after the cached contestants, averaged: a drift of the machine's speed
  # during the round weighs on both sides of their ratios alike.
  read -r before before_p99 < <(run hello get "http://$hello/" --connections 64)
  read -r rate[authz.$round] p99[authz.$round] < <(run authz authz --url "http://$cached" \
    --connections 64 "${signed[@]}")
  read -r rate[authz-noclaims.$round] p99[authz-noclaims.$round] < <(run authz-noclaims authz \
    --url "http://$noclaims" --connections 64 "${signed[@]}")
  read -r rate[introspect.$round] p99[introspect.$round] < <(run introspect introspect \
    --url "http://$cached" --connections 64 --client-id suite "${signed[@]}")
  read -r after after_p99 < <(run hello get "http://$hello/" --connections 64)
  rate[hello.$round]=$(( (before + after) / 2 ))
  p99[hello.$round]=$(( before_p99 > after_p99 ? before_p99 : after_p99 ))
  for alg in RS256 ES256 EdDSA; do
    read -r rate[authz-$alg.$round] p99[authz-$alg.$round] < <(run "authz-$alg" authz \
      --url "http://$uncached" --connections 64 "${signed[@]}" --mix "$alg=100" --distinct 64)
  done
  # 12 connections x 64 tokens stay within what the engine admits at once (1024 a core); more
  # would be answered 503, as they should.
  read -r rate[verify-64.$round] p99[verify-64.$round] < <(run verify-64 verify-batch --batch 64 \
    --url "http://$uncached" --connections 12 --client-id suite "${signed[@]}" --distinct 1024)
  rate[engine.$round]=$("${serve[@]}" $bin/engine-rate --alg ES256 --batch 64 --seconds "$duration" \
    | sed -n 's/.*tokens_per_s=//p')
done

# One line per contestant and round: NAME ROUND PER_SECOND P99_US (- where there is none).
rows=$work/rounds.txt
for name in hello authz authz-noclaims introspect authz-RS256 authz-ES256 authz-EdDSA verify-64 engine; do
  for r in $(seq 1 "$rounds"); do
    echo "$name $r ${rate[$name.$r]} ${p99[$name.$r]:--}"
  done
done > "$rows"

machine="$(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1); $(uname -sr)"
python3 - "$rows" "$out" "${out%.md}.json" "$rounds" "$duration" "$(date -u +%Y-%m-%dT%H:%MZ)" \
  "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$machine" "$threads" "$layout" <<'PY'
import json, statistics, sys

rows, md_path, json_path, rounds, duration, date, commit, machine, threads, layout = sys.argv[1:]
rounds = range(1, int(rounds) + 1)
rate, p99 = {}, {}
for line in open(rows):
    name, r, per_s, latency = line.split()
    rate[name, int(r)] = float(per_s)
    if latency != "-":
        p99[name, int(r)] = int(latency)
names = ["hello", "authz", "authz-noclaims", "introspect", "authz-RS256", "authz-ES256", "authz-EdDSA", "verify-64"]
connections = {"verify-64": 12}
# The ratios PRODUCT.md names, each round's from that round's runs.
ratios = [
    ("authz / hello", 0.85, lambda r: rate["authz", r] / rate["hello", r]),
    ("authz-noclaims / hello", 0.85, lambda r: rate["authz-noclaims", r] / rate["hello", r]),
    ("introspect / hello", 0.85, lambda r: rate["introspect", r] / rate["hello", r]),
    ("verify-64 tokens/s / engine", 0.85, lambda r: rate["verify-64", r] * 64 / rate["engine", r]),
]

md = [
    f"Machine: {machine}. `loadtest/suite.sh`, {date}, {len(rounds)} rounds of {duration} s,"
    f" {threads} harness threads, 64 connections (verify-64: 12), {layout}; tree at {commit}.",
    "",
    "| contestant |" + "".join(f" round {r} req/s (p99 µs) |" for r in rounds),
    "|---|" + "---|" * len(rounds),
]
for name in names:
    md.append(f"| {name} |" + "".join(f" {rate[name, r]:.0f} ({p99[name, r]}) |" for r in rounds))
md.append("| engine (tokens/s) |" + "".join(f" {rate['engine', r]:.0f} |" for r in rounds))
md += [
    "",
    "| ratio (target) |" + "".join(f" round {r} |" for r in rounds) + " median |",
    "|---|" + "---|" * (len(rounds) + 1),
]
for label, target, value in ratios:
    md.append(
        f"| {label} ({target}) |"
        + "".join(f" {value(r):.3f} |" for r in rounds)
        + f" {statistics.median(value(r) for r in rounds):.3f} |"
    )
with open(md_path, "w") as f:
    f.write("\n".join(md) + "\n")

summary = {
    "format": 1,
    "date": date,
    "commit": commit,
    "machine": machine,
    "rounds": len(rounds),
    "duration_s": float(duration),
    "threads": int(threads),
    "layout": layout,
    "contestants": [
        {
            "name": name,
            "unit": "requests/s",
            "connections": connections.get(name, 64),
            "throughput": [rate[name, r] for r in rounds],
            "p99_us": [p99[name, r] for r in rounds],
        }
        for name in names
    ]
    + [
        {
            "name": "engine",
            "unit": "tokens/s",
            "connections": None,
            "throughput": [rate["engine", r] for r in rounds],
            "p99_us": [],
        }
    ],
    "ratios": [
        {"name": label, "target": target, "values": [value(r) for r in rounds]}
        for label, target, value in ratios
    ],
}
with open(json_path, "w") as f:
    json.dump(summary, f, indent=2)
    f.write("\n")
PY
cat "$out"
