#!/usr/bin/env bash
# demo.sh - ipiece end to end in network namespaces: a laptop with
# wireguard-go dials, through the 'internet' and a home router that NATs and
# port-forwards UDP 51821, the ipieced gateway, and reaches a host on the
# office LAN behind it.
#
#   scripts/demo.sh          build, bring the demo up, show it, tear it down
#   scripts/demo.sh --keep   the same, but leave it running
#   scripts/demo.sh --down   tear a kept (or crashed) demo down
#
# Needs root. Namespaces are all called ipdemo-*; nothing is configured in the
# root namespace. State (config, keys, logs, pid files, control socket) lives
# in $IPDEMO_DIR (default /tmp/ipiece-demo). Binaries come from
# $CARGO_TARGET_DIR/debug (default /var/cache/ipiece-ci/target), built first,
# unless IPIECE_BIN_DIR points at a directory with ipieced and wgctl.
#
#   ipdemo-laptop1  eth0 198.51.100.2/28, ipdlap0 (wireguard-go, from the
#                   client .conf `wgctl add-peer` wrote)
#   ipdemo-inet     router, TEST-NET addresses only
#   ipdemo-nat      wan 203.0.113.2 (the gateway's public endpoint), NAT +
#                   DNAT udp 51821 -> 192.168.1.2
#   ipdemo-gw       eth0 192.168.1.2, lan0 172.16.4.1/24, ipieced (TUN ipdgw0,
#                   172.16.60.1/24)
#   ipdemo-lan      172.16.4.10
set -euo pipefail

LOG_TAG=demo
# shellcheck source=scripts/lib/netns.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/netns.sh"

NS_PREFIX=ipdemo-
STATE=${IPDEMO_DIR:-/tmp/ipiece-demo}
RUN=$STATE/run
IF_LAP=ipdlap0   # WireGuard interface names are host-wide (UAPI socket)
IF_GW=ipdgw0
CFG=$STATE/gateway.toml
CTL_SOCK=$STATE/control.sock
NS_LAP=$(lab_ns laptop1)
NS_GW=$(lab_ns gw)
GW_WG_ADDR=172.16.60.1

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

KEEP=0
MODE=up
for arg in "$@"; do
  case $arg in
    --keep) KEEP=1 ;;
    --down) MODE=down ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
lab_lock ipiece-demo

down() {
  log "tearing down: processes by pid file, namespaces ${NS_PREFIX}*"
  ns_teardown "$NS_PREFIX" "$RUN"
  wg_sock_remove "$IF_LAP" "$IF_GW"
  rm -f "$CTL_SOCK"
}

if [ "$MODE" = down ]; then
  down
  exit 0
fi

ensure_commands ip:iproute2 nft:nftables wg:wireguard-tools wireguard-go:wireguard-go \
  ping:iputils-ping
ensure_tun_device

# ------------------------------------------------------------------ build ----
if [ -n "${IPIECE_BIN_DIR:-}" ]; then
  BIN=$IPIECE_BIN_DIR
else
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/ipiece-ci/target}
  BIN=$CARGO_TARGET_DIR/debug
  section "build (cargo build --bins, target $CARGO_TARGET_DIR)"
  mkdir -p "$CARGO_TARGET_DIR"
  buildlog=$CARGO_TARGET_DIR/demo-build.log
  if ! (cd "$(repo_root)" && cargo build --bins) >"$buildlog" 2>&1; then
    tail -n 40 "$buildlog"
    die "cargo build failed (full log: $buildlog)"
  fi
  tail -n 1 "$buildlog"
fi
for b in ipieced wgctl; do [ -x "$BIN/$b" ] || die "$BIN/$b missing"; done
WGCTL=("$BIN/wgctl" --config "$CFG")

# ---------------------------------------------------------------- helpers ----
show_logs() {
  local f
  for f in "$STATE"/logs/*.log; do
    [ -s "$f" ] || continue
    log "--- last lines of $f"
    tail -n 25 "$f" >&2
  done
}

# stop ipieced the way an operator would (SIGTERM) and check it cleans up:
# exit status 0, TUN gone
stop_gateway() {
  local st=0
  [ -n "${GW_PID:-}" ] && kill -0 "$GW_PID" 2>/dev/null || return 0
  kill_pid "$GW_PID" 10 || true
  wait "$GW_PID" 2>/dev/null || st=$?
  rm -f "$RUN/ipieced.pid"
  if [ "$st" -ne 0 ]; then
    log "warning: ipieced exited with status $st after SIGTERM"
    return 1
  fi
  if ip -n "$NS_GW" link show "$IF_GW" >/dev/null 2>&1; then
    log "warning: TUN $IF_GW still present after ipieced exited"
    return 1
  fi
  log "ipieced stopped cleanly (SIGTERM, exit 0, TUN gone)"
}

on_exit() {
  local rc=$?
  if [ $rc -ne 0 ]; then
    log "FAILED (exit $rc)"
    show_logs
  fi
  if [ "$KEEP" = 1 ]; then
    log "kept running (--keep): scripts/demo.sh --down removes it; state in $STATE"
  else
    if ! stop_gateway && [ $rc -eq 0 ]; then
      tail -n 20 "$STATE/logs/ipieced.log" >&2
      rc=1
    fi
    down
  fi
  exit $rc
}

# -------------------------------------------------------------------- up -----
down
rm -rf "$STATE"
mkdir -p "$RUN" "$STATE/logs"
chmod 700 "$STATE"
GW_PID=
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

section "topology (namespaces ${NS_PREFIX}*)"
lab_topology 1
ip netns list | awk -v p="$NS_PREFIX" 'index($1, p) == 1 { printf "  %s\n", $1 }'

section "gateway config (wgctl init --endpoint $LAB_ENDPOINT)"
"${WGCTL[@]}" init --endpoint "$LAB_ENDPOINT"
[ -s "$CFG" ] || die "wgctl init wrote no $CFG"
config_set_gateway "$CFG" control_socket "$CTL_SOCK"
config_set_gateway "$CFG" tun_name "$IF_GW"
grep -Eq '^lan_prefixes *=.*"172\.16\.4\.0/24"' "$CFG" ||
  die "$CFG: lan_prefixes does not hold 172.16.4.0/24 (the demo LAN)"
"${WGCTL[@]}" check
grep -E '^(name|public_endpoint|lan_prefixes|control_socket|tun_name|listen_port|address|remote_prefixes) *=' "$CFG" |
  sed 's/^/  /'

section "start ipieced in $NS_GW"
spawn "$RUN/ipieced.pid" "$STATE/logs/ipieced.log" "$NS_GW" "$BIN/ipieced" --config "$CFG"
GW_PID=$(cat "$RUN/ipieced.pid")
wait_for_pid "$GW_PID" 20 test -S "$CTL_SOCK" ||
  die "ipieced (pid $GW_PID) did not open its control socket $CTL_SOCK"
wait_for_pid "$GW_PID" 10 ip -n "$NS_GW" link show "$IF_GW" >/dev/null 2>&1 ||
  die "ipieced did not create TUN $IF_GW"
log "ipieced pid $GW_PID, control socket $CTL_SOCK"
ip -n "$NS_GW" -br addr show dev "$IF_GW" | sed 's/^/  /'
ip -n "$NS_GW" route show dev "$IF_GW" | sed 's/^/  route: /'
if [ "$(nsx "$NS_GW" sysctl -n net.ipv4.ip_forward)" != 1 ]; then
  log "warning: ipieced did not enable net.ipv4.ip_forward in $NS_GW; enabling it for the demo"
  ns_forwarding "$NS_GW"
fi

section "add a laptop (wgctl add-peer laptop)"
nsx "$NS_GW" "${WGCTL[@]}" add-peer laptop --output "$STATE/laptop.conf"
[ -s "$STATE/laptop.conf" ] || die "wgctl add-peer wrote no $STATE/laptop.conf"
log "client config $STATE/laptop.conf (mode $(stat -c %a "$STATE/laptop.conf")), keys hidden:"
sed -E 's/^([[:space:]]*(PrivateKey|PresharedKey)[[:space:]]*=).*/\1 (hidden)/I; s/^/  /' "$STATE/laptop.conf"

section "laptop: wireguard-go $IF_LAP in $NS_LAP from laptop.conf"
wg_client_from_conf "$NS_LAP" "$IF_LAP" "$STATE/laptop.conf" "$RUN/laptop.pid" "$STATE/logs/wireguard-go-laptop.log"
ip -n "$NS_LAP" -br addr show dev "$IF_LAP" | sed 's/^/  /'
ip -n "$NS_LAP" route show dev "$IF_LAP" | sed 's/^/  route: /'

section "ping from the laptop"
fail=0
# the first packet starts the handshake: allow a few seconds for it
if wait_for 15 nsx "$NS_LAP" ping -c 1 -W 1 -q "$GW_WG_ADDR" >/dev/null 2>&1; then
  log "laptop -> gateway $GW_WG_ADDR (WireGuard):"
  ping_ok "$NS_LAP" "$GW_WG_ADDR" || fail=1
else
  log "FAIL: laptop -> gateway $GW_WG_ADDR: no answer (handshake?)"
  fail=1
fi
log "laptop -> LAN host $LAB_LAN_HOST (WireGuard + routing):"
if ! ping_ok "$NS_LAP" "$LAB_LAN_HOST"; then
  log "FAIL: laptop -> LAN host $LAB_LAN_HOST"
  fail=1
fi

section "wgctl status"
nsx "$NS_GW" "${WGCTL[@]}" status || { log "FAIL: wgctl status"; fail=1; }

section "wg show $IF_GW (in $NS_GW)"
nsx "$NS_GW" wg show "$IF_GW" || { log "FAIL: wg show $IF_GW"; fail=1; }

section "wg show $IF_LAP (laptop)"
nsx "$NS_LAP" wg show "$IF_LAP" || true

if [ "$fail" -ne 0 ]; then
  die "demo finished with failures"
fi
kill -0 "$GW_PID" 2>/dev/null || die "ipieced exited during the demo"
section "demo OK"
