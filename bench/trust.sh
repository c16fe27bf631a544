#!/bin/sh
# bench/trust.sh: the encrypted channel (,key= and --auth-keys) against
# plain TCP, in one run on this machine, with distcc-rs's client and daemon
# on both sides and Debian's distcc as a reference:
#
#   1. per-job overhead over a local `gcc -c hello.c` (medians of runs that
#      take turns, so the shared machine's load hits every command alike):
#      plain TCP and the channel; their difference is the handshake and the
#      framing of one small job (goal: the handshake <= 1 ms);
#   2. jobs per second with a 1 MB source (a preprocessed .i that is mostly
#      a comment, so the wire and not the compiler dominates), plain and
#      over the channel (goal: the channel <= 5% slower);
#   3. the static powerpc client under qemu-user sending the same 1 MB job,
#      plain and over the channel: MB/s of the whole job;
#   4. the other direction: a job whose object is 4 MB (a `.i` of one
#      initialised 4 MiB array), as a C++ build with -g gets them, plain and
#      over the channel (no goal in the issue; the 5% of part 2 applied).
#
#   BIN=target/x86_64-unknown-linux-musl/release/distcc-rs sh bench/trust.sh
#   (or `make bench-trust`; `make bench` runs it after the others)
#
# Part 3 needs the powerpc binary (make cross; BIN_PPC overrides
# target/cross/powerpc-unknown-linux-gnu/release/distcc-rs) and
# qemu-ppc-static. Environment: BENCH_TRUST_RUNS (runs per command in
# part 1, default 200), BENCH_TRUST_BIG_RUNS (parts 2 and 4, default
# 100), BENCH_TRUST_PPC_RUNS (part 3, default 10). Part 3 compiles with the
# x86_64 gcc, so it turns the object check and the compiler-name rewriting
# off (DISTCC_RS_OBJECT_CHECK=0, DISTCC_NO_REWRITE_CROSS=1).

set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
kl_name=bench/trust.sh
. "$root/tests/kernel-lib.sh"

kl_distcc_rs bench-trust
RUNS=${BENCH_TRUST_RUNS:-200}
BIG_RUNS=${BENCH_TRUST_BIG_RUNS:-100}
PPC_RUNS=${BENCH_TRUST_PPC_RUNS:-10}
BIN_PPC=${BIN_PPC:-$root/target/cross/powerpc-unknown-linux-gnu/release/distcc-rs}
BIN_PPC=$(kl_absolute "$BIN_PPC")
SLOTS=4
kl_need distcc distcc
kl_need gcc gcc
kl_need python3 python3
kl_need qemu-ppc-static qemu-user-static
[ -x "$BIN_PPC" ] || kl_die "no powerpc binary at $BIN_PPC (make cross)"

kl_init
kl_keys
kl_start_rs "$DISTCC_RS" "$SLOTS" plain
plain_port=$kl_port
kl_rs_args="--key $keys/server --auth-keys $keys/auth"
kl_start_rs "$DISTCC_RS" "$SLOTS" keyed
keyed_port=$kl_port
kl_rs_args=
keyed_log=$kl_log
export DISTCC_RS_KEY=$keys/client DISTCC_DIR=$kl_work/state DISTCC_FALLBACK=0
mkdir "$DISTCC_DIR"
plain_host="127.0.0.1:$plain_port/$SLOTS"
keyed_host="127.0.0.1:$keyed_port/$SLOTS,key=$keys/server.pub"

echo "distcc-rs channel benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) CPUs, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "distcc-rs: $("$DISTCC_RS" --version | head -n 1) ($DISTCC_RS)"
echo "distcc:    $(distcc --version | head -n 1)"
echo

sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

kl_hello
# 1 MB of comment and one definition: cheap to compile, 1 MB on the wire.
python3 -c '
import sys
line = "/* " + "x" * 60 + " */\n"
sys.stdout.write(line * (1048576 // len(line)) + "int big_source_marker = 1;\n")
' >"$h/big.i"
size=$(wc -c <"$h/big.i")
printf 'const char blob[4194304] = {1, 2, 3};\n' >"$h/bigobj.i"

# median_ms OUT RUNS CMD...: kl_median_ms in the benchmark's directory, the
# medians in $kl_work/OUT.ms.
median_ms() {
    out=$1
    shift
    kl_median_ms "$h" "$kl_work/$out.ms" "$@"
}

# plain_and_keyed OUT RUNS UNIT RATE CLIENT SOURCE: `CLIENT gcc -c SOURCE.i`
# on the plain and on the keyed host, RUNS each in turns; prints both
# medians and RATE of each (a function of a median in ms, headed UNIT), and
# sets $ratio to the channel's time over plain TCP's.
plain_and_keyed() {
    pk_out=$1 pk_runs=$2 pk_unit=$3 pk_rate=$4 pk_client=$5 pk_src=$6
    median_ms "$pk_out" "$pk_runs" \
        "env DISTCC_HOSTS=$plain_host $pk_client gcc -c $pk_src.i -o $pk_src.o" \
        "env DISTCC_HOSTS=$keyed_host $pk_client gcc -c $pk_src.i -o $pk_src.o"
    pk_plain=$(sed -n 1p "$kl_work/$pk_out.ms")
    pk_keyed=$(sed -n 2p "$kl_work/$pk_out.ms")
    printf '   %-30s %10s %10s\n' "" "median ms" "$pk_unit"
    printf '   %-30s %10s %10s\n' "plain TCP" "$pk_plain" "$($pk_rate "$pk_plain")"
    printf '   %-30s %10s %10s\n' "channel (,key=)" "$pk_keyed" "$($pk_rate "$pk_keyed")"
    ratio=$(div "$pk_keyed" "$pk_plain")
}
jobs_per_s() { div 1000 "$1"; }
mbs() { awk -v s="$size" -v ms="$1" 'BEGIN { printf "%.1f", s / 1048576 / (ms / 1000) }'; }

# --- 1. Per-job overhead -----------------------------------------------------
echo "1. hello.c, $RUNS runs each in turns, distcc-rs client and daemon on 127.0.0.1:"
median_ms hello "$RUNS" \
    "gcc -c hello.c -o hello.o" \
    "env DISTCC_HOSTS=$plain_host distcc gcc -c hello.c -o hello.o" \
    "env DISTCC_HOSTS=$plain_host $DISTCC_RS gcc -c hello.c -o hello.o" \
    "env DISTCC_HOSTS=$keyed_host $DISTCC_RS gcc -c hello.c -o hello.o"
t_local=$(sed -n 1p "$kl_work/hello.ms")
t_d=$(sed -n 2p "$kl_work/hello.ms")
t_plain=$(sed -n 3p "$kl_work/hello.ms")
t_keyed=$(sed -n 4p "$kl_work/hello.ms")
proved=$(grep -c 'proved key' "$keyed_log" || true)
[ "$proved" -ge "$RUNS" ] || kl_die "only $proved of the channel runs proved their key"
printf '   %-44s %10s %12s\n' "" "median ms" "overhead ms"
printf '   %-44s %10s %12s\n' "local gcc -c hello.c" "$t_local" "-"
printf '   %-44s %10s %12s\n' "Debian distcc, plain TCP (reference)" "$t_d" "$(sub "$t_d" "$t_local")"
printf '   %-44s %10s %12s\n' "distcc-rs, plain TCP" "$t_plain" "$(sub "$t_plain" "$t_local")"
printf '   %-44s %10s %12s\n' "distcc-rs, channel (,key=)" "$t_keyed" "$(sub "$t_keyed" "$t_local")"
echo "   the channel's cost per job (handshake, key files, framing): $(sub "$t_keyed" "$t_plain") ms"
# The handshake itself, as the client times it: its own time in it (key
# files read, the first and third messages made and sent, the wait for the
# server's answer), not the preprocessor run it overlaps. The debug line
# of $RUNS jobs.
(cd "$h" && for _ in $(seq "$RUNS"); do
    DISTCC_VERBOSE=1 DISTCC_HOSTS=$keyed_host "$DISTCC_RS" gcc -c hello.c -o hello.o 2>&1 |
        sed -n 's/.*handshake \([0-9]*\) us.*/\1/p'
done) >"$kl_work/handshake.us"
n_hs=$(wc -l <"$kl_work/handshake.us")
[ "$n_hs" -eq "$RUNS" ] || kl_die "only $n_hs of $RUNS jobs logged their handshake"
hs=$(sort -n "$kl_work/handshake.us" | awk '{ v[NR] = $1 } END { printf "%.3f", v[int((NR + 1) / 2)] / 1000 }')
echo "   the handshake on loopback, median of $RUNS as the client times it: $hs ms (goal <= 1 ms)"
echo

# --- 2. 1 MB sources ---------------------------------------------------------
echo "2. a $size-byte source, $BIG_RUNS runs each, distcc-rs client and daemon:"
plain_and_keyed big "$BIG_RUNS" jobs/s jobs_per_s "$DISTCC_RS" big
echo "   channel / plain time: $ratio (goal <= 1.05)"
echo

# --- 3. The powerpc client under qemu ------------------------------------------
echo "3. the static powerpc client under qemu-ppc-static, the same source, $PPC_RUNS runs each:"
plain_and_keyed ppc "$PPC_RUNS" MB/s mbs \
    "env DISTCC_RS_OBJECT_CHECK=0 DISTCC_NO_REWRITE_CROSS=1 qemu-ppc-static $BIN_PPC" big
echo "   channel / plain time: $ratio"
echo

# --- 4. A 4 MB object back -----------------------------------------------------
echo "4. a job whose object is 4 MB, $BIG_RUNS runs each, distcc-rs client and daemon:"
plain_and_keyed bigobj "$BIG_RUNS" jobs/s jobs_per_s "$DISTCC_RS" bigobj
echo "   channel / plain time: $ratio"
