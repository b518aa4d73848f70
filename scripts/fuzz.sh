#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each for N seconds (default 30); exits non-zero
# if any target finds a crash, a failed property or a hang (the input lands in fuzz/artifacts/).
#
#   scripts/fuzz.sh [seconds-per-target] [target...]     (default: every target)
#
# Needs the nightly toolchain (`cargo +nightly`) and cargo-fuzz (installed from crates.io when
# missing). The committed seeds in fuzz/corpus/<target>/ are read, never written: what a run
# discovers goes to a working corpus next to the build, outside the clone.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs="${1:-30}"
[ $# -gt 0 ] && shift
export PATH="$PATH:$HOME/.cargo/bin"
target_dir="${CARGO_TARGET_DIR:-$HOME/.cache/fairway-target}/fuzz"

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== cargo install cargo-fuzz --locked"
  cargo install cargo-fuzz --locked
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

start=$(date +%s)
echo "== cargo +nightly fuzz build (target dir $target_dir)"
cargo +nightly fuzz build --target-dir "$target_dir"
echo "== built in $(( $(date +%s) - start )) s"

failed=()
for t in "${targets[@]}"; do
  work="$target_dir/corpus/$t"
  log="$target_dir/logs/$t.log"
  mkdir -p "$work" "artifacts/$t" "$(dirname "$log")"
  # libFuzzer reports every new input; keep that in a log and show the summary.
  if cargo +nightly fuzz run --target-dir "$target_dir" "$t" "$work" "$PWD/corpus/$t" -- \
      -max_total_time="$secs" -timeout=25 -print_final_stats=1 \
      -artifact_prefix="$PWD/artifacts/$t/" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    echo "== $t: ok, ${runs:-?} runs in ${secs} s, ${cov:-cov: ?}"
  else
    echo "== $t: FAILED (log $log)"
    tail -n 40 "$log" | cut -c1-300
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: failing targets: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets, ${secs} s each, no failures"
