#!/bin/sh
# bench/placement.sh: what load-aware placement adds to a job on loopback.
# BENCH_PLACEMENT_HOSTS distcc-rs daemons (default 8) on 127.0.0.1, whose
# compiler copies an object made once by gcc (no sleep), so that a job is
# the client's own work: start, preprocess hello.c, pick a host, send,
# receive. BENCH_PLACEMENT_JOBS jobs (default 200) run one after another
# with DISTCC_PLACEMENT=0 (distcc 3.4's static rules), then as many with
# placement on (a load query to every host, a claim to the chosen one);
# BENCH_PLACEMENT_RUNS rounds (default 3) alternate which goes first.
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

# ms_per_job PLACEMENT: runs the jobs, prints the mean wall time of one in ms.
ms_per_job() {
    rm -rf "$kl_work/distcc-dir"
    mkdir "$kl_work/distcc-dir"
    start=$(date +%s.%N)
    i=0
    while [ $i -lt "$JOBS" ]; do
        DISTCC_HOSTS=${list# } DISTCC_DIR=$kl_work/distcc-dir DISTCC_FALLBACK=0 \
            DISTCC_PLACEMENT=$1 "$DISTCC_RS" gcc -c "$kl_work/project/hello.c" \
            -o "$kl_work/project/hello.o" || kl_die "job $i failed with DISTCC_PLACEMENT=$1"
        i=$((i + 1))
    done
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" -v n="$JOBS" 'BEGIN { printf "%.3f", 1000 * (b - a) / n }'
}

echo "placement cost benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) CPUs, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "distcc-rs: $("$DISTCC_RS" --version | head -n 1) ($DISTCC_RS)"
echo "$HOSTS hosts on loopback, $JOBS jobs of hello.c one after another per side"
echo
printf '%-6s %14s %14s %12s\n' round "static ms/job" "placed ms/job" "added ms"
round=1
while [ $round -le "$RUNS" ]; do
    if [ $((round % 2)) -eq 1 ]; then
        s=$(ms_per_job 0)
        p=$(ms_per_job load)
    else
        p=$(ms_per_job load)
        s=$(ms_per_job 0)
    fi
    printf '%-6s %14s %14s %12s\n' "$round" "$s" "$p" "$(awk -v a="$p" -v b="$s" 'BEGIN { printf "%.3f", a - b }')"
    round=$((round + 1))
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
