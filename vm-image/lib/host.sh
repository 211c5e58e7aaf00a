# shellcheck shell=bash
# Host-side helpers for vm-image/build.sh and vm-image/test.sh (sourced).
#
#   host_mirror_uri          the Debian mirror URI of this host's own apt sources
#   host_apt_sources         what mmdebstrap takes as its mirror: this host's
#                            sources file (deb822 or sources.list), else the URI
#   ensure_build_tools       mmdebstrap, mtools, dosfstools, syslinux, sfdisk,
#                            mkfs.ext4, xmllint, qemu-img (installs what is missing)
#   ensure_qemu_system       qemu-system-x86_64 + qemu-img from bookworm-backports
#                            (bookworm's own qemu-system-x86 7.2 would remove the
#                            host's backports qemu-utils), plus OVMF
#
# Needs scripts/lib/common.sh (log, die, ensure_commands) sourced first.

IPIECE_CACHE=${IPIECE_CACHE:-/var/cache/ipiece-ci}

# host_mirror_uri : first URIs: of the host's deb822 Debian sources, or the
# first `deb` line of sources.list; hard-codes no host.
host_mirror_uri() {
  local f uri=""
  for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$f")
    [ -n "$uri" ] && break
  done
  if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || die "no Debian mirror found in this host's apt sources"
  echo "$uri"
}

# host_apt_sources : the host's own apt sources as mmdebstrap's mirror
# argument (they carry bookworm, bookworm-updates and bookworm-security).
host_apt_sources() {
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    echo /etc/apt/sources.list.d/debian.sources
  elif [ -s /etc/apt/sources.list ]; then
    echo /etc/apt/sources.list
  else
    host_mirror_uri
  fi
}

ensure_build_tools() {
  ensure_commands \
    mmdebstrap:mmdebstrap mcopy:mtools mkfs.fat:dosfstools syslinux:syslinux \
    /usr/lib/syslinux/mbr/gptmbr.bin:syslinux-common sfdisk:fdisk mkfs.ext4:e2fsprogs \
    xmllint:libxml2-utils qemu-img:qemu-utils tar:tar sha256sum:coreutils
}

# ensure_qemu_system : qemu-system-x86_64 and qemu-img from bookworm-backports,
# through a private apt list directory (the host's own sources and lists are
# left as they are); OVMF (UEFI firmware) from the host's sources.
ensure_qemu_system() {
  ensure_commands /usr/share/OVMF/OVMF_CODE_4M.fd:ovmf
  command -v qemu-system-x86_64 >/dev/null 2>&1 && return 0
  [ "$(id -u)" -eq 0 ] || die "qemu-system-x86_64 missing and not root"
  local dir="$IPIECE_CACHE/apt-backports" uri aptlog
  uri=$(host_mirror_uri)
  mkdir -p "$dir/lists/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri bookworm-backports main" >"$dir/backports.list"
  local opts=(-o "Dir::Etc::sourcelist=$dir/backports.list" -o "Dir::State::lists=$dir/lists")
  aptlog=$(mktemp /tmp/ipiece-apt.XXXXXX)
  log "installing qemu-system-x86, qemu-system-common, qemu-system-data, qemu-utils from bookworm-backports ($uri)"
  if ! { DEBIAN_FRONTEND=noninteractive apt-get "${opts[@]}" update \
         && DEBIAN_FRONTEND=noninteractive apt-get "${opts[@]}" install -y --no-install-recommends \
              -t bookworm-backports qemu-system-x86 qemu-system-common qemu-system-data qemu-utils; } \
       >"$aptlog" 2>&1; then
    tail -n 30 "$aptlog" >&2
    rm -f "$aptlog"
    die "installing qemu from bookworm-backports failed"
  fi
  rm -f "$aptlog"
  command -v qemu-system-x86_64 >/dev/null 2>&1 || die "qemu-system-x86_64 still missing"
  command -v qemu-img >/dev/null 2>&1 || die "qemu-img missing after the qemu install"
}

# ensure_cargo_deb : print the path of a cargo-deb binary; installs it with
# `cargo install --locked` into $IPIECE_CACHE/cargo-deb when neither PATH nor
# that cache has one (crates.io only).
ensure_cargo_deb() {
  local root="$IPIECE_CACHE/cargo-deb"
  if command -v cargo-deb >/dev/null 2>&1; then
    command -v cargo-deb
    return 0
  fi
  if [ ! -x "$root/bin/cargo-deb" ]; then
    log "installing cargo-deb (cargo install --locked) into $root"
    mkdir -p "$root"
    cargo install --locked --quiet --root "$root" cargo-deb >&2 || die "cargo install cargo-deb failed"
  fi
  echo "$root/bin/cargo-deb"
}
