#!/usr/bin/env bash
# The daemon's HTTP throughput against a hyper hello-world on the same machine and load generator
# (docs/BENCHMARKS.md, "HTTP: the daemon vs a hyper hello-world").
#
#   cargo build --release -p tessera && benches/scripts/http.sh
#
# Starts the hello-world (benches/src/bin/hello.rs, built here when missing) and `tessera serve
# --dev`, both on 127.0.0.1 port 0, signs one ES256 token with the daemon's HSM key, checks once
# with curl that every endpoint answers as it should, then runs wrk against
#
#   hello        GET /                       the limit: hyper answering "hello\n"
#   authz        GET /v1/authz               forward-auth, `Authorization: Bearer TOKEN`
#   introspect   POST /introspect            RFC 7662, Basic dev:dev-secret, body token=TOKEN
#
# one after the other, ROUNDS times over, so that the clock drift of a shared VM hits all three
# alike. The token is the same in every request, so after the first one the daemon answers from
# its verified-token cache. Prints markdown on stdout: req/s per round with each endpoint over
# hello and the median ratios, then the CPU time per request of each server and of wrk (steadier
# than req/s on a VM whose clock drifts). Progress goes to stderr, wrk's own output to OUT_DIR.
#
# Environment (defaults in brackets): DURATION [5] seconds per wrk run, ROUNDS [3], THREADS [2]
# and CONNECTIONS [64] for wrk, WARMUP [1] seconds per endpoint before the first round,
# TESSERA [target/release/tessera], HELLO [target/bench-http/release/hello],
# OUT_DIR [target/bench-http/results], HSM_NAME [bench]: the SoftHSM token directory
# hsm/tokens/HSM_NAME (hsm/setup.sh), kept apart from the development token.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

duration=${DURATION:-5}
rounds=${ROUNDS:-3}
threads=${THREADS:-2}
connections=${CONNECTIONS:-64}
warmup=${WARMUP:-1}
tessera=${TESSERA:-target/release/tessera}
hello_target_dir=target/bench-http
hello=${HELLO:-$hello_target_dir/release/hello}
out_dir=${OUT_DIR:-target/bench-http/results}
hsm_name=${HSM_NAME:-bench}
lua=benches/scripts/wrk-introspect.lua

die() { echo "http.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }

for n in "$duration" "$rounds" "$threads" "$connections" "$warmup"; do
  [[ $n =~ ^[0-9]+$ ]] || die "DURATION, ROUNDS, THREADS, CONNECTIONS and WARMUP must be whole numbers (got '$n')"
done
((rounds >= 1 && duration >= 1)) || die "ROUNDS and DURATION must be at least 1"

# --- tools -------------------------------------------------------------------------------------

if ! command -v wrk >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "installing wrk (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >&2 \
      || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >&2; } \
      || die "apt-get could not install wrk"
  else
    die "wrk is missing; install it (Debian/Ubuntu: sudo apt-get install wrk) and rerun"
  fi
fi
command -v curl >/dev/null 2>&1 || die "curl is missing; install it and rerun"

[[ -x $tessera ]] || die "$tessera is missing; build it with: cargo build --release -p tessera"
"$tessera" serve --help >/dev/null 2>&1 \
  || die "$tessera has no 'serve' command; rebuild it with: cargo build --release -p tessera"

if [[ ! -x $hello ]]; then
  [[ -z ${HELLO:-} ]] || die "HELLO=$hello is not an executable"
  say "building the hello-world: cargo build --release -p benches --bin hello"
  CARGO_TARGET_DIR="$root/$hello_target_dir" cargo build --release -p benches --bin hello >&2
fi

# --- servers -----------------------------------------------------------------------------------

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tessera-http.XXXXXX")
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Waits for NAME (process PID) to print "listening on http://ADDR" to OUT; prints ADDR.
wait_listening() {
  local name=$1 pid=$2 out=$3 err=$4 addr=
  for _ in $(seq 300); do
    addr=$(sed -n 's|^listening on http://\([^[:space:]]*\)$|\1|p' "$out" | head -n 1)
    [[ -n $addr ]] && { echo "$addr"; return 0; }
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "http.sh: $name exited before it was listening; its stderr:" >&2
      tail -n 30 "$err" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "http.sh: $name did not print 'listening on http://ADDR' within 30 s; its stderr:" >&2
  tail -n 30 "$err" >&2
  return 1
}

say "starting the hello-world"
"$hello" --listen 127.0.0.1:0 >"$tmp/hello.out" 2>"$tmp/hello.err" &
pids+=($!)
hello_pid=$!
hello_addr=$(wait_listening hello "$!" "$tmp/hello.out" "$tmp/hello.err") || exit 1

say "setting up the SoftHSM token hsm/tokens/$hsm_name"
SOFTHSM2_CONF=$(hsm/setup.sh "$tessera" "$hsm_name" 2>"$tmp/hsm.err") \
  || { cat "$tmp/hsm.err" >&2; die "hsm/setup.sh failed"; }
TESSERA_HSM_PIN_FILE=$root/hsm/dev-pin
export SOFTHSM2_CONF TESSERA_HSM_PIN_FILE

say "starting tessera serve --dev"
"$tessera" serve --dev --listen 127.0.0.1:0 >"$tmp/tessera.out" 2>"$tmp/tessera.err" &
pids+=($!)
tessera_pid=$!
tessera_addr=$(wait_listening "tessera serve" "$!" "$tmp/tessera.out" "$tmp/tessera.err") || exit 1
issuer=http://$tessera_addr

# --- the token ---------------------------------------------------------------------------------

claims='"sub":"bench","scope":"read"'
sign=(token sign --alg ES256 --ttl 3600)
if "$tessera" token sign --help 2>/dev/null | grep -q -- '--iss'; then
  sign+=(--iss "$issuer" --claims "{$claims}")
else
  sign+=(--claims "{\"iss\":\"$issuer\",$claims}")
fi
token=$("$tessera" "${sign[@]}" 2>"$tmp/sign.err") \
  || { cat "$tmp/sign.err" >&2; die "tessera ${sign[*]} failed"; }
[[ $token =~ ^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$ ]] \
  || die "tessera token sign printed something other than a compact JWS"
# A copy with the signature's first character changed: must be refused.
signature=${token##*.}
if [[ $signature == A* ]]; then forged=${token%.*}.B${signature:1}; else forged=${token%.*}.A${signature:1}; fi
export TESSERA_BENCH_TOKEN=$token TESSERA_BENCH_CLIENT_ID=dev TESSERA_BENCH_CLIENT_SECRET=dev-secret

# --- one check of each endpoint ------------------------------------------------------------------

# request NAME EXPECTED_STATUS CURL_ARGS...: fails loudly unless the status matches; leaves the
# body in $tmp/body.
request() {
  local name=$1 want=$2 status
  shift 2
  status=$(curl -sS -o "$tmp/body" -w '%{http_code}' --max-time 10 "$@") \
    || die "$name: curl failed"
  [[ $status == "$want" ]] || {
    echo "http.sh: $name: HTTP $status, expected $want; body:" >&2
    head -c 2000 "$tmp/body" >&2; echo >&2
    echo "tessera serve stderr:" >&2; tail -n 20 "$tmp/tessera.err" >&2
    exit 1
  }
}
active() { grep -Eq '"active"[[:space:]]*:[[:space:]]*true' "$tmp/body"; }

say "checking the endpoints once"
request hello 200 "http://$hello_addr/"
[[ $(cat "$tmp/body") == hello ]] || die "hello: unexpected body"
request "authz (valid token)" 200 -H "Authorization: Bearer $token" "http://$tessera_addr/v1/authz"
authz_body=$(head -c 300 "$tmp/body")
request "authz (forged signature)" 401 -H "Authorization: Bearer $forged" "http://$tessera_addr/v1/authz"
request "introspect (valid token)" 200 -u dev:dev-secret \
  -H 'Content-Type: application/x-www-form-urlencoded' --data "token=$token" \
  "http://$tessera_addr/introspect"
active || { cat "$tmp/body" >&2; echo >&2; die "introspect: the valid token is not active"; }
introspect_body=$(head -c 300 "$tmp/body")
request "introspect (forged signature)" 200 -u dev:dev-secret \
  -H 'Content-Type: application/x-www-form-urlencoded' --data "token=$forged" \
  "http://$tessera_addr/introspect"
! active || die "introspect: a forged token is active"
request "introspect (wrong client secret)" 401 -u dev:wrong \
  -H 'Content-Type: application/x-www-form-urlencoded' --data "token=$token" \
  "http://$tessera_addr/introspect"
say "authz: 200 ${authz_body:+(body: $authz_body)}"
say "introspect: 200 $introspect_body"

# --- measurements ------------------------------------------------------------------------------

load=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p "$out_dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
names=(hello authz introspect)
results=$tmp/results
: >"$results"
clock_ticks=$(getconf CLK_TCK)

# CPU time a process has used so far, in clock ticks (user + system, all threads).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# run NAME LABEL SECONDS: one wrk run against NAME. Appends "NAME LABEL REQ/S SERVER_US WRK_US"
# to $results: requests per second, and the CPU time per request of the server and of wrk
# (microseconds). Fails on socket errors or any answer other than 2xx/3xx.
run() {
  local name=$1 label=$2 secs=$3 log pid before after wrk_cpu requests rps
  log=$out_dir/$stamp-$name-$label.txt
  local args=(-t"$threads" -c"$connections" -d"${secs}s" --latency)
  case $name in
    hello) pid=$hello_pid; args+=("http://$hello_addr/") ;;
    authz) pid=$tessera_pid; args+=(-H "Authorization: Bearer $token" "http://$tessera_addr/v1/authz") ;;
    introspect) pid=$tessera_pid; args+=(-s "$lua" "http://$tessera_addr/introspect") ;;
  esac
  before=$(cpu_ticks "$pid")
  # bash's `time` reports wrk's own user and system seconds on fd 2 of the group.
  wrk_cpu=$( { TIMEFORMAT='%U %S'; time wrk "${args[@]}" >"$log" 2>&1; } 2>&1 ) \
    || { cat "$log" >&2; die "wrk against $name failed"; }
  after=$(cpu_ticks "$pid")
  if grep -Eq 'Non-2xx or 3xx responses|Socket errors' "$log"; then
    cat "$log" >&2
    die "wrk against $name saw errors (above)"
  fi
  requests=$(awk '/ requests in / { print $1 }' "$log")
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$log")
  [[ -n $rps && -n $requests ]] || { cat "$log" >&2; die "no request count in wrk's output for $name"; }
  awk -v name="$name" -v label="$label" -v rps="$rps" -v n="$requests" -v ticks=$((after - before)) \
    -v hz="$clock_ticks" -v wrk_cpu="$wrk_cpu" 'BEGIN {
      split(wrk_cpu, w, " ")
      printf "%s %s %s %.2f %.2f\n", name, label, rps, ticks / hz * 1e6 / n, (w[1] + w[2]) * 1e6 / n
    }' >>"$results"
}

if ((warmup > 0)); then
  say "warming up (${warmup} s each)"
  for name in "${names[@]}"; do run "$name" warmup "$warmup"; done
fi

for ((r = 1; r <= rounds; r++)); do
  for name in "${names[@]}"; do
    say "round $r/$rounds: $name (${duration} s)"
    run "$name" "round$r" "$duration"
  done
done

# Still answering correctly after the load?
request "introspect (after the runs)" 200 -u dev:dev-secret \
  -H 'Content-Type: application/x-www-form-urlencoded' --data "token=$token" \
  "http://$tessera_addr/introspect"
active || die "introspect: the token is no longer active after the runs"

# --- report ------------------------------------------------------------------------------------

# field NAME ROUND COLUMN: one value from $results (COLUMN 3 req/s, 4 server µs, 5 wrk µs).
field() { awk -v n="$1" -v l="round$2" -v c="$3" '$1 == n && $2 == l { print $c }' "$results"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
kps() { awk -v a="$1" 'BEGIN { printf "%.1f k", a / 1000 }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
column_median() { # NAME COLUMN: the median over the rounds
  local r values=()
  for ((r = 1; r <= rounds; r++)); do values+=("$(field "$1" "$r" "$2")"); done
  median "${values[@]}"
}

model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit + uncommitted changes"
built=$(date -u -r "$tessera" '+%Y-%m-%d %H:%M UTC')

echo "Machine: $(nproc) CPUs, ${model:-unknown model}; $(uname -sr); $(wrk -v 2>&1 | head -n 1 | awk '{ print $1, $2 }'); load average before the runs: $load."
echo "Command: \`benches/scripts/http.sh\` (wrk -t$threads -c$connections -d${duration}s, $rounds rounds), $(date -u +%Y-%m-%d), tree at $commit, $tessera built $built."
echo
echo "| round | hello req/s | authz req/s | introspect req/s | authz / hello | introspect / hello |"
echo "|---|---|---|---|---|---|"
authz_ratios=() introspect_ratios=()
for ((r = 1; r <= rounds; r++)); do
  h=$(field hello "$r" 3) a=$(field authz "$r" 3) i=$(field introspect "$r" 3)
  authz_ratios+=("$(ratio "$a" "$h")") introspect_ratios+=("$(ratio "$i" "$h")")
  echo "| $r | $(kps "$h") | $(kps "$a") | $(kps "$i") | ${authz_ratios[-1]} | ${introspect_ratios[-1]} |"
done
printf '| median | | | | **%.3f** | **%.3f** |\n' "$(median "${authz_ratios[@]}")" "$(median "${introspect_ratios[@]}")"
echo
# When server and wrk together keep every core busy (they do on a small machine), throughput is
# the cores divided by the CPU time per request, so the ratio of the totals estimates the
# throughput ratio without the clock drift between rounds.
echo "CPU time per request, median over the rounds (server: utime + stime from /proc; wrk: its own;"
echo "last column: hello's total over this total, the throughput ratio CPU time predicts):"
echo
echo "| endpoint | server µs/request | wrk µs/request | total | hello / this, by CPU time |"
echo "|---|---|---|---|---|"
hello_total=$(awk -v a="$(column_median hello 4)" -v b="$(column_median hello 5)" 'BEGIN { print a + b }')
for name in "${names[@]}"; do
  server_us=$(column_median "$name" 4) wrk_us=$(column_median "$name" 5)
  awk -v name="$name" -v s="$server_us" -v w="$wrk_us" -v h="$hello_total" \
    'BEGIN { printf "| %s | %.1f | %.1f | %.1f | %.3f |\n", name, s, w, s + w, h / (s + w) }'
done
echo
echo "Target (PRODUCT.md): at least 0.700 for both ratios. wrk's output: $out_dir/$stamp-*.txt"
