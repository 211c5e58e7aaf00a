#!/usr/bin/env bash
# test.sh - every check and test of ipiece, as CI runs it (`bash .ci/run`).
#
#   1. dependencies: Debian packages the tests use (only if a command is
#      missing), rustfmt and clippy (only if missing), /dev/net/tun, and a
#      venv with moto[server] for tests/aws_moto.rs ($CARGO_TARGET_DIR/moto-venv)
#   2. cargo fmt --check
#   3. cargo clippy --all-targets -- -D warnings
#   4. cargo test --all-targets --no-fail-fast (dev profile; the integration tests in tests/
#      need root and network namespaces)
#   5. scripts/demo.sh: the seed topology, asserting its ping matrix, names
#      and failover time (DEMO_TIMEOUT, default 300 s)
#   6. vm-image/test.sh: the ESXi appliance built from those dev binaries (OVA
#      checks, qemu boots with BIOS and UEFI, a wireguard-go laptop against
#      the VM, the .deb in a clean Debian 12 root); VM_TIMEOUT (default 1200 s)
#      bounds it; IPIECE_SKIP_VM=1 skips it outside CI
#
# Build output goes to $CARGO_TARGET_DIR (default /var/cache/ipiece-ci/target,
# outside the clone so later runs reuse it); long logs go to
# $CARGO_TARGET_DIR/ci-logs/ and only their tails are printed on failure.
# Namespaces named ipt-<pid>-... whose test process <pid> is gone (left by a
# killed run) are deleted before and after the tests; nothing else is touched.
# Env: TEST_TIMEOUT (seconds for `cargo test`, default 1800), extra arguments
# are passed to `cargo test` (e.g. scripts/test.sh config::).
set -euo pipefail

LOG_TAG="test"
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

ROOT=$(repo_root)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/ipiece-ci/target}
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
TEST_TIMEOUT=${TEST_TIMEOUT:-1800}
TEST_NS_PREFIX=ipt- # the integration tests' namespaces; nothing else is touched
LOGDIR=$CARGO_TARGET_DIR/ci-logs
mkdir -p "$LOGDIR"
START=$SECONDS

step_failed() { # step_failed NAME LOG : print the log's tail, exit 1
  printf '\n---- last lines of %s ----\n' "$2"
  tail -n "${3:-60}" "$2"
  printf '\nFAILED: %s (full log: %s)\n' "$1" "$2"
  exit 1
}

# test_namespaces_stale : the namespaces of our test prefix whose test process
# is gone. The tests name them ipt-<pid>-<n>-<role>; one whose <pid> is alive
# belongs to a test running right now (another cargo test on this machine)
# and is left alone.
test_namespaces_stale() {
  local ns pid
  command -v ip >/dev/null 2>&1 || return 0
  for ns in $(ip netns list 2>/dev/null | awk -v p="$TEST_NS_PREFIX" 'index($1, p) == 1 { print $1 }'); do
    pid=${ns#"$TEST_NS_PREFIX"}
    pid=${pid%%-*}
    case $pid in '' | *[!0-9]*) ;; *) kill -0 "$pid" 2>/dev/null && continue ;; esac
    echo "$ns"
  done
}

# remove the namespaces an earlier (killed) test run left behind; only ours
clean_test_namespaces() {
  local ns pids
  for ns in $(test_namespaces_stale); do
    pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
    log "removing leftover namespace $ns${pids:+ (processes still inside: $pids)}"
    ip netns del "$ns" || log "warning: could not delete $ns"
  done
}

# ------------------------------------------------------------------ deps -----
section "environment"
echo "repo: $ROOT  commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)"
echo "user: $(id -un)  CI: ${CI:-no}  cpus: $(nproc)  kernel: $(uname -r)"
echo "target dir: $CARGO_TARGET_DIR"

section "dependencies"
# strongSwan 5.9 as the AWS VGW in the IPsec tests: charon with the
# kernel-libipsec data plane (these kernels have no ESP) and swanctl;
# Prometheus's promtool and server for tests/metrics.rs;
# dnsmasq (the binary only: the `dnsmasq` package would start a system
# service), busybox's udhcpc and dig for tests/lan_services.rs
ensure_commands \
  ip:iproute2 nft:nftables wg:wireguard-tools wireguard-go:wireguard-go \
  ping:iputils-ping iperf3:iperf3 jq:jq ps:procps python3:python3 tcpdump:tcpdump \
  /usr/sbin/dnsmasq:dnsmasq-base busybox:busybox dig:bind9-dnsutils \
  swanctl:strongswan-swanctl /usr/lib/ipsec/charon:strongswan-charon \
  /usr/lib/ipsec/plugins/libstrongswan-openssl.so:libstrongswan-standard-plugins \
  /usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so:libcharon-extra-plugins \
  promtool:prometheus prometheus:prometheus
for comp in rustfmt:fmt clippy:clippy; do
  if ! cargo "${comp#*:}" --version >/dev/null 2>&1; then
    log "installing rustup component ${comp%%:*}"
    rustup component add "${comp%%:*}" || die "rustup component add ${comp%%:*} failed"
  fi
done
if [ "$(id -u)" -eq 0 ]; then
  ensure_tun_device
else
  log "warning: not root: the integration tests that need network namespaces will fail or skip"
fi
# moto's EC2 server for tests/aws_moto.rs, in a venv beside the build output
MOTO_VERSION=5.2.5
MOTO_VENV=$CARGO_TARGET_DIR/moto-venv
if ! "$MOTO_VENV/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
  log "creating $MOTO_VENV (moto[server]==$MOTO_VERSION)"
  python3 -m venv "$MOTO_VENV" || die "python3 -m venv failed (apt-get install python3-venv)"
  "$MOTO_VENV/bin/pip" install -q "moto[server]==$MOTO_VERSION" >"$LOGDIR/moto-pip.log" 2>&1 \
    || step_failed "pip install moto" "$LOGDIR/moto-pip.log"
fi
echo "moto $("$MOTO_VENV/bin/python" -c 'import moto; print(moto.__version__)') ($MOTO_VENV)"
echo "$(cargo --version); $(rustc --version)"
echo "$(cargo fmt --version); $(cargo clippy --version)"
echo "$(wireguard-go --version 2>/dev/null | head -n 1); $(wg --version 2>/dev/null)"
echo "strongSwan $(dpkg-query -W -f='${Version}' strongswan-charon 2>/dev/null || echo '?') (charon, swanctl, kernel-libipsec)"

# ------------------------------------------------------------------ fmt ------
section "cargo fmt --check"
if ! cargo fmt --all --check -- --color never >"$LOGDIR/fmt.log" 2>&1; then
  step_failed "cargo fmt --check (run: cargo fmt --all)" "$LOGDIR/fmt.log" 120
fi
echo "ok"

# ------------------------------------------------------------------ clippy ---
section "cargo clippy --all-targets -- -D warnings"
if ! cargo clippy --all-targets -- -D warnings >"$LOGDIR/clippy.log" 2>&1; then
  # the diagnostics, without the long list of crates compiled
  grep -v -E '^ *(Compiling|Checking|Downloaded|Downloading|Locking|Adding|Updating) ' "$LOGDIR/clippy.log" \
    >"$LOGDIR/clippy-diagnostics.log" || true
  step_failed "cargo clippy" "$LOGDIR/clippy-diagnostics.log" 150
fi
tail -n 1 "$LOGDIR/clippy.log"

# ------------------------------------------------------------------ fuzz -----
# The cargo-fuzz targets live in their own workspace (tests/fuzz); build them
# on stable so that an API change cannot break them unnoticed. Fuzzing itself
# needs nightly: tests/fuzz/smoke.sh SECONDS.
section "fuzz targets build (tests/fuzz)"
if ! cargo build --manifest-path tests/fuzz/Cargo.toml --bins >"$LOGDIR/fuzz-build.log" 2>&1; then
  step_failed "fuzz targets build" "$LOGDIR/fuzz-build.log" 80
fi
tail -n 1 "$LOGDIR/fuzz-build.log"

# ------------------------------------------------------------------ tests ----
section "cargo test --all-targets: build"
if ! cargo test --all-targets --no-run >"$LOGDIR/test-build.log" 2>&1; then
  step_failed "cargo test build" "$LOGDIR/test-build.log" 100
fi
grep -E '^ *Finished ' "$LOGDIR/test-build.log" | tail -n 1 || true

section "cargo test --all-targets: run (timeout ${TEST_TIMEOUT}s)"
clean_test_namespaces
trap clean_test_namespaces EXIT
rc=0
# with pipefail the status is timeout's (cargo's, or 124 on timeout), not tee's
timeout --kill-after=30 "$TEST_TIMEOUT" cargo test --all-targets --no-fail-fast "$@" 2>&1 | tee "$LOGDIR/test.log" || rc=$?
leftover=$(test_namespaces_stale | tr '\n' ' ')
[ -z "$leftover" ] || log "warning: tests left namespaces behind: $leftover(removed now)"

# the cargo tests' counts over all test binaries
read -r CARGO_P CARGO_F CARGO_S CARGO_N < <(awk '/^test result: / {
       for (i = 1; i <= NF; i++) {
         if ($(i) ~ /^passed;?$/) p += $(i - 1)
         if ($(i) ~ /^failed;?$/) f += $(i - 1)
         if ($(i) ~ /^ignored;?$/) s += $(i - 1)
       }
       n++
     }
     END { printf "%d %d %d %d\n", p, f, s, n }' "$LOGDIR/test.log")
printf '\n(%d test binaries)\ncargo: %d passed, %d failed, %d skipped\n' "$CARGO_N" "$CARGO_P" "$CARGO_F" "$CARGO_S"
CARGO_FAILED=""
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  CARGO_FAILED="cargo test timed out after ${TEST_TIMEOUT}s"
elif [ "$rc" -ne 0 ]; then
  CARGO_FAILED="cargo test (exit $rc; log: $LOGDIR/test.log)"
fi

# ------------------------------------------------------------------ demo -----
# scripts/demo.sh on the dev binaries just built: the seed topology (office
# router, gateway with firewall, DHCP and DNS, a DHCP team VM, a wireguard-go
# laptop, two strongSwan VGWs) asserts its ping matrix, names and failover
# time. It counts as one test. DEMO_TIMEOUT (default 300 s) bounds it.
DEMO_TIMEOUT=${DEMO_TIMEOUT:-300}
DEMO_P=0
DEMO_F=0
DEMO_FAILED=""
section "scripts/demo.sh (timeout ${DEMO_TIMEOUT}s)"
demo_start=$SECONDS
demo_rc=0
IPIECE_BIN_DIR="$CARGO_TARGET_DIR/debug" IPDEMO_DIR="$CARGO_TARGET_DIR/demo-state" \
  timeout --kill-after=30 "$DEMO_TIMEOUT" bash scripts/demo.sh 2>&1 | tee "$LOGDIR/demo.log" || demo_rc=$?
if [ "$demo_rc" -eq 0 ]; then
  DEMO_P=1
else
  DEMO_F=1
  DEMO_FAILED="scripts/demo.sh (exit $demo_rc; log: $LOGDIR/demo.log)"
  # a demo killed by the timeout leaves its namespaces: tear them down
  bash scripts/demo.sh --down >/dev/null 2>&1 || true
fi
echo "demo section: $((SECONDS - demo_start))s"

# ------------------------------------------------------------------ vm -------
# The ESXi appliance (vm-image/test.sh): builds the OVA and the .deb from the
# dev binaries the cargo tests just built, checks the OVA, boots it under
# qemu (TCG) with BIOS and UEFI, runs a wireguard-go laptop against ipieced
# inside the VM, installs the .deb in a clean Debian 12 root. Its own time
# bound (VM_TIMEOUT). IPIECE_SKIP_VM=1 skips it, except in CI (CI=true).
VM_TIMEOUT=${VM_TIMEOUT:-1200}
VM_P=0
VM_F=0
VM_FAILED=""
if [ "${IPIECE_SKIP_VM:-0}" = 1 ] && [ "${CI:-}" != true ]; then
  section "vm-image: skipped (IPIECE_SKIP_VM=1)"
else
  section "vm-image tests (timeout ${VM_TIMEOUT}s)"
  vm_start=$SECONDS
  vm_rc=0
  IPIECE_BIN_DIR="$CARGO_TARGET_DIR/debug" timeout --kill-after=30 "$VM_TIMEOUT" \
    bash vm-image/test.sh 2>&1 | tee "$LOGDIR/vm-image.log" || vm_rc=$?
  clean_test_namespaces
  vm_line=$(grep -E '^vm-image: [0-9]+ passed, [0-9]+ failed$' "$LOGDIR/vm-image.log" | tail -n 1)
  if [ -n "$vm_line" ]; then
    VM_P=$(awk '{ print $2 }' <<<"$vm_line")
    VM_F=$(awk '{ print $4 }' <<<"$vm_line")
  fi
  if [ "$vm_rc" -eq 124 ] || [ "$vm_rc" -eq 137 ]; then
    VM_FAILED="vm-image tests timed out after ${VM_TIMEOUT}s"
  elif [ "$vm_rc" -ne 0 ]; then
    VM_FAILED="vm-image tests (exit $vm_rc; log: $LOGDIR/vm-image.log)"
  fi
  # a run that died before its closing line counts as one failure
  if [ -n "$VM_FAILED" ] && [ "$VM_F" -eq 0 ]; then VM_F=1; fi
  echo "vm-image section: $((SECONDS - vm_start))s"
fi

# one closing line over the cargo tests and the vm-image tests
printf '\ntotal: %d passed, %d failed, %d skipped\n' \
  $((CARGO_P + DEMO_P + VM_P)) $((CARGO_F + DEMO_F + VM_F)) "$CARGO_S"
if [ -n "$CARGO_FAILED" ] || [ -n "$DEMO_FAILED" ] || [ -n "$VM_FAILED" ]; then
  [ -z "$CARGO_FAILED" ] || echo "FAILED: $CARGO_FAILED"
  [ -z "$DEMO_FAILED" ] || echo "FAILED: $DEMO_FAILED"
  [ -z "$VM_FAILED" ] || echo "FAILED: $VM_FAILED"
  exit 1
fi

section "all checks passed in $((SECONDS - START))s"
