#!/usr/bin/env bash
# Builds everything vcompare runs: the CLI (release), the static probe and guest init, and the
# guest kernel (cached outside the clone; rebuilt only when its inputs change).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> building vcompare (release)"
cargo build --release --workspace
echo "==> building static binaries (probe, vcompare-init)"
scripts/build-static.sh
if [[ -x kernels/build.sh ]]; then
    echo "==> guest kernel"
    kernels/build.sh
fi
