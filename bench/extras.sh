#!/bin/sh
# bench/extras.sh: the monitor and the client's object check, in one run:
#
#   1. `distcc-rs mon` against Debian's `distccmon-text` on the same state
#      directory of BENCH_MON_JOBS (default 64) live jobs: hyperfine medians,
#      the ratio, and each one's peak resident memory (bench/hwm.py). The
#      two outputs are compared first; the benchmark stops if they differ.
#   2. The object check's cost per job: `$BIN gcc -c hello.c` through a
#      distcc-rs daemon with DISTCC_RS_OBJECT_CHECK=1 (the default, with
#      the compiler's format already cached) and =0, both started by env(1)
#      so that the only difference is the check.
#
#   BIN=target/x86_64-unknown-linux-musl/release/distcc-rs sh bench/extras.sh
#   (`make bench` runs it after bench/run.sh and bench/kernel.sh)
#
# Environment: BENCH_EXTRA_RUNS (hyperfine runs per command, default 200),
# BENCH_MON_JOBS.

set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
kl_name=bench/extras.sh
. "$root/tests/kernel-lib.sh"

kl_distcc_rs bench
RUNS=${BENCH_EXTRA_RUNS:-200}
JOBS=${BENCH_MON_JOBS:-64}
kl_need hyperfine hyperfine
kl_need distccmon-text distcc
kl_need distccd distcc
kl_need python3 python3

kl_init
echo "distcc-rs monitor and object-check benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) CPUs, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "distcc-rs: $("$DISTCC_RS" --version | head -n 1) ($DISTCC_RS)"
echo

median_ms() {
    python3 -c '
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    print("%.3f" % (r["median"] * 1000))
' "$1"
}
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
# The largest VmHWM (KiB) of 5 runs of a command whose output is thrown
# away (sh execs the command, so the figure is the command's alone).
hwm() {
    i=0
    while [ $i -lt 5 ]; do
        # shellcheck disable=SC2016
        timeout 60 python3 "$root/bench/hwm.py" sh -c 'exec "$0" "$@" >/dev/null' "$@" ||
            kl_die "$* failed under bench/hwm.py"
        i=$((i + 1))
    done | sort -n | tail -n 1
}

# --- 1. The monitor ---------------------------------------------------------------
mon=$kl_work/mon
mkdir -p "$mon/state"
# One sleeping process stands behind every state file, so both monitors list
# them all; it is killed at the end (kl_cleanup kills what is left).
sleep 600 &
holder=$!
kl_pids="${kl_pids:-} $holder"
python3 - "$mon/state" "$holder" "$JOBS" <<'EOF'
import ctypes, os, sys
state, pid, jobs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
class Record(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("magic", ctypes.c_ulong),
                ("cpid", ctypes.c_ulong), ("file", ctypes.c_char * 128),
                ("host", ctypes.c_char * 128), ("slot", ctypes.c_int),
                ("curr_phase", ctypes.c_int), ("next", ctypes.c_void_p)]
for i in range(jobs):
    r = Record(ctypes.sizeof(Record), 0x44494800, pid,
               b"file%03d.c" % i, b"10.0.0.%d" % (i % 8), i // 8, 2 + i % 5, None)
    with open(os.path.join(state, "binstate_%d" % (100000 + i)), "wb") as f:
        f.write(bytes(r))
EOF
DISTCC_DIR=$mon distccmon-text >"$mon/theirs.out"
DISTCC_DIR=$mon "$DISTCC_RS" mon >"$mon/ours.out"
cmp -s "$mon/theirs.out" "$mon/ours.out" || {
    diff "$mon/theirs.out" "$mon/ours.out" >&2 || true
    kl_die "distcc-rs mon and distccmon-text disagree on $mon/state"
}
lines=$(grep -c . "$mon/ours.out")
[ "$lines" -eq "$JOBS" ] || kl_die "the monitors listed $lines jobs, not $JOBS"
echo "1. one poll of $JOBS live jobs (outputs identical), $RUNS runs each (hyperfine):"
DISTCC_DIR=$mon timeout 1200 hyperfine -N --style basic --warmup 10 --runs "$RUNS" \
    --export-json "$mon/mon.json" distccmon-text "$DISTCC_RS mon" >"$mon/hyperfine.out" 2>&1 ||
    { cat "$mon/hyperfine.out" >&2; kl_die "hyperfine failed"; }
t_theirs=$(median_ms "$mon/mon.json" | sed -n 1p)
t_ours=$(median_ms "$mon/mon.json" | sed -n 2p)
export DISTCC_DIR=$mon
m_theirs=$(hwm distccmon-text)
m_ours=$(hwm "$DISTCC_RS" mon)
unset DISTCC_DIR
printf '   %-22s %10s %14s\n' "" "median ms" "VmHWM KiB"
printf '   %-22s %10s %14s\n' "distccmon-text (3.4)" "$t_theirs" "$m_theirs"
printf '   %-22s %10s %14s\n' "distcc-rs mon" "$t_ours" "$m_ours"
echo "   ratio distcc-rs / distccmon-text: time $(div "$t_ours" "$t_theirs"), memory $(div "$m_ours" "$m_theirs")"
kill "$holder" 2>/dev/null || true
echo

# --- 2. The object check ------------------------------------------------------------
kl_start_rs "$DISTCC_RS" 2 rs
kl_client_env "$kl_port" 2
kl_try_client "$DISTCC_RS gcc" "$kl_work/rs/log" || kl_die "the distcc-rs client does not compile through the daemon"
kl_hello
# Learn the format once, so the runs measure the cached check.
(cd "$h" && "$DISTCC_RS" gcc -c hello.c -o hello.o) || kl_die "$DISTCC_RS gcc -c hello.c failed"
echo "2. the object check per job, $RUNS runs each (hyperfine, through the distcc-rs daemon):"
(cd "$h" && timeout 1200 hyperfine -N --style basic --warmup 5 --runs "$RUNS" \
    --export-json "$h/check.json" \
    "env DISTCC_RS_OBJECT_CHECK=1 $DISTCC_RS gcc -c hello.c -o hello.o" \
    "env DISTCC_RS_OBJECT_CHECK=0 $DISTCC_RS gcc -c hello.c -o hello.o") \
    >"$h/hyperfine.out" 2>&1 || { cat "$h/hyperfine.out" >&2; kl_die "hyperfine failed"; }
t_on=$(median_ms "$h/check.json" | sed -n 1p)
t_off=$(median_ms "$h/check.json" | sed -n 2p)
printf '   check on (cached) %s ms, check off %s ms: the check costs %s ms a job\n' \
    "$t_on" "$t_off" "$(sub "$t_on" "$t_off")"
