#!/usr/bin/env bash
# The README's second command (and what CI runs): builds the static binaries and the guest
# kernel (cached), then runs the whole test suite of the workspace with nextest.
#
# Skips: a test that cannot run on this machine records itself in $VCOMPARE_SKIP_LOG
# (tests/common/skip.rs); the list and its count are printed after the run. On the machine
# kind the project targets (Debian 12, root, /dev/kvm) no test may skip: VCOMPARE_NO_SKIP=1
# turns every skip into a failure that names the missing capability.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-static.sh
if [[ -x kernels/build.sh ]]; then
    kernels/build.sh
fi
skiplog="$(mktemp /tmp/vcompare-skips.XXXXXX)"
trap 'rm -f "$skiplog"' EXIT
export VCOMPARE_SKIP_LOG="$skiplog"
if [[ $(id -u) -eq 0 && -c /dev/kvm && "$(cut -d. -f1 /etc/debian_version 2>/dev/null)" == 12 ]]; then
    echo "==> target machine kind (Debian 12, root, /dev/kvm): no test may skip"
    export VCOMPARE_NO_SKIP=1
fi
rc=0
cargo nextest run --workspace --no-fail-fast "$@" || rc=$?
skipped=$(grep -c '^SKIPPED' "$skiplog" || true)
echo "==> tests skipped for a missing machine capability: $skipped"
[[ $skipped -eq 0 ]] || sed 's/^/    /' "$skiplog"
exit "$rc"
