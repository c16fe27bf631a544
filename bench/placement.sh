#!/bin/sh
# bench/placement.sh: what load-aware placement adds to a job on loopback.
# BENCH_PLACEMENT_HOSTS distcc-rs daemons (default 8) on 127.0.0.1, whose
# compiler copies an object made once by gcc (no sleep), so that a job is
# the client's own work: start, preprocess hello.c, pick a host, send,
# receive. BENCH_PLACEMENT_JOBS jobs (default 200) run one after another
# with DISTCC_PLACEMENT=0 (distcc 3.4's static rules) and as many with
# placement on (a load query to every host, a claim to the chosen one), in
# turn, so that the machine's load drifts alike for both; per round of
# BENCH_PLACEMENT_RUNS (default 3), the median and mean wall time of a job.
#
#   BIN=target/x86_64-unknown-linux-musl/release/distcc-rs sh bench/placement.sh
#   (make bench-farm runs it after bench/farm.sh)

set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
kl_name=bench/placement.sh
. "$root/tests/kernel-lib.sh"

kl_distcc_rs bench-farm
HOSTS=${BENCH_PLACEMENT_HOSTS:-8}
JOBS=${BENCH_PLACEMENT_JOBS:-200}
RUNS=${BENCH_PLACEMENT_RUNS:-3}
for n in "$HOSTS" "$JOBS" "$RUNS"; do
    case $n in '' | *[!0-9]* | 0) kl_die "the BENCH_PLACEMENT_* counts must be whole numbers above 0" ;; esac
done
kl_need gcc gcc
kl_need python3 python3

kl_init
mkdir "$kl_work/template" "$kl_work/cc" "$kl_work/project"
echo 'int farm_object(void) { return 1; }' >"$kl_work/template/t.c"
gcc -c "$kl_work/template/t.c" -o "$kl_work/template/t.o" || kl_die "gcc -c failed"
chmod -R a+rX "$kl_work/template"
cat >"$kl_work/cc/gcc" <<EOF
#!/bin/sh
out=
while [ \$# -gt 0 ]; do
    case \$1 in -o) out=\$2; shift ;; -o*) out=\${1#-o} ;; esac
    shift
done
exec cp "$kl_work/template/t.o" "\$out"
EOF
chmod 755 "$kl_work/cc/gcc"
ln -s gcc "$kl_work/cc/x86_64-linux-gnu-gcc"
printf '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n' >"$kl_work/project/hello.c"

list=""
h=0
while [ $h -lt "$HOSTS" ]; do
    DISTCCD_PATH=$kl_work/cc:/usr/bin:/bin
    export DISTCCD_PATH
    kl_start_rs "$DISTCC_RS" 8 "host-$h"
    unset DISTCCD_PATH
    list="$list 127.0.0.1:$kl_port/8"
    h=$((h + 1))
done

# one_job PLACEMENT: runs one job, prints its wall time in ns.
one_job() {
    a=$(date +%s%N)
    DISTCC_HOSTS=${list# } DISTCC_DIR=$kl_work/distcc-dir DISTCC_FALLBACK=0 \
        DISTCC_PLACEMENT=$1 "$DISTCC_RS" gcc -c "$kl_work/project/hello.c" \
        -o "$kl_work/project/hello.o" || kl_die "a job failed with DISTCC_PLACEMENT=$1"
    b=$(date +%s%N)
    echo $((b - a))
}

echo "placement cost benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) CPUs, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "distcc-rs: $("$DISTCC_RS" --version | head -n 1) ($DISTCC_RS)"
echo "$HOSTS hosts on loopback, $JOBS jobs of hello.c per side and round, one after"
echo "another, static and placed in turn; median and mean wall time of a job"
echo
printf '%-6s %20s %20s %16s\n' round "static median/mean" "placed median/mean" "added median"
mkdir "$kl_work/distcc-dir"
round=1
while [ $round -le "$RUNS" ]; do
    : >"$kl_work/static" && : >"$kl_work/placed"
    i=0
    while [ $i -lt "$JOBS" ]; do
        one_job 0 >>"$kl_work/static"
        one_job load >>"$kl_work/placed"
        i=$((i + 1))
    done
    python3 - "$kl_work/static" "$kl_work/placed" "$round" <<'PY'
import statistics, sys
s = [int(x) / 1e6 for x in open(sys.argv[1])]
p = [int(x) / 1e6 for x in open(sys.argv[2])]
ms, mp = statistics.median(s), statistics.median(p)
print("%-6s %20s %20s %16s" % (sys.argv[3], "%.2f/%.2f ms" % (ms, statistics.mean(s)),
      "%.2f/%.2f ms" % (mp, statistics.mean(p)), "%.2f ms" % (mp - ms)))
PY
    round=$((round + 1))
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
