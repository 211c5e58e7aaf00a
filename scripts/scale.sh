#!/usr/bin/env bash
# scale.sh - how ipieced and wgctl cope with many laptops (issue 13, item 6).
# A measurement, not a test: it prints times and memory, asserts nothing
# about them, and is not run by CI.
#
# It writes a config with N laptops as `wgctl add-peer` would (real X25519
# key pairs, generated in one python3 process with the `cryptography`
# package, each private key in peers/NAME.key, mode 0600; distinct /32s in
# the WireGuard subnet 172.16.64.0/18, which only exists inside the
# namespace),
# starts ipieced in a network namespace it creates (ipscale-gw: a WAN veth
# with a default route, a LAN veth) and prints, in milliseconds:
#
#   check        wgctl check of the N-peer file
#   load         ipieced's start until it logs "ipieced running"
#   add-peer     wgctl add-peer of one more laptop (writes the file, reloads
#                the daemon, prints the client config)
#   status       wgctl status (text) and wgctl status --json
#   reload-1     wgctl reload after one peer's address was changed in the file
#                (the report must say 1 updated, N unchanged)
#   disable-1    wgctl disable of one peer (file edit + reload)
#   idle CPU     the daemon's CPU time over IDLE seconds with N idle peers
#                (the timers of every peer run every tick)
#   RSS          the daemon's VmRSS (/proc/PID/status) after the load and at
#                the end
#
#   scripts/scale.sh                      # N=10000, the debug build
#   N=2000 IPIECE_BIN_DIR=/var/cache/ipiece-ci/target/release scripts/scale.sh
#
# Env: N=10000 (1..16000), IDLE=5 (seconds), IPSCALE_DIR=/tmp/ipiece-scale
#   (config, keys, logs), IPIECE_BIN_DIR=DIR uses DIR/ipieced and DIR/wgctl;
#   without it the debug build is built (cargo build --bins) in
#   CARGO_TARGET_DIR (default /var/cache/ipiece-ci/target) and used.
# The namespace is deleted on exit, also on failure and Ctrl-C; only the
# daemon this script started is stopped, by its PID.
set -euo pipefail

LOG_TAG=scale
# shellcheck source=scripts/lib/netns.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/netns.sh"

N=${N:-10000}
IDLE=${IDLE:-5}
STATE=${IPSCALE_DIR:-/tmp/ipiece-scale}
NS_PREFIX=ipscale-
NS=${NS_PREFIX}gw
CFG=$STATE/gateway.toml
RUN=$STATE/run
CTL_SOCK=$STATE/control.sock
IF_GW=ipscale0
WG_ADDR=172.16.64.1/18 # 16382 addresses: the gateway and up to 16000 laptops
WAN_ADDR=192.0.2.2/24  # TEST-NET-1, inside the namespace only
WAN_GW=192.0.2.1
LAN_ADDR=172.16.4.1/24 # the seed's lan_prefixes

case "${1:-}" in
  -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  '') ;;
  *) die "no arguments expected (see --help)" ;;
esac
[ "$(id -u)" -eq 0 ] || die "needs root (a network namespace)"
case $N in '' | *[!0-9]*) die "N must be a number" ;; esac
((N >= 1 && N <= 16000)) || die "N must be 1..16000 (the /18 WireGuard subnet)"
case $IDLE in '' | *[!0-9]*) die "IDLE must be a number of seconds" ;; esac
lab_lock ipiece-scale

ensure_commands ip:iproute2 nft:nftables python3:python3
python3 -c 'import cryptography' 2>/dev/null || ensure_commands /usr/lib/python3/dist-packages/cryptography:python3-cryptography
ensure_tun_device

if [ -n "${IPIECE_BIN_DIR:-}" ]; then
  BIN=$IPIECE_BIN_DIR
else
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/ipiece-ci/target}
  BIN=$CARGO_TARGET_DIR/debug
  section "build (cargo build --bins, target $CARGO_TARGET_DIR)"
  mkdir -p "$CARGO_TARGET_DIR"
  if ! (cd "$(repo_root)" && cargo build --bins) >"$CARGO_TARGET_DIR/scale-build.log" 2>&1 9>&-; then
    tail -n 40 "$CARGO_TARGET_DIR/scale-build.log"
    die "cargo build failed"
  fi
fi
for b in ipieced wgctl; do [ -x "$BIN/$b" ] || die "$BIN/$b missing"; done
WGCTL=(ip netns exec "$NS" "$BIN/wgctl" --config "$CFG")

# ------------------------------------------------------------------ helpers --
now_ns() { date +%s%N; }
ms_since() { echo $((($(now_ns) - $1) / 1000000)); }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
cpu_ms() { echo $(($(proc_cpu_ticks "$1") * 1000 / CLK_TCK)); }

RESULTS=()
# result LABEL VALUE UNIT [NOTE]
result() {
  RESULTS+=("$(printf '%-34s %10s %-4s %s' "$1" "$2" "$3" "${4:-}")")
  printf '%-34s %10s %-4s %s\n' "$1" "$2" "$3" "${4:-}"
}

FAILED=0
# timed LABEL LOGNAME CMD... : run CMD (output to $STATE/LOGNAME.log), print
# and record its wall time in ms; a failure is recorded (with the end of its
# log), the run goes on, and the script exits 1 at the end.
timed() {
  local label=$1 logname=$2 t0 ms
  shift 2
  t0=$(now_ns)
  if ! "$@" >"$STATE/$logname.log" 2>&1; then
    ms=$(ms_since "$t0")
    tail -n 5 "$STATE/$logname.log" >&2
    result "$label" FAILED "" "(after $ms ms; $STATE/$logname.log)"
    FAILED=1
    return 1
  fi
  ms=$(ms_since "$t0")
  result "$label" "$ms" ms
}

DAEMON_PF=$RUN/ipieced.pid
down() {
  kill_pidfile "$DAEMON_PF"
  ns_teardown "$NS_PREFIX" "$RUN"
  wg_sock_remove "$IF_GW"
}
on_exit() {
  local rc=$?
  [ $rc -eq 0 ] || log "FAILED (exit $rc); logs in $STATE"
  down
  exit $rc
}

# ------------------------------------------------------------------- setup --
down
rm -rf "$STATE"
mkdir -p "$RUN"
chmod 700 "$STATE"
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
CLK_TCK=$(getconf CLK_TCK)

section "namespace $NS (WAN $WAN_ADDR with a default route, LAN $LAN_ADDR)"
ns_create "$NS"
# veth pairs with both ends in the namespace (the kernel may lack "dummy")
ip -n "$NS" link add wan0 type veth peer name wan0p
ip -n "$NS" link add lan0 type veth peer name lan0p
ip -n "$NS" link set wan0p up
ip -n "$NS" link set lan0p up
ns_addr "$NS" wan0 "$WAN_ADDR"
ns_addr "$NS" lan0 "$LAN_ADDR"
ip -n "$NS" link set wan0 up
ip -n "$NS" link set lan0 up
ns_route "$NS" default via "$WAN_GW" dev wan0

section "config with $N laptops ($CFG)"
"${WGCTL[@]}" init --endpoint "${WAN_ADDR%/*}" >"$STATE/init.log" 2>&1 ||
  { cat "$STATE/init.log"; die "wgctl init failed"; }
t0=$(now_ns)
python3 - "$CFG" "$N" "$CTL_SOCK" "$IF_GW" "$WG_ADDR" <<'EOF'
import base64, ipaddress, os, re, sys
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (Encoding, NoEncryption,
                                                          PrivateFormat, PublicFormat)

cfg, n, sock, tun, wg_addr = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
text = open(cfg).read()
def setkey(text, table, key, value):
    # the key's line in [table] (wgctl init writes the seed, which has them)
    pat = re.compile(r'(?ms)^(\[%s\]\n(?:(?!^\[).)*?^%s = )"[^"\n]*"' % (re.escape(table), key))
    new, k = pat.subn(lambda m: m.group(1) + '"%s"' % value, text, count=1)
    if k != 1:
        sys.exit("scale.sh: cannot set %s.%s in %s" % (table, key, cfg))
    return new
text = setkey(text, "gateway", "control_socket", sock)
text = setkey(text, "gateway", "tun_name", tun)
text = setkey(text, "wireguard", "address", wg_addr)
net = ipaddress.ip_interface(wg_addr).network
hosts = net.hosts()
next(hosts)  # the gateway's own address
out = [text.rstrip("\n"), ""]
os.makedirs(os.path.join(os.path.dirname(cfg), "peers"), mode=0o700, exist_ok=True)
for i in range(1, n + 1):
    name = "laptop-%05d" % i
    key = X25519PrivateKey.generate()
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    priv = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    # the laptop's private key kept beside the config, as `wgctl add-peer` does
    fd = os.open(os.path.join(os.path.dirname(cfg), "peers", name + ".key"),
                 os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, base64.b64encode(priv) + b"\n")
    os.close(fd)
    out.append('[[peers]]\nname = "%s"\npublic_key = "%s"\naddress = "%s"\n'
               'private_key_file = "peers/%s.key"\n'
               % (name, base64.b64encode(pub).decode(), next(hosts), name))
open(cfg, "w").write("\n".join(out))
EOF
log "generated $N key pairs and peers in $(ms_since "$t0") ms ($(wc -c <"$CFG") bytes)"

# ----------------------------------------------------------- measurements --
section "measurements: N=$N, $(basename "$BIN") build $BIN, $(nproc) cores"
timed "wgctl check" check "${WGCTL[@]}" check || true

t0=$(now_ns)
spawn "$DAEMON_PF" "$STATE/ipieced.log" "$NS" env IPIECE_LOG=info "$BIN/ipieced" \
  --config "$CFG" --state-dir "$STATE/lib"
PID=$(cat "$DAEMON_PF")
up=0
for ((i = 0; i < 12000; i++)); do # at most 120 s
  if grep -q "ipieced running" "$STATE/ipieced.log"; then up=1; break; fi
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.01
done
[ $up = 1 ] || { tail -n 30 "$STATE/ipieced.log" >&2; die "ipieced did not come up"; }
result "ipieced load (to \"ipieced running\")" "$(ms_since "$t0")" ms
result "ipieced RSS after load" "$(($(rss_kib "$PID") / 1024))" MiB "(VmRSS $(rss_kib "$PID") KiB)"
wait_for 10 test -S "$CTL_SOCK" || die "no control socket $CTL_SOCK"

if timed "wgctl add-peer (one more laptop)" add-peer "${WGCTL[@]}" add-peer extra-laptop --output "$STATE/extra-laptop.conf" &&
  ! grep -q "1 added" "$STATE/add-peer.log"; then
  cat "$STATE/add-peer.log"
  log "add-peer did not reach the daemon"
  FAILED=1
fi

timed "wgctl status" status "${WGCTL[@]}" status || true
if timed "wgctl status --json" status-json "${WGCTL[@]}" status --json; then
  peers=$(grep -c '"public_key"' "$STATE/status-json.log" || true)
  log "status --json: $(wc -c <"$STATE/status-json.log") bytes, $peers public keys"
fi

# one peer's address changed by hand (the last free one of the subnet)
victim=laptop-$(printf '%05d' $(((N + 1) / 2)))
new_addr=$(python3 -c 'import ipaddress,sys; print(ipaddress.ip_interface(sys.argv[1]).network.broadcast_address - 1)' "$WG_ADDR")
python3 - "$CFG" "$victim" "$new_addr" <<'EOF'
import re, sys
cfg, name, addr = sys.argv[1:]
text = open(cfg).read()
pat = re.compile(r'(name = "%s"\npublic_key = "[^"]*"\naddress = )"[^"]*"' % re.escape(name))
text, k = pat.subn(lambda m: m.group(1) + '"%s"' % addr, text)
if k != 1:
    sys.exit("scale.sh: peer %s not found" % name)
open(cfg, "w").write(text)
EOF
if timed "wgctl reload (1 peer's address)" reload "${WGCTL[@]}" reload; then
  log "$(cat "$STATE/reload.log")"
  grep -q "0 added, 0 removed, 0 restarted, 1 updated, " "$STATE/reload.log" ||
    { log "the reload did not touch exactly one peer"; FAILED=1; }
fi

timed "wgctl disable (1 peer)" disable "${WGCTL[@]}" disable laptop-00001 || true

c0=$(cpu_ms "$PID")
sleep "$IDLE"
c1=$(cpu_ms "$PID")
result "ipieced idle CPU" "$(((c1 - c0) / IDLE))" "ms/s" "(over ${IDLE} s, $N idle peers)"
result "ipieced RSS at the end" "$(($(rss_kib "$PID") / 1024))" MiB "(VmRSS $(rss_kib "$PID") KiB)"

section "summary (N=$N, $BIN)"
printf '%s\n' "${RESULTS[@]}"
[ "$FAILED" = 0 ] || die "some steps failed (see above)"
