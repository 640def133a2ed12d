#!/usr/bin/env bash
# Prepares a Mac to be a Free Agent worker host for the `tart` driver:
#   1. installs Tart with Homebrew (and Homebrew itself must already be there),
#   2. pulls the base Xcode image and keeps a local clone the catalogue names as `base`,
#   3. sets the host's DHCP lease time to 600 s, so the leases of many short-lived VMs expire before the
#      shared network's address pool runs out (tart's default `ip` resolver reads these leases),
#   4. keeps the login keychain unlocked with no auto-lock: the worker runs from launchd without anyone
#      logged in, and on macOS 15 a locked login keychain makes tart's keychain access fail.
#
# Usage: setup-host.sh [--image REMOTE] [--name LOCAL] [--skip-pull] [--skip-keychain]
#   --image  OCI image to pull (default ghcr.io/cirruslabs/macos-sonoma-xcode:16)
#   --name   local base VM name, the `base` of the [images.<name>] table (default sonoma-xcode-16)
# Run as the user the worker runs as (not root); it asks for sudo for the DHCP setting.
set -euo pipefail

IMAGE="ghcr.io/cirruslabs/macos-sonoma-xcode:16"
NAME="sonoma-xcode-16"
PULL=1
KEYCHAIN=1
while [ $# -gt 0 ]; do
  case "$1" in
    --image) IMAGE="$2"; shift 2 ;;
    --name) NAME="$2"; shift 2 ;;
    --skip-pull) PULL=0; shift ;;
    --skip-keychain) KEYCHAIN=0; shift ;;
    -h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "setup-host.sh: unknown argument \"$1\" (see --help)" >&2; exit 2 ;;
  esac
done

log() { echo "setup-host: $*" >&2; }
die() { echo "setup-host: $*" >&2; exit 1; }

[ "$(uname -s)" = Darwin ] || die "this is for macOS hosts (Tart needs Virtualization.framework)"
[ "$(uname -m)" = arm64 ] || die "macOS guests need an Apple Silicon host (uname -m says $(uname -m))"
[ "$(id -u)" != 0 ] || die "run as the worker's user, not root (tart keeps VMs under that user's ~/.tart)"
command -v brew >/dev/null || die "Homebrew is missing: install it from https://brew.sh first"

if command -v tart >/dev/null; then
  log "tart already installed: $(tart --version)"
else
  log "installing tart"
  brew install cirruslabs/cli/tart
fi

if [ "$PULL" = 1 ]; then
  if tart list --source local --quiet | grep -qx -- "$NAME"; then
    log "base VM $NAME already exists"
  else
    # `tart clone` of a remote image pulls it into the OCI cache first; the local clone is what jobs
    # clone from (an APFS copy-on-write clone, so each job's clone is instant).
    log "pulling $IMAGE into local VM $NAME (tens of GB; this takes a while)"
    tart clone "$IMAGE" "$NAME"
  fi
fi

PLIST=/Library/Preferences/SystemConfiguration/com.apple.InternetSharing.default.plist
log "setting the DHCP lease time of the VMs' shared network to 600 s ($PLIST)"
sudo defaults write "$PLIST" bootpd -dict DHCPLeaseTimeSecs -int 600

if [ "$KEYCHAIN" = 1 ]; then
  KC="$HOME/Library/Keychains/login.keychain-db"
  log "unlocking the login keychain and turning off its auto-lock ($KC)"
  security unlock-keychain "$KC"
  # No -t/-l: no timeout and no lock on sleep.
  security set-keychain-settings "$KC"
fi

log "done. Next: boot the base VM once and run prepare-guest.sh inside it (see README.md)"
