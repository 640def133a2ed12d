#!/usr/bin/env bash
# Prepares a macOS guest (run INSIDE the base VM, once, before it becomes the base jobs clone from):
#   - a `builder` user that jobs run as, reachable only with the worker's SSH key,
#   - Remote Login (sshd) on, password authentication off,
#   - checks that Xcode and its command line tools are installed and licensed,
#   - Node.js, CocoaPods and the EAS CLI (Homebrew + npm),
#   - pre-baked caches (the CocoaPods CDN index and common npm packages), so jobs do not fetch them.
# At the end it prints the guest's SSH host key fingerprint: put it into the image's catalogue entry
# (host_key_fingerprint). Every clone of this VM has the same host key, so one pinned value serves all.
#
# Usage: sudo ./prepare-guest.sh --authorized-key builder.pub [--user builder] [--node-version 20]
#        [--npm-cache "expo react-native ..."] [--skip-caches]
set -euo pipefail

USER_NAME="builder"
AUTHORIZED_KEY=""
NODE_VERSION="20"
NPM_CACHE="expo eas-cli react-native @expo/cli typescript"
CACHES=1
while [ $# -gt 0 ]; do
  case "$1" in
    --authorized-key) AUTHORIZED_KEY="$2"; shift 2 ;;
    --user) USER_NAME="$2"; shift 2 ;;
    --node-version) NODE_VERSION="$2"; shift 2 ;;
    --npm-cache) NPM_CACHE="$2"; shift 2 ;;
    --skip-caches) CACHES=0; shift ;;
    -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "prepare-guest.sh: unknown argument \"$1\" (see --help)" >&2; exit 2 ;;
  esac
done

log() { echo "prepare-guest: $*" >&2; }
die() { echo "prepare-guest: $*" >&2; exit 1; }

[ "$(uname -s)" = Darwin ] || die "run this inside the macOS guest"
[ "$(id -u)" = 0 ] || die "run with sudo (it creates a user and changes sshd settings)"
[ -n "$AUTHORIZED_KEY" ] || die "--authorized-key FILE.pub is required (the worker's public key)"
[ -f "$AUTHORIZED_KEY" ] || die "--authorized-key: no such file: $AUTHORIZED_KEY"
grep -qE '^(ssh-ed25519|ecdsa-sha2-nistp256|ssh-rsa) ' "$AUTHORIZED_KEY" ||
  die "--authorized-key: $AUTHORIZED_KEY is not an OpenSSH public key"
case "$USER_NAME" in
  *[!a-z0-9_]*|"") die "--user: \"$USER_NAME\" is not a plain user name" ;;
esac

# --- the builder user -------------------------------------------------------------------------------
HOME_DIR="/Users/$USER_NAME"
if id "$USER_NAME" >/dev/null 2>&1; then
  log "user $USER_NAME exists"
else
  log "creating user $USER_NAME"
  # A random password nobody knows: the account is reached with the SSH key only.
  sysadminctl -addUser "$USER_NAME" -fullName "Free Agent builder" -home "$HOME_DIR" \
    -password "$(head -c 32 /dev/urandom | base64)" -shell /bin/zsh
  createhomedir -c -u "$USER_NAME" >/dev/null
fi
install -d -m 700 -o "$USER_NAME" -g staff "$HOME_DIR/.ssh"
install -m 600 -o "$USER_NAME" -g staff "$AUTHORIZED_KEY" "$HOME_DIR/.ssh/authorized_keys"
install -d -m 700 -o "$USER_NAME" -g staff "$HOME_DIR/freeagent-jobs"
# Builds need Homebrew's tools on PATH in non-interactive SSH sessions too.
# shellcheck disable=SC2016 # expanded by the builder's shell, not here
printf 'eval "$(/opt/homebrew/bin/brew shellenv)"\n' >"$HOME_DIR/.zshenv"
chown "$USER_NAME":staff "$HOME_DIR/.zshenv"

# --- sshd ---------------------------------------------------------------------------------------------
log "turning on Remote Login with keys only"
install -d /etc/ssh/sshd_config.d
cat >/etc/ssh/sshd_config.d/100-freeagent.conf <<CONF
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
CONF
systemsetup -setremotelogin on >/dev/null 2>&1 || launchctl enable system/com.openssh.sshd
# Remote Login may be limited to a group; builder must be in it.
dseditgroup -o edit -a "$USER_NAME" -t user com.apple.access_ssh 2>/dev/null || true

# --- Xcode --------------------------------------------------------------------------------------------
log "checking Xcode"
DEV_DIR="$(xcode-select -p 2>/dev/null)" || die "no Xcode developer directory: install Xcode (the base image should have it)"
[ -d "$DEV_DIR" ] || die "xcode-select points at $DEV_DIR, which does not exist"
xcodebuild -version >&2 || die "xcodebuild does not run: install Xcode, then run: sudo xcodebuild -runFirstLaunch"
xcodebuild -license check >/dev/null 2>&1 || xcodebuild -license accept
xcrun --find clang >/dev/null || die "the command line tools are incomplete (xcrun cannot find clang)"
xcrun simctl list runtimes >&2 || log "no simulator runtimes (fine for device builds)"

# --- Homebrew packages, as the admin user who owns Homebrew -----------------------------------------
BREW=/opt/homebrew/bin/brew
[ -x "$BREW" ] || die "Homebrew is missing at $BREW (Cirrus Labs' Xcode images have it)"
BREW_OWNER="$(stat -f %Su /opt/homebrew)"
as_brew_owner() { sudo -u "$BREW_OWNER" -H env PATH="/opt/homebrew/bin:/usr/bin:/bin:/usr/sbin:/sbin" "$@"; }
log "installing node@$NODE_VERSION and CocoaPods"
as_brew_owner "$BREW" install "node@$NODE_VERSION" cocoapods
as_brew_owner "$BREW" link --overwrite --force "node@$NODE_VERSION"
log "installing the EAS CLI"
as_brew_owner /opt/homebrew/bin/npm install --global eas-cli

# --- caches, for the builder user ---------------------------------------------------------------------
as_builder() { sudo -u "$USER_NAME" -H env PATH="/opt/homebrew/bin:/usr/bin:/bin:/usr/sbin:/sbin" "$@"; }
if [ "$CACHES" = 1 ]; then
  log "pre-baking caches"
  as_builder pod repo add-cdn trunk https://cdn.cocoapods.org/ 2>/dev/null || as_builder pod repo update
  # shellcheck disable=SC2086 # a list of package names
  as_builder npm cache add $NPM_CACHE
fi

log "versions: node $(as_builder node --version), pod $(as_builder pod --version), eas $(as_builder eas --version 2>/dev/null | head -n1)"
log "host key fingerprint for the catalogue (host_key_fingerprint):"
ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | awk '{print $2}'
