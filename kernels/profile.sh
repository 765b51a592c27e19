#!/usr/bin/env bash
# Where the guest kernel's boot time goes, from the VMM's RIP samples:
#   VCOMPARE_VMM_PROFILE=/tmp/samples vcompare run --rm --mode vm IMAGE true
#   kernels/profile.sh /tmp/samples [VMLINUX] [TOP]
# Counts the samples taken before the guest's first user-mode instruction (= launch → init),
# one sample per millisecond, by kernel function (symbols from the vmlinux, default: the
# cached build for this source tree).
set -euo pipefail
samples=${1:?usage: kernels/profile.sh SAMPLES [VMLINUX] [TOP]}
vmlinux=${2:-$("$(dirname "$0")/build.sh" --print-path)}
top=${3:-40}
nm -n "$vmlinux" | awk '$2 ~ /^[tT]$/ { print $1, $3 }' > "$samples.syms"
awk -v top="$top" '
    # Kernel text is in 0xffffffff8xxxxxxx: the low 32 bits order it exactly (awk numbers
    # are doubles, and mawk has no strtonum).
    function low32(h,   i, v) { h = substr(h, length(h) - 7); v = 0
        for (i = 1; i <= length(h); i++) v = v * 16 + index("0123456789abcdef", substr(h, i, 1)) - 1
        return v }
    FILENAME == ARGV[1] { addr[n] = low32($1); name[n] = $2; n++; next }
    {
        if ($3 == 3) { user_at = $1; exit }                 # CPL 3: init runs
        rip = low32($2); lo = 0; hi = n - 1; f = "?"
        while (lo <= hi) { mid = int((lo + hi) / 2); if (addr[mid] <= rip) { f = name[mid]; lo = mid + 1 } else hi = mid - 1 }
        count[f]++; total++
    }
    END {
        printf "%d samples (1 ms each) in the guest kernel before init%s\n", total,
            user_at ? sprintf("; init at %.3f s after VMM launch", user_at / 1e6) : " (init never ran)"
        for (f in count) printf "%7d %5.1f%% %s\n", count[f], 100 * count[f] / total, f | "sort -rn | head -" top
    }' "$samples.syms" "$samples"
rm -f "$samples.syms"
