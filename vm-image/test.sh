#!/usr/bin/env bash
# vm-image/test.sh - the appliance's tests (root; scripts/test.sh runs it after
# the cargo tests). Closes with "vm-image: N passed, N failed"; exit 1 when
# any test failed.
#
#   vm-image/test.sh [--ova FILE --deb FILE]
#
# Without --ova/--deb it first builds them with vm-image/build.sh from the
# binaries in $IPIECE_BIN_DIR (default: $CARGO_TARGET_DIR/debug, the dev
# profile the cargo tests just built; CI builds one profile).
#
# Tests:
#   firstboot-parse   the first-boot parser on a vCenter OVF environment and
#                     seed files (overrides, unknown keys, invalid values,
#                     ssh_from normalized; a key without ssh_from is told)
#   firstboot-firewall-config
#                     the [firewall] table first boot writes into a gateway.toml
#                     of `wgctl init` passes `wgctl check` ($IPIECE_BIN_DIR's
#                     wgctl); written again over an existing table, keys replaced
#   ova-structure     xmllint --noout on the .ovf; check-ova.py (first member,
#                     hrefs, sizes, SHA256 manifest, hardware, KDMV v3);
#                     qemu-img info reports streamOptimized
#   boot-bios         the VMDK from the OVA under qemu (TCG, SeaBIOS, pvscsi,
#                     two vmxnet3, no properties): the serial console shows
#                     "ipieced: active", `wgctl status` of the live daemon with
#                     the banner's public key, WAN = first NIC in PCI order
#   boot-uefi-guestinfo
#                     same disk (qcow2 overlay) under OVMF with virtio-scsi,
#                     properties in a qemu fw_cfg seed (same parser as
#                     guestinfo), NICs in swapped PCI order told apart by MAC;
#                     a wireguard-go laptop in namespace ipt-<pid>-vm-wan on
#                     the WAN tap: handshake with ipieced in the VM, ping of
#                     the VM's LAN address 172.16.4.1 through the tunnel;
#                     root logs in over SSH with the ipiece.ssh_key property
#                     from a WAN source in ipiece.ssh_from:
#                     wg.key is 0600, resolv.conf from ipiece.dns, `wg show`
#                     works, `systemctl reload ipieced` is a SIGHUP reload,
#                     gateway.toml's [firewall] names the NICs the banner shows
#   wan-scan          the same running VM: from the WAN namespace, TCP and UDP
#                     1-1024, 5000-10000, 51821 (vm-image/wan-scan.py): TCP 22
#                     open from the ssh_from source only (sshd listens: from a
#                     second WAN source it is filtered), no other TCP port;
#                     no UDP port but 500, 4500, 51821 answers although every
#                     closed port would (the VM's ICMP rate limit lifted over
#                     SSH); datagrams to 500 and 4500 reach the VM's sockets
#                     (its UDP counters); ping answered; SSH from a LAN host
#                     in namespace ipt-<pid>-vm-lan works
#   reboot-idempotent the same overlay booted again: same WireGuard key, the
#                     config kept, the laptop still reaches 172.16.4.1
#   deb-upgrade-in-vm the running appliance upgraded over SSH with a newer
#                     .deb (this one repacked as <version>+vmtest1): ipieced
#                     restarted, config and key untouched, laptop gets through
#   deb-install       a clean Debian 12 minbase root (mmdebstrap), the .deb
#                     installed with `apt-get install ./ipiece_*.deb` in the
#                     chroot, `ipieced --version` and `wgctl --version` run,
#                     nftables came with it (`nft --version`)
#
# Env: VM_BOOT_TIMEOUT (seconds per boot until the banner, default 300),
# IPIECE_VM_KEEP=1 keeps the work directory, IPIECE_VM_TESTS="NAME..." runs
# only those tests (the build always; a test that needs an earlier one's VM
# fails without it), e.g. "firstboot-parse boot-uefi-guestinfo wan-scan".
set -uo pipefail

LOG_TAG="vm-test"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=scripts/lib/netns.sh
. "$ROOT/scripts/lib/netns.sh"
# shellcheck source=vm-image/lib/host.sh
. "$HERE/lib/host.sh"

OVA=""
DEB=""
while [ $# -gt 0 ]; do
  case $1 in
    --ova) OVA=$2; shift 2 ;;
    --deb) DEB=$2; shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done
[ "$(id -u)" -eq 0 ] || die "run as root"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/ipiece-ci/target}
BOOT_TIMEOUT=${VM_BOOT_TIMEOUT:-300}
NS_PREFIX="ipt-$$-vm-"
NS_WAN="${NS_PREFIX}wan"
NS_LAN="${NS_PREFIX}lan"
WORK=$(mktemp -d /var/tmp/ipiece-vm-test.XXXXXX)
PIDDIR="$WORK/pids"
mkdir -p "$PIDDIR"
WG_IF="wgvm$$"
WG_IF=${WG_IF:0:15}
PASSED=0
FAILED=0
FAILED_NAMES=()
START=$SECONDS

cleanup() {
  ns_teardown "$NS_PREFIX" "$PIDDIR" 2>/dev/null
  wg_sock_remove "$WG_IF"
  if [ "${IPIECE_VM_KEEP:-0}" = 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass() {
  PASSED=$((PASSED + 1))
  printf 'test %s ... ok (%ss)\n' "$1" "$2"
}
fail() {
  FAILED=$((FAILED + 1))
  FAILED_NAMES+=("$1")
  printf 'test %s ... FAILED (%ss): %s\n' "$1" "$2" "$3"
}
# run_test NAME FUNCTION : a test passes when FUNCTION returns 0; its last
# "why:" message says why it failed; not run when IPIECE_VM_TESTS leaves it out
run_test() {
  local name=$1 fn=$2 t0=$SECONDS
  if [ -n "${IPIECE_VM_TESTS:-}" ] && [[ " $IPIECE_VM_TESTS " != *" $name "* ]]; then
    printf 'test %s ... skipped (IPIECE_VM_TESTS)\n' "$name"
    return 0
  fi
  WHY="(no reason given)"
  if "$fn"; then pass "$name" $((SECONDS - t0)); else fail "$name" $((SECONDS - t0)) "$WHY"; fi
}
why() {
  WHY="$*"
  log "  $*"
  return 1
}

# ------------------------------------------------------------- tools -----
section "vm-image: tools"
ensure_build_tools
ensure_qemu_system
ensure_commands wireguard-go:wireguard-go wg:wireguard-tools ping:iputils-ping python3:python3 \
  ssh:openssh-client ssh-keygen:openssh-client
ensure_tun_device
echo "$(qemu-system-x86_64 --version | head -n 1); $(qemu-img --version | head -n 1)"
echo "$(mmdebstrap --version); wireguard-go $(wireguard-go --version 2>/dev/null | awk '{ print $2; exit }')"

# ------------------------------------------------------------- build -----
BIN_DIR=${IPIECE_BIN_DIR:-$CARGO_TARGET_DIR/debug}
if [ -z "$OVA" ]; then
  section "vm-image: build (vm-image/build.sh)"
  t0=$SECONDS
  if "$HERE/build.sh" --bin-dir "$BIN_DIR" --out "$WORK/out" 2>&1 | tee "$WORK/build.log"; then
    OVA=$(ls "$WORK"/out/*.ova 2>/dev/null | head -n 1)
    DEB=$(ls "$WORK"/out/ipiece_*.deb 2>/dev/null | head -n 1)
  fi
  if [ -n "$OVA" ] && [ -n "$DEB" ]; then
    pass build $((SECONDS - t0))
  else
    fail build $((SECONDS - t0)) "vm-image/build.sh failed (see above)"
    echo
    echo "vm-image: $PASSED passed, $FAILED failed"
    exit 1
  fi
fi
[ -f "$OVA" ] || die "no OVA at $OVA"

# --------------------------------------------------------- the tests -----
section "vm-image: tests"

FB="$HERE/appliance/ipiece-firstboot"
t_firstboot_parse() {
  local out exp
  out=$("$FB" parse --ovfenv "$HERE/tests/ovfenv-vcenter.xml" 2>"$WORK/parse.err") || { why "parse failed"; return; }
  exp="ipiece.hostname=gw-office
ipiece.wan_address=192.0.2.10/24
ipiece.wan_gateway=192.0.2.1
ipiece.dns=192.0.2.53,192.0.2.54
ipiece.public_endpoint=vpn.example.com
ipiece.lan_address=172.16.4.1/24
ipiece.ssh_key=ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHc1f4k3KeyForTestsOnlyXXXXXXXXXXXXXXXXXXXXXX ops&admin@example
ipiece.ssh_from=
ipiece.admin_peer_pubkey=
ipiece.wan_mac=00:50:56:8a:00:01
ipiece.lan_mac=00:50:56:8a:00:02"
  [ "$out" = "$exp" ] || { why "OVF environment parsed as: $(echo "$out" | tr '\n' ' ')"; return; }
  # an SSH key without ssh_from: SSH from the WAN stays closed, and it is said
  grep -q 'SSH from the WAN is closed until ssh_from is set' "$WORK/parse.err" \
    || { why "a key without ssh_from is not told: $(tr '\n' ' ' <"$WORK/parse.err")"; return; }
  out=$("$FB" parse --ovfenv "$HERE/tests/ovfenv-vcenter.xml" --seed "$HERE/tests/seed-override.conf" 2>"$WORK/parse.err")
  grep -qx 'ipiece.wan_address=198.51.100.2/24' <<<"$out" || { why "seed did not override wan_address"; return; }
  grep -qx 'ipiece.wan_gateway=198.51.100.1' <<<"$out" || { why "guestinfo.-prefixed quoted key not read"; return; }
  grep -qx 'ipiece.lan_mac=52:54:00:aa:bb:02' <<<"$out" || { why "lan_mac not overridden/lowercased"; return; }
  grep -qx 'ipiece.lan_address=172.16.4.1/24' <<<"$out" || { why "invalid lan_address replaced the valid one"; return; }
  grep -q 'unknown key ipiece.bogus' "$WORK/parse.err" || { why "unknown key not reported"; return; }
  grep -q 'invalid value for ipiece.lan_address' "$WORK/parse.err" || { why "invalid value not reported"; return; }
  # ssh_from: spaces dropped, a bare address is a /32, host bits cleared, duplicates dropped
  grep -qx 'ipiece.ssh_from=192.168.0.7/32,10.0.0.0/8' <<<"$out" \
    || { why "ssh_from not normalized: $(grep '^ipiece.ssh_from=' <<<"$out")"; return; }
  grep -q 'SSH from the WAN is closed' "$WORK/parse.err" && { why "closed-SSH notice although ssh_from is set"; return; }
  # a value that would inject a second networkd line is refused
  printf 'ipiece.wan_gateway=192.0.2.1\nipiece.dns=192.0.2.1\\nAddress=10.9.9.9/8\nipiece.hostname=bad name\n' >"$WORK/bad.seed"
  out=$("$FB" parse --seed "$WORK/bad.seed" 2>/dev/null)
  grep -q '^ipiece.dns=' <<<"$out" && { why "malformed dns accepted"; return; }
  grep -qx 'ipiece.hostname=ipiece' <<<"$out" || { why "malformed hostname accepted"; return; }
  # malformed ssh_from lists are refused whole (a valid one before them stays)
  local bad
  for bad in '10.0.0.0/33' '10.0.0.0/8,,192.0.2.1' '10.0.0.0/8"]' '192.0.2.1 10.0.0.0/8' 'any' '10.0.0.0/8\nAddress=10.9.9.9/8'; do
    printf 'ipiece.ssh_from=198.51.100.0/24\nipiece.ssh_from=%s\n' "$bad" >"$WORK/bad.seed"
    out=$("$FB" parse --seed "$WORK/bad.seed" 2>"$WORK/parse.err")
    grep -qx 'ipiece.ssh_from=198.51.100.0/24' <<<"$out" || { why "ssh_from '$bad' accepted: $(grep ssh_from <<<"$out")"; return; }
    grep -q 'invalid value for ipiece.ssh_from' "$WORK/parse.err" || { why "ssh_from '$bad' not reported"; return; }
  done
  return 0
}
run_test firstboot-parse t_firstboot_parse

# the [firewall] table first boot writes, checked by the wgctl of this build
WGCTL="$BIN_DIR/wgctl"
t_firstboot_firewall_config() {
  local d="$WORK/fwconfig" f out
  f="$d/gateway.toml"
  [ -x "$WGCTL" ] || { why "no wgctl in $BIN_DIR (IPIECE_BIN_DIR)"; return 1; }
  mkdir -p "$d"
  "$WGCTL" --config "$f" init --endpoint 198.51.100.2 >"$d/init.out" 2>&1 || { why "wgctl init: $(tail -n 2 "$d/init.out")"; return 1; }
  "$FB" firewall-config "$f" ens224 ens192 " 198.51.100.7, 203.0.113.9/24" || { why "firewall-config failed"; return 1; }
  out=$(awk '/^\[/ { s = $0 } s == "[firewall]" && /^[a-z_]+ *=/' "$f")
  echo "$out" | sed 's/^/[firewall] /'
  grep -qx 'wan_interface = "ens224"' <<<"$out" || { why "wan_interface not written"; return 1; }
  grep -qx 'lan_interface = "ens192"' <<<"$out" || { why "lan_interface not written"; return 1; }
  grep -qx 'ssh_from = \["198.51.100.7/32", "203.0.113.0/24"\]' <<<"$out" || { why "ssh_from: $(grep ssh_from <<<"$out")"; return 1; }
  grep -qx 'enabled = false' <<<"$out" && { why "first boot turned the firewall off"; return 1; }
  [ "$(stat -c %a "$f")" = 600 ] || { why "gateway.toml mode $(stat -c %a "$f")"; return 1; }
  "$WGCTL" --config "$f" check >"$d/check.out" 2>&1 \
    || { why "wgctl check refuses the [firewall] table of first boot: $(tr '\n' ' ' <"$d/check.out" | cut -c1-300)"; return 1; }
  # over a table that is there already: keys replaced in place, one table
  "$FB" firewall-config "$f" ens256 "" "" || { why "firewall-config (second run) failed"; return 1; }
  [ "$(grep -c '^\[firewall\]' "$f")" = 1 ] || { why "two [firewall] tables"; return 1; }
  [ "$(grep -c '^ssh_from *=' "$f")" = 1 ] || { why "ssh_from written twice"; return 1; }
  grep -qx 'wan_interface = "ens256"' "$f" || { why "wan_interface not replaced"; return 1; }
  grep -qx 'lan_interface = "ens192"' "$f" || { why "lan_interface lost"; return 1; }
  grep -qx 'ssh_from = \[\]' "$f" || { why "ssh_from not emptied"; return 1; }
  "$WGCTL" --config "$f" check >"$d/check.out" 2>&1 || { why "wgctl check after the rewrite: $(head -n 3 "$d/check.out")"; return 1; }
  # an invalid list changes nothing
  cp "$f" "$d/before.toml"
  "$FB" firewall-config "$f" ens256 "" "10.0.0.0/33" 2>/dev/null && { why "ssh_from 10.0.0.0/33 written"; return 1; }
  cmp -s "$f" "$d/before.toml" || { why "a refused ssh_from changed the file"; return 1; }
  return 0
}
run_test firstboot-firewall-config t_firstboot_firewall_config

EX="$WORK/ova"
mkdir -p "$EX"
t_ova_structure() {
  python3 "$HERE/check-ova.py" "$OVA" --extract "$EX" >"$WORK/check-ova.log" 2>&1
  local rc=$?
  grep -E '^(FAIL|check-ova)' "$WORK/check-ova.log"
  [ $rc -eq 0 ] || { why "check-ova.py: $(grep -c '^FAIL' "$WORK/check-ova.log") failed check(s)"; return; }
  OVF_FILE=$(ls "$EX"/*.ovf)
  xmllint --noout "$OVF_FILE" || { why "xmllint rejects $OVF_FILE"; return; }
  VMDK=$(ls "$EX"/*.vmdk)
  qemu-img info "$VMDK" >"$WORK/qemu-img-info.txt" || { why "qemu-img info failed"; return; }
  grep -q '^file format: vmdk' "$WORK/qemu-img-info.txt" || { why "not a vmdk per qemu-img"; return; }
  grep -q 'create type: streamOptimized' "$WORK/qemu-img-info.txt" || { why "qemu-img: $(grep 'create type' "$WORK/qemu-img-info.txt")"; return; }
  echo "qemu-img info: $(grep -E 'create type|virtual size' "$WORK/qemu-img-info.txt" | tr -s ' ' | tr '\n' ';')"
  # the disk's capacity in the OVF is the VMDK's virtual size
  local cap vsize
  cap=$(grep -o 'ovf:capacity="[0-9]*"' "$OVF_FILE" | grep -o '[0-9]*')
  vsize=$(qemu-img info --output=json "$VMDK" | python3 -c 'import json, sys; print(json.load(sys.stdin)["virtual-size"])')
  [ -n "$cap" ] && [ "$cap" = "$vsize" ] || { why "ovf:capacity $cap != virtual size $vsize"; return 1; }
  # the checker itself rejects broken packages: a wrong digest, a wrong order
  local bad="$WORK/bad" ovf mf vmdk
  ovf=$(basename "$OVF_FILE")
  mf=${ovf%.ovf}.mf
  vmdk=$(basename "$VMDK")
  mkdir -p "$bad"
  # the VMDK's digest with its first hex digit changed
  awk '/\.vmdk\)= / { d = $NF; $NF = (substr(d, 1, 1) == "0" ? "1" : "0") substr(d, 2) } { print }' "$EX/$mf" >"$bad/$mf"
  cmp -s "$bad/$mf" "$EX/$mf" && { why "could not tamper the manifest"; return 1; }
  ln -sf "$EX/$ovf" "$bad/$ovf"
  ln -sf "$VMDK" "$bad/$vmdk"
  tar --format=ustar -h -C "$bad" -cf "$bad/digest.ova" "$ovf" "$mf" "$vmdk"
  tar --format=ustar -h -C "$EX" -cf "$bad/order.ova" "$mf" "$ovf" "$vmdk"
  python3 "$HERE/check-ova.py" "$bad/digest.ova" >"$bad/digest.log" 2>&1 && { why "check-ova.py accepted a wrong SHA256"; return 1; }
  grep -q "^FAIL: SHA256 of $vmdk matches the manifest" "$bad/digest.log" || { why "wrong SHA256 not reported"; return 1; }
  python3 "$HERE/check-ova.py" "$bad/order.ova" >"$bad/order.log" 2>&1 && { why "check-ova.py accepted the .mf first"; return 1; }
  grep -q "^FAIL: first member is the .ovf" "$bad/order.log" || { why "wrong member order not reported"; return 1; }
  rm -rf "$bad"
  echo "check-ova.py rejects a tampered manifest and a package without the .ovf first"
}
run_test ova-structure t_ova_structure
# the disk for the boots, also when IPIECE_VM_TESTS skipped ova-structure
ls "$EX"/*.vmdk >/dev/null 2>&1 || tar -xf "$OVA" -C "$EX" --wildcards '*.vmdk'
VMDK=$(ls "$EX"/*.vmdk 2>/dev/null | head -n 1)

# ------------------------------------------------------------- qemu -------
QEMU_PID=""
# start_vm NS|- SERIAL_LOG ARGS... : qemu under TCG in namespace NS (or the
# root namespace for "-", with no network backend); PID in $QEMU_PID
start_vm() {
  local ns=$1 serial=$2
  shift 2
  : >"$serial"
  local cmd=(qemu-system-x86_64 -accel tcg -machine pc -smp 2 -m 2048 -display none -monitor none
    -serial "file:$serial" -no-reboot "$@")
  if [ "$ns" = - ]; then
    "${cmd[@]}" </dev/null >"$serial.qemu" 2>&1 &
  else
    ip netns exec "$ns" "${cmd[@]}" </dev/null >"$serial.qemu" 2>&1 &
  fi
  QEMU_PID=$!
  echo "$QEMU_PID" >"$PIDDIR/qemu.pid"
}
stop_vm() {
  [ -n "$QEMU_PID" ] && kill_pid "$QEMU_PID" 10
  rm -f "$PIDDIR/qemu.pid"
  QEMU_PID=""
}
# wait_serial SERIAL REGEX SECONDS : until REGEX appears in the serial log
# (checked every second) or qemu exits or the deadline passes
wait_serial() {
  local serial=$1 re=$2 secs=$3 i
  for ((i = 0; i < secs; i++)); do
    sgrep "$serial" -qE "$re" && return 0
    kill -0 "$QEMU_PID" 2>/dev/null || { log "qemu exited: $(tail -n 3 "$serial.qemu" | tr '\n' ' ')"; return 1; }
    sleep 1
  done
  return 1
}
# serial_text SERIAL : the serial log without carriage returns, the banner's
# lines as the login prompt shows them also when they came through the
# journal ("[   76.4] ipiece-banner[392]: " taken off)
serial_text() {
  tr -d '\r' <"$1" | sed -E 's/^\[ *[0-9]+\.[0-9]+\] ipiece-banner\[[0-9]+\]: //'
}
# sgrep SERIAL GREP-ARGS... : grep serial_text (through a file: `tr | grep
# -q` fails under pipefail when grep stops reading early)
sgrep() {
  local f=$1
  shift
  serial_text "$f" >"$f.txt"
  grep -a "$@" "$f.txt"
}
serial_value() { # serial_value SERIAL PREFIX : the last line's rest after PREFIX
  serial_text "$1" | grep -a "^$2" | tail -n 1 | sed "s/^$2//"
}
# check_banner SERIAL : the banner shows ipieced active and the live daemon's
# `wgctl status` with the same public key as the banner's
check_banner() {
  local s=$1 pub stpub
  wait_serial "$s" '^next step: wgctl add-peer' "$BOOT_TIMEOUT" \
    || { why "no banner on the serial console within ${BOOT_TIMEOUT}s (last: $(tr -d '\r' <"$s" | tail -n 2 | tr '\n' ' '))"; return 1; }
  sgrep "$s" -q '^ipieced: active$' || { why "banner: $(tr -d '\r' <"$s" | grep -a '^ipieced:' | tail -n 1)"; return 1; }
  sgrep "$s" -qE '^gateway .+: interface ipiece0 172\.16\.60\.1/24 udp/51821 up [0-9]+s$' \
    || { why "no wgctl status output on the serial console"; return 1; }
  pub=$(serial_value "$s" 'WireGuard public key: ')
  stpub=$(serial_value "$s" '  public key: ')
  [[ $pub =~ ^[A-Za-z0-9+/]{43}=$ ]] || { why "banner public key '$pub'"; return 1; }
  [ "$pub" = "$stpub" ] || { why "banner key $pub != wgctl status key $stpub"; return 1; }
  BANNER_PUB=$pub
  return 0
}
# no secret on the console: every WireGuard-key-shaped string (44 base64
# characters ending in '=') in the serial log is one of the public keys
# (the gateway's, the laptop's)
check_no_secret() { # check_no_secret SERIAL PUBLIC_KEY...
  local f=$1 k
  shift
  tr -d '\r' <"$f" >"$f.txt"
  for k in $(grep -aoE '(^|[^A-Za-z0-9+/])[A-Za-z0-9+/]{43}=' "$f.txt" | grep -oE '[A-Za-z0-9+/]{43}=$' | sort -u); do
    case " $* " in *" $k "*) ;; *) return 1 ;; esac
  done
  return 0
}

# check_firewall_line SERIAL SSH_REGEX : the banner's firewall line names the
# NICs of its WAN: and LAN: lines and SSH from the WAN as SSH_REGEX
check_firewall_line() {
  local s=$1 wan lan
  wan=$(serial_value "$s" 'WAN: ' | awk '{ print $1 }')
  lan=$(serial_value "$s" 'LAN: ' | awk '{ print $1 }')
  sgrep "$s" -qE "^firewall: on \(WAN $wan, LAN $lan\); SSH from the WAN: $2\$" \
    || { why "banner firewall line: '$(serial_value "$s" 'firewall: ')' (WAN $wan, LAN $lan)"; return 1; }
  FW_WAN_IF=$wan
  FW_LAN_IF=$lan
}

MAC_A=52:54:00:49:50:01 # first PCI slot
MAC_B=52:54:00:49:50:02 # second PCI slot
t_boot_bios() {
  local s="$WORK/serial-bios.log"
  start_vm - "$s" \
    -device pvscsi,id=scsi0 -drive "if=none,id=d0,format=vmdk,file=$VMDK,snapshot=on" \
    -device scsi-hd,drive=d0,bus=scsi0.0,bootindex=0 \
    -nic none -device "vmxnet3,mac=$MAC_A" -device "vmxnet3,mac=$MAC_B"
  local ok=0
  check_banner "$s" && ok=1
  stop_vm
  cp "$s" "$LOGDIR_KEEP/" 2>/dev/null || true
  [ $ok = 1 ] || return 1
  sgrep "$s" -q 'efi: EFI v' && { why "booted through EFI, not the BIOS"; return 1; }
  sgrep "$s" -qE "^WAN: [a-z0-9]+ \($MAC_A\), configured dhcp" \
    || { why "without properties WAN is not the first PCI NIC: $(serial_value "$s" 'WAN: ')"; return 1; }
  sgrep "$s" -qE "^LAN: [a-z0-9]+ \($MAC_B\), configured 172\.16\.4\.1/24" \
    || { why "LAN: $(serial_value "$s" 'LAN: ')"; return 1; }
  # the firewall on the NICs of the banner; no ssh_from: SSH from the WAN closed
  check_firewall_line "$s" 'closed \(no ssh_from\)' || return 1
  check_no_secret "$s" "$BANNER_PUB" || { why "a key-shaped string other than the public key on the console"; return 1; }
  grep -a 'Reached target\|Linux version' "$s" | head -n 1 >/dev/null
  echo "boot-bios: banner after $(grep -an '^next step' "$s" | head -n 1 | cut -d: -f1) serial lines"
}

LAPTOP_KEY="$WORK/laptop.key"
OVERLAY="$WORK/uefi-overlay.qcow2"
TAP_WAN=tvw$$
TAP_LAN=tvl$$
TAP_WAN=${TAP_WAN:0:15}
TAP_LAN=${TAP_LAN:0:15}
BR_LAN=brl$$
BR_LAN=${BR_LAN:0:15}
VETH_LAN=vel$$
VETH_LAN=${VETH_LAN:0:15}
WAN_SRC_OTHER=198.51.100.3
start_uefi_vm() { # start_uefi_vm SERIAL
  start_vm "$NS_WAN" "$1" \
    -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
    -drive "if=pflash,format=raw,unit=1,file=$WORK/OVMF_VARS.fd" \
    -device virtio-scsi-pci,id=scsi0 -drive "if=none,id=d0,format=qcow2,file=$OVERLAY" \
    -device scsi-hd,drive=d0,bus=scsi0.0,bootindex=0 \
    -netdev "tap,id=lan,ifname=$TAP_LAN,script=no,downscript=no" -device "vmxnet3,netdev=lan,mac=$MAC_A" \
    -netdev "tap,id=wan,ifname=$TAP_WAN,script=no,downscript=no" -device "vmxnet3,netdev=wan,mac=$MAC_B" \
    -fw_cfg "name=opt/ipiece/seed,file=$WORK/seed.conf" -nic none
}
# laptop_up VM_PUBKEY PEER_ADDR : wireguard-go in the WAN namespace, peer = the VM
laptop_up() {
  wg_go_start "$NS_WAN" "$WG_IF" "$PIDDIR/wg.pid" "$WORK/wireguard-go.log" || return 1
  ip netns exec "$NS_WAN" wg set "$WG_IF" private-key "$LAPTOP_KEY" \
    peer "$1" endpoint 198.51.100.2:51821 allowed-ips 172.16.60.0/24,172.16.4.0/24 persistent-keepalive 5 || return 1
  ip -n "$NS_WAN" addr add "$2/32" dev "$WG_IF"
  ip -n "$NS_WAN" link set "$WG_IF" mtu 1420 up
  ip -n "$NS_WAN" route add 172.16.60.0/24 dev "$WG_IF"
  ip -n "$NS_WAN" route add 172.16.4.0/24 dev "$WG_IF"
}
laptop_down() {
  kill_pidfile "$PIDDIR/wg.pid"
  ip -n "$NS_WAN" link del "$WG_IF" 2>/dev/null || true
  wg_sock_remove "$WG_IF"
}
# handshake_and_ping : a handshake within 60 s, then 172.16.4.1 answers
handshake_and_ping() {
  local i hs=0
  for ((i = 0; i < 60; i++)); do
    ip netns exec "$NS_WAN" ping -c 1 -W 1 172.16.4.1 >/dev/null 2>&1 && break
    hs=$(ip netns exec "$NS_WAN" wg show "$WG_IF" latest-handshakes | awk '{ print $2; exit }')
    [ "${hs:-0}" != 0 ] && ip netns exec "$NS_WAN" ping -c 1 -W 2 172.16.4.1 >/dev/null 2>&1 && break
  done
  hs=$(ip netns exec "$NS_WAN" wg show "$WG_IF" latest-handshakes | awk '{ print $2; exit }')
  [ "${hs:-0}" != 0 ] || { why "no WireGuard handshake with ipieced in the VM within 60 tries"; return 1; }
  ip netns exec "$NS_WAN" ping -c 3 -i 0.5 -W 3 172.16.4.1 >"$WORK/ping.txt" 2>&1 \
    || { why "handshake done but 172.16.4.1 does not answer: $(tail -n 2 "$WORK/ping.txt" | tr '\n' ' ')"; return 1; }
  echo "laptop: $(grep -E 'packets transmitted' "$WORK/ping.txt")"
}

# ssh_from NS ADDRESS COMMAND... : root@ADDRESS with the ipiece.ssh_key key
ssh_from_ns() {
  local ns=$1 addr=$2
  shift 2
  ip netns exec "$ns" timeout 60 ssh -i "$WORK/ssh_key" -o BatchMode=yes -o ConnectTimeout=15 \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "root@$addr" "$@"
}
# from the WAN namespace's own address 198.51.100.1 (in ipiece.ssh_from)
ssh_vm() { ssh_from_ns "$NS_WAN" 198.51.100.2 "$@"; }
# check_over_ssh : root logs in with the ipiece.ssh_key property over the
# WAN; inside: the key file is 0600, resolv.conf from ipiece.dns, `wg show`
# reads ipieced's UAPI socket, `systemctl reload` reaches the daemon as
# SIGHUP and it keeps running (same PID); gateway.toml's [firewall] has the
# NICs of the banner and ipiece.ssh_from
check_over_ssh() {
  local out pid1 pid2
  out=$(ssh_vm 'stat -c "keymode=%a %n" /etc/ipiece/wg.key; sed "s/^/resolv=/" /etc/resolv.conf;
    awk "/^\\[/ { s = \$0 } s == \"[firewall]\" && /^[a-z_]+ *=/ { print \"fw.\" \$0 }" /etc/ipiece/gateway.toml;
    echo "wgport=$(wg show ipiece0 listen-port)"; echo "pid1=$(systemctl show -p MainPID --value ipieced)";
    systemctl reload ipieced && sleep 2; echo "pid2=$(systemctl show -p MainPID --value ipieced)";
    echo "state=$(systemctl is-active ipieced)";
    echo "reloads=$(journalctl -u ipieced -o cat --no-pager | grep -c "SIGHUP: reloading")"' 2>&1) \
    || { why "ssh root@198.51.100.2 with the ipiece.ssh_key key failed: $(tail -n 2 <<<"$out" | tr '\n' ' ')"; return 1; }
  echo "ssh: $(tr '\n' ' ' <<<"$out")"
  val() { sed -n "s/^$1=//p" <<<"$out" | head -n 1; }
  [ "$(val keymode)" = "600 /etc/ipiece/wg.key" ] || { why "wg.key mode: $(val keymode)"; return 1; }
  [ "$(val resolv)" = "nameserver 198.51.100.1" ] || { why "resolv.conf not from ipiece.dns: $(val resolv)"; return 1; }
  [ "$(val wgport)" = 51821 ] || { why "wg show ipiece0 listen-port: '$(val wgport)'"; return 1; }
  pid1=$(val pid1)
  pid2=$(val pid2)
  [ -n "$pid1" ] && [ "$pid1" != 0 ] && [ "$pid1" = "$pid2" ] || { why "ipieced PID changed on reload ($pid1 -> $pid2)"; return 1; }
  [ "$(val state)" = active ] || { why "ipieced not active after reload"; return 1; }
  [ "$(val reloads)" -ge 1 ] 2>/dev/null || { why "ipieced did not log a SIGHUP reload"; return 1; }
  grep -qx "fw.wan_interface = \"$FW_WAN_IF\"" <<<"$out" || { why "[firewall] wan_interface is not $FW_WAN_IF"; return 1; }
  grep -qx "fw.lan_interface = \"$FW_LAN_IF\"" <<<"$out" || { why "[firewall] lan_interface is not $FW_LAN_IF"; return 1; }
  grep -qx 'fw.ssh_from = \["198.51.100.1/32", "203.0.113.0/24"\]' <<<"$out" \
    || { why "[firewall] ssh_from: $(grep '^fw.ssh_from' <<<"$out")"; return 1; }
  grep -qx 'fw.enabled = false' <<<"$out" && { why "first boot wrote enabled = false"; return 1; }
  return 0
}

t_boot_uefi_guestinfo() {
  local s="$WORK/serial-uefi.log" lappub addr
  cp /usr/share/OVMF/OVMF_VARS_4M.fd "$WORK/OVMF_VARS.fd"
  qemu-img create -q -f qcow2 -b "$VMDK" -F vmdk "$OVERLAY" || { why "qemu-img create overlay"; return 1; }
  (umask 077 && wg genkey >"$LAPTOP_KEY")
  rm -f "$WORK/ssh_key" "$WORK/ssh_key.pub"
  ssh-keygen -q -t ed25519 -N '' -C vm-test -f "$WORK/ssh_key" || { why "ssh-keygen"; return 1; }
  lappub=$(wg pubkey <"$LAPTOP_KEY")
  # WAN is the NIC in the SECOND PCI slot: only its MAC can tell it apart
  cat >"$WORK/seed.conf" <<EOF
# ipiece appliance properties (same keys as guestinfo.ipiece.*)
ipiece.hostname=ipiece-vmtest
ipiece.wan_address=198.51.100.2/24
ipiece.wan_gateway=198.51.100.1
ipiece.dns=198.51.100.1
ipiece.lan_address=172.16.4.1/24
ipiece.public_endpoint=198.51.100.2
ipiece.wan_mac=$MAC_B
ipiece.lan_mac=$MAC_A
ipiece.admin_peer_pubkey=$lappub
ipiece.ssh_key=$(cat "$WORK/ssh_key.pub")
ipiece.ssh_from=198.51.100.1, 203.0.113.0/24
EOF
  ns_create "$NS_WAN" || { why "cannot create $NS_WAN"; return 1; }
  ip -n "$NS_WAN" tuntap add dev "$TAP_WAN" mode tap
  ip -n "$NS_WAN" tuntap add dev "$TAP_LAN" mode tap
  ip -n "$NS_WAN" addr add 198.51.100.1/24 dev "$TAP_WAN"
  # a second WAN source, not in ipiece.ssh_from (wan-scan)
  ip -n "$NS_WAN" addr add "$WAN_SRC_OTHER/24" dev "$TAP_WAN"
  ip -n "$NS_WAN" link set "$TAP_WAN" up
  # the LAN tap bridged to a LAN host 172.16.4.2 in its own namespace
  ns_create "$NS_LAN" || { why "cannot create $NS_LAN"; return 1; }
  ip -n "$NS_WAN" link add "$BR_LAN" type bridge
  ip -n "$NS_WAN" link set "$TAP_LAN" master "$BR_LAN"
  veth "$NS_WAN" "$VETH_LAN" "$NS_LAN" eth0
  ip -n "$NS_WAN" link set "$VETH_LAN" master "$BR_LAN"
  ip -n "$NS_LAN" addr add 172.16.4.2/24 dev eth0
  ip -n "$NS_WAN" link set "$BR_LAN" up
  ip -n "$NS_WAN" link set "$TAP_LAN" up
  # no path to the VM's LAN before the tunnel
  if ip netns exec "$NS_WAN" ping -c 1 -W 1 172.16.4.1 >/dev/null 2>&1; then why "172.16.4.1 reachable without the tunnel"; return 1; fi
  start_uefi_vm "$s"
  local ok=0
  check_banner "$s" && ok=1
  if [ $ok = 1 ]; then
    FIRST_PUB=$BANNER_PUB
    sgrep "$s" -q 'efi: EFI v.* by EDK II' || { why "the kernel did not boot through OVMF (UEFI)"; ok=0; }
    sgrep "$s" -q '^host name: ipiece-vmtest$' || { why "host name not from the seed"; ok=0; }
    sgrep "$s" -qE "^WAN: [a-z0-9]+ \($MAC_B\), configured 198\.51\.100\.2/24 via 198\.51\.100\.1, now: 198\.51\.100\.2/24" \
      || { why "WAN not configured from the seed by MAC: $(serial_value "$s" 'WAN: ')"; ok=0; }
    sgrep "$s" -qE "^LAN: [a-z0-9]+ \($MAC_A\), configured 172\.16\.4\.1/24, now: 172\.16\.4\.1/24" \
      || { why "LAN: $(serial_value "$s" 'LAN: ')"; ok=0; }
    addr=$(tr -d '\r' <"$s" | grep -ao 'ipiece-firstboot: admin peer address: [0-9.]*' | tail -n 1 | awk '{ print $NF }')
    [[ $addr =~ ^172\.16\.60\.[0-9]+$ ]] || { why "no admin peer address on the console ('$addr')"; ok=0; }
    sgrep "$s" -qE "^  admin +" || { why "wgctl status does not list the admin peer"; ok=0; }
    check_firewall_line "$s" '198\.51\.100\.1/32,203\.0\.113\.0/24' || ok=0
    sgrep "$s" -q 'SSH from the WAN is closed' && { why "closed-SSH warning although ssh_from is set"; ok=0; }
  fi
  if [ $ok = 1 ]; then
    ADMIN_ADDR=$addr
    laptop_up "$BANNER_PUB" "$addr" || { why "laptop wireguard-go setup failed"; ok=0; }
    [ $ok = 1 ] && { handshake_and_ping || ok=0; }
    laptop_down
  fi
  [ $ok = 1 ] && { check_over_ssh || ok=0; }
  check_no_secret "$s" "${BANNER_PUB:-}" "$lappub" || { why "a key-shaped string other than the public keys on the console"; ok=0; }
  # the VM stays up for wan-scan when all went well
  if [ $ok = 1 ]; then UEFI_VM_UP=1; else stop_vm; fi
  [ $ok = 1 ]
}

# wan-scan: the WAN side of the running VM from boot-uefi-guestinfo, as an
# outsider sees it. ssh_from is 198.51.100.1/32 (and 203.0.113.0/24); the
# second WAN address 198.51.100.3 is in no ssh_from prefix.
SCAN_PORTS=1-1024,5000-10000,51821
wan_scan() { # wan_scan LOG ARGS... : vm-image/wan-scan.py in the WAN namespace
  local log=$1
  shift
  ip netns exec "$NS_WAN" timeout 120 python3 "$HERE/wan-scan.py" --target 198.51.100.2 "$@" >"$log" 2>&1
  local rc=$?
  grep -v '^tcp_\|^udp_' "$log"
  return $rc
}
scan_value() { sed -n "s/^$2=//p" "$1" | tail -n 1; }
# udp_in : the VM's count of UDP datagrams its sockets have read (/proc/net/snmp)
udp_in() { ssh_vm "awk '/^Udp: [0-9]/ { print \$2; exit }' /proc/net/snmp"; }
t_wan_scan() {
  local out p v n0 n1 ok=1
  [ "${UEFI_VM_UP:-0}" = 1 ] || { why "no running VM from boot-uefi-guestinfo"; return 1; }
  # Every closed UDP port answers a datagram with port-unreachable once the
  # VM's ICMP rate limits are lifted: a UDP port that stays silent is
  # filtered (or one of ipieced's, which ignore the probe). sshd listens on
  # TCP 22 on every address.
  out=$(ssh_vm 'sysctl -qw net.ipv4.icmp_ratelimit=0 net.ipv4.icmp_msgs_per_sec=1000000 net.ipv4.icmp_msgs_burst=1000000 \
    && echo sysctl=ok; ss -Hlntu | sed "s/^/listen /"; nft list tables | sed "s/^/nft /"' 2>&1) \
    || { why "ssh from 198.51.100.1 (in ssh_from) failed: $(tail -n 2 <<<"$out" | tr '\n' ' ')"; stop_vm; return 1; }
  echo "$out"
  grep -qx 'sysctl=ok' <<<"$out" || { why "could not lift the VM's ICMP rate limits"; ok=0; }
  grep -qx 'nft table inet ipiece' <<<"$out" || { why "no nftables table inet ipiece in the VM (ipieced's firewall)"; ok=0; }
  grep -qE '^listen tcp +LISTEN .* (0\.0\.0\.0|\*|\[::\]):22 ' <<<"$out" || { why "sshd does not listen on TCP 22"; ok=0; }
  # ICMP echo (rate-limited, not closed)
  ip netns exec "$NS_WAN" ping -c 3 -i 0.5 -W 2 198.51.100.2 >"$WORK/wan-ping.txt" 2>&1
  grep -qE ' [1-3] received' "$WORK/wan-ping.txt" || { why "ping of the WAN address unanswered: $(grep received "$WORK/wan-ping.txt")"; ok=0; }
  # TCP from the ssh_from source: 22 and nothing else
  wan_scan "$WORK/scan-ok.txt" --source 198.51.100.1 --tcp "$SCAN_PORTS" || { why "wan-scan.py failed"; ok=0; }
  v=$(scan_value "$WORK/scan-ok.txt" tcp_open)
  [ "$v" = 22 ] || { why "TCP open from 198.51.100.1 (ssh_from): '$v', want 22"; ok=0; }
  # from another WAN source: no TCP port (22 included), no UDP port but ipieced's
  wan_scan "$WORK/scan-other.txt" --source "$WAN_SRC_OTHER" --tcp "$SCAN_PORTS" --udp "$SCAN_PORTS" || { why "wan-scan.py failed"; ok=0; }
  v=$(scan_value "$WORK/scan-other.txt" tcp_open)
  [ -z "$v" ] || { why "TCP open from $WAN_SRC_OTHER (not in ssh_from): $v"; ok=0; }
  v=$(scan_value "$WORK/scan-other.txt" udp_answered)
  for p in ${v//,/ }; do
    case $p in 500 | 4500 | 51821) ;; *) why "UDP answered from the WAN: $(cut -c1-200 <<<"$v")"; ok=0; break ;; esac
  done
  # UDP 500 and 4500 get through to ipieced's sockets (51821: the laptop's handshake)
  for p in 500 4500; do
    n0=$(udp_in) || { why "ssh: UDP counters"; ok=0; break; }
    wan_scan "$WORK/scan-$p.txt" --source "$WAN_SRC_OTHER" --udp "$p" --udp-count 40 --udp-rate 100 >/dev/null
    n1=$(udp_in) || { why "ssh: UDP counters"; ok=0; break; }
    echo "UDP $p: 40 datagrams sent, the VM's sockets read $((n1 - n0)) in that time"
    [ $((n1 - n0)) -ge 30 ] || { why "UDP $p: only $((n1 - n0)) of 40 datagrams reached a socket in the VM"; ok=0; }
  done
  # SSH from the LAN (not in ssh_from): the LAN may reach the gateway
  out=$(ssh_from_ns "$NS_LAN" 172.16.4.1 'echo lan-ssh=ok' 2>&1)
  grep -qx 'lan-ssh=ok' <<<"$out" || { why "ssh from the LAN host 172.16.4.2 failed: $(tail -n 1 <<<"$out")"; ok=0; }
  stop_vm
  [ $ok = 1 ]
}

t_reboot_idempotent() {
  local s="$WORK/serial-uefi2.log"
  [ -n "${FIRST_PUB:-}" ] && [ -n "${ADMIN_ADDR:-}" ] || { why "the first UEFI boot did not finish"; return 1; }
  start_uefi_vm "$s"
  local ok=0
  check_banner "$s" && ok=1
  if [ $ok = 1 ]; then
    [ "$BANNER_PUB" = "$FIRST_PUB" ] || { why "the WireGuard key changed on reboot"; ok=0; }
    sgrep "$s" -q 'ipiece-firstboot: configured on ' || { why "first boot ran again"; ok=0; }
    sgrep "$s" -q 'gateway config and keys left as they are' || { why "no idempotence message"; ok=0; }
  fi
  if [ $ok = 1 ]; then
    laptop_up "$BANNER_PUB" "$ADMIN_ADDR" || { why "laptop setup failed"; ok=0; }
    [ $ok = 1 ] && { handshake_and_ping || ok=0; }
    laptop_down
  fi
  # the VM stays up for deb-upgrade-in-vm when all went well
  if [ $ok = 1 ]; then REBOOT_VM_UP=1; else stop_vm; fi
  [ $ok = 1 ]
}

# the README's upgrade path on the running appliance: a newer .deb (this one
# repacked as version <v>+vmtest1) copied over SSH, `apt-get install ./...`:
# the package upgrades, the running ipieced is restarted (new PID, active),
# gateway.toml and the key are untouched, the laptop gets through again
t_deb_upgrade_vm() {
  local up="$WORK/debup" newdeb="$WORK/ipiece-upgrade.deb" ver out val_ok=1
  [ "${REBOOT_VM_UP:-0}" = 1 ] || { why "no running VM from reboot-idempotent"; return 1; }
  rm -rf "$up"
  dpkg-deb -R "$DEB" "$up" || { why "dpkg-deb -R"; stop_vm; return 1; }
  ver=$(sed -n 's/^Version: //p' "$up/DEBIAN/control")
  sed -i "s/^Version: .*/Version: ${ver}+vmtest1/" "$up/DEBIAN/control"
  dpkg-deb -Zgzip -z1 --root-owner-group -b "$up" "$newdeb" >/dev/null || { why "dpkg-deb -b"; stop_vm; return 1; }
  rm -rf "$up"
  ssh_vm 'cat >/root/ipiece-upgrade.deb' <"$newdeb" || { why "copying the .deb over SSH failed"; stop_vm; return 1; }
  out=$(ssh_vm 'sha256sum /etc/ipiece/gateway.toml /etc/ipiece/wg.key >/root/before.sum;
    echo "pid1=$(systemctl show -p MainPID --value ipieced)";
    DEBIAN_FRONTEND=noninteractive apt-get install -y /root/ipiece-upgrade.deb >/root/apt.log 2>&1; echo "apt=$?";
    sleep 2; echo "pid2=$(systemctl show -p MainPID --value ipieced)"; echo "state=$(systemctl is-active ipieced)";
    echo "version=$(dpkg-query -W -f="\${Version}" ipiece)";
    if sha256sum --quiet -c /root/before.sum; then echo files=same; else echo files=changed; fi' 2>&1) \
    || { why "ssh failed: $(tail -n 2 <<<"$out" | tr '\n' ' ')"; stop_vm; return 1; }
  echo "upgrade: $(tr '\n' ' ' <<<"$out")"
  val() { sed -n "s/^$1=//p" <<<"$out" | head -n 1; }
  [ "$(val apt)" = 0 ] || { why "apt-get install of the newer .deb failed"; val_ok=0; }
  [ "$(val version)" = "${ver}+vmtest1" ] || { why "installed version $(val version)"; val_ok=0; }
  [ -n "$(val pid1)" ] && [ "$(val pid1)" != "$(val pid2)" ] && [ "$(val pid2)" != 0 ] \
    || { why "ipieced not restarted by the upgrade ($(val pid1) -> $(val pid2))"; val_ok=0; }
  [ "$(val state)" = active ] || { why "ipieced $(val state) after the upgrade"; val_ok=0; }
  [ "$(val files)" = same ] || { why "the upgrade changed gateway.toml or wg.key"; val_ok=0; }
  if [ $val_ok = 1 ]; then
    laptop_up "$FIRST_PUB" "$ADMIN_ADDR" || { why "laptop setup failed"; val_ok=0; }
    [ $val_ok = 1 ] && { handshake_and_ping || val_ok=0; }
    laptop_down
  fi
  stop_vm
  [ $val_ok = 1 ]
}

LOGDIR_KEEP=$CARGO_TARGET_DIR/ci-logs/vm-image
mkdir -p "$LOGDIR_KEEP"
run_test boot-bios t_boot_bios
run_test boot-uefi-guestinfo t_boot_uefi_guestinfo
run_test wan-scan t_wan_scan
stop_vm
run_test reboot-idempotent t_reboot_idempotent
run_test deb-upgrade-in-vm t_deb_upgrade_vm
cp "$WORK"/serial-*.log "$LOGDIR_KEEP/" 2>/dev/null || true

t_deb_install() {
  local r="$WORK/debroot" apt_cache="$IPIECE_CACHE/apt-archives" mirror
  mirror=$(host_apt_sources) || { why "no Debian mirror in this host's apt sources"; return 1; }
  mkdir -p "$apt_cache"
  cp "$DEB" "$WORK/"
  local deb
  deb="$WORK/$(basename "$DEB")"
  # a clean minbase root; the .deb is installed by apt inside it while the
  # package lists are still there (mmdebstrap's customize hooks)
  if ! mmdebstrap --mode=root --variant=minbase --format=directory \
      --skip=download/empty --skip=essential/unlink \
      --setup-hook="mkdir -p \"\$1/var/cache/apt/archives\"; find '$apt_cache' -maxdepth 1 -name '*.deb' -exec cp -t \"\$1/var/cache/apt/archives/\" {} +" \
      --customize-hook="cp '$deb' \"\$1/tmp/\"" \
      --customize-hook="chroot \"\$1\" env DEBIAN_FRONTEND=noninteractive apt-get install -y /tmp/$(basename "$deb")" \
      --customize-hook="rm -f \"\$1\"/var/cache/apt/archives/*.deb \"\$1/tmp/$(basename "$deb")\"" \
      bookworm "$r" "$mirror" >"$WORK/deb-install.log" 2>&1; then
    tail -n 20 "$WORK/deb-install.log"
    why "mmdebstrap + apt-get install ./ipiece.deb failed"
    return 1
  fi
  grep -E '^(Setting up|Unpacking) ipiece' "$WORK/deb-install.log"
  local v
  v=$(chroot "$r" ipieced --version 2>&1) || { why "ipieced --version: $v"; return 1; }
  echo "chroot: $v"
  [[ $v =~ ^ipieced\ [0-9]+\.[0-9]+\.[0-9]+ ]] || { why "unexpected ipieced --version output: $v"; return 1; }
  v=$(chroot "$r" wgctl --version 2>&1) || { why "wgctl --version: $v"; return 1; }
  echo "chroot: $v"
  # ipieced runs nft: the package pulls nftables in
  v=$(chroot "$r" nft --version 2>&1) || { why "nft not installed with the .deb: $v"; return 1; }
  echo "chroot: $v"
  [ -f "$r/lib/systemd/system/ipieced.service" ] || { why "unit not installed"; return 1; }
  [ -f "$r/usr/share/doc/ipiece/examples/gateway.toml" ] || { why "example config not installed"; return 1; }
  [ "$(stat -c %a "$r/etc/ipiece")" = 700 ] || { why "/etc/ipiece not 0700"; return 1; }
  [ -L "$r/etc/systemd/system/multi-user.target.wants/ipieced.service" ] || { why "ipieced.service not enabled"; return 1; }
  chroot "$r" dpkg-query -W -f='${Status}\n' ipiece | grep -q 'install ok installed' || { why "dpkg does not list ipiece as installed"; return 1; }
  rm -rf "$r"
}
run_test deb-install t_deb_install

section "vm-image: $((SECONDS - START))s"
[ $FAILED -eq 0 ] || echo "failed: ${FAILED_NAMES[*]} (serial logs: $LOGDIR_KEEP)"
echo "vm-image: $PASSED passed, $FAILED failed"
[ $FAILED -eq 0 ]
