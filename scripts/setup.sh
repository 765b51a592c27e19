#!/usr/bin/env bash
# The README's first command: installs what is missing, builds everything, runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
echo "==> vcompare demo"
exec target/release/vcompare demo
