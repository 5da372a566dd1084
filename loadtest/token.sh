#!/usr/bin/env bash
# The token endpoint under load next to the HSM's own signing rate, on this machine:
#   token      `tessera-loadtest token`: POST /token, client credentials with HTTP Basic, closed
#              loop, against `tessera serve --dev` on a throw-away SoftHSM token with one ES256
#              key; every answer is a new access token the HSM signed
#   C_Sign     the criterion bench `sign/pkcs11/ES256` (benches/benches/sign.rs): a bare
#              C_SignInit/C_Sign loop on one session, on one core, before and after the load;
#              `sign/tessera/ES256` (through the session pool) beside it
# The ratio: tokens/s through /token / bare C_Sign signatures/s (their mean over before and
# after), target 0.8; and tokens/s per core of the daemon, to put beside Keycloak's published
# ~120 client-credential grants per second per vCPU.
#
#   loadtest/token.sh [OUT.md]     # about 2 minutes after the build; DURATION=10 WARMUP=2
#                                  # (seconds), CONNECTIONS=16
#
# Needs two CPUs: the daemon (and the bench) pinned to CPU 0 (`taskset`: the daemon sizes its
# runtime to that one core), the load generator to CPU 1. Waits (up to WAIT=600 s) for compiles
# other than its own to end before measuring, and notes the load average before and after.
# The harness's JSON report, the bench's criterion output and the daemon's log stay in
# target/loadtest/token/; the token, the state directory and the client secret are removed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${1:-}
duration=${DURATION:-10}
warmup=${WARMUP:-2}
connections=${CONNECTIONS:-16}
keep=target/loadtest/token
mkdir -p "$keep"
say() { echo "== $*" >&2; }

if [ "$(nproc)" -lt 2 ]; then
  echo "token.sh: needs 2 CPUs (the daemon on one, the load on the other); this machine has $(nproc)" >&2
  exit 1
fi

say "building (release)"
cargo build --release -q -p tessera -p loadtest --bin tessera --bin tessera-loadtest
# The bench binary itself, so that nothing is rebuilt (the tree may change meanwhile) between its
# runs and inside the pinned measurement.
sign_bench=$(cargo bench -q -p benches --bench sign --no-run --message-format=json \
  | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "sign" and m.get("executable"):
        print(m["executable"])')
[ -x "$sign_bench" ] || { echo "token.sh: the sign bench was not built" >&2; exit 1; }
bin=${CARGO_TARGET_DIR:-target}/release
lt=$bin/tessera-loadtest
tessera=$bin/tessera

# Other compiles share the two cores: wait for them to end.
# (pgrep -x matches names of at most 15 characters: one name per call.)
busy() {
  local name
  for name in rustc clippy-driver cc1 cc1plus; do
    pgrep -x "$name" >/dev/null && return 0
  done
  return 1
}
waited=0
while busy && [ "$waited" -lt "${WAIT:-600}" ]; do
  [ "$waited" = 0 ] && say "waiting for other compiles to end (up to ${WAIT:-600} s)"
  sleep 5
  waited=$((waited + 5))
done
compiling_before=$(busy && echo yes || echo no)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
say "load average before: $load_before (compiles running: $compiling_before)"

work=$(mktemp -d "${TMPDIR:-/tmp}/tessera-token.XXXXXX")
name=loadtest-token-$$
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work" "hsm/tokens/$name"
}
trap cleanup EXIT

# sign_rates LABEL: the bench's ES256 rows, pinned to CPU 0; prints "RAW_PER_S POOL_PER_S".
sign_rates() {
  local dir=$keep/criterion-$1
  rm -rf "$dir"
  CRITERION_HOME=$root/$dir taskset -c 0 "$sign_bench" --bench '^sign/(pkcs11|tessera)/ES256$' \
    > "$keep/sign-$1.txt" 2>&1 || { cat "$keep/sign-$1.txt" >&2; exit 1; }
  python3 - "$dir" <<'PY'
import json, sys
rate = lambda id: 1e9 / json.load(open(f"{sys.argv[1]}/sign/{id}/ES256/new/estimates.json"))["mean"]["point_estimate"]
print(f"{rate('pkcs11'):.0f} {rate('tessera'):.0f}")
PY
}

say "HSM signing, ES256, one core (before)"
read -r raw_before pool_before < <(sign_rates before)

say "a throw-away SoftHSM token with an ES256 key"
SOFTHSM2_CONF=$(hsm/setup.sh "$tessera" "$name")
export SOFTHSM2_CONF TESSERA_HSM_PIN_FILE=hsm/dev-pin STATE_DIRECTORY=$work/state
mkdir -p "$STATE_DIRECTORY"
"$tessera" keys generate --alg ES256 >/dev/null

say "a client for the client credentials grant"
secret=$work/secret
(umask 077; "$tessera" clients add --id bench --grant client_credentials --scope orders:read \
  --audience https://api.example/orders \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["client_secret"])' > "$secret")

say "tessera serve --dev, pinned to CPU 0"
taskset -c 0 "$tessera" serve --dev --listen 127.0.0.1:0 > "$keep/serve.out" 2> "$keep/serve.err" &
pid=$!
addr=
for _ in $(seq 1 100); do
  addr=$(sed -n 's|^listening on http://||p' "$keep/serve.out" | head -1)
  [ -n "$addr" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$addr" ] || { echo "token.sh: the daemon did not start:" >&2; cat "$keep/serve.err" >&2; exit 1; }

# CPU seconds the daemon used so far (utime + stime).
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$pid/stat"; }

say "POST /token, closed loop, $connections connections, ${warmup} s warm-up + ${duration} s, load on CPU 1"
cpu_start=$(cpu)
taskset -c 1 "$lt" token --url "http://$addr" --client-id bench --secret-file "$secret" \
  --scope orders:read --connections "$connections" --threads 1 --cpus 1 \
  --warmup "${warmup}s" --duration "${duration}s" --quiet --json "$keep/token.json" \
  > "$keep/token.txt"
cpu_end=$(cpu)
cat "$keep/token.txt" >&2

say "HSM signing, ES256, one core (after)"
read -r raw_after pool_after < <(sign_rates after)
compiling_after=$(busy && echo yes || echo no)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
say "load average after: $load_after (compiles running: $compiling_after)"

machine="$(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1); $(uname -sr)"
python3 - "$keep/token.json" "$out" "$raw_before" "$raw_after" "$pool_before" "$pool_after" \
  "$cpu_start" "$cpu_end" "$warmup" "$load_before" "$load_after" "$compiling_before" \
  "$compiling_after" "$machine" "$(date -u +%Y-%m-%dT%H:%MZ)" \
  "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" <<'PY'
import json, sys

(report, out, raw_b, raw_a, pool_b, pool_a, cpu0, cpu1, warmup, load_b, load_a, comp_b, comp_a,
 machine, date, commit) = sys.argv[1:]
r = json.load(open(report))
bad = sum(n for _, n in r["errors"])
raw_b, raw_a, pool_b, pool_a = map(float, (raw_b, raw_a, pool_b, pool_a))
raw = (raw_b + raw_a) / 2
tokens = r["throughput"]
# The daemon's CPU over warm-up and window together (its busy share of the one core).
busy = (float(cpu1) - float(cpu0)) / (float(warmup) + r["duration_s"])
lat = r["latency_us"]
ms = lambda us: f"{us / 1000:.2f} ms"
ratio = tokens / raw
keycloak = 120
md = [
    f"Machine: {machine}. `loadtest/token.sh`, {date}, tree at {commit} (with its working"
    f" changes); `tessera serve --dev` pinned to CPU 0, `tessera-loadtest token` on CPU 1,"
    f" closed loop, {r['connections']} connections, {r['warmup_s']:.0f} s warm-up +"
    f" {r['duration_s']:.1f} s; load average {load_b} before, {load_a} after (compiles running:"
    f" {comp_b} before, {comp_a} after).",
    "",
    "| measure | value |",
    "|---|---|",
    f"| POST /token, access tokens/s | {tokens:.0f} ({r['requests']} in the window,"
    f" {bad} errors{': ' + str(r['errors']) if bad else ''}) |",
    f"| latency p50 / p90 / p99 / p99.9 / max | {ms(lat['p50'])} / {ms(lat['p90'])} /"
    f" {ms(lat['p99'])} / {ms(lat['p999'])} / {ms(lat['max'])} |",
    f"| daemon CPU (of its one core) | {100 * busy:.0f} % |",
    f"| bare C_Sign ES256 (`sign/pkcs11/ES256`), one core | {raw:.0f}/s"
    f" (before {raw_b:.0f}, after {raw_a:.0f}) |",
    f"| pool sign ES256 (`sign/tessera/ES256`), one core | {(pool_b + pool_a) / 2:.0f}/s"
    f" (before {pool_b:.0f}, after {pool_a:.0f}) |",
    f"| /token tokens/s ÷ bare C_Sign/s (target ≥ 0.8) | **{ratio:.3f}**"
    f" ({'met' if ratio >= 0.8 else 'not met'}) |",
    f"| /token tokens/s per daemon core | **{tokens:.0f}** (Keycloak, published: ~{keycloak}"
    f" per vCPU; {tokens / keycloak:.0f}×) |",
]
text = "\n".join(md) + "\n"
if out:
    open(out, "w").write(text)
print(text, end="")
if bad:
    sys.exit(f"token.sh: {bad} errors {r['errors']}: the daemon's log is in target/loadtest/token/serve.err")
PY
