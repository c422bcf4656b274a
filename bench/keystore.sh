#!/usr/bin/env bash
# Opening a client identity from the command line: `downloader keystore inspect` against the
# tools people use today for the same files (openssl pkcs12, keytool -list), in one hyperfine
# run, so the ratios hold on a noisy machine. Needs: hyperfine, openssl; keytool if present.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -q -p downloader
bin=target/release/downloader
f=tests/fixtures
pass=Fx-store-7431
out=${BENCH_OUT:-target/bench}
mkdir -p "$out"

hyperfine -N --warmup 3 --runs "${RUNS:-30}" --export-markdown "$out/keystore-pkcs12.md" \
  -n "downloader inspect (openssl.p12)" "$bin keystore inspect $f/client/rsa2048/openssl.p12 --password $pass" \
  -n "openssl pkcs12 -info (openssl.p12)" "openssl pkcs12 -info -noout -in $f/client/rsa2048/openssl.p12 -passin pass:$pass" \
  -n "downloader inspect (legacy.p12)" "$bin keystore inspect $f/client/rsa2048/legacy.p12 --password $pass" \
  -n "openssl pkcs12 -legacy -info (legacy.p12)" "openssl pkcs12 -legacy -info -noout -in $f/client/rsa2048/legacy.p12 -passin pass:$pass"

if command -v keytool >/dev/null; then
  hyperfine -N --warmup 2 --runs "${RUNS_JAVA:-10}" --export-markdown "$out/keystore-java.md" \
    -n "downloader inspect (JKS)" "$bin keystore inspect $f/client/rsa2048/documented.jks --password $pass" \
    -n "keytool -list (JKS)" "keytool -list -keystore $f/client/rsa2048/documented.jks -storepass $pass" \
    -n "downloader inspect (JCEKS)" "$bin keystore inspect $f/client/rsa2048/imported.jceks --password $pass" \
    -n "keytool -list (JCEKS)" "keytool -list -storetype JCEKS -keystore $f/client/rsa2048/imported.jceks -storepass $pass"
fi
