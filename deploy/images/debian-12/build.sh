#!/usr/bin/env bash
# Builds the Debian 12 golden image the QEMU driver boots: a qcow2 disk, the kernel and initrd beside
# it, and manifest.json (user, key, pinned host key, how to boot). No root mounts: the root filesystem
# is made by debootstrap in a directory and written into the image with `mkfs.ext4 -d`.
#
# The result is cached by the hash of this recipe (and of the authorized key, when one is given) under
# the cache dir, so it is built once per machine; later runs print the manifest path at once.
#
# Usage: build.sh [--cache-dir DIR] [--authorized-key FILE.pub] [--mirror URL] [--quiet]
#   Prints the path of manifest.json on stdout (progress goes to stderr).
#   --cache-dir       default: $FREEAGENT_IMAGE_CACHE, else /var/cache/freeagent/images as root,
#                     else ~/.cache/freeagent/images
#   --authorized-key  the worker's public key; without it a key pair is made beside the image and the
#                     manifest names its private half
# Needs root (debootstrap chroots) and the packages debootstrap, e2fsprogs, qemu-utils, openssh-client.
set -euo pipefail

RECIPE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NAME="debian-12"
SUITE="bookworm"
MIRROR="http://deb.debian.org/debian"
CACHE_DIR="${FREEAGENT_IMAGE_CACHE:-}"
AUTHORIZED_KEY=""
QUIET=0
DISK_SIZE="16G"
USER_NAME="builder"
PACKAGES="systemd-sysv,udev,kmod,openssh-server,linux-image-amd64,initramfs-tools,build-essential,git,ca-certificates,curl,sudo,iproute2,procps,xz-utils,zstd,unzip,zip,file,less,python3"

while [ $# -gt 0 ]; do
  case "$1" in
    --cache-dir) CACHE_DIR="$2"; shift 2 ;;
    --authorized-key) AUTHORIZED_KEY="$2"; shift 2 ;;
    --mirror) MIRROR="$2"; shift 2 ;;
    --quiet) QUIET=1; shift ;;
    -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "build.sh: unknown argument \"$1\" (see --help)" >&2; exit 2 ;;
  esac
done

log() { [ "$QUIET" = 1 ] || echo "image $NAME: $*" >&2; }
die() { echo "image $NAME: error: $*" >&2; exit 1; }

if [ -z "$CACHE_DIR" ]; then
  if [ "$(id -u)" -eq 0 ]; then CACHE_DIR=/var/cache/freeagent/images; else CACHE_DIR="$HOME/.cache/freeagent/images"; fi
fi
for tool in debootstrap mkfs.ext4 qemu-img ssh-keygen flock sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || [ -x "/sbin/$tool" ] ||
    die "$tool is not installed (run scripts/bootstrap.sh)"
done
export PATH="$PATH:/usr/sbin:/sbin"
if [ -n "$AUTHORIZED_KEY" ] && [ ! -r "$AUTHORIZED_KEY" ]; then
  die "authorized key \"$AUTHORIZED_KEY\" cannot be read"
fi

# The cache key: everything that changes the image.
hash="$( { cat "${BASH_SOURCE[0]}"; echo "$SUITE $MIRROR $PACKAGES $DISK_SIZE $USER_NAME";
           [ -z "$AUTHORIZED_KEY" ] || cat "$AUTHORIZED_KEY"; } | sha256sum | cut -c1-16)"
OUT="$CACHE_DIR/$NAME-$hash"
mkdir -p "$CACHE_DIR"
if [ -f "$OUT/manifest.json" ]; then
  echo "$OUT/manifest.json"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || die "building the image needs root (debootstrap); it is then cached in $CACHE_DIR"

# One build at a time per cache dir; a second caller waits and then finds the finished image.
exec 9>"$CACHE_DIR/.$NAME.lock"
flock 9
if [ -f "$OUT/manifest.json" ]; then
  echo "$OUT/manifest.json"
  exit 0
fi

started=$(date +%s)
WORK="$(mktemp -d "$CACHE_DIR/.$NAME-build-XXXXXX")"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
ROOTFS="$WORK/rootfs"
mkdir -p "$ROOTFS" "$CACHE_DIR/debs"

log "debootstrap $SUITE (minbase + $PACKAGES) from $MIRROR"
if ! debootstrap --variant=minbase --include="$PACKAGES" --cache-dir="$CACHE_DIR/debs" \
    "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
  tail -n 30 "$WORK/debootstrap.log" >&2
  [ ! -f "$ROOTFS/debootstrap/debootstrap.log" ] || tail -n 30 "$ROOTFS/debootstrap/debootstrap.log" >&2
  die "debootstrap failed (log above)"
fi
log "debootstrap done after $(( $(date +%s) - started )) s"

# --- system configuration -------------------------------------------------------------------------
echo "freeagent-guest" >"$ROOTFS/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tfreeagent-guest\n' >"$ROOTFS/etc/hosts"
printf '/dev/vda\t/\text4\tdefaults,noatime\t0\t1\n' >"$ROOTFS/etc/fstab"
# QEMU user-mode networking: the guest is always 10.0.2.15, the host 10.0.2.2, DNS 10.0.2.3.
mkdir -p "$ROOTFS/etc/systemd/network"
cat >"$ROOTFS/etc/systemd/network/10-qemu.network" <<'NET'
[Match]
Name=en* eth*

[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
DNS=10.0.2.3
LinkLocalAddressing=no
IPv6AcceptRA=no
NET
rm -f "$ROOTFS/etc/resolv.conf"
echo "nameserver 10.0.2.3" >"$ROOTFS/etc/resolv.conf"
ln -sf /lib/systemd/system/systemd-networkd.service "$ROOTFS/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
printf 'virtio_net\nvirtio_blk\n' >"$ROOTFS/etc/modules-load.d/freeagent-virtio.conf"

# Grow the root filesystem to the disk the job asked for (the overlay may be larger than the image).
cat >"$ROOTFS/etc/systemd/system/freeagent-growfs.service" <<'UNIT'
[Unit]
Description=Grow the root filesystem to the size of its disk
DefaultDependencies=no
After=local-fs.target
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/sbin/resize2fs /dev/vda

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/freeagent-growfs.service "$ROOTFS/etc/systemd/system/multi-user.target.wants/freeagent-growfs.service"

# Nothing periodic runs inside a build VM.
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer man-db.timer \
            systemd-networkd-wait-online.service e2scrub_reap.service; do
  ln -sf /dev/null "$ROOTFS/etc/systemd/system/$unit"
done

# Small initrd (faster to load under emulation): only what mounting a virtio root needs.
sed -i 's/^MODULES=.*/MODULES=list/' "$ROOTFS/etc/initramfs-tools/initramfs.conf"
printf 'virtio_pci\nvirtio_blk\nvirtio_net\next4\n' >>"$ROOTFS/etc/initramfs-tools/modules"
chroot "$ROOTFS" update-initramfs -u -k all >"$WORK/initramfs.log" 2>&1 || { cat "$WORK/initramfs.log" >&2; die "update-initramfs failed"; }

# --- the build user and SSH ----------------------------------------------------------------------
chroot "$ROOTFS" useradd --create-home --shell /bin/bash --uid 1000 "$USER_NAME"
echo "$USER_NAME ALL=(ALL) NOPASSWD:ALL" >"$ROOTFS/etc/sudoers.d/$USER_NAME"
chmod 0440 "$ROOTFS/etc/sudoers.d/$USER_NAME"
mkdir -p "$WORK/out"
if [ -z "$AUTHORIZED_KEY" ]; then
  ssh-keygen -q -t ed25519 -N '' -C "freeagent-worker" -f "$WORK/out/builder_key"
  AUTHORIZED_KEY="$WORK/out/builder_key.pub"
  KEY_FIELD="$OUT/builder_key"
else
  KEY_FIELD=""
fi
install -d -m 0700 -o 1000 -g 1000 "$ROOTFS/home/$USER_NAME/.ssh"
install -m 0600 -o 1000 -g 1000 "$AUTHORIZED_KEY" "$ROOTFS/home/$USER_NAME/.ssh/authorized_keys"

# One host key, made here; its fingerprint goes into the manifest and is pinned by the worker.
rm -f "$ROOTFS"/etc/ssh/ssh_host_*
ssh-keygen -q -t ed25519 -N '' -C "freeagent-guest" -f "$ROOTFS/etc/ssh/ssh_host_ed25519_key"
fingerprint="$(ssh-keygen -lf "$ROOTFS/etc/ssh/ssh_host_ed25519_key.pub" | awk '{print $2}')"
cat >"$ROOTFS/etc/ssh/sshd_config.d/freeagent.conf" <<'SSHD'
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UseDNS no
MaxSessions 64
MaxStartups 64:30:128
SSHD

# Boot messages on the serial console (the worker keeps it as the VM's console log).
ln -sf /lib/systemd/system/serial-getty@.service "$ROOTFS/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service"

# --- kernel, initrd, disk ------------------------------------------------------------------------
kernel="$(ls "$ROOTFS"/boot/vmlinuz-* | sort -V | tail -n1)"
initrd="$(ls "$ROOTFS"/boot/initrd.img-* | sort -V | tail -n1)"
[ -f "$kernel" ] && [ -f "$initrd" ] || die "no kernel or initrd in the root filesystem"
cp "$kernel" "$WORK/out/vmlinuz"
cp "$initrd" "$WORK/out/initrd.img"
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/debootstrap
log "writing the root filesystem ($DISK_SIZE, sparse)"
mkfs.ext4 -q -F -L freeagent-root -d "$ROOTFS" "$WORK/root.raw" "$DISK_SIZE"
qemu-img convert -f raw -O qcow2 "$WORK/root.raw" "$WORK/out/disk.qcow2"
rm -f "$WORK/root.raw"

cat >"$WORK/out/manifest.json" <<JSON
{
  "name": "$NAME",
  "recipe_hash": "$hash",
  "built_unix": $(date +%s),
  "disk": "$OUT/disk.qcow2",
  "disk_format": "qcow2",
  "disk_gb": ${DISK_SIZE%G},
  "kernel": "$OUT/vmlinuz",
  "initrd": "$OUT/initrd.img",
  "append": "root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet",
  "user": "$USER_NAME",
  "key": "$KEY_FIELD",
  "host_key_fingerprint": "$fingerprint",
  "workspace_root": "/home/$USER_NAME/jobs",
  "ssh_port": 22
}
JSON
chmod 0644 "$WORK/out/manifest.json"
mv "$WORK/out" "$OUT"
ln -sfn "$NAME-$hash" "$CACHE_DIR/$NAME"
log "built in $(( $(date +%s) - started )) s: $OUT"
echo "$OUT/manifest.json"
