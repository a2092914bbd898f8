#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 30 s each), starting from the
# committed seeds plus the corpus kept from earlier runs. Exits non-zero on the
# first crash; libFuzzer leaves the reproducer in fuzz/artifacts/<target>/, which
# then becomes a regression seed (fuzz/seeds/<target>/) with a fix.
#
#   fuzz/run.sh [SECONDS]
#
# Needs cargo-fuzz (cargo install cargo-fuzz --locked). Stable toolchain:
# RUSTC_BOOTSTRAP=1 lets it pass the -Z flags libFuzzer's instrumentation needs.
# No sanitizer (-s none): the code fuzzed is safe Rust, and plain coverage runs
# several times faster.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH="${1:-30}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}"
CORPUS="${WEIR_FUZZ_CORPUS:-$HOME/.cache/weir/fuzz-corpus}"
export RUSTC_BOOTSTRAP=1
for target in batch_validate project_file mapping_expr plugin_output; do
  extra=()
  case "$target" in
    mapping_expr) extra=(-dict=mapping_expr.dict -max_len=4200 -len_control=0) ;;
    project_file) extra=(-max_len=65536) ;;
  esac
  mkdir -p "$CORPUS/$target"
  echo "== fuzz $target for ${SECONDS_EACH}s"
  cargo fuzz run -s none --target-dir "$CARGO_TARGET_DIR/fuzz" "$target" \
    "$CORPUS/$target" "seeds/$target" -- \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -print_final_stats=1 "${extra[@]}" 2>&1 \
    | grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)|ERROR|panicked|overflow|SUMMARY|Test unit written'
done
