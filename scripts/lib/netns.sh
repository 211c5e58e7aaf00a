# shellcheck shell=bash
# Network-namespace helpers shared by scripts/demo.sh and scripts/bench.sh
# (sourced, not executed).
#
# Rules these helpers keep:
# - every namespace a script makes is called "$NS_PREFIX<name>" (NS_PREFIX is
#   set by the script, e.g. "ipdemo-"); teardown deletes only namespaces with
#   that prefix and never anything else;
# - veth pairs are created inside the namespaces (ip -n A link add ... netns B):
#   no interface, address or route is ever added in the root namespace, and
#   nothing is bridged to a real NIC;
# - processes are started with `spawn`, which records the daemon's own PID in a
#   pid file, and are stopped by that PID;
# - every wait is bounded in count and in time.
#
# Userspace WireGuard interface names must be unique host-wide: the UAPI socket
# /var/run/wireguard/<ifname>.sock is shared by every network namespace.

# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

WG_RUN_DIR=/var/run/wireguard

# ------------------------------------------------------------------- waits --
# wait_for SECONDS CMD... : run CMD every 0.1 s until it succeeds; give up after
# SECONDS (at most SECONDS*10 tries, and at most SECONDS of wall time).
wait_for() {
  local secs=$1 i start=$SECONDS
  shift
  for ((i = 0; i < secs * 10; i++)); do
    "$@" && return 0
    ((SECONDS - start >= secs)) && break
    sleep 0.1
  done
  return 1
}

# wait_for_pid PID SECONDS CMD... : like wait_for, but fails at once when
# process PID has exited.
wait_for_pid() {
  local pid=$1 secs=$2 i start=$SECONDS
  shift 2
  for ((i = 0; i < secs * 10; i++)); do
    "$@" && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    ((SECONDS - start >= secs)) && break
    sleep 0.1
  done
  return 1
}

# --------------------------------------------------------------- processes --
# kill_pid PID [SECONDS] : TERM, wait up to SECONDS (default 5), then KILL.
kill_pid() {
  local pid=$1 secs=${2:-5} i
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "pid $pid did not exit within ${secs}s after SIGTERM: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 20; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "warning: pid $pid still alive after SIGKILL"
  return 1
}

# kill_pidfile FILE : stop the process whose PID FILE holds, remove FILE.
kill_pidfile() {
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f" 2>/dev/null || true)
  case $pid in '' | *[!0-9]*) ;; *) kill_pid "$pid" || true ;; esac
  rm -f "$f"
}

# spawn PIDFILE LOGFILE NS CMD... : start CMD inside NS in the background with
# stdout+stderr to LOGFILE; the PID written to PIDFILE is the daemon's own
# (`ip netns exec` and `env` exec, they do not fork), so CMD must stay in the
# foreground.
spawn() {
  local pf=$1 lf=$2 ns=$3
  shift 3
  # 9>&-: the daemon must not inherit lab_lock's lock (it may outlive us)
  ip netns exec "$ns" "$@" </dev/null >"$lf" 2>&1 9>&- &
  echo $! >"$pf"
}

# proc_cpu_ticks PID : utime+stime of the whole process (all threads), in
# clock ticks (see CLK_TCK), from /proc/PID/stat.
proc_cpu_ticks() {
  local stat rest
  stat=$(cat "/proc/$1/stat") || return 1
  rest=${stat##*) } # fields after "(comm)": 3=state ... 14=utime 15=stime
  # shellcheck disable=SC2086
  set -- $rest
  echo $((${12} + ${13}))
}

# lab_lock NAME : hold an exclusive lock for the rest of this script (fd 9),
# so that two runs of the same script cannot tear each other's lab down.
lab_lock() {
  mkdir -p /run/lock
  exec 9>"/run/lock/$1.lock"
  flock -n 9 || die "another $1 run holds /run/lock/$1.lock"
}

# -------------------------------------------------------------- namespaces --
# The prefix must look like ours: lowercase letters/digits ending in '-'.
ns_check_prefix() {
  case $1 in
    '' | *[!a-z0-9-]* | [!a-z]* | *[!-]) die "refusing namespace prefix '$1'" ;;
  esac
}

# ns_list PREFIX : the existing namespaces whose names start with PREFIX
ns_list() {
  ns_check_prefix "$1"
  ip netns list 2>/dev/null | awk -v p="$1" 'index($1, p) == 1 { print $1 }'
}

# ns_create NAME : create namespace NAME (must start with $NS_PREFIX), lo up,
# reverse-path filter off (the labs route asymmetrically through NAT).
ns_create() {
  local ns=$1
  ns_check_prefix "$NS_PREFIX"
  case $ns in "$NS_PREFIX"?*) ;; *) die "namespace '$ns' lacks prefix $NS_PREFIX" ;; esac
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip netns exec "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
}

nsx() {
  local ns=$1
  shift
  ip netns exec "$ns" "$@"
}

# veth NS_A IF_A NS_B IF_B : a veth pair made inside NS_A, its peer moved to NS_B
veth() {
  ip -n "$1" link add "$2" type veth peer name "$4" netns "$3"
  ip -n "$1" link set "$2" up
  ip -n "$3" link set "$4" up
}

ns_addr() { ip -n "$1" addr add "$3" dev "$2"; }
ns_route() {
  local ns=$1
  shift
  ip -n "$ns" route replace "$@"
}
ns_forwarding() { ip netns exec "$1" sysctl -qw net.ipv4.ip_forward=1; }

# ns_teardown PREFIX [PIDDIR] : stop the processes recorded in PIDDIR/*.pid,
# then any process still living in a PREFIX* namespace (only our scripts start
# processes there), then delete those namespaces. Bounded.
ns_teardown() {
  local prefix=$1 piddir=${2:-} f ns pid left
  ns_check_prefix "$prefix"
  if [ -n "$piddir" ] && [ -d "$piddir" ]; then
    for f in "$piddir"/*.pid; do
      [ -e "$f" ] && kill_pidfile "$f"
    done
  fi
  for ns in $(ns_list "$prefix"); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
      log "stopping leftover pid $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-60)) in $ns"
      kill_pid "$pid" 3 || true
    done
    ip netns del "$ns" 2>/dev/null || log "warning: could not delete namespace $ns"
  done
  left=$(ns_list "$prefix" | tr '\n' ' ')
  [ -z "$left" ] || log "warning: namespaces left: $left"
}

# --------------------------------------------------------------- WireGuard --
wg_sock() { echo "$WG_RUN_DIR/$1.sock"; }

# wg_sock_remove IFNAME... : remove the UAPI sockets of our interfaces
wg_sock_remove() {
  local ifn
  for ifn in "$@"; do rm -f "$(wg_sock "$ifn")"; done
}

# wg_go_start NS IFNAME PIDFILE LOGFILE : start wireguard-go (foreground, so the
# recorded PID is the daemon's) with interface IFNAME inside NS; wait for its
# UAPI socket and its link.
wg_go_start() {
  local ns=$1 ifn=$2 pf=$3 lf=$4
  [ ${#ifn} -le 15 ] || die "interface name $ifn longer than 15"
  kill_pidfile "$pf"
  wait_for 3 sh -c "! ip -n '$ns' link show '$ifn' >/dev/null 2>&1" || ip -n "$ns" link del "$ifn" 2>/dev/null || true
  wg_sock_remove "$ifn"
  spawn "$pf" "$lf" "$ns" env LOG_LEVEL=error wireguard-go -f "$ifn"
  if ! wait_for_pid "$(cat "$pf")" 10 test -S "$(wg_sock "$ifn")" ||
    ! wait_for 5 ip -n "$ns" link show "$ifn" >/dev/null 2>&1; then
    tail -n 20 "$lf" >&2
    die "wireguard-go $ifn did not come up in $ns"
  fi
}

# conf_get FILE KEY : the values of KEY (case-insensitive, any section) in a
# wg-quick style .conf, split at commas, one per line.
conf_get() {
  awk -v key="$2" '
    { line = $0; sub(/#.*/, "", line) }
    line ~ /^[ \t]*[A-Za-z]+[ \t]*=/ {
      k = line; sub(/=.*/, "", k); gsub(/[ \t]/, "", k)
      if (tolower(k) != tolower(key)) next
      v = line; sub(/^[^=]*=/, "", v)
      n = split(v, a, ",")
      for (i = 1; i <= n; i++) { gsub(/^[ \t]+|[ \t]+$/, "", a[i]); if (a[i] != "") print a[i] }
    }' "$1"
}

# conf_strip FILE : FILE without the keys only wg-quick knows (what
# `wg-quick strip` does), i.e. something `wg setconf` accepts.
conf_strip() {
  awk '
    { k = $0; sub(/#.*/, "", k) }
    k ~ /=/ {
      sub(/=.*/, "", k); gsub(/[ \t]/, "", k); k = tolower(k)
      if (k ~ /^(address|dns|mtu|table|preup|postup|predown|postdown|saveconfig)$/) next
    }
    { print }' "$1"
}

# wg_client_from_conf NS IFNAME CONF PIDFILE LOGFILE : bring up a wireguard-go
# client in NS exactly from a wg-quick style CONF (as a laptop would with
# wg-quick, without resolvconf): wg setconf with the stripped file, the
# Address(es), the MTU and one route per AllowedIPs prefix.
wg_client_from_conf() {
  local ns=$1 ifn=$2 conf=$3 pf=$4 lf=$5 stripped a p mtu
  [ -s "$conf" ] || die "client config $conf missing or empty"
  wg_go_start "$ns" "$ifn" "$pf" "$lf"
  stripped=$(dirname "$pf")/$ifn.setconf
  (umask 077 && conf_strip "$conf" >"$stripped")
  nsx "$ns" wg setconf "$ifn" "$stripped" || die "wg setconf $ifn from $conf failed"
  rm -f "$stripped"
  for a in $(conf_get "$conf" Address); do
    case $a in
      */*) ;;
      *:*) a=$a/128 ;;
      *) a=$a/32 ;;
    esac
    ip -n "$ns" addr add "$a" dev "$ifn"
  done
  mtu=$(conf_get "$conf" MTU | head -n 1)
  ip -n "$ns" link set "$ifn" mtu "${mtu:-1420}" up
  for p in $(conf_get "$conf" AllowedIPs); do
    case $p in
      0.0.0.0/0 | ::/0) die "$conf: AllowedIPs $p (full tunnel) is not supported by this harness" ;;
    esac
    ip -n "$ns" route replace "$p" dev "$ifn"
  done
}

# ping_ok NS DST [COUNT] : quiet ping, prints the rtt summary line
ping_ok() {
  local out
  if out=$(nsx "$1" ping -c "${3:-3}" -i 0.2 -W 2 -q "$2" 2>&1); then
    printf '%s\n' "$out" | grep -E 'packets transmitted|rtt' | sed 's/^/    /'
    return 0
  fi
  printf '%s\n' "$out" | sed 's/^/    /' >&2
  return 1
}

# ---------------------------------------------------------------- the lab --
# The home-office topology of demo.sh and bench.sh ($NS_PREFIX + name):
#
#   laptopI  eth0 198.51.100.(16(I-1)+2)/28 -- lapI .(16(I-1)+1)/28   inet
#            (wireguard-go client)                                   ('internet',
#   nat      wan 203.0.113.2/25 ------------- i-nat 203.0.113.1/25    TEST-NET only)
#            lan 192.168.1.1/24   masquerade 192.168.1.0/24 -> wan,
#                                 DNAT udp $LAB_WG_PORT -> 192.168.1.2
#   gw       eth0 192.168.1.2/24 (behind nat), lan0 172.16.4.1/24,
#            the WireGuard gateway under test (ip_forward left off: ipieced
#            turns it on itself)
#   lan      eth0 172.16.4.10/24, default via 172.16.4.1
#
# lab_add_vgw adds the AWS side (bench.sh's IPsec cases, the addresses of
# tests/common and shared/reference/strongswan-vgw):
#
#   vgw      wan 203.0.113.130/25 ----------- i-vgw 203.0.113.129/25  inet
#            vpc0 10.0.0.1/16, forwarding on: the "AWS VGW" (charon or a
#            second ipieced, started by the script)
#   vpc      eth0 10.0.1.10/16, default via 10.0.0.1
#
# and makes the home router port-forward IKE and NAT-T (UDP 500, 4500) to the
# gateway too, as the appliance's router does.
#
# All addresses exist only inside these namespaces.
LAB_ENDPOINT=203.0.113.2    # the home router's public address: laptops dial it
LAB_WG_PORT=51821           # forwarded by the home router to the gateway
LAB_GW_WAN=192.168.1.2
LAB_LAN_HOST=172.16.4.10
# shellcheck disable=SC2034 # used by the scripts that source this file
LAB_LAN_CIDR=172.16.4.0/24
# shellcheck disable=SC2034
LAB_WG_CIDR=172.16.60.0/24  # the seed config's WireGuard subnet
LAB_VGW_WAN=203.0.113.130   # the VGW's outside address (its IKE identity)
# shellcheck disable=SC2034
LAB_VPC_CIDR=10.0.0.0/16
LAB_VPC_HOST=10.0.1.10

lab_ns() { echo "${NS_PREFIX}$1"; }   # lab_ns gw -> ipdemo-gw

# lab_topology NLAPTOPS
lab_topology() {
  local n=$1 i ns base inet nat gw lan
  ((n >= 1 && n <= 16)) || die "number of laptops must be 1..16, not $n"
  inet=$(lab_ns inet) nat=$(lab_ns nat) gw=$(lab_ns gw) lan=$(lab_ns lan)
  for ns in "$inet" "$nat" "$gw" "$lan"; do ns_create "$ns"; done
  for ((i = 1; i <= n; i++)); do ns_create "$(lab_ns "laptop$i")"; done
  ns_forwarding "$inet"
  ns_forwarding "$nat"
  # not in gw: the gateway under test is to enable forwarding itself

  for ((i = 1; i <= n; i++)); do
    ns=$(lab_ns "laptop$i") base=$((16 * (i - 1)))
    veth "$ns" eth0 "$inet" "lap$i"
    ns_addr "$inet" "lap$i" "198.51.100.$((base + 1))/28"
    ns_addr "$ns" eth0 "198.51.100.$((base + 2))/28"
    ns_route "$ns" default via "198.51.100.$((base + 1))"
  done
  veth "$nat" wan "$inet" i-nat
  ns_addr "$inet" i-nat 203.0.113.1/25
  ns_addr "$nat" wan "$LAB_ENDPOINT/25"
  ns_route "$nat" default via 203.0.113.1
  veth "$nat" lan "$gw" eth0
  ns_addr "$nat" lan 192.168.1.1/24
  ns_addr "$gw" eth0 "$LAB_GW_WAN/24"
  ns_route "$gw" default via 192.168.1.1
  veth "$gw" lan0 "$lan" eth0
  ns_addr "$gw" lan0 172.16.4.1/24
  ns_addr "$lan" eth0 "$LAB_LAN_HOST/24"
  ns_route "$lan" default via 172.16.4.1

  # home router: masquerade the office, forward WireGuard to the gateway
  nsx "$nat" nft -f - <<NFT
table ip homenat {
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "wan" udp dport $LAB_WG_PORT dnat to $LAB_GW_WAN
  }
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" ip saddr 192.168.1.0/24 masquerade
  }
}
NFT
}

# lab_add_vgw : the vgw and vpc namespaces (after lab_topology)
lab_add_vgw() {
  local inet nat vgw vpc
  inet=$(lab_ns inet) nat=$(lab_ns nat) vgw=$(lab_ns vgw) vpc=$(lab_ns vpc)
  ns_create "$vgw"
  ns_create "$vpc"
  ns_forwarding "$vgw"
  veth "$vgw" wan "$inet" i-vgw
  ns_addr "$inet" i-vgw 203.0.113.129/25
  ns_addr "$vgw" wan "$LAB_VGW_WAN/25"
  ns_route "$vgw" default via 203.0.113.129
  veth "$vgw" vpc0 "$vpc" eth0
  ns_addr "$vgw" vpc0 10.0.0.1/16
  ns_addr "$vpc" eth0 "$LAB_VPC_HOST/16"
  ns_route "$vpc" default via 10.0.0.1
  nsx "$nat" nft -f - <<NFT
table ip homenat-ike {
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "wan" udp dport { 500, 4500 } dnat to $LAB_GW_WAN
  }
}
NFT
}
