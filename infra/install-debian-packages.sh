#!/usr/bin/env bash
# Install the Debian packages listed in infra/debian-packages.txt that are missing.
# Installs nothing when all are present (so a second `make install` is a no-op).
set -euo pipefail
list="$(dirname "$0")/debian-packages.txt"
missing=()
while read -r pkg _; do
  [[ -z "$pkg" || "$pkg" == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < "$list"
[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
echo "installing Debian packages: ${missing[*]}"
$sudo apt-get update -qq
if ! $sudo apt-get install -y -qq "${missing[@]}"; then
  if printf '%s\n' "${missing[@]}" | grep -q google-cloud-cli-pubsub-emulator; then
    cat >&2 <<'MSG'
The Pub/Sub emulator (google-cloud-cli-pubsub-emulator) is not in this machine's apt sources.
Add Google's Cloud SDK apt repository (Google Cloud SDK install guide, section Debian/Ubuntu),
then: sudo apt-get update && sudo apt-get install google-cloud-cli-pubsub-emulator
With a gcloud installed from Google's archive instead: gcloud components install pubsub-emulator
MSG
  fi
  exit 1
fi
