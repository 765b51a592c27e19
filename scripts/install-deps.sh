#!/usr/bin/env bash
# Installs (idempotently) every Debian package vcompare's build, tests and benchmarks use.
# Used by scripts/setup.sh and .ci/run so the two never drift apart.
set -euo pipefail
PACKAGES=(
    build-essential pkg-config
    e2fsprogs
    busybox-static                 # the default image's userland
    fonts-dejavu-core              # text in PNG charts (plotters)
    umoci                          # differential test of the image store
    crun runc                      # container peers (benchmarks, differential test)
    qemu-system-x86                # microVM peer (qemu -M microvm)
    nftables iproute2              # networks: -p and isolation rules (nft), test host set-up (ip)
    linux-source-6.12              # guest kernel source
    flex bison bc libelf-dev libssl-dev cpio xz-utils dwarves  # guest kernel build
)
missing=()
for p in "${PACKAGES[@]}"; do
    [[ "$p" == \#* ]] && continue
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "missing Debian packages: ${missing[*]}; run this script as root (it uses apt-get)" >&2
        exit 1
    fi
    echo "==> installing Debian packages: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    echo "==> Debian packages: all present"
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
