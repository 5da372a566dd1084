#!/usr/bin/env bash
# Installs the OAuth 2.0 client libraries that tests/oauth_clients.rs drives tessera's /token
# with, at pinned versions, into git-ignored folders under target/oauth-clients/: a Python venv
# (authlib, requests-oauth2client, PyJWT) and an npm package folder (oauth4webapi, and dpop for
# DPoP proofs made apart from oauth4webapi's). Idempotent and fast when done (a stamp file holds
# the pins it installed, so that a new pin reinstalls); fails, never skips, when
# python3, its venv module, node or npm is missing (tests/deps.sh installs them on Debian).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dest="${TESSERA_OAUTH_CLIENTS_DIR:-$root/target/oauth-clients}"

# The Python side, its dependencies included, so that a run installs what the last one did.
python_pins='Authlib==1.9.10
requests-oauth2client==1.8.0
PyJWT[crypto]==2.15.1
requests==2.34.2
cryptography==51.0.1
attrs==26.1.0
binapy==0.8.0
certifi==2026.10.19.post1
cffi==2.1.1
charset-normalizer==3.5.3
furl==2.1.4
idna==3.21
joserfc==1.8.0
jwskate==0.12.2
orderedmultidict==1.0.2
pycparser==3.12
six==1.17.0
typing_extensions==4.16.0
urllib3==2.8.0'
node_pins='oauth4webapi@3.8.8
dpop@2.1.2'

fail() {
  echo "tests/oauth-clients/install.sh: $*" >&2
  exit 1
}
how='run tests/deps.sh as root, or install them (Debian: apt-get install python3-venv nodejs npm)'
command -v python3 >/dev/null 2>&1 || fail "python3 is missing: $how"
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 \
  || fail "python3 has no venv/ensurepip module: $how"
command -v node >/dev/null 2>&1 || fail "node is missing: $how"
command -v npm >/dev/null 2>&1 || fail "npm is missing: $how"
node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' \
  || fail "node $(node --version) is too old: oauth4webapi 3 needs node 20 or later"

stamp="$dest/installed"
want="python $(python3 -c 'import sys; print(sys.version.split()[0])')
node $(node --version)
$python_pins
$node_pins"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
  && [ -x "$dest/venv/bin/python" ] && [ -d "$dest/node/node_modules/oauth4webapi" ] \
  && [ -d "$dest/node/node_modules/dpop" ]; then
  exit 0
fi

echo "tests/oauth-clients/install.sh: installing into $dest" >&2
rm -rf "$dest"
mkdir -p "$dest"
log="$dest/install.log"
python3 -m venv "$dest/venv" >"$log" 2>&1 || { cat "$log" >&2; fail "python3 -m venv failed"; }
printf '%s\n' "$python_pins" >"$dest/requirements.txt"
"$dest/venv/bin/python" -m pip install -q --disable-pip-version-check --no-input \
  -r "$dest/requirements.txt" >>"$log" 2>&1 || { cat "$log" >&2; fail "pip install failed"; }
mkdir -p "$dest/node"
# A package.json of its own, so that npm installs here and not in a folder above.
echo '{"private": true}' >"$dest/node/package.json"
# shellcheck disable=SC2086 # one word per package
npm install --prefix "$dest/node" $node_pins --save-exact --no-audit --no-fund >>"$log" 2>&1 \
  || { cat "$log" >&2; fail "npm install failed"; }
printf '%s\n' "$want" >"$stamp"
