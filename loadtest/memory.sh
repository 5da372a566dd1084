#!/usr/bin/env bash
# The daemon's memory at its cache bound: an all-miss run of distinct HS256 tokens (each sent
# once) through /v1/authz, with the daemon's resident memory (VmRSS), the cache's entries and the
# bytes it counts (`tessera_cache_bytes`) sampled every INTERVAL seconds.
#
#   loadtest/memory.sh [OUT.md]     # BOUND=512 MiB, TOKENS=1600000 at RATE=40000/s by default
#
# The daemon's base is its RSS after 2 s of the same load with one token (cached); the bound
# holds when the RSS at the end is at most BOUND × 1.1 + that base. Writes a markdown report to
# OUT.md (default target/loadtest/memory.md) and prints it, and the figures as JSON beside it
# (OUT.json), which bench-report reads:
#   {"format": 1, "bound_bytes", "base_bytes", "rss_bytes", "entries", "cache_bytes", "tokens"}
# Needs two CPUs: the daemon is pinned
# to the last, the load generator to the others.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${1:-target/loadtest/memory.md}
bound_mib=${BOUND:-512}
tokens=${TOKENS:-1600000}
rate=${RATE:-40000}
interval=${INTERVAL:-2}
work=target/loadtest/memory
rm -rf "$work"
mkdir -p "$work" "$(dirname "$out")"
say() { echo "== $*" >&2; }

cpus=$(nproc)
if [ "$cpus" -lt 2 ]; then
  echo "memory.sh: needs at least two CPUs (the daemon on one, the load on the others)" >&2
  exit 1
fi
last=$((cpus - 1))
others=$(seq -s, 0 $((last - 1)))

say "building (release)"
cargo build --release -q -p tessera -p loadtest --bin tessera --bin tessera-loadtest
bin=${CARGO_TARGET_DIR:-target}/release
lt=$bin/tessera-loadtest
iss=https://memory.example

"$lt" keys --hs256 --out "$work/keys" >/dev/null
cat > "$work/tessera.toml" <<EOF
[server]
listen = "127.0.0.1:0"

[engine]
cache_bytes = $((bound_mib << 20))
cache_entries = 100000000

[[issuers]]
issuer = "$iss"
jwks_file = "keys/jwks.json"
EOF

pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; }
trap cleanup EXIT
taskset -c "$last" "$bin/tessera" serve --config "$work/tessera.toml" \
  > "$work/serve.out" 2> "$work/serve.err" &
pid=$!
for _ in $(seq 1 100); do
  grep -q '^listening on http://' "$work/serve.out" 2>/dev/null && break
  sleep 0.1
done
addr=$(sed -n 's|^listening on http://||p' "$work/serve.out" | head -1)
[ -n "$addr" ] || { echo "memory.sh: the daemon did not start:" >&2; cat "$work/serve.err" >&2; exit 1; }

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"; }
metrics() { curl -s "http://$addr/metrics"; }
# The base: the daemon serving the same connections with one token cached (its buffers, its
# runtime and the allocator's pages for them).
taskset -c "$others" "$lt" authz --url "http://$addr" --keys "$work/keys" --iss "$iss" \
  --mix HS256=100 --distinct 1 --duration 2s --warmup 0s --cpus "$others" -q > /dev/null
base=$(rss_kib)

duration=$(( (tokens + rate - 1) / rate ))
say "load: $tokens distinct HS256 tokens at $rate/s (${duration} s), bound $bound_mib MiB"
taskset -c "$others" "$lt" authz --url "http://$addr" --keys "$work/keys" --iss "$iss" \
  --mix HS256=100 --distinct "$tokens" --rate "$rate" --duration "${duration}s" --warmup 0s \
  --cpus "$others" -q --json "$work/load.json" > "$work/load.out" 2>&1 &
load=$!

{
  echo "| s | RSS (MiB) | cache entries | cache bytes (MiB) |"
  echo "|---:|---:|---:|---:|"
} > "$work/samples.md"
start=$(date +%s)
sample() {
  local page
  page=$(metrics)
  printf '| %d | %.1f | %s | %.1f |\n' "$(( $(date +%s) - start ))" "$(awk -v k="$(rss_kib)" 'BEGIN { print k / 1024 }')" \
    "$(echo "$page" | awk '$1 == "tessera_cache_entries{kind=\"valid\"}" { print $2 }')" \
    "$(echo "$page" | awk '$1 == "tessera_cache_bytes" { print $2 / 1048576 }')" >> "$work/samples.md"
}
while kill -0 "$load" 2>/dev/null; do
  sample
  sleep "$interval"
done
wait "$load" || { echo "memory.sh: the load failed:" >&2; cat "$work/load.out" >&2; exit 1; }
sample

end=$(rss_kib)
limit=$(( bound_mib * 1024 * 11 / 10 + base ))
verdict=met
[ "$end" -le "$limit" ] || verdict="**not met**"
page=$(metrics)
entries=$(echo "$page" | awk '$1 == "tessera_cache_entries{kind=\"valid\"}" { print $2 }')
cache=$(echo "$page" | awk '$1 == "tessera_cache_bytes" { print $2 }')
{
  echo "## Memory at the cache bound ($(date -u +%F), $(git rev-parse --short HEAD))"
  echo
  echo "$tokens distinct HS256 tokens, each sent once, at $rate/s to /v1/authz; cache_bytes = $bound_mib MiB."
  echo "Machine: $(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1); daemon on CPU $last."
  echo
  echo "- base RSS (the same connections, one token cached): $(( base / 1024 )) MiB"
  echo "- at the end: RSS $(( end / 1024 )) MiB, $entries entries, the cache counting $(( cache / 1048576 )) MiB ($(( cache / (entries > 0 ? entries : 1) )) bytes per entry)"
  echo "- bound: RSS ≤ $bound_mib MiB × 1.1 + base = $(( limit / 1024 )) MiB: $verdict"
  echo "- RSS above the base per entry: $(( (end - base) * 1024 / (entries > 0 ? entries : 1) )) bytes"
  echo
  cat "$work/samples.md"
} > "$out"
cat > "${out%.md}.json" <<EOF
{"format": 1, "bound_bytes": $((bound_mib << 20)), "base_bytes": $((base * 1024)),
 "rss_bytes": $((end * 1024)), "entries": ${entries:-0}, "cache_bytes": ${cache:-0},
 "tokens": $tokens}
EOF
cat "$out"
