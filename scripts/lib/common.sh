# shellcheck shell=bash
# Common helpers for ipiece's scripts (sourced, not executed).
#
#   log MSG...            message to stderr, prefixed with $LOG_TAG
#   die MSG...            log and exit 1
#   section TITLE         a visible section header on stdout
#   ensure_commands CMD:PKG...
#                         install the Debian packages of the commands that are
#                         missing (apt-get update once, --no-install-recommends);
#                         does nothing (no apt at all) when every command exists.
#                         A CMD that is an absolute path is a file that must
#                         exist (a daemon outside PATH, a plugin)
#   ensure_tun_device     create /dev/net/tun if the machine lacks it
#   repo_root             print the repository root (parent of scripts/)

LOG_TAG=${LOG_TAG:-ipiece}

log() { printf '[%s] %s\n' "$LOG_TAG" "$*" >&2; }
die() { log "error: $*"; exit 1; }

section() {
  printf '\n==== %s ====\n' "$*"
}

repo_root() {
  (cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
}

# have_command CMD : CMD is on PATH, or, if it is an absolute path, exists
have_command() {
  case $1 in
    /*) [ -e "$1" ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

# ensure_commands ip:iproute2 wg:wireguard-tools /usr/lib/ipsec/charon:strongswan-charon ...
ensure_commands() {
  local spec cmd pkg missing=() pkgs=()
  for spec in "$@"; do
    cmd=${spec%%:*}
    pkg=${spec#*:}
    if ! have_command "$cmd"; then
      missing+=("$cmd")
      case " ${pkgs[*]} " in *" $pkg "*) ;; *) pkgs+=("$pkg") ;; esac
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing commands (${missing[*]}) and not root: apt-get install ${pkgs[*]}"
  command -v apt-get >/dev/null 2>&1 || die "missing commands (${missing[*]}) and no apt-get"
  log "installing ${pkgs[*]} (missing: ${missing[*]})"
  local aptlog
  aptlog=$(mktemp /tmp/ipiece-apt.XXXXXX)
  # Debian's wireguard-tools recommends a kernel image: never install recommends.
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update \
         && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}"; } \
       >"$aptlog" 2>&1; then
    tail -n 30 "$aptlog" >&2
    rm -f "$aptlog"
    die "apt-get install ${pkgs[*]} failed"
  fi
  rm -f "$aptlog"
  for cmd in "${missing[@]}"; do
    have_command "$cmd" || die "$cmd still missing after installing ${pkgs[*]}"
  done
}

ensure_tun_device() {
  [ -c /dev/net/tun ] && return 0
  log "creating /dev/net/tun"
  mkdir -p /dev/net
  mknod /dev/net/tun c 10 200
  chmod 0666 /dev/net/tun
}

# ------------------------------------------------ the gateway's TOML file --
# config_get FILE TABLE KEY : the value of a one-line `KEY = value` in [TABLE]
# of an ipiece config, surrounding quotes removed; empty if absent.
config_get() {
  awk -v table="[$2]" -v key="$3" '
    /^[ \t]*\[/ { sect = $0; sub(/#.*/, "", sect); gsub(/[ \t]/, "", sect); next }
    sect == table && $0 ~ ("^[ \t]*" key "[ \t]*=") {
      v = $0; sub(/^[^=]*=[ \t]*/, "", v); sub(/[ \t]+#.*$/, "", v); sub(/[ \t]+$/, "", v)
      if (v ~ /^".*"$/) v = substr(v, 2, length(v) - 2)
      print v; exit
    }' "$1"
}

# config_set_gateway FILE KEY VALUE : set KEY = "VALUE" in the [gateway]
# table (replace its line, or add it at the end of the table); keeps the
# file's mode, replaces it atomically.
config_set_gateway() {
  local cfg=$1 key=$2 value=$3 tmp
  tmp=$(mktemp "$(dirname "$cfg")/.cfg.XXXXXX")
  if ! awk -v key="$key" -v line="$key = \"$value\"" '
    /^[ \t]*\[/ {
      if (sect == "[gateway]" && !done) { print line; done = 1 }
      sect = $0; sub(/#.*/, "", sect); gsub(/[ \t]/, "", sect)
      if (sect == "[gateway]") seen = 1
    }
    sect == "[gateway]" && $0 ~ ("^[ \t]*" key "[ \t]*=") { if (!done) print line; done = 1; next }
    { print }
    END { if (seen && !done) print line; if (!seen) exit 1 }
    ' "$cfg" >"$tmp"; then
    rm -f "$tmp"
    die "no [gateway] table in $cfg"
  fi
  chmod --reference="$cfg" "$tmp"
  mv "$tmp" "$cfg"
}
