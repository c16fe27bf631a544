#!/bin/sh
# bench/pump.sh: pump mode against distcc 3.4's plain mode, in one run on
# this machine:
#
#   1. per-job overhead over a local `gcc -c hello.c`: hyperfine times local
#      gcc, Debian's `distcc gcc` (plain) and `$BIN gcc` under
#      `$BIN pump --startup` (pump mode, a ,cpp,lzo host), both against the
#      same distcc-rs daemon on 127.0.0.1; overhead = client - local (medians);
#   2. the slow client: a generated project of BENCH_PUMP_FILES (default 120)
#      C files built with make -j8, where make, the client, the include
#      server and any local preprocessor run in a cgroup (v1 cpu controller)
#      held to 0.25 CPU, and the daemons run outside it:
#        plain  Debian's distcc + Debian's distccd 3.4
#        pump   distcc-rs under distcc-rs pump + a distcc-rs daemon
#      This is the PowerBook of the OpenBSD/macppc set-up;
#   3. the include server's peak resident memory and its CPU time per job in
#      the pump build of part 2.
#
#   BIN=target/x86_64-unknown-linux-musl/release/distcc-rs sh bench/pump.sh
#   (or `make bench-pump`; `make bench` runs it after the others)
#
# It fails, naming the package, when a tool is missing; part 2 needs root
# and /sys/fs/cgroup/cpu (cgroup v1), and fails without them unless
# BENCH_PUMP_SLOW=0 leaves it out. Environment: BENCH_HELLO_RUNS (hyperfine
# runs per command, default 200), BENCH_PUMP_FILES, BENCH_PUMP_QUOTA (the
# cgroup's cpu.cfs_quota_us per 100000, default 25000).

set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
kl_name=bench/pump.sh
. "$root/tests/kernel-lib.sh"

kl_distcc_rs bench-pump
RUNS=${BENCH_HELLO_RUNS:-200}
FILES=${BENCH_PUMP_FILES:-120}
QUOTA=${BENCH_PUMP_QUOTA:-25000}
SLOTS=8
kl_need hyperfine hyperfine
kl_need distcc distcc
kl_need distccd distcc
kl_need make make
kl_need gcc gcc

kl_init
kl_start_rs "$DISTCC_RS" "$SLOTS" rs
rs_port=$kl_port
rs_pid=$kl_pid
kl_start_distccd "$SLOTS" d
d_port=$kl_port
kl_client_env "$rs_port" "$SLOTS"
echo "distcc-rs pump benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) CPUs, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "distcc-rs: $("$DISTCC_RS" --version | head -n 1) ($DISTCC_RS)"
echo "distcc:    $(distcc --version | head -n 1)"
echo

sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# pump_start HOSTS: starts a distcc-rs include server for HOSTS and exports
# its variables (INCLUDE_SERVER_PORT, INCLUDE_SERVER_PID, DISTCC_HOSTS...).
pump_start() {
    env=$(DISTCC_HOSTS=$1 TMPDIR=$kl_work "$DISTCC_RS" pump --startup) ||
        kl_die "distcc-rs pump --startup failed"
    eval "$env"
    kl_pids="$kl_pids $INCLUDE_SERVER_PID"
}
pump_stop() {
    "$DISTCC_RS" pump --shutdown >/dev/null 2>&1 || kl_die "distcc-rs pump --shutdown failed"
    unset INCLUDE_SERVER_PORT INCLUDE_SERVER_PID INCLUDE_SERVER_DIR
}

# pump_jobs LOG: the jobs a distcc-rs daemon's LOG shows in pump mode.
pump_jobs() { grep -c 'COMPILE_OK in pump mode (protocol 3):' "$1" || true; }

# --- 1. Per-job overhead -----------------------------------------------------------
kl_hello
# hyperfine_ms OUT CMD...: medians in ms, one line per command.
hyperfine_ms() {
    out=$1
    shift
    (cd "$h" && timeout 1200 hyperfine -N --style basic --warmup 5 --runs "$RUNS" \
        --export-json "$kl_work/$out.json" "$@") >"$kl_work/$out.out" 2>&1 ||
        { cat "$kl_work/$out.out" >&2; kl_die "hyperfine failed"; }
    python3 -c '
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    print("%.2f" % (r["median"] * 1000))
' "$kl_work/$out.json" >"$kl_work/$out.ms"
}
echo "1. $RUNS runs each (hyperfine), against one distcc-rs daemon on 127.0.0.1:"
hyperfine_ms plain "gcc -c hello.c -o hello.o" "distcc gcc -c hello.c -o hello.o"
t_local=$(sed -n 1p "$kl_work/plain.ms")
t_d=$(sed -n 2p "$kl_work/plain.ms")
: >"$kl_work/rs/log"
pump_start "127.0.0.1:$rs_port/$SLOTS,cpp,lzo"
hyperfine_ms pump "$DISTCC_RS gcc -c hello.c -o hello.o"
pump_stop
t_pump=$(sed -n 1p "$kl_work/pump.ms")
pumped=$(pump_jobs "$kl_work/rs/log")
[ "$pumped" -ge "$RUNS" ] || kl_die "only $pumped of the pump runs were pump jobs"
printf '   %-44s %10s %12s\n' "" "median ms" "overhead ms"
printf '   %-44s %10s %12s\n' "local gcc -c hello.c" "$t_local" "-"
printf '   %-44s %10s %12s\n' "distcc gcc (Debian 3.4, plain)" "$t_d" "$(sub "$t_d" "$t_local")"
printf '   %-44s %10s %12s\n' "distcc-rs gcc under distcc-rs pump (,cpp,lzo)" "$t_pump" "$(sub "$t_pump" "$t_local")"
echo "   overhead ratio distcc-rs pump / distcc plain: $(div "$(sub "$t_pump" "$t_local")" "$(sub "$t_d" "$t_local")") (goal <= 0.5)"
echo "   ($pumped jobs of the pump runs, warm-up included, were pump jobs on the daemon)"
echo

[ "${BENCH_PUMP_SLOW:-1}" != 0 ] || exit 0

# --- 2. The slow client ---------------------------------------------------------------
[ "$(id -u)" = 0 ] || kl_die "part 2 needs root for its cgroup (BENCH_PUMP_SLOW=0 leaves it out)"
cg_root=/sys/fs/cgroup/cpu
[ -w "$cg_root/cgroup.procs" ] ||
    kl_die "no cgroup v1 cpu controller at $cg_root (BENCH_PUMP_SLOW=0 leaves part 2 out)"
cg=$cg_root/distcc-rs-bench-$$
mkdir "$cg" || kl_die "cannot make the cgroup $cg"
kl_cleanup_cgroup() {
    [ -d "$cg" ] || return 0
    while read -r p; do echo "$p" >"$cg_root/cgroup.procs" 2>/dev/null || true; done <"$cg/cgroup.procs"
    rmdir "$cg" 2>/dev/null || true
}
trap 'kl_cleanup_cgroup; kl_cleanup' EXIT
echo 100000 >"$cg/cpu.cfs_period_us"
echo "$QUOTA" >"$cg/cpu.cfs_quota_us"

# The project: FILES sources, each with its own header and two shared ones,
# and the C library's stdio, stdlib and string headers.
p=$kl_work/project
mkdir -p "$p/include"
printf '#ifndef COMMON_H\n#define COMMON_H\n#include <stddef.h>\n#define SCALE 3\nstruct point { int x, y; };\nint dot(const struct point *a, const struct point *b);\n#endif\n' >"$p/include/common.h"
printf '#ifndef UTIL_H\n#define UTIL_H\n#include "common.h"\nstatic inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }\n#endif\n' >"$p/include/util.h"
i=0
while [ $i -lt "$FILES" ]; do
    printf '#ifndef F%d_H\n#define F%d_H\nint f%d(int n);\n#endif\n' $i $i $i >"$p/f$i.h"
    cat >"$p/f$i.c" <<EOF
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util.h"
#include "f$i.h"

int f$i(int n)
{
    char buf[64];
    int acc = 0;
    for (int k = 0; k < n; k++) {
        snprintf(buf, sizeof buf, "%d:%d", k, n);
        acc += (int)strlen(buf) * SCALE + clampi(k, 0, $i);
    }
    return acc;
}
EOF
    i=$((i + 1))
done
# Every object from its source; `make clean` removes them.
{
    printf 'SRCS := $(wildcard f*.c)\nOBJS := $(SRCS:.c=.o)\nall: $(OBJS)\n'
    printf '%%.o: %%.c\n\t$(CC) -O2 -Iinclude -c $< -o $@\n'
    printf 'clean:\n\trm -f $(OBJS)\n'
} >"$p/Makefile"

# slow_build LABEL CC: `make -j8 CC=CC` in the cgroup; seconds to t_LABEL.
slow_build() {
    make -C "$p" clean >/dev/null
    start=$(date +%s.%N)
    sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$cg" \
        timeout 3600 make -C "$p" -j8 CC="$2" >"$kl_work/slow-$1.log" 2>&1 ||
        { tail -n 20 "$kl_work/slow-$1.log" >&2; kl_die "the slow client's $1 build failed"; }
    end=$(date +%s.%N)
    eval "t_$1=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')"
}
echo "2. the slow client: $FILES C files, make -j8, in a cgroup of $QUOTA/100000 CPU; daemons outside it"
kl_client_env "$d_port" "$SLOTS"
slow_build plain "distcc gcc"
: >"$kl_work/rs/log"
kl_client_env "$rs_port" "$SLOTS"
pump_start "127.0.0.1:$rs_port/$SLOTS,cpp,lzo"
echo "$INCLUDE_SERVER_PID" >"$cg/cgroup.procs"
slow_build pump "$DISTCC_RS gcc"
pumped=$(pump_jobs "$kl_work/rs/log")
# --- 3. The include server, from the pump build ----------------------------------------
hwm=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$INCLUDE_SERVER_PID/status")
ticks=$(awk '{ print $14 + $15 }' "/proc/$INCLUDE_SERVER_PID/stat")
hz=$(getconf CLK_TCK)
pump_stop
[ "$pumped" -ge "$FILES" ] || kl_die "only $pumped of the $FILES pump build's jobs were pump jobs"
printf '   %-52s %8s\n' "build" "seconds"
printf '   %-52s %8s\n' "plain: distcc + distccd 3.4" "$t_plain"
printf '   %-52s %8s\n' "pump: distcc-rs under distcc-rs pump + distcc-rs daemon" "$t_pump"
echo "   ratio pump / plain: $(div "$t_pump" "$t_plain") (goal <= 0.5); $pumped of $FILES jobs went in pump mode"
echo
echo "3. the include server in that build: peak RSS ${hwm} KiB," \
    "CPU $(awk -v t="$ticks" -v hz="$hz" -v n="$FILES" 'BEGIN { printf "%.2f ms", t * 1000 / hz / n }') per job" \
    "($(awk -v t="$ticks" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz }') s for $FILES jobs, in ${hz} Hz ticks)"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
