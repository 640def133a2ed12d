#!/usr/bin/env bash
# Installs exactly the Debian 12 packages Free Agent builds, tests and demos with.
# Idempotent: packages already present are left alone; the package lists are refreshed only when
# something is missing. It is the only install step the project has.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config ccache git
  # libraries
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libssl-dev libssh2-1-dev libarchive-dev libplist-dev libsqlite3-dev
  libspdlog-dev libcli11-dev libtomlplusplus-dev libgtest-dev libgmock-dev
  # test fixtures and tools the tests run for real
  openssh-server openssh-client make tar gzip procps iproute2 openssl
  # the QEMU driver and the Debian guest image recipe
  qemu-system-x86 qemu-utils debootstrap e2fsprogs
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "bootstrap: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "bootstrap: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "bootstrap: done"
