#!/usr/bin/env bash
# The capacity planner against reality: for a few token mixes and cache hit ratios, the maximum
# throughput of `tessera serve` predicted by `tessera capacity` from a calibration of this
# machine, and the maximum measured with tessera-loadtest (closed loop). Prints predicted,
# measured, predicted / measured, and PASS or FAIL against ±TOLERANCE percent (default 20).
#
#   loadtest/validate-capacity.sh
#
# Steps: builds tessera and tessera-loadtest (release) unless TESSERA and LOADTEST name them;
# makes harness keys and signs each mix's tokens (sized by a 5 s calibration); then each round
# runs `tessera calibrate` (unless CALIBRATION names a file), starts a fresh `tessera serve`
# (empty cache) trusting the harness keys, and for each mix runs `tessera-loadtest authz` (or
# `verify-batch` for batch items), reads the daemon's counters before and after, and asks
# `tessera capacity --cores 1` for the maximum at the hit ratio the daemon saw.
#
# Why the daemon gets exactly one core. The load generator costs about as much CPU per request
# as the daemon's own HTTP work. Where both share the cores, the measured maximum is
# cores / (daemon + generator CPU per request): partly a property of the generator, which the
# planner does not (and should not) model. So the daemon runs under `taskset -c LAST_CPU` (its
# runtime and its engine then size themselves to one core and pin there) and the harness is
# pinned to another CPU (`--cpus`, one thread, 64 connections), and the prediction is for one
# core. `tessera calibrate` measures with the same layout (its service pinned to the last CPU,
# its client on the others), so sibling hyperthreads and shared caches affect both alike.
# Needs at least two CPUs and taskset.
#
# `tessera calibrate` repeats each probe until two consecutive estimates agree within 5 % and
# records each figure's spread; `tessera capacity` propagates them (plan.cpu_us_per_request_spread,
# max_rps_on_cores.rps_low / rps_high in its JSON), so a prediction comes with its own
# uncertainty from the calibration.
#
# What else moves the figures. On a small virtual machine the speed of the cores drifts by
# 10 to 20 % over tens of seconds even when nothing else runs in it (the host's other tenants):
# the calibration and the measurements sample it at different moments. Hence a calibration
# right before each round's measurements (about a minute of them), several rounds (the median
# of each round's predicted / measured), the daemon's own CPU time per request printed beside
# the prediction's (a difference there is a cost the calibration got wrong; equal costs with a
# lower throughput mean the daemon's core was not kept busy), and the CPU other processes used
# meanwhile.
#
# How the hit ratios are made. ES256 cached: one token (`--distinct 1`). Uncached: more
# distinct tokens than the run can send (sized from the prediction, with margin), each sent
# once. A hit ratio of 1 - 1/k, as traffic from many users gives it: each new token is followed
# by k - 1 tokens first sent 512, 1024, ... steps earlier (far more than the 64 requests in
# flight, so their verdicts are cached by then), so that misses come one at a time and hits
# spread over many tokens. The ratio the daemon saw is read from its counters
# (tessera_cache_hits_total over all verdicts) and the prediction is made for it; the nominal
# ratio is printed beside it.
#
# Environment (defaults in brackets): DURATION [5] and WARMUP [2] seconds per run, ROUNDS [3]
# (each mix's figure is the median over the rounds; every round calibrates, then goes through
# all the mixes), CONNECTIONS [64], CALIBRATE_SECONDS [30], CALIBRATION (a calibration file to
# use in every round instead of calibrating), TOLERANCE [20] percent, TESSERA [target/release/tessera],
# LOADTEST [target/release/tessera-loadtest], MIXES (';'-separated `MIX@K` items, K as above:
# 0 for one token, 1 for uncached; `MIX@K/B` loads `/v1/verify` with B tokens per request, from
# BATCH_CONNECTIONS [8] connections: 64 × 64 tokens would exceed what one engine worker admits).
# Throughputs are in tokens per second (requests × B for batch items).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

duration=${DURATION:-5}
warmup=${WARMUP:-2}
rounds=${ROUNDS:-3}
connections=${CONNECTIONS:-64}
calibrate_seconds=${CALIBRATE_SECONDS:-30}
tolerance=${TOLERANCE:-20}
tessera=${TESSERA:-target/release/tessera}
loadtest=${LOADTEST:-target/release/tessera-loadtest}
batch_connections=${BATCH_CONNECTIONS:-8}
mixes=${MIXES:-"ES256=100@0;ES256=100@1;EdDSA=100@1;RS256=100@1;RS256=50,ES256=30,EdDSA=20@2;RS256=50,ES256=30,EdDSA=20@10;ES256=100@1/64"}
iss=https://issuer.example
aud=api://orders
block=512

die() { echo "validate-capacity.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }

for n in "$duration" "$warmup" "$rounds" "$connections" "$batch_connections" "$calibrate_seconds" "$tolerance"; do
  [[ $n =~ ^[0-9]+$ ]] || die "DURATION, WARMUP, ROUNDS, CONNECTIONS, BATCH_CONNECTIONS, CALIBRATE_SECONDS and TOLERANCE must be whole numbers (got '$n')"
done
((duration >= 1 && rounds >= 1 && connections >= 1 && batch_connections >= 1)) \
  || die "need DURATION, ROUNDS, CONNECTIONS and BATCH_CONNECTIONS >= 1"

cpus=$(nproc)
((cpus >= 2)) || die "needs two CPUs at least: one for the daemon, one for the load generator"
command -v taskset >/dev/null 2>&1 || die "taskset is missing (util-linux)"
command -v curl >/dev/null 2>&1 || die "curl is missing"
if command -v jq >/dev/null 2>&1; then
  jget() { jq -r ".$2" "$1"; }
elif command -v python3 >/dev/null 2>&1; then
  jget() {
    python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v[k]
print(v)' "$1" "$2"
  }
else
  die "needs jq or python3 to read JSON"
fi

# The CPUs this process may use, in order: the daemon gets the last, the harness the first.
allowed=$(taskset -pc $$ | sed 's/.*: *//')
cpu_list=$(echo "$allowed" | tr ',' '\n' | awk -F- '{ if (NF == 2) for (i = $1; i <= $2; i++) print i; else print $1 }')
daemon_cpu=$(echo "$cpu_list" | tail -n 1)
harness_cpu=$(echo "$cpu_list" | head -n 1)
[[ $daemon_cpu != "$harness_cpu" ]] || die "only CPU $daemon_cpu is allowed: need two"

# --- tools -------------------------------------------------------------------------------------

if [[ -z ${TESSERA:-} || -z ${LOADTEST:-} ]]; then
  say "building: cargo build --release -p tessera -p loadtest"
  cargo build --release -p tessera -p loadtest >&2
fi
[[ -x $tessera ]] || die "$tessera is not an executable"
[[ -x $loadtest ]] || die "$loadtest is not an executable"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tessera-capacity.XXXXXX")
daemon_pid=
stop_daemon() {
  if [[ -n $daemon_pid ]]; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
    daemon_pid=
  fi
}
cleanup() {
  stop_daemon
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# --- calibration -------------------------------------------------------------------------------

# calibrate ROUND: sets $calibration, calibrating anew unless CALIBRATION names a file.
calibrations=()
calibrate() {
  if [[ -n ${CALIBRATION:-} ]]; then
    [[ -r $CALIBRATION ]] || die "CALIBRATION=$CALIBRATION is not readable"
    calibration=$CALIBRATION
  else
    calibration=$tmp/calibration.$1.json
    say "round $1/$rounds: calibrating (${calibrate_seconds} s)"
    "$tessera" calibrate --seconds "$calibrate_seconds" --out "$calibration" >"$tmp/calibrate.txt"
    cat "$tmp/calibrate.txt" >&2
  fi
  calibrations+=("$calibration")
}

# --- the daemon --------------------------------------------------------------------------------

say "keys and the daemon's configuration"
"$loadtest" keys --out "$tmp/keys" >/dev/null
# A client for /v1/verify (the secret reaches the harness through its environment).
export TESSERA_LOADTEST_CLIENT_SECRET=validate-secret
hash=$(printf '%s\n' "$TESSERA_LOADTEST_CLIENT_SECRET" | "$tessera" client hash-secret --iterations 1000)
cat >"$tmp/tessera.toml" <<TOML
[server]
listen = "127.0.0.1:0"
[[issuers]]
issuer = "$iss"
audiences = ["$aud"]
jwks_file = "$tmp/keys/jwks.json"
[[clients]]
id = "validate"
secret_hash = "$hash"
TOML
# start_daemon: a fresh `tessera serve` (empty cache) on the daemon's CPU; sets $url.
start_daemon() {
  stop_daemon
  taskset -c "$daemon_cpu" "$tessera" serve --config "$tmp/tessera.toml" \
    >"$tmp/serve.out" 2>"$tmp/serve.err" &
  daemon_pid=$!
  local addr=
  for _ in $(seq 300); do
    addr=$(sed -n 's|^listening on http://\([^[:space:]]*\)$|\1|p' "$tmp/serve.out" | head -n 1)
    [[ -n $addr ]] && break
    kill -0 "$daemon_pid" 2>/dev/null || { cat "$tmp/serve.err" >&2; die "tessera serve exited"; }
    sleep 0.1
  done
  [[ -n $addr ]] || die "tessera serve did not print 'listening on http://ADDR' within 30 s"
  url=http://$addr
}

# counters: "HITS VERDICTS REQUESTS BATCHES JOBS LANES" from /metrics: the engine's batches,
# the jobs they held, and the jobs verified in vectorised calls.
counters() {
  curl -fsS "$url/metrics" | awk '
    /^tessera_cache_hits_total / { h = $2 }
    /^tessera_verifications_total\{/ { v += $2 }
    /^tessera_http_requests_total\{/ { r += $2 }
    /^tessera_engine_batches_total / { b = $2 }
    /^tessera_engine_batched_jobs_total / { j = $2 }
    /^tessera_engine_multibuffer_lanes_total\{/ { l += $2 }
    END { printf "%d %d %d %d %d %d\n", h, v, r, b, j, l }'
}
# The daemon's CPU time, and the whole machine's busy time (user, nice, system, irq, softirq;
# steal left out), in clock ticks.
ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$daemon_pid/stat"; }
machine() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
hz=$(getconf CLK_TCK)

# predict MIX HIT BATCH: the most tokens per second one core verifies, per `tessera capacity`.
predict() {
  "$tessera" capacity --calibration "$calibration" --rps 1 --mix "$1" --cache-hit "$2" \
    --batch "$3" --cores 1 --json >"$tmp/plan.json"
  jget "$tmp/plan.json" max_rps_on_cores.rps
}

# tokens MIX K BATCH OUT: writes OUT for a run at hit ratio 1 - 1/K (K = 1: every token new).
tokens() {
  local mix=$1 k=$2 hit rate distinct
  hit=$(awk -v k="$k" 'BEGIN { print 1 - 1 / k }')
  rate=$(predict "$mix" "$hit" "$3")
  # Enough for the whole run at twice the predicted rate.
  distinct=$(awk -v r="$rate" -v t="$((warmup + duration))" -v k="$k" -v b="$block" \
    'BEGIN { n = int(r * t * 2 / k); if (n < b) n = b; print n }')
  "$loadtest" tokens --keys "$tmp/keys" --iss "$iss" --aud "$aud" --mix "$mix" \
    --distinct "$distinct" >"$tmp/distinct"
  # Step i: token i (new), then tokens i - 512, i - 1024, ... (token 0 while there are none).
  awk -v k="$k" -v b="$block" '
    { t[NR - 1] = $0 }
    END {
      for (i = 0; i < NR; i++) {
        print t[i]
        for (r = 1; r < k; r++) { j = i - r * b; if (j < 0) j = 0; print t[j] }
      }
    }' "$tmp/distinct" >"$4"
}

# --- runs --------------------------------------------------------------------------------------

IFS=';' read -r -a items <<<"$mixes"
# parse ITEM: sets mix, k and batch from MIX@K or MIX@K/B.
parse() {
  mix=${1%@*} k=${1##*@} batch=1
  if [[ $k == */* ]]; then batch=${k#*/} k=${k%/*}; fi
  [[ $1 == *@* && $k =~ ^[0-9]+$ && $batch =~ ^[0-9]+$ ]] && ((batch >= 1)) \
    || die "MIXES item '$1': expected MIX@K or MIX@K/B"
}
for item in "${items[@]}"; do parse "$item"; done
nominal() { if (($1 == 0)); then echo 1; else awk -v k="$1" 'BEGIN { print 1 - 1 / k }'; fi; }

# The tokens of every mix, signed once: each round starts a fresh daemon, whose empty cache
# makes them new again. Sized from a quick calibration (5 s), with margin.
sizing=$tmp/sizing.json
say "sizing the token sets: a quick calibration (5 s)"
"$tessera" calibrate --seconds 5 --out "$sizing" >/dev/null
for i in "${!items[@]}"; do
  parse "${items[i]}"
  if ((k > 0)); then
    say "$mix, hit ratio $(nominal "$k"), batch $batch: signing tokens"
    calibration=$sizing tokens "$mix" "$k" "$batch" "$tmp/tokens.$i"
  fi
done

# One line per run: "INDEX MEASURED_TOKENS_PER_S SEEN_HIT_RATIO DAEMON_US_PER_REQUEST
# OTHER_CORES REQUESTS_PER_S PREDICTED_TOKENS_PER_S PREDICTED_US_PER_REQUEST". Each round
# calibrates first and goes through every mix in turn, so that a slow spell of the machine does
# not fall on one mix only, and predictions come from a calibration about a minute old.
runs=$tmp/runs
: >"$runs"
for ((r = 1; r <= rounds; r++)); do
  calibrate "$r"
  start_daemon
  for i in "${!items[@]}"; do
    parse "${items[i]}"
    if ((batch == 1)); then
      scenario=(authz --connections "$connections") what="$mix, hit ratio $(nominal "$k")"
    else
      scenario=(verify-batch --batch "$batch" --client-id validate --connections "$batch_connections")
      what="$mix, hit ratio $(nominal "$k"), /v1/verify with $batch tokens"
    fi
    if ((k == 0)); then
      source=(--keys "$tmp/keys" --iss "$iss" --aud "$aud" --mix "$mix" --distinct 1)
    else
      source=(--tokens "$tmp/tokens.$i")
    fi
    say "$what: round $r/$rounds (${warmup} s + ${duration} s)"
    read -r h0 v0 q0 b0 j0 l0 < <(counters)
    t0=$(ticks) m0=$(machine) w0=$(date +%s.%N)
    harness=$( { TIMEFORMAT='%U %S'; time "$loadtest" "${scenario[@]}" --url "$url" "${source[@]}" \
      --threads 1 --cpus "$harness_cpu" --duration "${duration}s" \
      --warmup "${warmup}s" --quiet --json "$tmp/report.json" >"$tmp/report.txt"; } 2>&1 ) \
      || { cat "$tmp/report.txt" >&2; die "$what: tessera-loadtest failed"; }
    t1=$(ticks) m1=$(machine) w1=$(date +%s.%N)
    read -r h1 v1 q1 b1 j1 l1 < <(counters)
    grep -q '"errors": \[\]' "$tmp/report.json" \
      || { cat "$tmp/report.txt" >&2; die "$what: the harness saw errors (above)"; }
    # The hit ratio the daemon saw; its CPU time per request over the whole run (warm-up
    # included; the /metrics scrapes are negligible); and what else ran meanwhile: the
    # machine's busy time less the daemon's and the harness's, in cores.
    awk -v i="$i" -v m="$(jget "$tmp/report.json" throughput)" -v n="$batch" -v h="$((h1 - h0))" -v v="$((v1 - v0))" \
      -v t="$((t1 - t0))" -v q="$((q1 - q0))" -v all="$((m1 - m0))" -v lt="$harness" -v hz="$hz" \
      -v a="$w0" -v b="$w1" 'BEGIN {
        split(lt, c, " "); o = (all - t) / hz - c[1] - c[2]; if (o < 0) o = 0
        printf "%d %.1f %.4f %.2f %.2f %s", i, m * n, v ? h / v : 0, t / hz * 1e6 / q, o / (b - a), m
      }' >>"$runs"
    # The prediction from this round's calibration, at the hit ratio the daemon saw.
    seen=$(tail -n 1 "$runs" | awk '{ print $3 }')
    echo " $(predict "$mix" "$seen" "$batch") $(jget "$tmp/plan.json" plan.cpu_us_per_request)" >>"$runs"
    # The engine meanwhile: jobs per batch, and the share of its jobs verified in vectorised
    # calls (0 without the backend).
    awk -v b="$((b1 - b0))" -v j="$((j1 - j0))" -v l="$((l1 - l0))" 'BEGIN {
      printf "   engine: %.2f jobs per batch, %.1f %% of %d jobs vectorised\n", b ? j / b : 0, j ? 100 * l / j : 0, j
    }' >&2
  done
done

# Per mix, the medians over the rounds: of each figure, and of each round's predicted /
# measured (the verdict's figure).
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
column() { awk -v i="$1" -v c="$2" '$1 == i { print $c }' "$runs" | median; }
results=$tmp/results
: >"$results"
for i in "${!items[@]}"; do
  parse "${items[i]}"
  m=$(column "$i" 2) o=$(column "$i" 3) c=$(column "$i" 4) x=$(column "$i" 5) q=$(column "$i" 6)
  p=$(column "$i" 7) pc=$(column "$i" 8)
  ratio=$(awk -v i="$i" '$1 == i { print $7 / $2 }' "$runs" | median)
  rs=$(awk -v i="$i" '$1 == i { printf "%s%.2f", n++ ? ", " : "", $7 / $2 }' "$runs")
  b=$(awk -v c="$c" -v q="$q" 'BEGIN { printf "%.3f", c * q / 1e6 }')
  label=$mix
  ((batch == 1)) || label="$mix, /v1/verify × $batch"
  echo "$label|$(nominal "$k")|$o|$p|$m|$ratio|$rs|$b|$pc|$c|$x" >>"$results"
done

# --- report ------------------------------------------------------------------------------------

model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
other_cal=$(for c in "${calibrations[@]}"; do jget "$c" other_load_cores; done \
  | awk '{ printf "%s%.2f", (NR > 1 ? ", " : ""), $1 }')
took=$(for c in "${calibrations[@]}"; do jget "$c" took_s; done \
  | awk '{ printf "%s%.1f", (NR > 1 ? ", " : ""), $1 }')
echo "Machine: $cpus CPUs, ${model:-unknown model}; $(uname -sr); load average before: $load_before."
echo "Calibration: one per round (${took} s; other processes ${other_cal} cores meanwhile), from $(jget "${calibrations[0]}" date); the daemon on CPU $daemon_cpu, tessera-loadtest on CPU $harness_cpu (1 thread, $connections connections for /v1/authz and $batch_connections for /v1/verify, closed loop, ${warmup} s + ${duration} s, $rounds round(s)); $(date -u +%Y-%m-%dT%H:%MZ)."
echo
echo "| mix | hits (nominal / seen) | predicted tokens/s | measured tokens/s | predicted / measured (rounds) | daemon core busy | daemon CPU µs/req predicted / measured | other load (cores) | verdict |"
echo "|---|---|---|---|---|---|---|---|---|"
failed=0
while IFS='|' read -r mix nominal seen p m ratio rs b pc c x; do
  verdict=$(awk -v r="$ratio" -v t="$tolerance" 'BEGIN { print (r >= 1 - t / 100 && r <= 1 + t / 100) ? "PASS" : "FAIL" }')
  [[ $verdict == PASS ]] || failed=$((failed + 1))
  awk -v mix="$mix" -v n="$nominal" -v s="$seen" -v p="$p" -v m="$m" -v r="$ratio" -v b="$b" -v pc="$pc" -v c="$c" -v x="$x" -v rs="$rs" -v v="$verdict" 'BEGIN {
    printf "| %s | %.2f / %.3f | %.1f k | %.1f k | **%.3f** (%s) | %.0f %% | %.1f / %.1f | %.2f | %s |\n",
      mix, n, s, p / 1000, m / 1000, r, rs, b * 100, pc, c, x, v
  }'
done <"$results"
echo
if ((failed == 0)); then
  echo "Every prediction within ±${tolerance} % of the measured maximum."
else
  echo "$failed prediction(s) outside ±${tolerance} % of the measured maximum."
  exit 1
fi
