#!/usr/bin/env bash
# vm-image/build.sh - build the ipiece ESXi appliance (run as root).
#
#   vm-image/build.sh [--bin-dir DIR] [--deb FILE] [--out DIR] [--work DIR] [--keep-work]
#
# Steps (each prints a "[n/9]" line and its time):
#   1. release binaries (cargo build --release), unless --bin-dir DIR / $IPIECE_BIN_DIR
#      names a directory that already holds ipieced and wgctl (CI passes its dev
#      profile build, $CARGO_TARGET_DIR/debug: one profile is built in CI)
#   2. the .deb (cargo-deb --no-build, from a staging target directory holding
#      the stripped binaries), unless --deb FILE is given
#   3. Debian 12 root file system (mmdebstrap, minbase + kernel, systemd,
#      iproute2, nftables, open-vm-tools, wireguard-tools, openssh-server), the
#      .deb installed by apt inside it; the mirror is this host's own apt source
#   4. appliance files (first boot, banner, networkd, console), units enabled
#   5. EFI system partition image (FAT, mtools): systemd-boot for UEFI,
#      syslinux for BIOS, kernel and initrd
#   6. raw GPT disk (sfdisk; ext4 written with `mkfs.ext4 -d` at the partition
#      offset; gptmbr.bin in the MBR): no loop devices, no mounts
#   7. streamOptimized VMDK (qemu-img, version 3 header as ESXi wants)
#   8. OVF descriptor (vm-image/ipiece.ovf.in) and SHA256 manifest
#   9. OVA (tar, the .ovf first)
#
# Output ($OUT, default vm-image/out): ipiece-<version>.ova, its .ovf, .mf and
# -disk1.vmdk, ipiece_<version>-1_amd64.deb. Downloaded .debs are kept in
# $IPIECE_CACHE/apt-archives (default /var/cache/ipiece-ci) for the next build.
set -euo pipefail

LOG_TAG="vm-build"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
# shellcheck source=vm-image/lib/host.sh
. "$HERE/lib/host.sh"

BIN_DIR=${IPIECE_BIN_DIR:-}
DEB=""
OUT="$HERE/out"
WORK=""
KEEP_WORK=0
SUITE=bookworm
DISK_MIB=2048
ESP_MIB=256

usage() { sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case $1 in
    --bin-dir) BIN_DIR=$2; shift 2 ;;
    --deb) DEB=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --keep-work) KEEP_WORK=1; shift ;;
    -h | --help) usage 0 ;;
    *) log "unknown argument $1"; usage 2 >&2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || die "run as root (mmdebstrap --mode=root, mkfs.ext4 -d reading /etc/shadow)"

VERSION=$(awk -F'"' '/^version *=/ { print $2; exit }' "$ROOT/Cargo.toml")
NAME="ipiece-$VERSION"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [ -z "$WORK" ]; then
  WORK=$(mktemp -d /var/tmp/ipiece-vm-build.XXXXXX)
else
  mkdir -p "$WORK"
fi
cleanup() {
  if [ "$KEEP_WORK" -eq 0 ]; then rm -rf "$WORK"; else log "work directory kept: $WORK"; fi
}
trap cleanup EXIT

STEP=0
STEP_START=$SECONDS
BUILD_START=$SECONDS
step() {
  if [ "$STEP" -gt 0 ]; then log "    done in $((SECONDS - STEP_START))s"; fi
  STEP=$((STEP + 1))
  STEP_START=$SECONDS
  log "[$STEP/9] $*"
}

ensure_build_tools

# ---------------------------------------------------------------- 1 ------
step "binaries"
if [ -n "$DEB" ]; then
  log "not needed: the image installs $DEB"
elif [ -z "$BIN_DIR" ]; then
  log "cargo build --release --bins (override with --bin-dir DIR or IPIECE_BIN_DIR)"
  (cd "$ROOT" && cargo build --release --bins --quiet)
  BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"
fi
if [ -z "$DEB" ]; then
  for b in ipieced wgctl; do
    [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b missing (build it, or pass --bin-dir)"
  done
  log "using $BIN_DIR/{ipieced,wgctl}"
fi

# ---------------------------------------------------------------- 2 ------
step "debian package (cargo-deb)"
if [ -z "$DEB" ]; then
  CARGO_DEB=$(ensure_cargo_deb)
  # cargo-deb takes the binaries from <target-dir>/release: stage stripped
  # copies there, whatever profile built them.
  STAGE="$WORK/cargo-target"
  mkdir -p "$STAGE/release"
  for b in ipieced wgctl; do
    strip --strip-all -o "$STAGE/release/$b" "$BIN_DIR/$b"
  done
  # cargo-deb finds the target directory through `cargo metadata`, which
  # honours CARGO_TARGET_DIR
  (cd "$ROOT" && CARGO_TARGET_DIR="$STAGE" "$CARGO_DEB" --no-build --no-strip --no-dbgsym --fast --output "$OUT/") \
    >"$WORK/cargo-deb.log" 2>&1 || { tail -n 30 "$WORK/cargo-deb.log" >&2; die "cargo deb failed"; }
  DEB="$OUT/ipiece_${VERSION}-1_amd64.deb"
  [ -f "$DEB" ] || DEB=$(ls -t "$OUT"/ipiece_*.deb | head -n 1)
fi
[ -f "$DEB" ] || die "no .deb at $DEB"
DEB=$(cd "$(dirname "$DEB")" && pwd)/$(basename "$DEB")
log "package: $DEB"

# ---------------------------------------------------------------- 3 ------
step "Debian 12 root file system (mmdebstrap)"
ROOTFS="$WORK/rootfs"
APT_CACHE="$IPIECE_CACHE/apt-archives"
mkdir -p "$APT_CACHE"
MIRROR=$(host_apt_sources) || exit 1
MIRRORS=("$MIRROR")
PKGS=systemd-sysv,udev,kmod,linux-image-amd64,initramfs-tools,zstd,iproute2,nftables
PKGS=$PKGS,systemd-boot-efi,open-vm-tools,procps,wireguard-tools,openssh-server,iputils-ping
PKGS=$PKGS,libxml2-utils,ca-certificates,less
log "mirror ${MIRRORS[*]}, package cache $APT_CACHE"
# The .deb goes in through apt (--include of a local file): the image
# installs exactly what `apt install ./ipiece_*.deb` installs elsewhere.
# apt hands the path to dpkg inside the chroot: the same path must exist
# there (copied in by a setup hook, removed by a customize hook)
DEB_IN="$WORK/deb/$(basename "$DEB")"
mkdir -p "$WORK/deb"
cp "$DEB" "$DEB_IN"
mmdebstrap --mode=root --variant=minbase --format=directory \
  --include="$PKGS" --include="$DEB_IN" \
  --setup-hook="mkdir -p \"\$1$WORK/deb\" && cp '$DEB_IN' \"\$1$WORK/deb/\"" \
  --customize-hook="rm -rf \"\$1$WORK\"" \
  --skip=download/empty --skip=essential/unlink \
  --setup-hook="mkdir -p \"\$1/var/cache/apt/archives\"; find '$APT_CACHE' -maxdepth 1 -name '*.deb' -exec cp -t \"\$1/var/cache/apt/archives/\" {} +" \
  --customize-hook="find '$APT_CACHE' -maxdepth 1 -name '*.deb' -delete; find \"\$1/var/cache/apt/archives\" -maxdepth 1 -name '*.deb' ! -name 'ipiece_*' -exec cp -t '$APT_CACHE/' {} +; rm -f \"\$1\"/var/cache/apt/archives/*.deb" \
  "$SUITE" "$ROOTFS" "${MIRRORS[@]}" \
  >"$WORK/mmdebstrap.log" 2>&1 || { tail -n 40 "$WORK/mmdebstrap.log" >&2; die "mmdebstrap failed"; }
log "root file system: $(du -sm "$ROOTFS" | cut -f1) MiB"

# ---------------------------------------------------------------- 4 ------
step "appliance files"
install -D -m 0755 "$HERE/appliance/ipiece-firstboot" "$ROOTFS/usr/lib/ipiece/ipiece-firstboot"
install -D -m 0755 "$HERE/appliance/ipiece-banner" "$ROOTFS/usr/lib/ipiece/ipiece-banner"
install -m 0644 "$HERE/appliance/ipiece-firstboot.service" "$ROOTFS/etc/systemd/system/"
install -m 0644 "$HERE/appliance/ipiece-banner.service" "$ROOTFS/etc/systemd/system/"
install -m 0644 "$HERE/appliance/99-ipiece-gateway.conf" "$ROOTFS/etc/sysctl.d/"
echo "qemu_fw_cfg" >"$ROOTFS/etc/modules-load.d/ipiece-qemu-fw-cfg.conf"
echo "ipiece" >"$ROOTFS/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tipiece\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOTFS/etc/hosts"
# systemd-firstboot semantics: a new machine id on the VM's first boot
echo uninitialized >"$ROOTFS/etc/machine-id"
rm -f "$ROOTFS/var/lib/dbus/machine-id"
# every VM makes its own SSH host keys (first boot: ssh-keygen -A)
rm -f "$ROOTFS"/etc/ssh/ssh_host_*
# root logs in with the SSH key from the properties only
sed -i 's/^#\?PasswordAuthentication.*/PasswordAuthentication no/' "$ROOTFS/etc/ssh/sshd_config"
rm -f "$ROOTFS/etc/resolv.conf"
: >"$ROOTFS/etc/resolv.conf"
systemctl --root="$ROOTFS" enable systemd-networkd.service ipiece-firstboot.service \
  ipiece-banner.service ipieced.service >/dev/null 2>&1
systemctl --root="$ROOTFS" disable systemd-networkd-wait-online.service >/dev/null 2>&1 || true
systemctl --root="$ROOTFS" mask systemd-networkd-wait-online.service >/dev/null 2>&1
ROOT_UUID=$(cat /proc/sys/kernel/random/uuid)
printf 'UUID=%s / ext4 errors=remount-ro 0 1\n' "$ROOT_UUID" >"$ROOTFS/etc/fstab"
# kernel and initrd: resolve the links inside the root file system
KERNEL=$(cd "$ROOTFS/boot" && ls vmlinuz-* | sort -V | tail -n 1)
INITRD=initrd.img-${KERNEL#vmlinuz-}
[ -f "$ROOTFS/boot/$INITRD" ] || die "no $INITRD in the root file system"
log "kernel $KERNEL"
CMDLINE="root=UUID=$ROOT_UUID ro console=tty0 console=ttyS0,115200n8"

# ---------------------------------------------------------------- 5 ------
step "EFI system partition (systemd-boot + syslinux)"
ESP="$WORK/esp.img"
rm -f "$ESP"
mkfs.fat -F 32 -n ESP -C "$ESP" $((ESP_MIB * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
mmd -i "$ESP" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries ::/syslinux
mcopy -i "$ESP" "$ROOTFS/boot/$KERNEL" ::/vmlinuz
mcopy -i "$ESP" "$ROOTFS/boot/$INITRD" ::/initrd.img
mcopy -i "$ESP" "$ROOTFS/usr/lib/systemd/boot/efi/systemd-bootx64.efi" ::/EFI/BOOT/BOOTX64.EFI
printf 'default ipiece.conf\ntimeout 0\n' >"$WORK/loader.conf"
printf 'title ipiece %s\nlinux /vmlinuz\ninitrd /initrd.img\noptions %s\n' "$VERSION" "$CMDLINE" >"$WORK/ipiece.conf"
mcopy -i "$ESP" "$WORK/loader.conf" ::/loader/loader.conf
mcopy -i "$ESP" "$WORK/ipiece.conf" ::/loader/entries/ipiece.conf
printf 'DEFAULT ipiece\nPROMPT 0\nTIMEOUT 0\nLABEL ipiece\n  KERNEL /vmlinuz\n  INITRD /initrd.img\n  APPEND %s\n' "$CMDLINE" >"$WORK/syslinux.cfg"
mcopy -i "$ESP" "$WORK/syslinux.cfg" ::/syslinux/syslinux.cfg
syslinux --install --directory /syslinux "$ESP"

# ---------------------------------------------------------------- 6 ------
step "raw GPT disk (${DISK_MIB} MiB)"
RAW="$WORK/disk.raw"
rm -f "$RAW"
truncate -s "${DISK_MIB}M" "$RAW"
ESP_START=2048                            # sectors (1 MiB)
ESP_SECTORS=$((ESP_MIB * 2048))
ROOT_START=$((ESP_START + ESP_SECTORS))
ROOT_MIB=$((DISK_MIB - 1 - ESP_MIB - 1))  # 1 MiB at each end for the GPTs
ROOT_SECTORS=$((ROOT_MIB * 2048))
sfdisk --quiet "$RAW" <<EOF
label: gpt
unit: sectors
start=$ESP_START, size=$ESP_SECTORS, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="ESP", attrs="LegacyBIOSBootable"
start=$ROOT_START, size=$ROOT_SECTORS, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root"
EOF
dd if="$ESP" of="$RAW" bs=1M seek=1 conv=notrunc status=none
OFFSET=$((ROOT_START * 512))
mkfs.ext4 -q -F -L root -U "$ROOT_UUID" -E offset=$OFFSET -d "$ROOTFS" "$RAW" "${ROOT_MIB}M"
e2fsck -fn "$RAW?offset=$OFFSET" >"$WORK/e2fsck.log" 2>&1 || { cat "$WORK/e2fsck.log" >&2; die "e2fsck found errors"; }
dd if=/usr/lib/syslinux/mbr/gptmbr.bin of="$RAW" bs=440 count=1 conv=notrunc status=none

# ---------------------------------------------------------------- 7 ------
step "streamOptimized VMDK"
VMDK="$OUT/$NAME-disk1.vmdk"
rm -f "$VMDK"
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized,adapter_type=lsilogic,compat6 "$RAW" "$VMDK"
qemu-img info "$VMDK" | grep -q 'create type: streamOptimized' || die "qemu-img does not see $VMDK as streamOptimized"

# ---------------------------------------------------------------- 8 ------
step "OVF descriptor and manifest"
OVF="$OUT/$NAME.ovf"
MF="$OUT/$NAME.mf"
VMDK_SIZE=$(stat -c %s "$VMDK")
sed -e "s/@VERSION@/$VERSION/g" -e "s/@NAME@/$NAME/g" \
  -e "s/@VMDK_SIZE@/$VMDK_SIZE/g" -e "s/@DISK_CAPACITY@/$((DISK_MIB * 1024 * 1024))/g" \
  "$HERE/ipiece.ovf.in" >"$OVF"
xmllint --noout "$OVF"
(cd "$OUT" && for f in "$NAME.ovf" "$NAME-disk1.vmdk"; do
  printf 'SHA256(%s)= %s\n' "$f" "$(sha256sum "$f" | cut -d' ' -f1)"
done) >"$MF"

# ---------------------------------------------------------------- 9 ------
step "OVA"
OVA="$OUT/$NAME.ova"
rm -f "$OVA"
tar --format=ustar --owner=0 --group=0 --numeric-owner -C "$OUT" \
  -cf "$OVA" "$NAME.ovf" "$NAME.mf" "$NAME-disk1.vmdk"
log "    done in $((SECONDS - STEP_START))s"

echo
echo "built in $((SECONDS - BUILD_START))s:"
for f in "$OVA" "$OVF" "$MF" "$VMDK" "$DEB"; do
  printf '  %-60s %s\n' "$f" "$(du -h --apparent-size "$f" | cut -f1)"
done
