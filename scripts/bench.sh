#!/usr/bin/env bash
# bench.sh - throughput and CPU cost of the gateway, in network namespaces
# (the demo's topology with several laptops, plus an "AWS VGW" and a VPC
# host on the internet side). Not run in CI.
#
# One run, one topology, one table. The cases (CASES, run in this order):
#
#   wg       LAPTOPS laptops (wireguard-go) -> the LAN host, through each
#            WireGuard gateway of IMPLS in turn: ipieced (release build),
#            wireguard-go, boringtun-cli (configured with `wg set` from the
#            same keys and peers).
#   esp      the LAN host -> the VPC host over one IPsec tunnel to a
#            strongSwan VGW (charon with kernel-libipsec, AWS's proposals,
#            route-based 0.0.0.0/0 selectors), first with ipieced as the
#            customer gateway, then with strongSwan (charon, kernel-libipsec)
#            as the customer gateway in the same namespace against the same
#            VGW.
#   e2e      LAPTOPS laptops (wireguard-go) -> the VPC host through ipieced
#            (WireGuard in, ESP out inside the daemon) and the strongSwan VGW.
#            With HEALTH=1, the ipieced row is measured a second time with
#            tunnel health probes (inside_cidr: an ICMP echo to the VGW's
#            inside address every second) and the Prometheus listener on,
#            scraped every second: "ipieced (probes+metrics)", side by side.
#   ceiling  the LAN host -> the VPC host through ipieced, with a second
#            ipieced as the VGW (start_action = "wait"): ipiece at both ends,
#            no libipsec in the path.
#
# The IPsec cases run with ESP_PROPOSAL, and again with ESP_CBC_PROPOSAL when
# ESP_CBC=1; the customer gateway offers exactly one IKE and one ESP
# proposal. Every case: a fresh gateway process (and fresh laptops), then
# RUNS runs of iperf3 -t DUR at the same time from every client (one per
# laptop, -P 1; the LAN host: one client, -P LAN_STREAMS). The table gives the
# median over the runs of the summed throughput, of the gateway process's CPU
# time per GB carried (utime+stime from /proc/PID/stat: ipieced,
# wireguard-go, boringtun-cli or charon; libipsec runs inside charon), and of
# the VGW process's; and the drops in the gateway's and the VGW's
# namespaces, summed over the runs: UDP receive buffers (UdpRcvbufErrors, as
# nstat shows it) and links (rx+tx dropped of every interface; a TUN's tx
# drops are packets its daemon did not read in time; per link in the log).
# After the table: ipieced's own counters (wgctl status) per case.
#
#   scripts/bench.sh
#   CASES=esp RUNS=1 DUR=5 scripts/bench.sh
#
# Env: CASES="wg esp e2e ceiling" (any subset; run and listed in this order),
#   LAPTOPS=3 (1..16), DUR=10 (seconds per iperf3 run), RUNS=3,
#   IMPLS="ipieced wireguard-go boringtun" (the gateways of the wg case),
#   LAN_STREAMS=1 (iperf3 -P of the LAN host's client, 1..16),
#   REVERSE=0 (1: the other way: LAN/VPC host -> laptops/LAN host, iperf3 -R),
#   TUN_QLEN= (diagnosis: set the txqueuelen of ipieced's TUNs after start;
#   default: leave ipieced's, the kernel's 500),
#   IKE_PROPOSAL=aes128gcm16-prfsha256-ecp256, ESP_PROPOSAL=aes128gcm16-ecp256,
#   ESP_CBC=0 (1: also ESP_CBC_PROPOSAL=aes128-sha1-modp2048),
#   HEALTH=0 (1: the esp case's ipieced also with probes and metrics on),
#   IPBENCH_DIR=/tmp/ipiece-bench (state, logs, iperf3 JSON, charon logs),
#   CARGO_TARGET_DIR=/var/cache/ipiece-ci/target (ipieced + wgctl, release;
#   IPIECE_BIN_DIR=DIR uses DIR/ipieced and DIR/wgctl instead of building),
#   BORINGTUN=/var/cache/ipiece-bench/boringtun/bin/boringtun-cli (installed
#   with `cargo install boringtun-cli --locked` if absent).
# Namespaces are all called ipbench-*; nothing is configured in the root
# namespace; only processes the script started are stopped, by PID;
# everything is torn down on exit. Refuses to run with CI=true.
set -euo pipefail

LOG_TAG=bench
# shellcheck source=scripts/lib/netns.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/netns.sh"
# shellcheck source=scripts/lib/strongswan.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/strongswan.sh"

CASES=${CASES:-wg esp e2e ceiling}
LAPTOPS=${LAPTOPS:-3}
DUR=${DUR:-10}
RUNS=${RUNS:-3}
IMPLS=${IMPLS:-ipieced wireguard-go boringtun}
LAN_STREAMS=${LAN_STREAMS:-1}
REVERSE=${REVERSE:-0}
TUN_QLEN=${TUN_QLEN:-}
IKE_PROPOSAL=${IKE_PROPOSAL:-aes128gcm16-prfsha256-ecp256}
ESP_PROPOSAL=${ESP_PROPOSAL:-aes128gcm16-ecp256}
ESP_CBC=${ESP_CBC:-0}
ESP_CBC_PROPOSAL=${ESP_CBC_PROPOSAL:-aes128-sha1-modp2048}
HEALTH=${HEALTH:-0}
INSIDE_CIDR=169.254.10.0/30 # the tunnel's inside addresses (HEALTH=1)
VGW_INSIDE=169.254.10.1/30
METRICS_LISTEN=127.0.0.1:9586
NS_PREFIX=ipbench-
STATE=${IPBENCH_DIR:-/tmp/ipiece-bench}
RUN=$STATE/run
LOGS=$STATE/logs
CFG=$STATE/gateway.toml
CFG_BASE=$STATE/gateway.base.toml # no tunnels: the wg case
CTL_SOCK=$STATE/control.sock
VGW_DIR=$STATE/vgw-ipieced # the second ipieced (ceiling)
VGW_CFG=$VGW_DIR/gateway.toml
VGW_CTL_SOCK=$VGW_DIR/control.sock
SWAN_VGW_DIR=$STATE/charon-vgw
SWAN_CGW_DIR=$STATE/charon-cgw
IF_GW=ipbgw0 # WireGuard interface names are host-wide (UAPI socket)
IF_VGW=ipbvgw0
VGW_WG_ADDR=172.16.61.1/24 # the second ipieced's own WireGuard subnet (unused)
TUNNEL=aws-1               # the customer gateway's tunnel, in ipieced's config
PSK=bench.only.psk.0123456789
BORINGTUN_ROOT=/var/cache/ipiece-bench/boringtun
BORINGTUN=${BORINGTUN:-$BORINGTUN_ROOT/bin/boringtun-cli}
NS_GW=$(lab_ns gw)
NS_LAN=$(lab_ns lan)
NS_VGW=$(lab_ns vgw)
NS_VPC=$(lab_ns vpc)
IPERF_PORT0=5200 # client I (laptop I; the LAN host is 1) uses port 5200+I

case "${1:-}" in
  -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  '') ;;
  *) die "no arguments expected (see --help)" ;;
esac
[ "${CI:-}" != true ] || die "the benchmark does not run in CI"
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
lab_lock ipiece-bench
for v in LAPTOPS DUR RUNS LAN_STREAMS ${TUN_QLEN:+TUN_QLEN}; do
  case ${!v} in '' | *[!0-9]*) die "$v must be a number" ;; esac
done
((LAPTOPS >= 1 && LAPTOPS <= 16)) || die "LAPTOPS must be 1..16"
((LAN_STREAMS >= 1 && LAN_STREAMS <= 16)) || die "LAN_STREAMS must be 1..16"
((DUR >= 1 && RUNS >= 1)) || die "DUR and RUNS must be >= 1"
case $REVERSE in 0 | 1) ;; *) die "REVERSE must be 0 or 1" ;; esac
case $ESP_CBC in 0 | 1) ;; *) die "ESP_CBC must be 0 or 1" ;; esac
case $HEALTH in 0 | 1) ;; *) die "HEALTH must be 0 or 1" ;; esac
for impl in $IMPLS; do
  case $impl in ipieced | wireguard-go | boringtun) ;; *) die "unknown implementation '$impl' in IMPLS" ;; esac
done
[ -n "${CASES// /}" ] || die "CASES is empty"
for c in $CASES; do
  case $c in wg | esp | e2e | ceiling) ;; *) die "unknown case '$c' in CASES (wg, esp, e2e, ceiling)" ;; esac
done
for v in IKE_PROPOSAL ESP_PROPOSAL ESP_CBC_PROPOSAL; do
  case ${!v} in '' | *[!a-z0-9-]*) die "$v must be one swanctl proposal ([a-z0-9-])" ;; esac
done
has_case() { case " $CASES " in *" $1 "*) return 0 ;; esac; return 1; }
ESPS=("$ESP_PROPOSAL")
if [ "$ESP_CBC" = 1 ]; then ESPS+=("$ESP_CBC_PROPOSAL"); fi
IPSEC=0
for c in esp e2e ceiling; do if has_case "$c"; then IPSEC=1; fi; done
SWAN=0
if has_case esp || has_case e2e; then SWAN=1; fi

lap_ns() { lab_ns "laptop$1"; }
lap_if() { echo "ipblap$1"; }

all_wg_ifs() {
  local i
  echo "$IF_GW" "$IF_VGW"
  for ((i = 1; i <= LAPTOPS; i++)); do lap_if "$i"; done
}

down() {
  ns_teardown "$NS_PREFIX" "$RUN"
  # shellcheck disable=SC2046
  wg_sock_remove $(all_wg_ifs)
  rm -f "$CTL_SOCK" "$VGW_CTL_SOCK" "$SWAN_VGW_DIR/charon.vici" "$SWAN_CGW_DIR/charon.vici"
}

# ------------------------------------------------------------ prerequisites --
ensure_commands ip:iproute2 nft:nftables wg:wireguard-tools wireguard-go:wireguard-go \
  ping:iputils-ping iperf3:iperf3 jq:jq getconf:libc-bin
if [ "$SWAN" = 1 ]; then
  swan_ensure
fi
ensure_tun_device
CLK_TCK=$(getconf CLK_TCK)

if [ -n "${IPIECE_BIN_DIR:-}" ]; then
  BIN=$IPIECE_BIN_DIR
else
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/ipiece-ci/target}
  BIN=$CARGO_TARGET_DIR/release
  section "build (cargo build --release --bins, target $CARGO_TARGET_DIR)"
  mkdir -p "$CARGO_TARGET_DIR"
  if ! (cd "$(repo_root)" && cargo build --release --bins) >"$CARGO_TARGET_DIR/bench-build.log" 2>&1 9>&-; then
    tail -n 40 "$CARGO_TARGET_DIR/bench-build.log"
    die "cargo build --release failed"
  fi
  tail -n 1 "$CARGO_TARGET_DIR/bench-build.log"
fi
for b in ipieced wgctl; do [ -x "$BIN/$b" ] || die "$BIN/$b missing"; done
WGCTL=("$BIN/wgctl" --config "$CFG")
VGW_WGCTL=("$BIN/wgctl" --config "$VGW_CFG")

if has_case wg; then
  case " $IMPLS " in
    *" boringtun "*)
      if [ ! -x "$BORINGTUN" ]; then
        section "install boringtun-cli (cargo install, root $BORINGTUN_ROOT)"
        mkdir -p "$BORINGTUN_ROOT"
        cargo install boringtun-cli --locked --root "$BORINGTUN_ROOT" >"$BORINGTUN_ROOT/install.log" 2>&1 9>&- ||
          { tail -n 30 "$BORINGTUN_ROOT/install.log"; die "cargo install boringtun-cli failed"; }
        [ -x "$BORINGTUN" ] || die "$BORINGTUN missing after cargo install"
      fi
      ;;
  esac
fi

# ------------------------------------------------------------------ setup ----
down
rm -rf "$STATE"
mkdir -p "$RUN" "$LOGS"
chmod 700 "$STATE"
on_exit() {
  local rc=$?
  [ $rc -eq 0 ] || log "FAILED (exit $rc); logs in $LOGS"
  down
  exit $rc
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

section "topology: $LAPTOPS laptops$([ "$IPSEC" = 1 ] && echo ", VGW and VPC host"), namespaces ${NS_PREFIX}*"
lab_topology "$LAPTOPS"
if [ "$IPSEC" = 1 ]; then lab_add_vgw; fi

section "gateway config and $LAPTOPS client configs (wgctl)"
"${WGCTL[@]}" init --endpoint "$LAB_ENDPOINT" >"$LOGS/wgctl-init.log" 2>&1 ||
  { cat "$LOGS/wgctl-init.log"; die "wgctl init failed"; }
config_set_gateway "$CFG" control_socket "$CTL_SOCK"
config_set_gateway "$CFG" tun_name "$IF_GW"
for ((i = 1; i <= LAPTOPS; i++)); do
  "${WGCTL[@]}" add-peer "laptop$i" --output "$STATE/laptop$i.conf" >"$LOGS/wgctl-add-peer$i.log" 2>&1 ||
    { cat "$LOGS/wgctl-add-peer$i.log"; die "wgctl add-peer laptop$i failed"; }
done
"${WGCTL[@]}" check
cp -p "$CFG" "$CFG_BASE"
if [ "$HEALTH" = 1 ] && [ "$(config_get "$CFG_BASE" metrics listen)" != "$METRICS_LISTEN" ]; then
  die "HEALTH=1: wgctl init no longer writes [metrics] listen = \"$METRICS_LISTEN\""
fi

# what wireguard-go and boringtun-cli need, from the same config and client files
GW_ADDR=$(config_get "$CFG" wireguard address)
GW_PORT=$(config_get "$CFG" wireguard listen_port)
GW_PORT=${GW_PORT:-51821}
GW_MTU=$(config_get "$CFG" wireguard mtu)
GW_MTU=${GW_MTU:-1420}
GW_KEY=$(config_get "$CFG" wireguard private_key_file)
case $GW_KEY in /*) ;; *) GW_KEY=$(dirname "$CFG")/$GW_KEY ;; esac
if [ -z "$GW_ADDR" ] || [ ! -s "$GW_KEY" ]; then
  die "cannot read wireguard.address / private_key_file from $CFG"
fi
[ "$GW_PORT" = "$LAB_WG_PORT" ] || die "listen_port $GW_PORT: the home router forwards $LAB_WG_PORT"
WG_SET_PEERS=()
for ((i = 1; i <= LAPTOPS; i++)); do
  conf=$STATE/laptop$i.conf
  pub=$(conf_get "$conf" PrivateKey | wg pubkey)
  addr=$(conf_get "$conf" Address | head -n 1)
  addr=${addr%/*}
  WG_SET_PEERS+=(peer "$pub" allowed-ips "$addr/32")
  psk=$(conf_get "$conf" PresharedKey | head -n 1)
  if [ -n "$psk" ]; then
    (umask 077 && printf '%s\n' "$psk" >"$STATE/laptop$i.psk")
    WG_SET_PEERS+=(preshared-key "$STATE/laptop$i.psk")
  fi
done
if has_case e2e; then
  grep -q "$LAB_VPC_CIDR" "$STATE/laptop1.conf" ||
    die "the client configs do not route $LAB_VPC_CIDR (wireguard.remote_prefixes)"
fi

# ipieced as the customer gateway: the base config plus one tunnel to the VGW
write_gw_tunnel() { # write_gw_tunnel ESP_PROPOSAL [health]
  mkdir -p "$STATE/ipsec"
  (umask 077 && printf '%s\n' "$PSK" >"$STATE/ipsec/$TUNNEL.psk")
  {
    if [ "${2:-}" = health ]; then
      cat "$CFG_BASE" # wgctl init's [metrics] listen (checked at the start)
    else
      # the metrics listener off: comment out [metrics] listen
      awk '/^[ \t]*\[/ { t = $0 } t ~ /^\[metrics\]/ && /^[ \t]*listen[ \t]*=/ { $0 = "# " $0 } { print }' "$CFG_BASE"
    fi
    cat <<EOF

[[ipsec.tunnels]]
name = "$TUNNEL"
remote_address = "$LAB_VGW_WAN"
psk_file = "ipsec/$TUNNEL.psk"
ike_proposals = "$IKE_PROPOSAL"
esp_proposals = "$1"
EOF
    if [ "${2:-}" = health ]; then
      printf 'inside_cidr = "%s"\n' "$INSIDE_CIDR"
    fi
  } >"$CFG"
  "${WGCTL[@]}" check >"$LOGS/wgctl-check.log" 2>&1 ||
    { cat "$LOGS/wgctl-check.log"; die "wgctl check refuses the tunnel with $1"; }
}

section "iperf3 servers on $LAB_LAN_HOST$([ "$IPSEC" = 1 ] && echo " and $LAB_VPC_HOST") (ports $((IPERF_PORT0 + 1))..$((IPERF_PORT0 + LAPTOPS)))"
SERVER_NS=("$NS_LAN")
if [ "$IPSEC" = 1 ]; then SERVER_NS+=("$NS_VPC"); fi
for ns in "${SERVER_NS[@]}"; do
  for ((i = 1; i <= LAPTOPS; i++)); do
    spawn "$RUN/iperf3-server-${ns#"$NS_PREFIX"}$i.pid" "$LOGS/iperf3-server-${ns#"$NS_PREFIX"}$i.log" \
      "$ns" iperf3 -s -p $((IPERF_PORT0 + i))
  done
done
for ns in "${SERVER_NS[@]}"; do
  for ((i = 1; i <= LAPTOPS; i++)); do
    wait_for 5 nsx "$ns" sh -c "ss -ltn | grep -q ':$((IPERF_PORT0 + i)) '" ||
      die "iperf3 server on port $((IPERF_PORT0 + i)) in $ns did not start"
  done
done

# ---------------------------------------------------------------- gateways --
gw_pidfile() { echo "$RUN/gateway.pid"; }

gw_wait_tun_gone() {
  wait_for 5 sh -c "! ip -n '$NS_GW' link show '$IF_GW' >/dev/null 2>&1" ||
    die "TUN $IF_GW still present in $NS_GW"
  wg_sock_remove "$IF_GW"
}

# configure a userspace WireGuard device (wireguard-go, boringtun-cli) like
# ipieced configures itself from $CFG
gw_configure_wg() {
  ns_forwarding "$NS_GW"
  ip -n "$NS_GW" addr add "$GW_ADDR" dev "$IF_GW"
  ip -n "$NS_GW" link set "$IF_GW" mtu "$GW_MTU" up
  nsx "$NS_GW" wg set "$IF_GW" private-key "$GW_KEY" listen-port "$GW_PORT" "${WG_SET_PEERS[@]}"
}

# ipieced_start NS CFG CTL_SOCK TUN PIDFILE LOGFILE : start and wait for its
# control socket and TUN
ipieced_start() {
  local ns=$1 cfg=$2 sock=$3 tun=$4 pf=$5 lf=$6
  rm -f "$sock"
  spawn "$pf" "$lf" "$ns" "$BIN/ipieced" --config "$cfg"
  wait_for_pid "$(cat "$pf")" 20 test -S "$sock" ||
    { tail -n 20 "$lf" >&2; die "ipieced ($cfg) did not open $sock"; }
  wait_for_pid "$(cat "$pf")" 10 ip -n "$ns" link show "$tun" >/dev/null 2>&1 ||
    { tail -n 20 "$lf" >&2; die "ipieced ($cfg) did not create $tun"; }
  wait_for_pid "$(cat "$pf")" 5 forwarding_on "$ns" ||
    die "ipieced did not enable net.ipv4.ip_forward in $ns"
  if [ -n "$TUN_QLEN" ]; then ip -n "$ns" link set "$tun" txqueuelen "$TUN_QLEN"; fi
}

forwarding_on() { [ "$(nsx "$1" sysctl -n net.ipv4.ip_forward)" = 1 ]; }

gw_start() { # gw_start IMPL LOGNAME : start the gateway, its PID in GW_PID
  local impl=$1 pf lf
  pf=$(gw_pidfile) lf=$LOGS/gateway-$2.log
  gw_wait_tun_gone
  case $impl in
    ipieced) ipieced_start "$NS_GW" "$CFG" "$CTL_SOCK" "$IF_GW" "$pf" "$lf" ;;
    wireguard-go)
      wg_go_start "$NS_GW" "$IF_GW" "$pf" "$lf"
      gw_configure_wg
      ;;
    boringtun)
      # --disable-drop-privileges: otherwise it exits with DropPrivileges("NULL from getlogin")
      spawn "$pf" "$lf" "$NS_GW" "$BORINGTUN" -f --disable-drop-privileges "$IF_GW"
      wait_for_pid "$(cat "$pf")" 10 test -S "$(wg_sock "$IF_GW")" ||
        { tail -n 20 "$lf" >&2; die "boringtun-cli did not open $(wg_sock "$IF_GW")"; }
      wait_for 5 ip -n "$NS_GW" link show "$IF_GW" >/dev/null 2>&1 || die "boringtun-cli did not create $IF_GW"
      gw_configure_wg
      ;;
  esac
  GW_PID=$(cat "$pf")
  GW_LOG=$lf
}

gw_stop() {
  kill_pidfile "$(gw_pidfile)"
  ip -n "$NS_GW" link del "$IF_GW" 2>/dev/null || true
  wg_sock_remove "$IF_GW"
}

# tunnel_up WGCTL_CONFIG : ipieced reports tunnel $1's first tunnel up
tunnel_up() {
  [ "$("$BIN/wgctl" --config "$1" status --json 2>/dev/null | jq -r '.tunnels[0].state // empty')" = up ]
}

# wait_tunnel PID WGCTL_CONFIG LOGFILE : bounded wait for the tunnel
wait_tunnel() {
  if ! wait_for_pid "$1" 30 tunnel_up "$2"; then
    "$BIN/wgctl" --config "$2" status >&2 || true
    tail -n 20 "$3" >&2
    [ -f "$SWAN_VGW_DIR/charon.log" ] && tail -n 20 "$SWAN_VGW_DIR/charon.log" >&2
    die "the IPsec tunnel of $2 did not come up within 30 s"
  fi
}

# reach NS DST : bounded wait for one ping through
reach() {
  wait_for 15 nsx "$1" ping -c 1 -W 1 -q "$2" >/dev/null 2>&1 ||
    die "${1#"$NS_PREFIX"} cannot reach $2"
}

# laptops are restarted for every gateway, so each starts with a fresh handshake
laptops_up() { # laptops_up DST : and wait until each one reaches DST
  local i
  for ((i = 1; i <= LAPTOPS; i++)); do
    wg_client_from_conf "$(lap_ns "$i")" "$(lap_if "$i")" "$STATE/laptop$i.conf" \
      "$RUN/laptop$i.pid" "$LOGS/wireguard-go-laptop$i.log"
  done
  for ((i = 1; i <= LAPTOPS; i++)); do reach "$(lap_ns "$i")" "$1"; done
}

laptops_down() {
  local i
  for ((i = 1; i <= LAPTOPS; i++)); do
    kill_pidfile "$RUN/laptop$i.pid"
    wg_sock_remove "$(lap_if "$i")"
  done
}

laptop_clients() { # laptop_clients DST : the client list of the laptops
  local i
  CLIENTS=()
  for ((i = 1; i <= LAPTOPS; i++)); do CLIENTS+=("$(lap_ns "$i") $1 $((IPERF_PORT0 + i)) 1"); done
}

# the strongSwan VGW (esp, e2e)
vgw_charon_start() {
  charon_start "$NS_VGW" "$SWAN_VGW_DIR" "$RUN/charon-vgw.pid" "$LOGS/charon-vgw.out" \
    "$LAB_LAN_CIDR" "$LAB_WG_CIDR"
  swan_conf_vgw "$SWAN_VGW_DIR/swanctl.conf" "$LAB_VGW_WAN" "$LAB_ENDPOINT" "$PSK"
  swan "$SWAN_VGW_DIR" --load-all --noprompt --file "$SWAN_VGW_DIR/swanctl.conf" >"$LOGS/swanctl-load-vgw.log" 2>&1 ||
    { cat "$LOGS/swanctl-load-vgw.log"; die "swanctl --load-all (VGW) failed"; }
  VGW_PID=$(cat "$RUN/charon-vgw.pid")
  # the VGW's inside address: its kernel answers the probes (HEALTH=1)
  ip -n "$NS_VGW" addr add "$VGW_INSIDE" dev "$SWAN_TUN"
}

# scraper_start / scraper_stop : GET /metrics every second from the
# gateway's namespace while a case runs (HEALTH=1), bounded in count
scraper_start() {
  local n=$(((DUR + 5) * RUNS + 120))
  # shellcheck disable=SC2016 # the inner shell's variables
  spawn "$RUN/scraper.pid" "$LOGS/scraper.log" "$NS_GW" sh -c '
    i=0; ok=0
    while [ $i -lt "$1" ]; do
      curl -fsS -o /dev/null --max-time 2 "http://$2/metrics" && ok=$((ok + 1))
      i=$((i + 1)); echo "scrapes $i ok $ok"; sleep 1
    done' sh "$n" "$METRICS_LISTEN"
}
scraper_stop() {
  kill_pidfile "$RUN/scraper.pid"
  echo "  scrapes of /metrics during the case: $(tail -n 1 "$LOGS/scraper.log" 2>/dev/null)" >>"$NOTES"
}

# strongSwan as the customer gateway (esp), in the gateway's namespace
cgw_charon_start() { # cgw_charon_start ESP_PROPOSAL
  gw_wait_tun_gone
  # ipieced leaves its firewall in place when it stops (nothing forwards
  # unfiltered): strongSwan as the customer gateway runs without it
  nsx "$NS_GW" nft delete table inet ipiece 2>/dev/null || true
  ns_forwarding "$NS_GW"
  charon_start "$NS_GW" "$SWAN_CGW_DIR" "$(gw_pidfile)" "$LOGS/charon-cgw.out" "$LAB_VPC_CIDR"
  GW_PID=$(cat "$(gw_pidfile)")
  swan_conf_cgw "$SWAN_CGW_DIR/swanctl.conf" "$LAB_GW_WAN" "$LAB_ENDPOINT" "$LAB_VGW_WAN" "$PSK" \
    "$IKE_PROPOSAL" "$1"
  swan "$SWAN_CGW_DIR" --load-all --noprompt --file "$SWAN_CGW_DIR/swanctl.conf" >"$LOGS/swanctl-load-cgw.log" 2>&1 ||
    { cat "$LOGS/swanctl-load-cgw.log"; die "swanctl --load-all (customer gateway) failed"; }
  swan "$SWAN_CGW_DIR" --initiate --child cgw --timeout 25 >"$LOGS/swanctl-initiate-cgw.log" 2>&1 ||
    { tail -n 20 "$LOGS/swanctl-initiate-cgw.log" "$SWAN_VGW_DIR/charon.log"; die "strongSwan customer gateway: tunnel not up"; }
  swan "$SWAN_CGW_DIR" --list-sas >"$LOGS/swanctl-list-sas-cgw.log" 2>&1 || true
}

# the second ipieced as the VGW (ceiling): the VPC is its LAN, the customer
# gateway's LAN and WireGuard subnet its remote prefixes, one tunnel that
# waits for the customer gateway (known by its public address).
vgw_ipieced_start() {
  mkdir -p "$VGW_DIR/ipsec"
  chmod 700 "$VGW_DIR"
  (umask 077 && wg genkey >"$VGW_DIR/wg.key" && printf '%s\n' "$PSK" >"$VGW_DIR/ipsec/cgw.psk")
  local esps
  esps=$(printf '%s\n' "${ESPS[@]}" | paste -sd, -)
  cat >"$VGW_CFG" <<EOF
# the VGW of bench.sh's ceiling case: a second ipieced
[gateway]
name = "bench-vgw"
public_endpoint = "$LAB_VGW_WAN"
lan_prefixes = ["$LAB_VPC_CIDR"]
control_socket = "$VGW_CTL_SOCK"
tun_name = "$IF_VGW"

[wireguard]
address = "$VGW_WG_ADDR"
private_key_file = "wg.key"
remote_prefixes = ["$LAB_LAN_CIDR", "$LAB_WG_CIDR"]

[[ipsec.tunnels]]
name = "cgw"
remote_address = "$LAB_ENDPOINT"
psk_file = "ipsec/cgw.psk"
ike_proposals = "$IKE_PROPOSAL"
esp_proposals = "$esps"
start_action = "wait"
EOF
  "${VGW_WGCTL[@]}" check >"$LOGS/wgctl-check-vgw.log" 2>&1 ||
    { cat "$LOGS/wgctl-check-vgw.log"; die "wgctl check refuses the VGW config"; }
  wait_for 5 sh -c "! ip -n '$NS_VGW' link show '$IF_VGW' >/dev/null 2>&1" || die "TUN $IF_VGW still present"
  wg_sock_remove "$IF_VGW"
  ipieced_start "$NS_VGW" "$VGW_CFG" "$VGW_CTL_SOCK" "$IF_VGW" "$RUN/vgw-ipieced.pid" "$LOGS/vgw-ipieced.log"
  VGW_PID=$(cat "$RUN/vgw-ipieced.pid")
}

vgw_ipieced_stop() {
  kill_pidfile "$RUN/vgw-ipieced.pid"
  ip -n "$NS_VGW" link del "$IF_VGW" 2>/dev/null || true
  wg_sock_remove "$IF_VGW"
}

# ------------------------------------------------------------- measuring --
median() { # median PRINTF_FORMAT < numbers, one a line
  sort -g | awk -v fmt="$1\n" '{ a[NR] = $1 }
    END { if (NR == 0) print "n/a"; else printf fmt, (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# udp_rcvbuf_errors NS : Udp RcvbufErrors of NS (/proc/net/snmp, what nstat reads)
udp_rcvbuf_errors() {
  # shellcheck disable=SC2016 # awk's own fields
  nsx "$1" awk '$1 == "Udp:" { if (!c) { for (i = 2; i <= NF; i++) if ($i == "RcvbufErrors") c = i; next }
    print $c; exit }' /proc/net/snmp
}

# link_drops NS : "IFNAME RX_DROPPED TX_DROPPED" for every link of NS (a TUN's
# tx_dropped: packets the kernel routed to it that its daemon did not read
# in time)
link_drops() {
  ip -n "$1" -s -j link show | jq -r '.[] | "\(.ifname) \(.stats64.rx.dropped // 0) \(.stats64.tx.dropped // 0)"'
}

# drops_delta BEFORE_FILE AFTER_FILE : "TOTAL DETAIL", DETAIL like
# "ipbgw0:tx+12,eth0:rx+3" (the links whose counters grew)
drops_delta() {
  awk 'NR == FNR { rx[$1] = $2; tx[$1] = $3; next }
    { drx = $2 - rx[$1]; dtx = $3 - tx[$1]; t += drx + dtx
      if (drx > 0) d = d (d ? "," : "") $1 ":rx+" drx
      if (dtx > 0) d = d (d ? "," : "") $1 ":tx+" dtx }
    END { printf "%d %s\n", t, (d ? d : "-") }' "$1" "$2"
}

cpu_per_gb() { # cpu_per_gb TICKS BYTES
  awk -v t="$1" -v hz="$CLK_TCK" -v by="$2" 'BEGIN { if (by > 0) printf "%.2f", (t / hz) / (by / 1e9); else print "inf" }'
}

ROWS=$STATE/rows # one TSV file per case
mkdir -p "$ROWS"
NOTES=$STATE/notes.txt
: >"$NOTES"

# measure CASE GATEWAY VGW TRAFFIC ESP [VGW_NS] : RUNS runs of the clients
# in CLIENTS ("NS DST PORT PARALLEL" each) at the same time, the gateway
# process GW_PID (and the VGW process VGW_PID when VGW_NS is given); appends
# the row to $ROWS/CASE.tsv
measure() {
  local case=$1 gwname=$2 vgwname=$3 traffic=$4 esp=$5 vgwns=${6:-} key r c i json cns cdst cport cpar
  local jsons pids ok t0 t1 v0 v1 e0 e1 f0 f1 bytes bps retr rflag=()
  local mbits=() cpus=() vcpus=() mbit_runs="" drops_gw=0 drops_vgw=0 ld_gw=0 ld_vgw=0 lg lv
  local snap=$STATE/links
  [ "$REVERSE" = 1 ] && rflag=(-R)
  key=$(printf '%s-%s-%s' "$case" "$gwname" "$esp" | tr -c 'A-Za-z0-9.\n-' '_')
  section "$case: $gwname, VGW $vgwname, $traffic, ESP $esp: $RUNS runs x $DUR s"
  for ((r = 1; r <= RUNS; r++)); do
    pids=() jsons=()
    e0=$(udp_rcvbuf_errors "$NS_GW")
    f0=0 v0=0
    link_drops "$NS_GW" >"$snap.gw0"
    if [ -n "$vgwns" ]; then
      f0=$(udp_rcvbuf_errors "$vgwns") v0=$(proc_cpu_ticks "$VGW_PID")
      link_drops "$vgwns" >"$snap.vgw0"
    fi
    t0=$(proc_cpu_ticks "$GW_PID")
    i=0
    for c in "${CLIENTS[@]}"; do
      i=$((i + 1))
      read -r cns cdst cport cpar <<<"$c"
      json=$LOGS/iperf3-$key-run$r-client$i.json
      jsons+=("$json")
      timeout $((DUR + 30)) ip netns exec "$cns" \
        iperf3 -c "$cdst" -p "$cport" -t "$DUR" -P "$cpar" "${rflag[@]}" -J >"$json" 2>"${json%.json}.err" 9>&- &
      pids+=($!)
    done
    ok=1
    for i in "${!pids[@]}"; do wait "${pids[$i]}" || ok=0; done
    kill -0 "$GW_PID" 2>/dev/null || die "$gwname gateway (pid $GW_PID) died during run $r"
    t1=$(proc_cpu_ticks "$GW_PID")
    e1=$(udp_rcvbuf_errors "$NS_GW")
    link_drops "$NS_GW" >"$snap.gw1"
    lg=$(drops_delta "$snap.gw0" "$snap.gw1")
    f1=0 v1=0 lv="0 -"
    if [ -n "$vgwns" ]; then
      kill -0 "$VGW_PID" 2>/dev/null || die "VGW $vgwname (pid $VGW_PID) died during run $r"
      v1=$(proc_cpu_ticks "$VGW_PID") f1=$(udp_rcvbuf_errors "$vgwns")
      link_drops "$vgwns" >"$snap.vgw1"
      lv=$(drops_delta "$snap.vgw0" "$snap.vgw1")
    fi
    drops_gw=$((drops_gw + e1 - e0)) drops_vgw=$((drops_vgw + f1 - f0))
    ld_gw=$((ld_gw + ${lg%% *})) ld_vgw=$((ld_vgw + ${lv%% *}))
    bytes=0 bps=0 retr=0
    for json in "${jsons[@]}"; do
      if ! jq -e '.end.sum_received.bytes' "$json" >/dev/null 2>&1; then
        log "  $(basename "$json"): $(jq -r '.error // empty' "$json" 2>/dev/null || head -c 200 "$json")"
        ok=0
        continue
      fi
      bytes=$(jq -r --argjson b "$bytes" '$b + .end.sum_received.bytes' "$json")
      bps=$(jq -r --argjson b "$bps" '$b + .end.sum_received.bits_per_second' "$json")
      retr=$(jq -r --argjson b "$retr" '$b + (.end.sum_sent.retransmits // 0)' "$json")
    done
    [ "$ok" = 1 ] || log "  run $r: some iperf3 clients failed (see $LOGS)"
    mbits+=("$(awk -v b="$bps" 'BEGIN { printf "%.0f", b / 1e6 }')")
    cpus+=("$(cpu_per_gb $((t1 - t0)) "$bytes")")
    if [ -n "$vgwns" ]; then vcpus+=("$(cpu_per_gb $((v1 - v0)) "$bytes")"); fi
    log "  run $r: ${mbits[-1]} Mbit/s, $(awk -v by="$bytes" 'BEGIN { printf "%.2f", by / 1e9 }') GB," \
      "TCP retransmits $retr, gateway CPU $(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }') s" \
      "-> ${cpus[-1]} s/GB$([ -n "$vgwns" ] && echo ", VGW ${vcpus[-1]} s/GB"), UdpRcvbufErrors gw +$((e1 - e0))$([ -n "$vgwns" ] && echo " vgw +$((f1 - f0))")," \
      "link drops gw ${lg#* }$([ -n "$vgwns" ] && echo " vgw ${lv#* }")"
    mbit_runs=${mbit_runs:+$mbit_runs/}${mbits[-1]}
  done
  local vcpu=- drops=$drops_gw ldrops=$ld_gw
  if [ -n "$vgwns" ]; then
    vcpu=$(printf '%s\n' "${vcpus[@]}" | { grep -v inf || true; } | median %.2f)
    drops="$drops_gw/$drops_vgw" ldrops="$ld_gw/$ld_vgw"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$case" "$gwname" "$vgwname" "$traffic" "$esp" \
    "$(printf '%s\n' "${mbits[@]}" | median %.0f)" \
    "$(printf '%s\n' "${cpus[@]}" | { grep -v inf || true; } | median %.2f)" \
    "$vcpu" "$drops" "$ldrops" "$mbit_runs" >>"$ROWS/$case.tsv"
}

# ipieced_counters LABEL WGCTL_CONFIG : its status counters (and the tunnel's
# totals) into $NOTES, the full JSON into the logs
ipieced_counters() {
  local label=$1 cfg=$2 f
  f=$LOGS/status-$(printf '%s' "$label" | tr -c 'A-Za-z0-9.-' '_').json
  "$BIN/wgctl" --config "$cfg" status --json >"$f" 2>&1 || { echo "- $label: wgctl status failed" >>"$NOTES"; return 0; }
  jq -r --arg l "$label" '"- \($l): esp tx \(.counters.esp_tx) rx \(.counters.esp_rx), tun rx \(.counters.tun_rx) tx \(.counters.tun_tx), "
    + "remote-unrouted \(.counters.remote_unrouted), tun-no-route \(.counters.tun_no_route), "
    + "wg malformed \(.wireguard.rx_malformed) unknown-peer \(.wireguard.rx_unknown_peer) no-route \(.counters.tun_no_route)"
    + ([.tunnels[]? | "; tunnel \(.name) \(.state), \(.children | length) child SA(s), replayed \(.totals.replayed), "
        + "ICV failed \(.totals.integrity_failed), bad trailer \(.totals.bad_trailer)"
        + (if .last_error then ", last error: \(.last_error)" else "" end)] | join(""))' "$f" >>"$NOTES" 2>/dev/null ||
    echo "- $label: unexpected status JSON (see $f)" >>"$NOTES"
}

# ipieced_send_drops LABEL LOGFILE : the drop count ipieced logs on exit
ipieced_send_drops() {
  local n
  n=$(grep -o 'drops=[0-9]*' "$2" | tail -n 1 | cut -d= -f2) || true
  echo "  $1: ${n:-0} packets dropped on full socket buffers (ipieced's count, logged on exit)" >>"$NOTES"
}

# ----------------------------------------------------------------- the cases --
log "$(nproc) CPUs, kernel $(uname -r), loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
log "ipieced $(git -C "$(repo_root)" describe --always --dirty 2>/dev/null || echo '?'); strongSwan $(dpkg-query -W -f='${Version}' strongswan-charon 2>/dev/null || echo '?')"
DIR_L2L="LAN host -> VPC host"
DIR_LAP="$LAPTOPS laptops -> LAN host"
DIR_E2E="$LAPTOPS laptops -> VPC host"
if [ "$REVERSE" = 1 ]; then
  DIR_L2L="VPC host -> LAN host" DIR_LAP="LAN host -> $LAPTOPS laptops" DIR_E2E="VPC host -> $LAPTOPS laptops"
fi
LAN_CLIENT=("$NS_LAN $LAB_VPC_HOST $((IPERF_PORT0 + 1)) $LAN_STREAMS")

if has_case wg; then
  cp -p "$CFG_BASE" "$CFG"
  for impl in $IMPLS; do
    gw_start "$impl" "wg-$impl"
    laptops_up "$LAB_LAN_HOST"
    laptop_clients "$LAB_LAN_HOST"
    measure wg "$impl" - "$DIR_LAP" -
    if [ "$impl" = ipieced ]; then ipieced_counters "wg, ipieced" "$CFG"; fi
    laptops_down
    gw_stop
    if [ "$impl" = ipieced ]; then ipieced_send_drops "wg, ipieced" "$GW_LOG"; fi
  done
fi

if [ "$SWAN" = 1 ]; then
  section "strongSwan VGW (charon, kernel-libipsec) at $LAB_VGW_WAN"
  vgw_charon_start
  for esp in "${ESPS[@]}"; do
    if has_case esp; then
      write_gw_tunnel "$esp"
      gw_start ipieced "esp-ipieced-$esp"
      wait_tunnel "$GW_PID" "$CFG" "$GW_LOG"
      reach "$NS_LAN" "$LAB_VPC_HOST"
      CLIENTS=("${LAN_CLIENT[@]}")
      measure esp ipieced strongSwan "$DIR_L2L" "$esp" "$NS_VGW"
      ipieced_counters "esp, ipieced, $esp" "$CFG"
      gw_stop
      ipieced_send_drops "esp, ipieced, $esp" "$GW_LOG"

      if [ "$HEALTH" = 1 ]; then
        write_gw_tunnel "$esp" health
        gw_start ipieced "esp-ipieced-health-$esp"
        wait_tunnel "$GW_PID" "$CFG" "$GW_LOG"
        reach "$NS_LAN" "$LAB_VPC_HOST"
        scraper_start
        measure esp "ipieced (probes+metrics)" strongSwan "$DIR_L2L" "$esp" "$NS_VGW"
        ipieced_counters "esp, ipieced (probes+metrics), $esp" "$CFG"
        scraper_stop
        nsx "$NS_GW" "${WGCTL[@]}" status 2>/dev/null | grep -E '^ +probe ' | sed 's/^ */  /' >>"$NOTES" || true
        gw_stop
        ipieced_send_drops "esp, ipieced (probes+metrics), $esp" "$GW_LOG"
      fi

      cgw_charon_start "$esp"
      reach "$NS_LAN" "$LAB_VPC_HOST"
      measure esp "strongSwan (libipsec)" strongSwan "$DIR_L2L" "$esp" "$NS_VGW"
      swan "$SWAN_CGW_DIR" --list-sas >"$LOGS/swanctl-list-sas-cgw-$esp.log" 2>&1 || true
      charon_stop "$NS_GW" "$(gw_pidfile)"
    fi
    if has_case e2e; then
      write_gw_tunnel "$esp"
      gw_start ipieced "e2e-ipieced-$esp"
      wait_tunnel "$GW_PID" "$CFG" "$GW_LOG"
      laptops_up "$LAB_VPC_HOST"
      laptop_clients "$LAB_VPC_HOST"
      measure e2e ipieced strongSwan "$DIR_E2E" "$esp" "$NS_VGW"
      ipieced_counters "e2e, ipieced, $esp" "$CFG"
      laptops_down
      gw_stop
      ipieced_send_drops "e2e, ipieced, $esp" "$GW_LOG"
    fi
  done
  swan "$SWAN_VGW_DIR" --list-sas >"$LOGS/swanctl-list-sas-vgw.log" 2>&1 || true
  charon_stop "$NS_VGW" "$RUN/charon-vgw.pid"
fi

if has_case ceiling; then
  section "ipieced as the VGW at $LAB_VGW_WAN (start_action = wait)"
  vgw_ipieced_start
  for esp in "${ESPS[@]}"; do
    write_gw_tunnel "$esp"
    gw_start ipieced "ceiling-ipieced-$esp"
    wait_tunnel "$GW_PID" "$CFG" "$GW_LOG"
    wait_tunnel "$VGW_PID" "$VGW_CFG" "$LOGS/vgw-ipieced.log"
    reach "$NS_LAN" "$LAB_VPC_HOST"
    CLIENTS=("${LAN_CLIENT[@]}")
    measure ceiling ipieced ipieced "$DIR_L2L" "$esp" "$NS_VGW"
    ipieced_counters "ceiling, ipieced (customer gateway), $esp" "$CFG"
    ipieced_counters "ceiling, ipieced (VGW; counters since its start, all proposals so far), $esp" "$VGW_CFG"
    gw_stop
    ipieced_send_drops "ceiling, ipieced (customer gateway), $esp" "$GW_LOG"
  done
  vgw_ipieced_stop
  ipieced_send_drops "ceiling, ipieced (VGW), all proposals" "$LOGS/vgw-ipieced.log"
fi

# ------------------------------------------------------------------ results --
section "results"
echo "iperf3 -t $DUR, median of $RUNS runs; laptops: wireguard-go, one client each (-P 1);"
echo "LAN host: one client (-P $LAN_STREAMS); IKE $IKE_PROPOSAL; ESP always in UDP 4500 (NAT-T);"
echo "CPU s/GB: utime+stime of the process per GB received by iperf3; drops, summed over the runs,"
echo "in the gateway's/VGW's namespace: UDP = UdpRcvbufErrors (nstat), links = rx+tx dropped of"
echo "every link (a TUN's tx: packets its daemon did not read in time; per link in the log);"
echo "$(nproc) CPUs, loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| case | gateway | VGW | traffic | ESP | Mbit/s (sum) | gateway CPU s/GB | VGW CPU s/GB | UDP drops gw/vgw | link drops gw/vgw | runs (Mbit/s) |"
echo "| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"
for c in wg esp e2e ceiling; do
  [ -f "$ROWS/$c.tsv" ] || continue
  while IFS=$'\t' read -r case gw vgw traffic esp mbit cpu vcpu drops ldrops runs; do
    echo "| $case | $gw | $vgw | $traffic | $esp | $mbit | $cpu | $vcpu | $drops | $ldrops | $runs |"
  done <"$ROWS/$c.tsv"
done
if [ -s "$NOTES" ]; then
  echo
  echo "ipieced counters at the end of each case (wgctl status):"
  cat "$NOTES"
fi
