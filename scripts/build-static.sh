#!/usr/bin/env bash
# Builds the static binaries that go into images and guests: `probe` (the default image's
# workload) and `vcompare-init` (the microVM's PID 1). An explicit --target keeps
# +crt-static away from build scripts and proc-macros.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --quiet \
    --target x86_64-unknown-linux-gnu --target-dir target/static \
    -p probe -p vcompare-init
echo "static binaries: target/static/x86_64-unknown-linux-gnu/release/{probe,vcompare-init}"
