#!/usr/bin/env bash
# tessera-loadtest against wrk: the same trivial endpoint (the hyper hello-world,
# benches/src/bin/hello.rs), the same threads, connections and duration, rounds interleaved
# (the order alternates from round to round). Prints each round's requests per second, the ratio
# harness / wrk, and the median ratio. Target (docs: PRODUCT.md): at least 0.9.
#
#   loadtest/vs-wrk.sh
#
# Builds tessera-loadtest (release) and the hello-world (target/bench-http) when missing;
# installs wrk with apt-get when it is missing and this runs as root. On a small machine the
# load generators and the server share the cores: the numbers are noisy, read the median.
#
# Environment (defaults in brackets): DURATION [5] seconds per run, ROUNDS [5], THREADS [2],
# CONNECTIONS [64], WARMUP [1] seconds of each tool before the first round,
# LOADTEST [target/release/tessera-loadtest], HELLO [target/bench-http/release/hello],
# CPUS: pin tessera-loadtest's threads to these CPUs (`0,1`; wrk is not pinned; default none).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

duration=${DURATION:-5}
rounds=${ROUNDS:-5}
threads=${THREADS:-2}
connections=${CONNECTIONS:-64}
warmup=${WARMUP:-1}
loadtest=${LOADTEST:-target/release/tessera-loadtest}
hello_target_dir=target/bench-http
hello=${HELLO:-$hello_target_dir/release/hello}
cpus=${CPUS:-}

die() { echo "vs-wrk.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }

for n in "$duration" "$rounds" "$threads" "$connections" "$warmup"; do
  [[ $n =~ ^[0-9]+$ ]] || die "DURATION, ROUNDS, THREADS, CONNECTIONS and WARMUP must be whole numbers (got '$n')"
done
((rounds >= 1 && duration >= 1 && threads >= 1 && connections >= threads)) \
  || die "need ROUNDS >= 1, DURATION >= 1, THREADS >= 1 and CONNECTIONS >= THREADS"

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

if [[ -z ${LOADTEST:-} ]]; then
  say "building tessera-loadtest: cargo build --release -p loadtest"
  cargo build --release -p loadtest >&2
fi
[[ -x $loadtest ]] || die "$loadtest is not an executable"

if [[ ! -x $hello ]]; then
  [[ -z ${HELLO:-} ]] || die "HELLO=$hello is not an executable"
  say "building the hello-world: cargo build --release -p benches --bin hello"
  CARGO_TARGET_DIR="$root/$hello_target_dir" cargo build --release -p benches --bin hello >&2
fi

# --- the server --------------------------------------------------------------------------------

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tessera-vs-wrk.XXXXXX")
hello_pid=
cleanup() {
  if [[ -n $hello_pid ]]; then
    kill -TERM "$hello_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$hello_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$hello_pid" 2>/dev/null || true
    wait "$hello_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "starting the hello-world"
"$hello" --listen 127.0.0.1:0 >"$tmp/hello.out" 2>"$tmp/hello.err" &
hello_pid=$!
addr=
for _ in $(seq 300); do
  addr=$(sed -n 's|^listening on http://\([^[:space:]]*\)$|\1|p' "$tmp/hello.out" | head -n 1)
  [[ -n $addr ]] && break
  kill -0 "$hello_pid" 2>/dev/null || { cat "$tmp/hello.err" >&2; die "the hello-world exited"; }
  sleep 0.1
done
[[ -n $addr ]] || die "the hello-world did not print 'listening on http://ADDR' within 30 s"
url=http://$addr/

# --- runs --------------------------------------------------------------------------------------

results=$tmp/results
: >"$results"
load=$(cut -d' ' -f1-3 /proc/loadavg)

# run TOOL LABEL SECONDS: appends "TOOL LABEL REQ/S CPU_US" (CPU µs per request of the load
# generator itself, user + system) to $results.
run() {
  local tool=$1 label=$2 secs=$3 log=$tmp/$1-$2 cpu rps requests
  case $tool in
    wrk)
      cpu=$( { TIMEFORMAT='%U %S'; time wrk -t"$threads" -c"$connections" -d"${secs}s" "$url" >"$log" 2>&1; } 2>&1 ) \
        || { cat "$log" >&2; die "wrk failed"; }
      if grep -Eq 'Non-2xx or 3xx responses|Socket errors' "$log"; then
        cat "$log" >&2; die "wrk saw errors (above)"
      fi
      rps=$(awk '/^Requests\/sec:/ { print $2 }' "$log")
      requests=$(awk '/ requests in / { print $1 }' "$log")
      ;;
    harness)
      local args=(get "$url" --threads "$threads" --connections "$connections"
        --duration "${secs}s" --warmup 0s --quiet --json "$log.json")
      [[ -z $cpus ]] || args+=(--cpus "$cpus")
      cpu=$( { TIMEFORMAT='%U %S'; time "$loadtest" "${args[@]}" >"$log" 2>&1; } 2>&1 ) \
        || { cat "$log" >&2; die "tessera-loadtest failed"; }
      grep -q '"errors": \[\]' "$log.json" || { cat "$log" >&2; die "tessera-loadtest saw errors (above)"; }
      rps=$(sed -n 's/^  "throughput": \([0-9.eE+-]*\),$/\1/p' "$log.json")
      requests=$(sed -n 's/^  "requests": \([0-9]*\),$/\1/p' "$log.json")
      ;;
  esac
  [[ -n $rps && -n $requests && $requests -gt 0 ]] || { cat "$log" >&2; die "no request rate from $tool"; }
  awk -v tool="$tool" -v label="$label" -v rps="$rps" -v n="$requests" -v cpu="$cpu" 'BEGIN {
    split(cpu, c, " "); printf "%s %s %s %.2f\n", tool, label, rps, (c[1] + c[2]) * 1e6 / n
  }' >>"$results"
}

if ((warmup > 0)); then
  say "warming up (${warmup} s each)"
  run wrk warmup "$warmup"
  run harness warmup "$warmup"
fi
for ((r = 1; r <= rounds; r++)); do
  if ((r % 2)); then order=(wrk harness); else order=(harness wrk); fi
  for tool in "${order[@]}"; do
    say "round $r/$rounds: $tool (${duration} s)"
    run "$tool" "round$r" "$duration"
  done
done

# --- report ------------------------------------------------------------------------------------

field() { awk -v t="$1" -v l="round$2" -v c="$3" '$1 == t && $2 == l { print $c }' "$results"; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
kps() { awk -v a="$1" 'BEGIN { printf "%.1f k", a / 1000 }'; }

model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
echo "Machine: $(nproc) CPUs, ${model:-unknown model}; $(uname -sr); $(wrk -v 2>&1 | head -n 1 | awk '{ print $1, $2 }'); load average before the runs: $load."
echo "Command: \`loadtest/vs-wrk.sh\` ($threads threads, $connections connections, ${duration} s per run, $rounds rounds${cpus:+, harness pinned to CPUs $cpus}), $(date -u +%Y-%m-%d)."
echo
echo "| round | wrk req/s | harness req/s | harness / wrk | wrk CPU µs/req | harness CPU µs/req |"
echo "|---|---|---|---|---|---|"
ratios=() wrk_cpu=() harness_cpu=()
for ((r = 1; r <= rounds; r++)); do
  w=$(field wrk "$r" 3) h=$(field harness "$r" 3)
  ratios+=("$(awk -v a="$h" -v b="$w" 'BEGIN { printf "%.3f", a / b }')")
  wrk_cpu+=("$(field wrk "$r" 4)") harness_cpu+=("$(field harness "$r" 4)")
  echo "| $r | $(kps "$w") | $(kps "$h") | ${ratios[-1]} | ${wrk_cpu[-1]} | ${harness_cpu[-1]} |"
done
ratio=$(median "${ratios[@]}")
printf '| median | | | **%.3f** | %s | %s |\n' "$ratio" "$(median "${wrk_cpu[@]}")" "$(median "${harness_cpu[@]}")"
echo
awk -v r="$ratio" 'BEGIN { if (r >= 0.9) print "Target (at least 0.900): met."; else print "Target (at least 0.900): NOT met." }'
