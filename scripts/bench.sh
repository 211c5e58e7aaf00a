#!/usr/bin/env bash
# bench.sh - throughput and CPU cost of WireGuard gateways, in network
# namespaces (the demo's topology with several laptops). Not run in CI.
#
# In one run, the same topology and the same keys serve three gateways one
# after another: ipieced (release build), wireguard-go and boringtun-cli
# (configured with `wg set` from the same keys and peers). For each, every
# laptop (wireguard-go) runs one iperf3 client (-P 1) at the same time to the
# LAN host 172.16.4.10 through the gateway; the table shows the median over
# RUNS runs of the summed throughput and of the gateway process's CPU time
# (utime+stime from /proc/PID/stat) per GB carried.
#
#   scripts/bench.sh
#
# Env: LAPTOPS=3 (1..16), DUR=10 (seconds per iperf3 run), RUNS=3,
#   IMPLS="ipieced wireguard-go boringtun" (which gateways, in this order),
#   REVERSE=0 (1: LAN host -> laptops, iperf3 -R),
#   IPBENCH_DIR=/tmp/ipiece-bench (state, logs, iperf3 JSON),
#   CARGO_TARGET_DIR=/var/cache/ipiece-ci/target (ipieced + wgctl, release;
#   IPIECE_BIN_DIR=DIR uses DIR/ipieced and DIR/wgctl instead of building),
#   BORINGTUN=/var/cache/ipiece-bench/boringtun/bin/boringtun-cli (installed
#   with `cargo install boringtun-cli --locked` if absent).
# Namespaces are all called ipbench-*; nothing is configured in the root
# namespace; everything is torn down on exit.
set -euo pipefail

LOG_TAG=bench
# shellcheck source=scripts/lib/netns.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/netns.sh"

LAPTOPS=${LAPTOPS:-3}
DUR=${DUR:-10}
RUNS=${RUNS:-3}
IMPLS=${IMPLS:-ipieced wireguard-go boringtun}
REVERSE=${REVERSE:-0}
NS_PREFIX=ipbench-
STATE=${IPBENCH_DIR:-/tmp/ipiece-bench}
RUN=$STATE/run
LOGS=$STATE/logs
CFG=$STATE/gateway.toml
CTL_SOCK=$STATE/control.sock
IF_GW=ipbgw0 # WireGuard interface names are host-wide (UAPI socket)
BORINGTUN_ROOT=/var/cache/ipiece-bench/boringtun
BORINGTUN=${BORINGTUN:-$BORINGTUN_ROOT/bin/boringtun-cli}
NS_GW=$(lab_ns gw)
NS_LAN=$(lab_ns lan)
IPERF_PORT0=5200 # laptop I uses port 5200+I

case "${1:-}" in
  -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  '') ;;
  *) die "no arguments expected (see --help)" ;;
esac
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
lab_lock ipiece-bench
[ "${CI:-}" != true ] || [ "${BENCH_IN_CI:-0}" = 1 ] || die "the benchmark does not run in CI"
for v in LAPTOPS DUR RUNS; do
  case ${!v} in '' | *[!0-9]*) die "$v must be a number" ;; esac
done
((LAPTOPS >= 1 && LAPTOPS <= 16)) || die "LAPTOPS must be 1..16"
((DUR >= 1 && RUNS >= 1)) || die "DUR and RUNS must be >= 1"
for impl in $IMPLS; do
  case $impl in ipieced | wireguard-go | boringtun) ;; *) die "unknown implementation '$impl' in IMPLS" ;; esac
done

lap_ns() { lab_ns "laptop$1"; }
lap_if() { echo "ipblap$1"; }

all_wg_ifs() {
  local i
  echo "$IF_GW"
  for ((i = 1; i <= LAPTOPS; i++)); do lap_if "$i"; done
}

down() {
  ns_teardown "$NS_PREFIX" "$RUN"
  # shellcheck disable=SC2046
  wg_sock_remove $(all_wg_ifs)
  rm -f "$CTL_SOCK"
}

# ------------------------------------------------------------ prerequisites --
ensure_commands ip:iproute2 nft:nftables wg:wireguard-tools wireguard-go:wireguard-go \
  ping:iputils-ping iperf3:iperf3 jq:jq getconf:libc-bin
ensure_tun_device
CLK_TCK=$(getconf CLK_TCK)

if [ -n "${IPIECE_BIN_DIR:-}" ]; then
  BIN=$IPIECE_BIN_DIR
else
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/ipiece-ci/target}
  BIN=$CARGO_TARGET_DIR/release
  section "build (cargo build --release --bins, target $CARGO_TARGET_DIR)"
  mkdir -p "$CARGO_TARGET_DIR"
  if ! (cd "$(repo_root)" && cargo build --release --bins) >"$CARGO_TARGET_DIR/bench-build.log" 2>&1; then
    tail -n 40 "$CARGO_TARGET_DIR/bench-build.log"
    die "cargo build --release failed"
  fi
  tail -n 1 "$CARGO_TARGET_DIR/bench-build.log"
fi
for b in ipieced wgctl; do [ -x "$BIN/$b" ] || die "$BIN/$b missing"; done
WGCTL=("$BIN/wgctl" --config "$CFG")

case " $IMPLS " in
  *" boringtun "*)
    if [ ! -x "$BORINGTUN" ]; then
      section "install boringtun-cli (cargo install, root $BORINGTUN_ROOT)"
      mkdir -p "$BORINGTUN_ROOT"
      cargo install boringtun-cli --locked --root "$BORINGTUN_ROOT" >"$BORINGTUN_ROOT/install.log" 2>&1 ||
        { tail -n 30 "$BORINGTUN_ROOT/install.log"; die "cargo install boringtun-cli failed"; }
      [ -x "$BORINGTUN" ] || die "$BORINGTUN missing after cargo install"
    fi
    ;;
esac

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

section "topology: $LAPTOPS laptops, namespaces ${NS_PREFIX}*"
lab_topology "$LAPTOPS"

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

section "iperf3 servers on $LAB_LAN_HOST (ports $((IPERF_PORT0 + 1))..$((IPERF_PORT0 + LAPTOPS)))"
for ((i = 1; i <= LAPTOPS; i++)); do
  spawn "$RUN/iperf3-server$i.pid" "$LOGS/iperf3-server$i.log" "$NS_LAN" iperf3 -s -p $((IPERF_PORT0 + i))
done
for ((i = 1; i <= LAPTOPS; i++)); do
  wait_for 5 nsx "$NS_LAN" sh -c "ss -ltn | grep -q ':$((IPERF_PORT0 + i)) '" ||
    die "iperf3 server on port $((IPERF_PORT0 + i)) did not start"
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

gw_start() { # gw_start IMPL : start the gateway, its PID in GW_PID
  local impl=$1 pf lf
  pf=$(gw_pidfile) lf=$LOGS/gateway-$impl.log
  gw_wait_tun_gone
  case $impl in
    ipieced)
      rm -f "$CTL_SOCK"
      spawn "$pf" "$lf" "$NS_GW" "$BIN/ipieced" --config "$CFG"
      wait_for_pid "$(cat "$pf")" 20 test -S "$CTL_SOCK" ||
        { tail -n 20 "$lf" >&2; die "ipieced did not open $CTL_SOCK"; }
      wait_for_pid "$(cat "$pf")" 10 ip -n "$NS_GW" link show "$IF_GW" >/dev/null 2>&1 ||
        { tail -n 20 "$lf" >&2; die "ipieced did not create $IF_GW"; }
      [ "$(nsx "$NS_GW" sysctl -n net.ipv4.ip_forward)" = 1 ] ||
        die "ipieced did not enable net.ipv4.ip_forward"
      ;;
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
}

gw_stop() {
  kill_pidfile "$(gw_pidfile)"
  ip -n "$NS_GW" link del "$IF_GW" 2>/dev/null || true
  wg_sock_remove "$IF_GW"
}

# laptops are restarted for every gateway, so each starts with a fresh handshake
laptops_up() {
  local i
  for ((i = 1; i <= LAPTOPS; i++)); do
    wg_client_from_conf "$(lap_ns "$i")" "$(lap_if "$i")" "$STATE/laptop$i.conf" \
      "$RUN/laptop$i.pid" "$LOGS/wireguard-go-laptop$i.log"
  done
  for ((i = 1; i <= LAPTOPS; i++)); do
    wait_for 15 nsx "$(lap_ns "$i")" ping -c 1 -W 1 -q "$LAB_LAN_HOST" >/dev/null 2>&1 ||
      die "laptop$i cannot reach $LAB_LAN_HOST through the gateway"
  done
}

laptops_down() {
  local i
  for ((i = 1; i <= LAPTOPS; i++)); do
    kill_pidfile "$RUN/laptop$i.pid"
    wg_sock_remove "$(lap_if "$i")"
  done
}

median() { # median PRINTF_FORMAT < numbers, one a line
  sort -g | awk -v fmt="$1\n" '{ a[NR] = $1 }
    END { if (NR == 0) print "n/a"; else printf fmt, (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

RESULTS=$STATE/results.tsv
: >"$RESULTS"

bench_impl() { # bench_impl IMPL
  local impl=$1 gwpid r i t0 t1 bytes bps json jsons pids mbit_runs="" mbits=() cpus=() ok rflag=()
  [ "$REVERSE" = 1 ] && rflag=(-R)
  section "$impl: $LAPTOPS laptops x iperf3 -P 1 -t $DUR, $RUNS runs"
  gw_start "$impl"
  gwpid=$GW_PID
  laptops_up
  for ((r = 1; r <= RUNS; r++)); do
    pids=() jsons=()
    t0=$(proc_cpu_ticks "$gwpid")
    for ((i = 1; i <= LAPTOPS; i++)); do
      json=$LOGS/iperf3-$impl-run$r-laptop$i.json
      jsons+=("$json")
      timeout $((DUR + 30)) ip netns exec "$(lap_ns "$i")" \
        iperf3 -c "$LAB_LAN_HOST" -p $((IPERF_PORT0 + i)) -t "$DUR" -P 1 "${rflag[@]}" -J >"$json" 2>"${json%.json}.err" 9>&- &
      pids+=($!)
    done
    ok=1
    for i in "${!pids[@]}"; do wait "${pids[$i]}" || ok=0; done
    kill -0 "$gwpid" 2>/dev/null || die "$impl gateway (pid $gwpid) died during run $r"
    t1=$(proc_cpu_ticks "$gwpid")
    bytes=0 bps=0
    for json in "${jsons[@]}"; do
      if ! jq -e '.end.sum_received.bytes' "$json" >/dev/null 2>&1; then
        log "  $(basename "$json"): $(jq -r '.error // empty' "$json" 2>/dev/null || head -c 200 "$json")"
        ok=0
        continue
      fi
      bytes=$(jq -r --argjson b "$bytes" '$b + .end.sum_received.bytes' "$json")
      bps=$(jq -r --argjson b "$bps" '$b + .end.sum_received.bits_per_second' "$json")
    done
    [ "$ok" = 1 ] || log "  run $r: some iperf3 clients failed (see $LOGS)"
    mbits+=("$(awk -v b="$bps" 'BEGIN { printf "%.0f", b / 1e6 }')")
    cpus+=("$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v by="$bytes" \
      'BEGIN { if (by > 0) printf "%.2f", (t / hz) / (by / 1e9); else print "inf" }')")
    log "  run $r: ${mbits[-1]} Mbit/s, $(awk -v by="$bytes" 'BEGIN { printf "%.2f", by / 1e9 }') GB," \
      "gateway CPU $(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }') s -> ${cpus[-1]} s/GB"
    mbit_runs=${mbit_runs:+$mbit_runs/}${mbits[-1]}
  done
  printf '%s\t%s\t%s\t%s\n' "$impl" \
    "$(printf '%s\n' "${mbits[@]}" | median %.0f)" \
    "$(printf '%s\n' "${cpus[@]}" | { grep -v inf || true; } | median %.2f)" \
    "$mbit_runs" >>"$RESULTS"
  laptops_down
  gw_stop
}

log "$(nproc) CPUs, kernel $(uname -r), loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
for impl in $IMPLS; do bench_impl "$impl"; done

section "results"
dir="laptops -> LAN host"
[ "$REVERSE" = 1 ] && dir="LAN host -> laptops"
echo "$LAPTOPS laptops (wireguard-go), $dir, iperf3 -P 1 -t $DUR each, median of $RUNS runs; $(nproc) CPUs"
echo
echo "| implementation | Mbit/s (sum) | CPU s/GB | runs (Mbit/s) |"
echo "| --- | ---: | ---: | --- |"
while IFS=$'\t' read -r impl mbit cpu runs; do
  echo "| $impl | $mbit | $cpu | $runs |"
done <"$RESULTS"
