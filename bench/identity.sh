#!/bin/sh
# bench/identity.sh: the compiler identity check's cost per job, in one run:
# hello.c over the channel (,key= and --auth-keys) on 127.0.0.1, client and
# daemon from BIN (with the check) against client and daemon from
# BIN_BEFORE (a distcc-rs without it, e.g. built from the commit before
# "compiler identity: ..."). Medians of runs that take turns, so that a
# shared machine's load hits both alike; the difference is the check's
# cost: the daemon's stat of its compiler and the CIDR packet, the
# client's stat of its compiler, its cached identity and the marks.
#
#   BIN=target/debug/distcc-rs BIN_BEFORE=/path/to/distcc-rs sh bench/identity.sh
#   (or `make bench-identity BIN_BEFORE=...`; `make bench` runs it when
#   BIN_BEFORE is given)
#
# Environment: BENCH_IDENTITY_RUNS (runs per command, default 200).

set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
kl_name=bench/identity.sh
. "$root/tests/kernel-lib.sh"

kl_distcc_rs bench-identity
BEFORE=${BIN_BEFORE:-}
[ -n "$BEFORE" ] && BEFORE=$(kl_absolute "$BEFORE")
[ -n "$BEFORE" ] && [ -x "$BEFORE" ] || kl_die "set BIN_BEFORE to a distcc-rs without the identity check"
RUNS=${BENCH_IDENTITY_RUNS:-200}
kl_need gcc gcc
kl_need python3 python3

kl_init
kl_keys
kl_rs_args="--key $keys/server --auth-keys $keys/auth"
kl_start_rs "$DISTCC_RS" 4 with
with_port=$kl_port
with_log=$kl_log
kl_start_rs "$BEFORE" 4 without
without_port=$kl_port
kl_rs_args=
export DISTCC_RS_KEY=$keys/client DISTCC_DIR=$kl_work/state DISTCC_FALLBACK=0
mkdir "$DISTCC_DIR"
with_host="127.0.0.1:$with_port/4,key=$keys/server.pub"
without_host="127.0.0.1:$without_port/4,key=$keys/server.pub"

echo "distcc-rs compiler identity benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) CPUs, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "with the check:    $DISTCC_RS"
echo "without the check: $BEFORE"
echo

kl_hello
KL_QUIET=1 kl_median_ms "$h" "$kl_work/ms" "$RUNS" \
    "gcc -c hello.c -o hello.o" \
    "env DISTCC_HOSTS=$without_host $BEFORE gcc -c hello.c -o hello.o" \
    "env DISTCC_HOSTS=$with_host $DISTCC_RS gcc -c hello.c -o hello.o"
grep -q 'fingerprint' "$with_log" || kl_die "the daemon with the check did not probe its compiler"
t_local=$(sed -n 1p "$kl_work/ms")
t_without=$(sed -n 2p "$kl_work/ms")
t_with=$(sed -n 3p "$kl_work/ms")
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
echo "hello.c, $RUNS runs each in turns, over the channel on 127.0.0.1:"
printf '   %-36s %10s\n' "" "median ms"
printf '   %-36s %10s\n' "local gcc -c hello.c" "$t_local"
printf '   %-36s %10s\n' "channel, without the identity check" "$t_without"
printf '   %-36s %10s\n' "channel, with the identity check" "$t_with"
echo "   the check's cost per job: $(sub "$t_with" "$t_without") ms (with / without: $(div "$t_with" "$t_without"))"
