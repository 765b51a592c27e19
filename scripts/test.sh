#!/usr/bin/env bash
# The README's second command (and what CI runs): builds the static binaries and the guest
# kernel (cached), then runs the whole test suite of the workspace with nextest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-static.sh
if [[ -x kernels/build.sh ]]; then
    kernels/build.sh
fi
exec cargo nextest run --workspace --no-fail-fast "$@"
