#!/usr/bin/env bash
# Debian packages the integration tests use: DICOM tools and validators, a PACS, a browser,
# openssl (test certificate authorities) and stunnel4 (HTTPS in front of the test PACS).
# Run as root (make test does); without root or apt-get it says what will be skipped.
#
# Another apt/dpkg process (unattended-upgrades, a second make) may hold apt's locks. apt-get
# install can wait for the dpkg lock itself (DPkg::Lock::Timeout), but `apt-get update` cannot
# wait for the package-list lock, so that step is retried here while the holder is named.
set -euo pipefail

PACKAGES=(dcmtk dicom3tools orthanc orthanc-dicomweb chromium chromium-driver openssl stunnel4 stress-ng poppler-utils)
LOCK_TIMEOUT_S=${APT_LOCK_TIMEOUT_S:-900}
POLL_S=${APT_LOCK_POLL_S:-5}

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "system-deps: not root or no apt-get; tests that need ${PACKAGES[*]} will be skipped"
  exit 0
fi

need=()
for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
[ ${#need[@]} -eq 0 ] && exit 0

waited=0
until out=$(apt-get -o DPkg::Lock::Timeout="$LOCK_TIMEOUT_S" update -qq 2>&1); do
  if ! grep -q "Could not get lock" <<<"$out" || [ "$waited" -ge "$LOCK_TIMEOUT_S" ]; then
    echo "$out" >&2
    exit 1
  fi
  [ "$waited" -eq 0 ] && echo "system-deps: waiting up to ${LOCK_TIMEOUT_S}s for another apt process to release its lock: $(grep -m1 'Could not get lock' <<<"$out" | sed 's/^E: //')"
  sleep "$POLL_S"
  waited=$((waited + POLL_S))
done
echo "system-deps: installing ${need[*]} (waits up to ${LOCK_TIMEOUT_S}s for the dpkg lock)"
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$LOCK_TIMEOUT_S" install -y -qq "${need[@]}" >/dev/null
