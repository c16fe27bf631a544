#!/bin/sh
# bench/kernel.sh: the client benchmark. In one run on this machine:
#
#   1. per-job overhead over a local `gcc -c hello.c`: hyperfine times
#      local gcc, Debian's `distcc gcc` and `$DISTCC_RS gcc`, all against
#      the same distcc-rs daemon on 127.0.0.1; overhead = client - local
#      (medians of the runs);
#      plus each client's own peak resident memory (bench/hwm.py: VmHWM at
#      exit, without the preprocessor it runs);
#   2. Linux 6.1 tinyconfig vmlinux at -j4, five ways:
#        rs/rs     distcc-rs client + distcc-rs daemon
#        d/d       Debian distcc    + Debian distccd
#        rs/d      distcc-rs client + distccd
#        pump      distcc-rs client under distcc-rs pump + distcc-rs daemon
#                  as a ,cpp,lzo host
#        local     gcc
#      and the ratios rs/rs : local, rs/rs : d/d, pump : d/d and pump : local.
#
#   BIN=target/x86_64-unknown-linux-musl/release/distcc-rs sh bench/kernel.sh
#   (or `make bench-kernel`; `make bench` runs bench/run.sh and then this)
#
# The lines that need the distcc-rs client run only when `$BIN gcc -c`
# compiles through the daemon; until then they say "n/a (no client)".
# The kernel machinery (unpack once, tinyconfig once, `make clean` before each
# build, the daemons on free ports) is tests/kernel-lib.sh's.
#
# Environment: BENCH_HELLO_RUNS (hyperfine runs per command, default 200),
# BENCH_KERNEL_JOBS (make -j and each daemon's slots, default 4),
# BENCH_KERNEL=0 to skip part 2 (it takes about 12 min on 2 CPUs),
# BENCH_KERNEL_ORDER (the builds of part 2 and their order, default
# "local dd rsrs rsd pump"; a build named twice runs twice and its mean is
# used, so "local pump dd pump local" meets a machine whose speed drifts
# alike on both sides).

set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
kl_name=bench/kernel.sh
. "$root/tests/kernel-lib.sh"

kl_distcc_rs bench-kernel
RUNS=${BENCH_HELLO_RUNS:-200}
KJOBS=${BENCH_KERNEL_JOBS:-4}
kl_need hyperfine hyperfine
kl_need distcc distcc
kl_need distccd distcc
[ "${BENCH_KERNEL:-1}" = 0 ] || kl_need_build_tools

kl_init
kl_start_rs "$DISTCC_RS" "$KJOBS" rs
rs_port=$kl_port
kl_start_distccd "$KJOBS" d
d_port=$kl_port
kl_client_env "$rs_port" "$KJOBS"
if kl_try_client "$DISTCC_RS gcc" "$kl_work/rs/log"; then
    rs_client=yes
else
    rs_client=no
fi
echo "distcc-rs client benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) CPUs, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "distcc-rs: $("$DISTCC_RS" --version | head -n 1) ($DISTCC_RS); client works: $rs_client"
echo "distcc:    $(distcc --version | head -n 1)"
echo

# --- 1. Per-job overhead -------------------------------------------------------
kl_hello
set -- "gcc -c hello.c -o hello.o" "distcc gcc -c hello.c -o hello.o"
[ $rs_client = no ] || set -- "$@" "$DISTCC_RS gcc -c hello.c -o hello.o"
echo "1. $RUNS runs each of (hyperfine, against the distcc-rs daemon):"
printf '   %s\n' "$@"
(cd "$h" && timeout 1200 hyperfine -N --style basic --warmup 5 --runs "$RUNS" \
    --export-json "$kl_work/hello.json" "$@") >"$kl_work/hyperfine.out" 2>&1 ||
    { cat "$kl_work/hyperfine.out" >&2; kl_die "hyperfine failed"; }
# Median, mean and standard deviation in ms of each command, in the order
# above. Overheads are taken from the medians: on a shared machine a few
# runs that wait for a CPU pull the mean (and the standard deviation) up.
python3 -c '
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    print("%.2f %.2f %.2f" % (r["median"] * 1000, r["mean"] * 1000, r["stddev"] * 1000))
' "$kl_work/hello.json" >"$kl_work/hello.ms"
t_local=$(sed -n 1p "$kl_work/hello.ms" | cut -d' ' -f1)
t_d=$(sed -n 2p "$kl_work/hello.ms" | cut -d' ' -f1)
t_rs=$(sed -n 3p "$kl_work/hello.ms" | cut -d' ' -f1)
# Peak RSS of the client process itself: the largest of 5 runs.
hwm() {
    i=0
    while [ $i -lt 5 ]; do
        (cd "$h" && timeout 60 python3 "$root/bench/hwm.py" "$@" -c hello.c -o hello.o) ||
            kl_die "$* -c hello.c failed under bench/hwm.py"
        i=$((i + 1))
    done | sort -n | tail -n 1
}
hwm_d=$(hwm distcc gcc)
hwm_rs="n/a (no client)"
[ $rs_client = no ] || hwm_rs=$(hwm "$DISTCC_RS" gcc)

sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
msd() { sed -n "${1}p" "$kl_work/hello.ms" | cut -d' ' -f2-3 | tr ' ' /; }
printf '   %-26s %10s %14s %12s\n' "" "median ms" "mean/sd ms" "overhead ms"
printf '   %-26s %10s %14s %12s\n' "local gcc -c hello.c" "$t_local" "$(msd 1)" "-"
printf '   %-26s %10s %14s %12s\n' "distcc gcc (Debian 3.4)" "$t_d" "$(msd 2)" "$(sub "$t_d" "$t_local")"
if [ $rs_client = yes ]; then
    printf '   %-26s %10s %14s %12s\n' "distcc-rs gcc" "$t_rs" "$(msd 3)" "$(sub "$t_rs" "$t_local")"
    echo "   overhead ratio distcc-rs / distcc: $(div "$(sub "$t_rs" "$t_local")" "$(sub "$t_d" "$t_local")")"
else
    printf '   %-26s %10s %14s %12s\n' "distcc-rs gcc" "n/a" "" "(no client)"
fi
echo "   client peak RSS (VmHWM, KiB): distcc $hwm_d, distcc-rs $hwm_rs"
echo

[ "${BENCH_KERNEL:-1}" != 0 ] || exit 0

# --- 2. Kernel builds -------------------------------------------------------------
echo "2. Linux 6.1 tinyconfig vmlinux, make -j$KJOBS, daemons with $KJOBS slots on 127.0.0.1"
kl_prepare
# kl_bench LABEL: one build of that kind; its seconds are added to
# t_LABEL (a list: BENCH_KERNEL_ORDER may name a kind more than once).
t_rsrs="" t_rsd="" t_dd="" t_local="" t_pump="" pumped=""
kl_bench() {
    kl_note "load average before '$1': $(cut -d' ' -f1-3 /proc/loadavg)"
    case $1 in
    local) kl_client_env "$rs_port" "$KJOBS" && kl_build local gcc "$KJOBS" ;;
    dd) kl_client_env "$d_port" "$KJOBS" && kl_build dd "distcc gcc" "$KJOBS" ;;
    rsrs) kl_client_env "$rs_port" "$KJOBS" && kl_build rsrs "$DISTCC_RS gcc" "$KJOBS" ;;
    rsd) kl_client_env "$d_port" "$KJOBS" && kl_build rsd "$DISTCC_RS gcc" "$KJOBS" ;;
    pump)
        kl_client_env "$rs_port" "$KJOBS"
        DISTCC_HOSTS="$DISTCC_HOSTS,cpp,lzo"
        kl_wrap="$DISTCC_RS pump"
        : >"$kl_work/rs/log"
        kl_build pump "$DISTCC_RS gcc" "$KJOBS"
        kl_wrap=""
        pumped="$pumped $(grep -c 'COMPILE_OK in pump mode (protocol 3):' "$kl_work/rs/log" || true)"
        ;;
    *) kl_die "BENCH_KERNEL_ORDER: unknown build '$1' (local dd rsrs rsd pump)" ;;
    esac
    eval "t_$1=\"\$t_$1 \$kl_seconds\""
}
ORDER=${BENCH_KERNEL_ORDER:-local dd rsrs rsd pump}
for build in $ORDER; do
    case $build in rsrs | rsd | pump) [ $rs_client = yes ] || continue ;; esac
    kl_bench "$build"
done
# mean LIST: the mean of a build's seconds, or n/a if it did not run.
mean() {
    [ -n "$1" ] || { echo n/a; return; }
    echo "$1" | awk '{ for (i = 1; i <= NF; i++) s += $i; printf "%.1f", s / NF }'
}
# shown LIST: the mean, with each build's seconds when there are several.
shown() {
    case $(echo "$1" | wc -w) in
    0 | 1) mean "$1" ;;
    *) echo "$(mean "$1") ($(echo $1 | sed 's/ /, /g'))" ;;
    esac
}
m_rsrs=$(mean "$t_rsrs") m_rsd=$(mean "$t_rsd") m_dd=$(mean "$t_dd")
m_local=$(mean "$t_local") m_pump=$(mean "$t_pump")
# ratio A B: A/B, or n/a when either did not run.
ratio() { if [ "$1" = n/a ] || [ "$2" = n/a ]; then echo n/a; else div "$1" "$2"; fi; }
echo
echo "   builds, in this order: $ORDER"
printf '   %-40s %s\n' "build" "seconds (mean of its builds)"
printf '   %-40s %s\n' "(1) distcc-rs client + distcc-rs daemon" "$(shown "$t_rsrs")"
printf '   %-40s %s\n' "(2) distcc client + distccd" "$(shown "$t_dd")"
printf '   %-40s %s\n' "(3) distcc-rs client + distccd" "$(shown "$t_rsd")"
printf '   %-40s %s\n' "(4) local gcc" "$(shown "$t_local")"
printf '   %-40s %s\n' "(5) distcc-rs pump + distcc-rs daemon" "$(shown "$t_pump")"
echo "   (2)/(4) distcc/local: $(ratio "$m_dd" "$m_local")"
if [ $rs_client = yes ]; then
    echo "   (1)/(4) distcc-rs/local: $(ratio "$m_rsrs" "$m_local")"
    echo "   (1)/(2) distcc-rs/distcc: $(ratio "$m_rsrs" "$m_dd")"
    echo "   (5)/(2) distcc-rs pump/distcc: $(ratio "$m_pump" "$m_dd") (goal <= 0.85)"
    echo "   (5)/(4) distcc-rs pump/local: $(ratio "$m_pump" "$m_local") (goal <= 1.02)"
    [ -z "$pumped" ] || echo "   (5) jobs sent in pump mode, each build:$pumped"
fi
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
