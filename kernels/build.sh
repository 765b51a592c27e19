#!/usr/bin/env bash
# Builds vcompare's microVM guest kernel (an ELF vmlinux with a PVH entry note) from Debian's
# linux-source-6.12 package: tinyconfig + kernels/vcompare.config + kernels/patches/*.patch.
#
# The result is cached outside the repository at
#   ${VCOMPARE_KERNEL_CACHE:-/var/cache/vcompare/kernels}/<hash>/vmlinux
# where <hash> = sha256(source package version, config fragment, patches, this script), so a
# rerun with nothing changed only prints the path. The last line printed is always the path.
#
# Usage: kernels/build.sh [--print-path]   (--print-path: print where the kernel would be; build nothing)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${VCOMPARE_KERNEL_CACHE:-/var/cache/vcompare/kernels}"
tarball=/usr/src/linux-source-6.12.tar.xz
jobs="${JOBS:-$(nproc)}"

if ! version="$(dpkg-query -W -f='${Version}' linux-source-6.12 2>/dev/null)" || [ ! -f "$tarball" ]; then
    echo "kernels/build.sh: $tarball is missing; install it with: apt-get install linux-source-6.12" >&2
    exit 1
fi

# The cache key: everything that can change the output.
hash="$(
    {
        printf 'linux-source-6.12 %s\n' "$version"
        cat "$here/vcompare.config"
        for p in "$here"/patches/*.patch; do printf '%s\n' "$(basename "$p")"; cat "$p"; done
        cat "$here/build.sh"
    } | sha256sum | cut -c1-64
)"
out="$cache/$hash"

if [ "${1:-}" = "--print-path" ]; then
    echo "$out/vmlinux"
    exit 0
fi
if [ -f "$out/vmlinux" ]; then
    echo "kernel up to date (cached)" >&2
    echo "$out/vmlinux"
    exit 0
fi

mkdir -p "$cache"
# The build tree is kept (keyed by the same hash) when a build fails, so a rerun continues
# incrementally; it is deleted after a successful build.
work="$cache/build-$hash"
start=$(date +%s)
step() { echo "[kernel $(( $(date +%s) - start ))s] $*" >&2; }
src="$work/linux-source-6.12"

if [ ! -f "$work/.prepared" ]; then
    rm -rf "$work"
    mkdir -p "$work"
    step "unpacking $tarball ($version)"
    tar -C "$work" -xf "$tarball"
    for p in "$here"/patches/*.patch; do
        step "applying $(basename "$p")"
        patch -s -d "$src" -p1 < "$p"
    done
    touch "$work/.prepared"
else
    step "continuing the build in $work"
fi

step "configuring: tinyconfig + vcompare.config"
make -s -C "$src" tinyconfig >/dev/null
"$src/scripts/kconfig/merge_config.sh" -m -O "$src" "$src/.config" "$here/vcompare.config" >/dev/null
make -s -C "$src" olddefconfig >/dev/null
# Every option of the fragment must have survived dependency resolution.
missing=0
while IFS= read -r line; do
    case "$line" in
        CONFIG_*=*) want="$line" ;;
        "# CONFIG_"*" is not set") want="$line" ;;
        *) continue ;;
    esac
    if ! grep -qxF "$want" "$src/.config"; then
        opt="${want#\# }"; opt="${opt%%[= ]*}"
        # "not set" also holds when the option does not exist any more.
        if [[ "$want" == "# "* ]] && ! grep -q "^$opt=" "$src/.config"; then continue; fi
        echo "kernels/build.sh: config option not applied: $want (have: $(grep -E "(^|# )$opt[= ]" "$src/.config" || echo absent))" >&2
        missing=1
    fi
done < "$here/vcompare.config"
[ "$missing" = 0 ] || { echo "kernels/build.sh: fix kernels/vcompare.config" >&2; exit 1; }

step "compiling vmlinux with $jobs jobs (takes minutes)"
# KBUILD_BUILD_* make the build reproducible (no host name, user or time in the image).
make -C "$src" -j"$jobs" KBUILD_BUILD_TIMESTAMP="vcompare" KBUILD_BUILD_USER=vcompare \
    KBUILD_BUILD_HOST=vcompare vmlinux 2>&1 | {
        n=0
        while IFS= read -r l; do
            case "$l" in *" LD "*|*": warning:"*|*": error:"*|*"Error "*) echo "  $l" >&2 ;; esac
            n=$((n + 1))
            if [ $((n % 500)) -eq 0 ]; then step "  $n build steps"; fi
        done
        true
    } || { echo "kernels/build.sh: kernel build failed (tree kept in $work)" >&2; exit 1; }

mkdir -p "$out.tmp"
cp "$src/vmlinux" "$out.tmp/vmlinux"
cp "$src/.config" "$out.tmp/config"
rm -rf "$out"
mv "$out.tmp" "$out"
rm -rf "$work"
step "done: $(du -h "$out/vmlinux" | cut -f1) vmlinux, built in $(( $(date +%s) - start ))s"
echo "$out/vmlinux"
