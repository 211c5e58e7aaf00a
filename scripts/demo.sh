#!/usr/bin/env bash
# demo.sh - the seed topology end to end, in network namespaces: a team's
# gateway behind the office router, its LAN with a team VM that takes its
# address and resolver by DHCP, a wireguard-go laptop out on the internet,
# and an AWS VPC behind two VGW tunnels (strongSwan stand-ins). It shows the
# tunnels, the ping matrix, names, `wgctl status`, then kills the active VGW
# and measures how long traffic takes to come back through the other one.
#
#   scripts/demo.sh          build, bring the demo up, show it, tear it down
#   scripts/demo.sh --keep   the same, but leave it running to explore
#   scripts/demo.sh --down   tear a kept (or crashed) demo down
#
# Needs root. Namespaces are all called ipdemo-*; nothing is configured in the
# root namespace. State (config, keys, logs, pid files, control socket,
# dnsmasq's files) lives in $IPDEMO_DIR (default /tmp/ipiece-demo). Binaries
# come from $CARGO_TARGET_DIR/debug (default /var/cache/ipiece-ci/target),
# built first, unless IPIECE_BIN_DIR points at a directory with ipieced and
# wgctl. Every step is checked: the script exits non-zero on a failed ping
# of the matrix, a name that does not resolve, a WAN host that reaches the
# LAN, or a failover slower than FAILOVER_MAX_S (default 5) seconds.
#
#   ipdemo-laptop1  eth0 198.51.100.2/28 (the internet), ipdlap0: wireguard-go
#                   from the client .conf `wgctl add-peer` wrote
#   ipdemo-inet     the internet's router (TEST-NET addresses only)
#   ipdemo-nat      the office router: wan 203.0.113.2 (the gateway's public
#                   address), lan 192.168.1.1/24 (the shared office network);
#                   masquerades the office, forwards UDP 51821, 500 and 4500
#                   to the gateway
#   ipdemo-gw       eth0 192.168.1.2 (WAN), lan0 172.16.4.1/24 (LAN);
#                   ipieced with [firewall], [lan] (dnsmasq: DHCP, DNS) and
#                   two [[ipsec.tunnels]] (TUN ipdgw0, 172.16.60.1/24)
#   ipdemo-lan      the team VM on the LAN (address and resolver by DHCP)
#   ipdemo-vgw      AWS tunnel 1: charon at 203.0.113.130, inside 169.254.10.1
#   ipdemo-vgw2     AWS tunnel 2: charon at 192.0.2.130, inside 169.254.11.1
#   ipdemo-vpc      the VPC host 10.0.1.10, behind both VGWs
#
# Enter a kept demo with e.g. `ip netns exec ipdemo-lan bash`, and ask the
# gateway with `ip netns exec ipdemo-gw $BIN/wgctl --config
# /tmp/ipiece-demo/gateway.toml status`.
set -euo pipefail

LOG_TAG=demo
# shellcheck source=scripts/lib/netns.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/netns.sh"
# shellcheck source=scripts/lib/strongswan.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/strongswan.sh"

NS_PREFIX=ipdemo-
STATE=${IPDEMO_DIR:-/tmp/ipiece-demo}
RUN=$STATE/run
LOGS=$STATE/logs
IF_LAP=ipdlap0   # WireGuard interface names are host-wide (UAPI socket)
IF_GW=ipdgw0
CFG=$STATE/gateway.toml
CTL_SOCK=$STATE/control.sock
NS_LAP=$(lab_ns laptop1)
NS_GW=$(lab_ns gw)
NS_LAN=$(lab_ns lan)
NS_NAT=$(lab_ns nat)
NS_INET=$(lab_ns inet)
NS_VGW=$(lab_ns vgw)
NS_VGW2=$(lab_ns vgw2)
NS_VPC=$(lab_ns vpc)
GW_WG_ADDR=172.16.60.1
GW_LAN_ADDR=172.16.4.1
DOMAIN=lab.internal
TEAM_VM=team-vm
INTERNET_HOST=203.0.113.1        # the internet router's address
VGW2_WAN=192.0.2.130
VGW2_INET=192.0.2.129
PSK1=demo.tunnel.one.psk.0123456789
PSK2=demo.tunnel.two.psk.9876543210
FAILOVER_MAX_S=${FAILOVER_MAX_S:-5}

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
  ping:iputils-ping dnsmasq:dnsmasq-base busybox:busybox dig:bind9-dnsutils
swan_ensure
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
DEMO_START=$SECONDS

# ---------------------------------------------------------------- helpers ----
show_logs() {
  local f
  for f in "$LOGS"/*.log "$STATE"/charon-*/charon.log; do
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
      tail -n 20 "$LOGS/ipieced.log" >&2
      rc=1
    fi
    down
  fi
  exit $rc
}

FAILS=()
fail() {
  log "FAIL: $*"
  FAILS+=("$*")
}

# status_json : `wgctl status --json` of the gateway
status_json() { nsx "$NS_GW" "${WGCTL[@]}" status --json 2>/dev/null; }

# tunnel_field NAME FIELD : a tunnel's field from the status (e.g. state)
tunnel_field() {
  status_json | python3 -c '
import json, sys
s = json.load(sys.stdin)
for t in s.get("tunnels", []):
    if t.get("name") == sys.argv[1]:
        v = t.get(sys.argv[2])
        print(json.dumps(v) if isinstance(v, (dict, list, bool)) else v)
' "$1" "$2"
}

tunnel_up() { [ "$(tunnel_field "$1" state)" = up ]; }
carrying() { [ "$(tunnel_field "$1" carrying)" = true ]; }

# expect_ping NS DST WHAT : the ping must get answers
expect_ping() {
  if ping_ok "$1" "$2"; then
    log "  ok    $3"
  else
    fail "$3: no answer"
  fi
}

# expect_no_ping NS DST WHAT : the ping must get no answer at all
expect_no_ping() {
  if nsx "$1" ping -c 3 -i 0.2 -W 1 -q "$2" >/dev/null 2>&1; then
    fail "$3: answered, but must be refused"
  else
    log "  ok    $3: no answer (refused)"
  fi
}

# expect_name NS SERVER NAME ADDRESS : dig NAME at SERVER must give ADDRESS
expect_name() {
  local got
  got=$(nsx "$1" dig +short +time=2 +tries=2 "@$2" "$3" A 2>/dev/null | head -n 1)
  if [ "$got" = "$4" ]; then
    log "  ok    $3 -> $got (asked $2 from ${1#"$NS_PREFIX"})"
  else
    fail "$3 at $2 from ${1#"$NS_PREFIX"}: got '${got:-nothing}', want $4"
  fi
}

# --------------------------------------------------------------- topology ---
# add_second_vgw : the second VGW (its own link on the internet router, a
# link to the VPC host). The VPC host answers through the VGW a request came
# from: packets from vgw2 are marked, fwmark_reflect puts the mark on the
# kernel's replies, a rule routes them back to vgw2.
add_second_vgw() {
  ns_create "$NS_VGW2"
  ns_forwarding "$NS_VGW2"
  veth "$NS_VGW2" wan "$NS_INET" i-vgw2
  ns_addr "$NS_INET" i-vgw2 "$VGW2_INET/25"
  ns_addr "$NS_VGW2" wan "$VGW2_WAN/25"
  ns_route "$NS_VGW2" default via "$VGW2_INET"
  veth "$NS_VGW2" vpc0 "$NS_VPC" eth1
  ns_addr "$NS_VGW2" vpc0 10.0.255.1/30
  ns_addr "$NS_VPC" eth1 10.0.255.2/30
  ns_route "$NS_VGW2" "$LAB_VPC_CIDR" via 10.0.255.2
  nsx "$NS_VPC" sysctl -qw net.ipv4.fwmark_reflect=1
  nsx "$NS_VPC" nft -f - <<'NFT'
table ip demo-vpc {
  chain pre {
    type filter hook prerouting priority mangle; policy accept;
    iifname "eth1" meta mark set 2
  }
}
NFT
  ip -n "$NS_VPC" rule add fwmark 2 lookup 102 pref 100
  ip -n "$NS_VPC" route add default via 10.0.255.1 dev eth1 table 102
}

# vgw_start NS LABEL OUTSIDE PSK INSIDE : charon as an AWS VGW in NS, the
# LAN and the laptops routed into its tunnel, INSIDE (its inside address,
# network + 1) on ipsec0 so its kernel answers ipieced's probes
vgw_start() {
  local ns=$1 label=$2 outside=$3 psk=$4 inside=$5 d=$STATE/charon-$2
  charon_start "$ns" "$d" "$RUN/charon-$label.pid" "$LOGS/charon-$label.out" \
    "$LAB_LAN_CIDR" "$LAB_WG_CIDR"
  swan_conf_vgw "$d/swanctl.conf" "$outside" "$LAB_ENDPOINT" "$psk"
  swan "$d" --load-all --noprompt --file "$d/swanctl.conf" >"$LOGS/swanctl-load-$label.log" 2>&1 ||
    { cat "$LOGS/swanctl-load-$label.log"; die "swanctl --load-all ($label) failed"; }
  ip -n "$ns" addr add "$inside" dev "$SWAN_TUN"
}

# write_psk NAME PSK : the tunnel's PSK file, 0600 from creation on
write_psk() {
  mkdir -p "$STATE/ipsec"
  chmod 700 "$STATE/ipsec"
  (umask 077 && printf '%s\n' "$2" >"$STATE/ipsec/$1.psk")
}

# -------------------------------------------------------------------- up -----
down
rm -rf "$STATE"
mkdir -p "$RUN" "$LOGS" "$STATE/state"
# traversable but not listable: dnsmasq, once it has dropped to its own
# user, rereads its hosts file in state/ on SIGHUP (keys stay 0600)
chmod 711 "$STATE"
GW_PID=
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

section "topology (namespaces ${NS_PREFIX}*)"
lab_topology 1
lab_add_vgw
add_second_vgw
# the team VM starts without an address: it asks DHCP
ip -n "$NS_LAN" addr flush dev eth0
ip -n "$NS_LAN" route flush dev eth0 2>/dev/null || true
ip netns list | awk -v p="$NS_PREFIX" 'index($1, p) == 1 { printf "  %s\n", $1 }'

section "AWS side: two strongSwan VGW stand-ins in front of the VPC host $LAB_VPC_HOST"
vgw_start "$NS_VGW" vgw1 "$LAB_VGW_WAN" "$PSK1" 169.254.10.1/30
vgw_start "$NS_VGW2" vgw2 "$VGW2_WAN" "$PSK2" 169.254.11.1/30
log "tunnel 1: $LAB_VGW_WAN (inside 169.254.10.1), tunnel 2: $VGW2_WAN (inside 169.254.11.1)"

section "gateway config (wgctl init, then [firewall], [lan], [dns], two tunnels)"
"${WGCTL[@]}" init --endpoint "$LAB_ENDPOINT" >/dev/null
[ -s "$CFG" ] || die "wgctl init wrote no $CFG"
config_set_gateway "$CFG" control_socket "$CTL_SOCK"
config_set_gateway "$CFG" tun_name "$IF_GW"
write_psk aws-1 "$PSK1"
write_psk aws-2 "$PSK2"
cat >>"$CFG" <<EOF

# --- added by scripts/demo.sh ---
[firewall]
wan_interface = "eth0"
lan_interface = "lan0"

[lan]
interface = "lan0"
address = "$GW_LAN_ADDR/24"

[lan.dhcp]
range = ["172.16.4.100", "172.16.4.150"]
lease_time = 3600

[dns]
domain = "$DOMAIN"

# The two tunnels of one AWS Site-to-Site VPN connection (AWS's own
# proposals; each VGW answers probes on its inside address).
[[ipsec.tunnels]]
name = "aws-1"
remote_address = "$LAB_VGW_WAN"
psk_file = "ipsec/aws-1.psk"
inside_cidr = "169.254.10.0/30"
priority = 100

[[ipsec.tunnels]]
name = "aws-2"
remote_address = "$VGW2_WAN"
psk_file = "ipsec/aws-2.psk"
inside_cidr = "169.254.11.0/30"
priority = 200
EOF
"${WGCTL[@]}" check
sed -n '/^# --- added by scripts\/demo.sh ---$/,$p' "$CFG" | grep -Ev '^(#|$)' | sed 's/^/  /'

section "start ipieced in $NS_GW"
spawn "$RUN/ipieced.pid" "$LOGS/ipieced.log" "$NS_GW" "$BIN/ipieced" --config "$CFG" \
  --state-dir "$STATE/state"
GW_PID=$(cat "$RUN/ipieced.pid")
wait_for_pid "$GW_PID" 20 test -S "$CTL_SOCK" ||
  die "ipieced (pid $GW_PID) did not open its control socket $CTL_SOCK"
wait_for_pid "$GW_PID" 10 ip -n "$NS_GW" link show "$IF_GW" >/dev/null 2>&1 ||
  die "ipieced did not create TUN $IF_GW"
log "ipieced pid $GW_PID, control socket $CTL_SOCK"

section "tunnels up"
for t in aws-1 aws-2; do
  if wait_for_pid "$GW_PID" 40 tunnel_up "$t"; then
    log "  ok    $t up"
  else
    die "tunnel $t did not come up (state: $(tunnel_field "$t" state); last error: $(tunnel_field "$t" last_error))"
  fi
done
wait_for 15 carrying aws-1 || fail "aws-1 (priority 100) does not carry outbound traffic"
log "aws-1 carries the outbound traffic (priority 100); aws-2 stands by"

section "the team VM on the LAN asks DHCP (busybox udhcpc, hostname $TEAM_VM)"
cat >"$STATE/udhcpc.sh" <<EOF
#!/bin/sh
case "\$1" in
  bound|renew)
    ip addr flush dev "\$interface"
    ip addr add "\$ip/\$mask" dev "\$interface"
    [ -n "\$router" ] && ip route replace default via "\${router%% *}"
    printf 'ip=%s\nrouter=%s\ndns=%s\ndomain=%s\n' "\$ip" "\$router" "\$dns" "\$domain" >"$STATE/lease.env"
    ;;
esac
exit 0
EOF
chmod 755 "$STATE/udhcpc.sh"
nsx "$NS_LAN" timeout 40 busybox udhcpc -i eth0 -f -q -n -t 6 -T 2 -s "$STATE/udhcpc.sh" \
  -x "hostname:$TEAM_VM" >"$LOGS/udhcpc.log" 2>&1 || { cat "$LOGS/udhcpc.log"; die "no DHCP lease for the team VM"; }
VM_ADDR=$(sed -n 's/^ip=//p' "$STATE/lease.env")
VM_ROUTER=$(sed -n 's/^router=//p' "$STATE/lease.env")
VM_DNS=$(sed -n 's/^dns=//p' "$STATE/lease.env")
log "lease: $VM_ADDR, router $VM_ROUTER, DNS $VM_DNS, domain $(sed -n 's/^domain=//p' "$STATE/lease.env")"
[ "$VM_ROUTER" = "$GW_LAN_ADDR" ] || fail "DHCP router is '$VM_ROUTER', not the gateway $GW_LAN_ADDR"
[ "${VM_DNS%% *}" = "$GW_LAN_ADDR" ] || fail "DHCP DNS is '$VM_DNS', not the gateway $GW_LAN_ADDR"
nsx "$NS_GW" "${WGCTL[@]}" leases | sed 's/^/  /' || fail "wgctl leases"

section "a laptop (wgctl add-peer laptop) with wireguard-go on the internet"
nsx "$NS_GW" "${WGCTL[@]}" add-peer laptop --output "$STATE/laptop.conf" >"$LOGS/add-peer.log"
[ -s "$STATE/laptop.conf" ] || die "wgctl add-peer wrote no $STATE/laptop.conf"
log "client config $STATE/laptop.conf (mode $(stat -c %a "$STATE/laptop.conf")), keys hidden:"
sed -E 's/^([[:space:]]*(PrivateKey|PresharedKey)[[:space:]]*=).*/\1 (hidden)/I; s/^/  /' "$STATE/laptop.conf"
wg_client_from_conf "$NS_LAP" "$IF_LAP" "$STATE/laptop.conf" "$RUN/laptop.pid" "$LOGS/wireguard-go-laptop.log"
LAP_ADDR=$(conf_get "$STATE/laptop.conf" Address | head -n 1)
LAP_ADDR=${LAP_ADDR%/*}
# the first packet starts the handshake: allow a few seconds for it
wait_for 15 nsx "$NS_LAP" ping -c 1 -W 1 -q "$GW_WG_ADDR" >/dev/null 2>&1 ||
  fail "laptop -> gateway $GW_WG_ADDR: no handshake"

section "ping matrix"
expect_ping "$NS_LAP" "$VM_ADDR" "laptop ($LAP_ADDR) -> team VM $VM_ADDR (WireGuard, LAN)"
expect_ping "$NS_LAP" "$LAB_VPC_HOST" "laptop -> VPC host $LAB_VPC_HOST (WireGuard, then ESP in userspace)"
expect_ping "$NS_LAN" "$LAB_VPC_HOST" "team VM -> VPC host $LAB_VPC_HOST (ESP)"
expect_ping "$NS_LAN" "$INTERNET_HOST" "team VM -> internet host $INTERNET_HOST (NAT)"
# a host on the shared office network (the WAN side) routes the LAN at the
# gateway: the firewall drops it (the kernel would forward it otherwise)
ip -n "$NS_NAT" route replace "$LAB_LAN_CIDR" via "$LAB_GW_WAN"
expect_no_ping "$NS_NAT" "$VM_ADDR" "office network host 192.168.1.1 (WAN) -> team VM $VM_ADDR"
ip -n "$NS_NAT" route del "$LAB_LAN_CIDR" via "$LAB_GW_WAN" 2>/dev/null || true

section "names (dnsmasq under ipieced)"
expect_name "$NS_LAP" "$GW_WG_ADDR" "$TEAM_VM.$DOMAIN" "$VM_ADDR"
expect_name "$NS_LAN" "${VM_DNS%% *}" "laptop.vpn.$DOMAIN" "$LAP_ADDR"
# the office network (WAN side) gets no DNS from the gateway
if nsx "$NS_NAT" dig +short +time=1 +tries=1 "@$LAB_GW_WAN" "$TEAM_VM.$DOMAIN" >/dev/null 2>&1; then
  fail "the gateway answers DNS on its WAN address $LAB_GW_WAN"
else
  log "  ok    no DNS answer on the WAN address $LAB_GW_WAN (from the office network)"
fi

section "wgctl status"
nsx "$NS_GW" "${WGCTL[@]}" status || fail "wgctl status"

section "failover: kill the active VGW (aws-1) while the team VM pings the VPC host every 100 ms"
PING_LOG=$LOGS/failover-ping.log
nsx "$NS_LAN" ping -D -n -i 0.1 -W 1 -c 200 "$LAB_VPC_HOST" >"$PING_LOG" 2>&1 &
PING_PID=$!
sleep 2
KILL_AT=$(date +%s.%N)
VGW1_PID=$(cat "$RUN/charon-vgw1.pid")
kill -KILL "$VGW1_PID"
wait "$VGW1_PID" 2>/dev/null || true # reaped here: no "Killed" notice later
log "charon of aws-1 killed (SIGKILL) at $(date -d "@$KILL_AT" +%T.%N | cut -c1-12)"
wait "$PING_PID" || true
# the first reply after the kill that follows a lost ping, and how long after
# the kill it came
read -r BACK_AFTER LOST < <(awk -v kill="$KILL_AT" '
  /icmp_seq=/ {
    t = substr($1, 2, length($1) - 2) + 0
    seq = $0; sub(/.*icmp_seq=/, "", seq); sub(/ .*/, "", seq); seq += 0
    if (t < kill) { last = seq; next }
    if (seq > last + 1 && !done) { printf "%.1f %d\n", t - kill, seq - last - 1; done = 1 }
    if (!done) last = seq
  }
  END { if (!done) print "none 0" }' "$PING_LOG")
if [ "$BACK_AFTER" = none ]; then
  if grep -q "icmp_seq=" "$PING_LOG"; then
    fail "failover: no ping was lost (was aws-1 carrying?)"
  else
    fail "failover: no reply at all"
  fi
else
  log "traffic back through aws-2 ${BACK_AFTER} s after aws-1 died ($LOST pings lost)"
  if awk -v s="$BACK_AFTER" -v m="$FAILOVER_MAX_S" 'BEGIN { exit !(s <= m) }'; then
    log "  ok    within ${FAILOVER_MAX_S} s"
  else
    fail "failover took ${BACK_AFTER} s (more than ${FAILOVER_MAX_S} s)"
  fi
fi
carrying aws-2 || fail "aws-2 does not carry outbound traffic after the failover"
expect_ping "$NS_LAP" "$LAB_VPC_HOST" "laptop -> VPC host through aws-2"
nsx "$NS_GW" "${WGCTL[@]}" status | sed -n '/tunnel aws-1/,/^$/p' | head -n 12

kill -0 "$GW_PID" 2>/dev/null || die "ipieced exited during the demo"
if [ "${#FAILS[@]}" -ne 0 ]; then
  printf '  %s\n' "${FAILS[@]}" >&2
  die "demo finished with ${#FAILS[@]} failure(s)"
fi
section "demo OK in $((SECONDS - DEMO_START)) s (after the build)"
