#!/bin/sh
# bench/sandbox.sh: the compilers' sandbox's cost per job on the daemon, on
# against off in the same run. Two distcc-rs daemons, one with the sandbox
# (Landlock here) and one with --no-sandbox, otherwise alike:
#
#   1. trivial jobs (bench/trivcc.c) from bench/load.py's raw protocol-1
#      requests: jobs/s and CPU ms per job of the daemon and its compilers,
#      in rounds that alternate which daemon goes first;
#   2. `$BIN gcc -c hello.c` through each daemon, in pairs of runs that
#      alternate which daemon goes first.
#
#   BIN=target/x86_64-unknown-linux-musl/release/distcc-rs sh bench/sandbox.sh
#   (`make bench-sandbox`; `make bench` runs it too)
#
# Environment: BENCH_SANDBOX_JOBS (trivial jobs per daemon, default 2000),
# BENCH_SANDBOX_ROUNDS (default 10), BENCH_SANDBOX_RUNS (pairs of hello.c
# compiles, default 100).

set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
kl_name=bench/sandbox.sh
. "$root/tests/kernel-lib.sh"

kl_distcc_rs bench
BIN=$DISTCC_RS
JOBS=${BENCH_SANDBOX_JOBS:-2000}
ROUNDS=${BENCH_SANDBOX_ROUNDS:-10}
RUNS=${BENCH_SANDBOX_RUNS:-100}
kl_need python3 python3
kl_need gcc gcc

kl_pids=""
kl_init
load() { python3 "$here/load.py" "$@"; }

mkdir "$kl_work/bin"
if command -v musl-gcc >/dev/null 2>&1; then
    trivcc_build="musl-gcc -O2 -static"
else
    trivcc_build="gcc -O2 -static"
    kl_note "musl-gcc not found (apt-get install musl-tools): trivcc's glibc start-up dilutes the figures"
fi
$trivcc_build -o "$kl_work/bin/trivcc" "$here/trivcc.c" || kl_die "cannot build trivcc"
chmod 755 "$kl_work/bin/trivcc"
for cc in "$kl_work/bin/trivcc" "$(command -v gcc)" /usr/bin/x86_64-linux-gnu-gcc; do
    echo "$cc"
done >"$kl_work/cmdlist"

# start SIDE FLAGS...: a daemon on a free port; sets SIDE_pid and SIDE_port.
start() {
    side=$1
    shift
    mkdir -p "$kl_work/$side"
    mkdir -m 1777 "$kl_work/$side/tmp"
    : >"$kl_work/$side/log"
    chmod 666 "$kl_work/$side/log"
    for try in 1 2 3; do
        port=$(load freeport)
        TMPDIR="$kl_work/$side/tmp" DISTCC_CMDLIST="$kl_work/cmdlist" \
            "$BIN" daemon --no-detach --listen 127.0.0.1 --allow 127.0.0.1 --port "$port" \
            --jobs 2 --log-file "$kl_work/$side/log" "$@" \
            </dev/null >"$kl_work/$side/out" 2>&1 &
        pid=$!
        kl_pids="${kl_pids:-} $pid"
        if load wait "$port" 10 && kill -0 "$pid" 2>/dev/null; then
            # The log says it serves after the sandbox's line; 10 s at most.
            i=0
            until grep -q 'serving with' "$kl_work/$side/log" || [ $i -ge 100 ]; do
                sleep 0.1
                i=$((i + 1))
            done
            eval "${side}_pid=$pid ${side}_port=$port"
            return 0
        fi
        kill "$pid" 2>/dev/null || true
        kl_note "$side did not start on port $port (try $try)"
    done
    cat "$kl_work/$side/out" "$kl_work/$side/log" >&2
    kl_die "the $side daemon would not start"
}

start on
start off --no-sandbox
grep -q 'compilers run in a sandbox' "$kl_work/on/log" ||
    { cat "$kl_work/on/log" >&2; kl_die "the daemon runs no sandbox here"; }
grep -q -- '--no-sandbox: compilers run without a sandbox' "$kl_work/off/log" ||
    kl_die "the --no-sandbox daemon did not say so"

echo "distcc-rs sandbox benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) CPUs, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "distcc-rs: $("$BIN" --version | head -n 1) ($BIN)"
echo "sandbox: $(grep -o 'compilers run in a sandbox: .*' "$kl_work/on/log")"
echo

median() {
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
column() { awk -v c="$2" '{ print $c }' "$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }

# --- 1. Trivial jobs ---------------------------------------------------------------
trivial() {
    eval "port=\$${1}_port pid=\$${1}_pid"
    timeout 120 nice -n 5 python3 "$here/load.py" load "$port" "$2" 1 "$pid" ||
        kl_die "$2 trivial jobs against the $1 daemon failed"
}
per_round=$((JOBS / ROUNDS))
echo "1. trivial jobs (trivcc, $trivcc_build), one client, $per_round jobs a round, $ROUNDS rounds;"
echo "   each: jobs/s, CPU ms per job of the daemon and its compilers, slowest job ms, failed jobs"
trivial on 50 >/dev/null
trivial off 50 >/dev/null
round=1
while [ $round -le "$ROUNDS" ]; do
    if [ $((round % 2)) = 1 ]; then sides="on off"; else sides="off on"; fi
    for side in $sides; do
        eval "${side}_out=\$(trivial $side $per_round)"
    done
    # shellcheck disable=SC2154
    echo "$on_out $off_out" >>"$kl_work/trivial"
    echo "   round $round: on $on_out  off $off_out"
    round=$((round + 1))
done
failed=$(awk '{ n += $4 + $8 } END { print n + 0 }' "$kl_work/trivial")
[ "$failed" = 0 ] || kl_die "$failed trivial jobs failed"
rate_on=$(column "$kl_work/trivial" 1 | median)
rate_off=$(column "$kl_work/trivial" 5 | median)
cpu_on=$(column "$kl_work/trivial" 2 | median)
cpu_off=$(column "$kl_work/trivial" 6 | median)
wall_on=$(awk -v r="$rate_on" 'BEGIN { printf "%.3f", 1000 / r }')
wall_off=$(awk -v r="$rate_off" 'BEGIN { printf "%.3f", 1000 / r }')
echo "   median jobs/s: on $rate_on, off $rate_off (ratio on/off $(ratio "$rate_on" "$rate_off"))"
echo "   ms per job: on $wall_on, off $wall_off: the sandbox costs $(minus "$wall_on" "$wall_off") ms a job"
echo "   CPU ms per job: on $cpu_on, off $cpu_off (ratio $(ratio "$cpu_on" "$cpu_off"),"\
    "$(minus "$cpu_on" "$cpu_off") ms)"
# The two halves of a round ran seconds apart under about the same load, so
# their difference and ratio vary less than either figure does.
paired() { awk -v a="$2" -v b="$3" "{ printf \"%.4f\\n\", $1 }" "$kl_work/trivial" | median; }
echo "   median of the rounds' paired figures: CPU ratio on/off $(paired '$a / $b' 2 6),"\
    "CPU difference $(paired '$a - $b' 2 6) ms, jobs/s ratio $(paired '$a / $b' 1 5)"
echo

# --- 2. hello.c with gcc -----------------------------------------------------------
kl_hello
mkdir "$h/state"
cd "$h"
for side in on off; do
    eval "port=\$${side}_port"
    DISTCC_DIR=$h/state DISTCC_FALLBACK=0 DISTCC_HOSTS="127.0.0.1:$port/2" \
        "$BIN" gcc -c hello.c -o hello.o || kl_die "hello.c through the $side daemon failed"
done
echo "2. $BIN gcc -c hello.c through each daemon, $RUNS pairs of runs, the two"
echo "   daemons taking turns to go first (a hyperfine run of one, then of the"
echo "   other, would compare two different loads of a shared machine):"
# One timed compile through daemon $1's port, in microseconds.
timed() {
    t0=$(date +%s%N)
    DISTCC_DIR=$h/state DISTCC_FALLBACK=0 DISTCC_HOSTS="127.0.0.1:$1/2" \
        "$BIN" gcc -c hello.c -o hello.o || kl_die "hello.c through port $1 failed"
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000))
}
i=1
while [ $i -le "$RUNS" ]; do
    # shellcheck disable=SC2154
    if [ $((i % 2)) = 1 ]; then
        a=$(timed "$on_port")
        b=$(timed "$off_port")
    else
        b=$(timed "$off_port")
        a=$(timed "$on_port")
    fi
    echo "$a $b" >>"$h/pairs"
    i=$((i + 1))
done
us_on=$(column "$h/pairs" 1 | median)
us_off=$(column "$h/pairs" 2 | median)
us_diff=$(awk '{ print $1 - $2 }' "$h/pairs" | median)
t_on=$(awk -v u="$us_on" 'BEGIN { printf "%.3f", u / 1000 }')
t_off=$(awk -v u="$us_off" 'BEGIN { printf "%.3f", u / 1000 }')
echo "   median ms: on $t_on, off $t_off (ratio on/off $(ratio "$t_on" "$t_off"));"\
    "median of the pairs' differences $(awk -v u="$us_diff" 'BEGIN { printf "%.3f", u / 1000 }') ms a job"
ok_on=$(grep -c 'COMPILE_OK' "$kl_work/on/log" || true)
ok_off=$(grep -c 'COMPILE_OK' "$kl_work/off/log" || true)
echo "   jobs compiled: on $ok_on, off $ok_off (both daemons' logs)"
