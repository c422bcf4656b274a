#!/usr/bin/env bash
# Coverage-guided fuzzing with libFuzzer on the stable toolchain: the flags cargo-fuzz passes
# with `--sanitizer none`, applied to target code only (`--target`), so build scripts and
# proc-macros build normally. Usage: fuzz/run.sh [TARGET...] (default: all) with
# SECONDS_PER_TARGET=60. A crash, a hang (an input over TIMEOUT=10 s) or an input over
# RSS_LIMIT_MB=2048 stops the run with an error; the input is kept under artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
all=(jks jceks pkcs12 pem job config proxy_selectors amqp_message)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
triple=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
build=(cargo build --release --target "$triple")
for target in "${targets[@]}"; do build+=(--bin "$target"); done
"${build[@]}"

# Seeds: the committed fixtures, with the magic each keystore target prepends itself cut off,
# and the committed inputs under seeds/TARGET (jobs and configuration from the docs).
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
for target in job config proxy_selectors amqp_message; do
  mkdir -p "corpus/$target"
  cp seeds/"$target"/* "corpus/$target/"
done

for target in "${targets[@]}"; do
  mkdir -p "artifacts/$target"
  echo "== fuzz target $target"
  "target/$triple/release/$target" "corpus/$target" -max_total_time="${SECONDS_PER_TARGET:-60}" \
    -timeout="${TIMEOUT:-10}" -rss_limit_mb="${RSS_LIMIT_MB:-2048}" \
    -artifact_prefix="artifacts/$target/" -print_final_stats=1
done
