#!/usr/bin/env bash
# Coverage-guided fuzzing with libFuzzer on the stable toolchain: the flags cargo-fuzz passes
# with `--sanitizer none`, applied to target code only (`--target`), so build scripts and
# proc-macros build normally. Usage: fuzz/run.sh [TARGET...] (default: all) with SECONDS=60.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(jks jceks pkcs12 pem)
triple=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo build --release --bins --target "$triple"

# Seeds: the committed fixtures, with the magic each target prepends itself cut off.
seed() { # target, find pattern, bytes to skip
  mkdir -p "corpus/$1"
  find ../tests/fixtures -name "$2" | while read -r f; do
    tail -c +"$(($3 + 1))" "$f" > "corpus/$1/$(printf '%s' "$f" | sha1sum | cut -c1-12)"
  done
}
seed jks '*.jks' 4
seed jceks '*.jceks' 4
seed pkcs12 '*.p12' 0
seed pem '*.pem' 11

for target in "${targets[@]}"; do
  "target/$triple/release/$target" "corpus/$target" -max_total_time="${SECONDS_PER_TARGET:-60}" \
    -print_final_stats=1
done
