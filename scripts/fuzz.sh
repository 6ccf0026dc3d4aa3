#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of the decoders, the open-time scan, the
# snapshot reader and salvage, SECONDS per target (default 60). cargo-fuzz needs nightly features; the
# stable toolchain provides them with RUSTC_BOOTSTRAP=1. A crash fails the run and leaves the
# input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-60}
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked
cargo fuzz build -O
for target in decoders wal_scan snapshot salvage; do
  # Fuzz a scratch copy so the committed seed corpus only changes on purpose.
  scratch=$(mktemp -d)
  # Salvage starts from the scan's seeds: WAL files, whole and damaged.
  seeds=$target
  [ "$target" = salvage ] && seeds=wal_scan
  cp corpus/"$seeds"/* "$scratch"/
  status=0
  cargo fuzz run -O "$target" "$scratch" -- -max_total_time="$seconds" -max_len=65536 -timeout=20 \
    >"$scratch.log" 2>&1 || status=$?
  grep -E '^Done|ERROR|SUMMARY|panicked' "$scratch.log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$scratch.log"
    echo "fuzz target $target failed (exit $status); the input is in fuzz/artifacts/$target/"
    exit 1
  fi
  echo "$target: corpus $(ls "$scratch" | wc -l) inputs after the run"
  rm -rf "$scratch" "$scratch.log"
done
