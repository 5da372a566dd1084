#!/usr/bin/env bash
# Installs what the HSM side of tessera needs on Debian: softhsm2 (the development HSM) and
# opensc (pkcs11-tool, used by the end-to-end tests). Idempotent; explains itself when it cannot.
set -euo pipefail
missing=()
[ -e /usr/lib/softhsm/libsofthsm2.so ] || missing+=(softhsm2)
command -v pkcs11-tool >/dev/null 2>&1 || missing+=(opensc)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "hsm/install.sh: missing ${missing[*]}: install them (Debian: apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "hsm/install.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
  || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
