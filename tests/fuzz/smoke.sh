#!/usr/bin/env bash
# smoke.sh [SECONDS] - the fuzz targets of tests/fuzz, from the repository root:
#   1. build them on the default (stable) toolchain: they still compile
#      against the crate's current API (no instrumentation, needs no nightly);
#   2. with a nightly toolchain and cargo-fuzz installed, run each target for
#      SECONDS (default 60) with cargo-fuzz; a crash fails the script and
#      leaves its input in tests/fuzz/artifacts/<target>/.
# Build output goes to $CARGO_TARGET_DIR (default /var/cache/ipiece-ci/target).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
SECONDS_PER_TARGET=${1:-60}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/ipiece-ci/target}
TARGETS="ike_message natt_demux esp_open inner_flow ike_responder wg_gateway tcp_mss_frag"

echo "== building the fuzz targets (stable, uninstrumented)"
cargo build --manifest-path tests/fuzz/Cargo.toml --bins

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "== no nightly toolchain: not fuzzing (rustup toolchain install nightly)"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== cargo-fuzz missing: not fuzzing (cargo install cargo-fuzz)"
  exit 0
fi
for t in $TARGETS; do
  echo "== fuzzing $t for ${SECONDS_PER_TARGET}s"
  mkdir -p "tests/fuzz/corpus/$t"
  seeds=()
  case $t in
    ike_message | natt_demux) seeds=(tests/fixtures/ike/strongswan-5.9.8) ;;
  esac
  cargo +nightly fuzz run --fuzz-dir tests/fuzz "$t" "tests/fuzz/corpus/$t" "${seeds[@]}" -- \
    -max_total_time="$SECONDS_PER_TARGET" -max_len=4096 -len_control=0 2>&1 |
    grep -E '^(#[0-9]+[[:space:]]+DONE|Done |==[0-9]+==|SUMMARY|thread .* panicked|artifact_prefix)' || true
  # cargo fuzz exits non-zero on a crash; pipefail would hide which target
  if [ -n "$(ls -A "tests/fuzz/artifacts/$t" 2>/dev/null)" ]; then
    echo "FAILED: $t left inputs in tests/fuzz/artifacts/$t:"
    ls -l "tests/fuzz/artifacts/$t"
    exit 1
  fi
done
echo "== fuzzing: no crash"
