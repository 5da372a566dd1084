#!/usr/bin/env bash
# Sets up a SoftHSM token for tessera development: installs softhsm2 when it is missing
# (hsm/install.sh), writes a SoftHSM configuration whose token directory is hsm/tokens/<name>/
# (git-ignored), and creates the token labelled <label> with the DEVELOPMENT PINs in
# hsm/dev-pin and hsm/dev-so-pin.
# Idempotent. Prints the SOFTHSM2_CONF to export.
#
#   hsm/setup.sh TESSERA_BIN [NAME] [LABEL]
#
# The development PINs are for throwaway tokens only. Real deployments read the PIN from
# TESSERA_HSM_PIN or a file named by TESSERA_HSM_PIN_FILE, never from the command line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:?usage: hsm/setup.sh TESSERA_BIN [NAME] [LABEL]}
name=${2:-dev}
label=${3:-tessera-dev}
module=/usr/lib/softhsm/libsofthsm2.so

"$here/install.sh"

# git stores no read bits: tessera refuses PIN files that group or others may read.
chmod 600 "$here/dev-pin" "$here/dev-so-pin"

dir="$here/tokens/$name"
mkdir -p "$dir/store"
sed "s|@TOKENDIR@|$dir/store|" "$here/softhsm2.conf.in" > "$dir/softhsm2.conf"
SOFTHSM2_CONF="$dir/softhsm2.conf" TESSERA_HSM_MODULE="$module" \
  "$bin" hsm init --token "$label" --so-pin-file "$here/dev-so-pin" --pin-file "$here/dev-pin" >&2
echo "$dir/softhsm2.conf"
