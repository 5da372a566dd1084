#!/usr/bin/env bash
# Installs what the end-to-end tests start besides SoftHSM (hsm/install.sh): openssl (a TLS
# certificate for tests/tls.rs), nginx and Caddy (the gateways in front, tests/gateway.rs) and the
# PostgreSQL server (throw-away clusters for the store's tests and tests/cluster.rs; the package
# also creates the `postgres` user they run as when the tests run as root), and Python's venv
# with node and npm (the OAuth client libraries of tests/oauth_clients.rs, which
# tests/oauth-clients/install.sh puts under target/). Idempotent; explains itself when it cannot.
set -euo pipefail
missing=()
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v caddy >/dev/null 2>&1 || missing+=(caddy)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# PostgreSQL refuses to run as root: tests run as root start their clusters as `postgres`
# (testkit's Postgres), the user the package creates.
check_postgres_user() {
  [ "$(id -u)" != 0 ] || id -u postgres >/dev/null 2>&1 || {
    echo "tests/deps.sh: no postgres user to run PostgreSQL as (apt-get install --reinstall postgresql-common creates it)" >&2
    exit 1
  }
}
[ ${#missing[@]} -eq 0 ] && { check_postgres_user; exit 0; }
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "tests/deps.sh: missing ${missing[*]}: install them (Debian: apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "tests/deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
  || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
check_postgres_user
