#!/usr/bin/env bash
# Fetches Intel's crypto_mb (8-lane AVX-512 IFMA RSA, ECDSA and Ed25519) for the multi-buffer
# verification path, from Intel's PyPI wheels, into crypto/lib/ (git-ignored), and prints that
# folder. tessera loads it at run time when the CPU can use it; nothing links it. See
# crypto/README.md for the licences and other sources (Debian's libcrypto-mb packages, a build
# from source). Idempotent: with the libraries in place it only prints the folder.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
lib=$root/crypto/lib
# The versions the multibuffer crate is tested with (crypto_mb interface 13).
wheels=(ipp-crypto==2026.2.0 intel-cmplr-lib-rt==2026.2.0)
# What libcrypto_mb.so needs besides libc and OpenSSL 3, loaded from the same folder.
runtime=(libintlc.so.5 libimf.so libsvml.so libirng.so)

have_all() {
  [ -e "$lib/libcrypto_mb.so" ] || return 1
  for f in "${runtime[@]}"; do [ -e "$lib/$f" ] || return 1; done
}

if have_all; then
  echo "$lib"
  exit 0
fi

if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
  echo "crypto/install.sh: python3 with pip is needed to fetch crypto_mb (Debian: apt-get install python3-pip)" >&2
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "crypto/install.sh: fetching ${wheels[*]} (about 60 MB)" >&2
if ! python3 -m pip download -q --no-deps --disable-pip-version-check -d "$tmp/wheels" "${wheels[@]}" >&2; then
  echo "crypto/install.sh: could not download ${wheels[*]} from PyPI; without crypto_mb tessera" \
    "verifies on its single path. To fetch it by hand: pip download --no-deps ${wheels[*]}" >&2
  exit 1
fi
for w in "$tmp"/wheels/*.whl; do
  python3 -m zipfile -e "$w" "$tmp/x"
done
mkdir -p "$lib.new"
for f in libcrypto_mb.so "${runtime[@]}"; do
  src=$(find "$tmp/x" -path '*/data/lib/*' -name "$f" | head -n 1)
  if [ -z "$src" ]; then
    echo "crypto/install.sh: $f is not in the wheels ${wheels[*]}" >&2
    exit 1
  fi
  cp -L "$src" "$lib.new/$f"
done
rm -rf "$lib"
mv "$lib.new" "$lib"
echo "crypto/install.sh: crypto_mb is in $lib" >&2
echo "$lib"
