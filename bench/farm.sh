#!/bin/sh
# bench/farm.sh: a farm on one machine, distcc 3.4 against distcc-rs in one
# run. BENCH_FARM_HOSTS daemons (default 8) on 127.0.0.1, each with
# BENCH_FARM_SLOTS slots (default 8) and listed with that limit, whose
# compiler sleeps: BENCH_FARM_FAST seconds a job (default 1.5) on the first
# half of the list, BENCH_FARM_SLOW (default 3) on the rest. Its compiler is
# a script that sleeps, then copies a tiny object made once by gcc, so the
# machine's two CPUs only preprocess, send and receive. BENCH_FARM_CLIENTS
# client machines (default 3: separate DISTCC_DIRs, so separate slot locks)
# each build BENCH_FARM_FILES C files (default 200) with make
# -jBENCH_FARM_JOBS (default 32), all three started together.
#
#   efficiency = ideal makespan / measured makespan, where the ideal spreads
#                all the jobs over all the slots by their speed:
#                jobs / sum over hosts of (slots / seconds a job)
#
# and, from the daemons' logs, the jobs each fast and each slow host ran
# (on average). Sides, each with its own set of daemons (default "d rs"):
#
#   d      Debian's distcc clients, Debian's distccd 3.4 daemons
#   rs     distcc-rs clients, distcc-rs daemons
#   rs-d   distcc-rs clients, distccd 3.4 daemons
#   d-rs   Debian's distcc clients, distcc-rs daemons
#   rs0    distcc-rs clients placing by 3.4's static rules (DISTCC_PLACEMENT=0)
#   rs2    distcc-rs clients asking two random hosts (DISTCC_PLACEMENT=two)
#   rsp    distcc-rs clients in pump mode (`distcc-rs pump make`, hosts
#          listed ,cpp,lzo), distcc-rs daemons: the client machines
#          preprocess nothing, as with a real farm in pump mode, whose hosts
#          preprocess within their jobs' time (distcc 3.4's pump mode, whose
#          include server is broken on bookworm, cannot take this side)
#
# Each of BENCH_FARM_RUNS rounds (default 2) runs every side once, the side
# that goes first turning round by round; the ratios are of the same round.
#
#   BIN=target/x86_64-unknown-linux-musl/release/distcc-rs sh bench/farm.sh
#   (or `make bench-farm`)
#
# A small farm, well under a minute:
#   BENCH_FARM_HOSTS=4 BENCH_FARM_SLOTS=4 BENCH_FARM_FAST=0.3 \
#   BENCH_FARM_SLOW=0.6 BENCH_FARM_CLIENTS=2 BENCH_FARM_FILES=40 \
#   BENCH_FARM_JOBS=16 BIN=... sh bench/farm.sh
#
# BENCH_FARM_SIDES picks the sides; BENCH_FARM_PLACEMENT sets DISTCC_PLACEMENT
# for the sides that do not set it; BENCH_FARM_JOBLOG=DIR copies each
# build's job log (`host start end` lines) and start time there; BENCH_FARM_LIMIT is the limit the host
# list gives each host (default: its slots); BENCH_FARM_TIMEOUT (seconds, default
# 600) bounds every make; BENCH_FARM_PAUSE sets DISTCC_PAUSE_TIME_MSEC for
# the clients (unset: their default, 1000 ms); KERNEL_KEEP=1 keeps the
# directory with the compilers' job logs (one `start end` line per job).

set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
kl_name=bench/farm.sh
. "$root/tests/kernel-lib.sh"

kl_distcc_rs bench-farm
HOSTS=${BENCH_FARM_HOSTS:-8}
SLOTS=${BENCH_FARM_SLOTS:-8}
LIMIT=${BENCH_FARM_LIMIT:-$SLOTS}
CLIENTS=${BENCH_FARM_CLIENTS:-3}
FILES=${BENCH_FARM_FILES:-200}
JOBS=${BENCH_FARM_JOBS:-32}
FAST=${BENCH_FARM_FAST:-1.5}
SLOW=${BENCH_FARM_SLOW:-3}
RUNS=${BENCH_FARM_RUNS:-2}
SIDES=${BENCH_FARM_SIDES:-d rs}
TIMEOUT=${BENCH_FARM_TIMEOUT:-600}
for n in "$HOSTS" "$SLOTS" "$LIMIT" "$CLIENTS" "$FILES" "$JOBS" "$RUNS" "$TIMEOUT"; do
    case $n in '' | *[!0-9]* | 0) kl_die "the BENCH_FARM_* counts must be whole numbers above 0" ;; esac
done
[ "$HOSTS" -ge 2 ] || kl_die "BENCH_FARM_HOSTS must be at least 2 (a fast and a slow half)"
for t in "$FAST" "$SLOW"; do
    awk -v t="$t" 'BEGIN { exit !(t + 0 > 0 && t ~ /^[0-9.]+$/) }' ||
        kl_die "BENCH_FARM_FAST and _SLOW must be seconds above 0"
done
for side in $SIDES; do
    case $side in d | rs | rs0 | rs2 | rsp | rs-d | d-rs) ;; *) kl_die "unknown side '$side' in BENCH_FARM_SIDES" ;; esac
done
kl_need distcc distcc
kl_need distccd distcc
kl_need make make
kl_need gcc gcc
kl_need python3 python3
kl_need timeout coreutils

kl_init
fast_hosts=$((HOSTS / 2))
# host_time I: the seconds a job takes on host I (0-based).
host_time() { if [ "$1" -lt "$fast_hosts" ]; then echo "$FAST"; else echo "$SLOW"; fi; }

# The object every farm compiler hands back.
mkdir "$kl_work/template"
echo 'int farm_object(void) { return 1; }' >"$kl_work/template/t.c"
gcc -c "$kl_work/template/t.c" -o "$kl_work/template/t.o" || kl_die "gcc -c failed"
chmod -R a+rX "$kl_work/template"

# make_compilers DIR SECONDS: DIR/gcc (and cc, x86_64-linux-gnu-gcc), a
# compiler that sleeps SECONDS, copies the template to its -o and appends
# `start end` to DIR/jobs. The daemons may run as another user.
make_compilers() {
    mkdir -p "$1"
    cat >"$1/gcc" <<EOF
#!/bin/sh
# A farm host's compiler: sleeps $2 s, then writes the template object.
out=
while [ \$# -gt 0 ]; do
    case \$1 in
    -o) out=\$2; shift ;;
    -o*) out=\${1#-o} ;;
    esac
    shift
done
[ -n "\$out" ] || { echo "farm compiler: no -o" >&2; exit 1; }
start=\$(date +%s.%N)
sleep $2
cp "$kl_work/template/t.o" "\$out" || exit 1
echo "\$start \$(date +%s.%N)" >>"$1/jobs"
EOF
    chmod 755 "$1/gcc"
    ln -s gcc "$1/cc"
    ln -s gcc "$1/x86_64-linux-gnu-gcc"
    : >"$1/jobs"
    chmod 666 "$1/jobs"
}

# start_farm KIND: HOSTS daemons of KIND (d or rs), named KIND-I; sets
# hosts_KIND (the DISTCC_HOSTS list, fast half first).
start_farm() {
    # The kl_ starters use i and d themselves.
    farm_list=""
    h=0
    while [ $h -lt "$HOSTS" ]; do
        name=$1-$h
        make_compilers "$kl_work/$name/cc" "$(host_time $h)"
        if [ "$1" = d ]; then
            kl_start_distccd "$SLOTS" "$name" "$kl_work/$name/cc"
        else
            # Our daemon finds the whitelisted names on DISTCCD_PATH.
            DISTCCD_PATH=$kl_work/$name/cc:/usr/bin:/bin
            export DISTCCD_PATH
            # The compiler reads the template object and appends to its job
            # log, both outside its job directory.
            kl_rs_args="--sandbox-allow $kl_work/template --sandbox-write $kl_work/$name/cc"
            kl_start_rs "$DISTCC_RS" "$SLOTS" "$name"
            kl_rs_args=
            unset DISTCCD_PATH
        fi
        echo "$kl_log" >"$kl_work/$name/logname"
        farm_list="$farm_list 127.0.0.1:$kl_port/$LIMIT"
        h=$((h + 1))
    done
    eval "hosts_$1=\"\${farm_list# }\""
}

# The projects: one per client machine, FILES small sources each.
c=0
while [ $c -lt "$CLIENTS" ]; do
    p=$kl_work/client-$c/project
    mkdir -p "$p"
    i=0
    while [ $i -lt "$FILES" ]; do
        echo "int f$i(int n) { return n * $i; }" >"$p/f$i.c"
        i=$((i + 1))
    done
    {
        printf 'SRCS := $(wildcard f*.c)\nOBJS := $(SRCS:.c=.o)\nall: $(OBJS)\n'
        printf '%%.o: %%.c\n\t$(CC) -O2 -c $< -o $@\n'
        printf 'clean:\n\trm -f $(OBJS)\n'
    } >"$p/Makefile"
    c=$((c + 1))
done

kinds=""
for side in $SIDES; do
    case $side in d | rs-d) kinds="$kinds d" ;; esac
    case $side in rs | rs0 | rs2 | rsp | d-rs) kinds="$kinds rs" ;; esac
done
case $kinds in *d*) start_farm d ;; esac
case $kinds in *rs*) start_farm rs ;; esac

echo "distcc farm benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) CPUs, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "distcc-rs: $("$DISTCC_RS" --version | head -n 1) ($DISTCC_RS)"
echo "distcc:    $(distcc --version | head -n 1)"
total=$((CLIENTS * FILES))
ideal=$(awk -v n="$total" -v h="$HOSTS" -v f="$fast_hosts" -v s="$SLOTS" -v a="$FAST" -v b="$SLOW" \
    'BEGIN { printf "%.2f", n / (f * s / a + (h - f) * s / b) }')
echo "farm: $HOSTS hosts x $SLOTS slots, listed as /$LIMIT ($fast_hosts at ${FAST} s a job, $((HOSTS - fast_hosts)) at ${SLOW} s)," \
    "$CLIENTS client machines x $FILES files, make -j$JOBS; ideal makespan ${ideal} s"
echo

# count_jobs KIND I: the COMPILE_OK lines in daemon KIND-I's log so far (a
# pump job has a second line, which says so).
count_jobs() { grep 'COMPILE_OK' "$(cat "$kl_work/$1-$2/logname")" | grep -vc 'in pump mode' || true; }
# count_pumped KIND: the jobs all of KIND's daemons have served in pump mode so far.
count_pumped() { cat "$kl_work/$1"-*/logname | xargs cat | grep -c 'in pump mode (protocol 3)' || true; }

# farm_build SIDE ROUND: all clients' makes at once against SIDE's farm;
# sets r_makespan (seconds) and r_fast and r_slow (jobs per fast and per
# slow host).
farm_build() {
    pump=
    case $1 in
    d) client=distcc kind=d placement= ;;
    rs) client=$DISTCC_RS kind=rs placement= ;;
    rsp) client=$DISTCC_RS kind=rs placement= pump="$DISTCC_RS pump" ;;
    rs0) client=$DISTCC_RS kind=rs placement=0 ;;
    rs2) client=$DISTCC_RS kind=rs placement=two ;;
    rs-d) client=$DISTCC_RS kind=d placement= ;;
    d-rs) client=distcc kind=rs placement= ;;
    esac
    placement=${placement:-${BENCH_FARM_PLACEMENT:-}}
    eval "list=\$hosts_$kind"
    [ -z "$pump" ] || list=$(echo "$list" | sed 's/\([^ ]*\)/\1,cpp,lzo/g')
    i=0
    while [ $i -lt "$HOSTS" ]; do
        eval "before_$i=$(count_jobs "$kind" $i)"
        eval "lines_$i=$(wc -l <"$kl_work/$kind-$i/cc/jobs")"
        i=$((i + 1))
    done
    pumped_before=$(count_pumped "$kind")
    c=0
    while [ $c -lt "$CLIENTS" ]; do
        d=$kl_work/client-$c
        make -C "$d/project" clean >/dev/null
        rm -rf "$d/distcc-dir" "$d/done"
        mkdir "$d/distcc-dir"
        c=$((c + 1))
    done
    start=$(date +%s.%N)
    clients=""
    c=0
    while [ $c -lt "$CLIENTS" ]; do
        d=$kl_work/client-$c
        # One client machine: its own DISTCC_DIR (slot locks, backoff).
        (
            DISTCC_HOSTS=$list DISTCC_DIR=$d/distcc-dir DISTCC_FALLBACK=0 DISTCC_SKIP_LOCAL_RETRY=1
            export DISTCC_HOSTS DISTCC_DIR DISTCC_FALLBACK DISTCC_SKIP_LOCAL_RETRY
            if [ -n "$placement" ]; then
                DISTCC_PLACEMENT=$placement
                export DISTCC_PLACEMENT
            fi
            if [ -n "${BENCH_FARM_PAUSE:-}" ]; then
                DISTCC_PAUSE_TIME_MSEC=$BENCH_FARM_PAUSE
                export DISTCC_PAUSE_TIME_MSEC
            fi
            # shellcheck disable=SC2086 # $pump is a command and its argument
            if timeout "$TIMEOUT" $pump make -C "$d/project" -j"$JOBS" CC="$client gcc" >"$d/make.log" 2>&1; then
                date +%s.%N >"$d/done"
            fi
        ) &
        clients="$clients $!"
        c=$((c + 1))
    done
    for pid in $clients; do
        wait "$pid" || true
    done
    c=0
    while [ $c -lt "$CLIENTS" ]; do
        d=$kl_work/client-$c
        [ -s "$d/done" ] || { tail -n 20 "$d/make.log" >&2; kl_die "side $1: client $c's build failed"; }
        c=$((c + 1))
    done
    end=$(cat "$kl_work"/client-*/done | sort -n | tail -n 1)
    # Jobs per host from the daemons' logs; each compiler's job log of this
    # build goes to $kl_work/SIDE-ROUND.jobs as `host start end`.
    jobs=$kl_work/$1-$2.jobs
    : >"$jobs"
    i=0 sum_fast=0 sum_slow=0 all=0
    while [ $i -lt "$HOSTS" ]; do
        eval "n=\$(( \$(count_jobs $kind $i) - before_$i ))"
        eval "skip=\$((lines_$i + 1))"
        tail -n +"$skip" "$kl_work/$kind-$i/cc/jobs" | sed "s/^/$i /" >>"$jobs"
        if [ $i -lt "$fast_hosts" ]; then sum_fast=$((sum_fast + n)); else sum_slow=$((sum_slow + n)); fi
        all=$((all + n))
        i=$((i + 1))
    done
    [ "$all" -eq "$total" ] || kl_die "side $1: the daemons logged $all jobs, not $total"
    [ "$(wc -l <"$jobs")" -eq "$total" ] || kl_die "side $1: the compilers ran $(wc -l <"$jobs") jobs, not $total"
    pumped=$(($(count_pumped "$kind") - pumped_before))
    [ -z "$pump" ] || [ "$pumped" -eq "$total" ] || kl_die "side $1: $pumped of $total jobs went in pump mode"
    if [ -n "${BENCH_FARM_JOBLOG:-}" ]; then
        cp "$jobs" "$BENCH_FARM_JOBLOG/$1-$2.jobs"
        echo "$start" >"$BENCH_FARM_JOBLOG/$1-$2.start"
    fi
    r_makespan=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
    r_fast=$(awk -v n="$sum_fast" -v h="$fast_hosts" 'BEGIN { printf "%.1f", n / h }')
    r_slow=$(awk -v n="$sum_slow" -v h="$((HOSTS - fast_hosts))" 'BEGIN { printf "%.1f", n / h }')
}

# tail_of SIDE ROUND: when the last job on a fast and on a slow host ended,
# in seconds from the first job's start.
tail_of() {
    python3 - "$kl_work/$1-$2.jobs" "$fast_hosts" <<'EOF'
import sys
rows = [line.split() for line in open(sys.argv[1])]
fast = int(sys.argv[2])
t0 = min(float(r[1]) for r in rows)
last = lambda pick: max((float(r[2]) - t0 for r in rows if pick(int(r[0]))), default=0.0)
print("%.1f %.1f" % (last(lambda h: h < fast), last(lambda h: h >= fast)))
EOF
}

label() {
    case $1 in
    d) echo "distcc 3.4 + distccd 3.4" ;;
    rs) echo "distcc-rs + distcc-rs daemon" ;;
    rs0) echo "distcc-rs static + rs daemon" ;;
    rs2) echo "distcc-rs two choices + rs daemon" ;;
    rsp) echo "distcc-rs pump + rs daemon" ;;
    rs-d) echo "distcc-rs + distccd 3.4" ;;
    d-rs) echo "distcc 3.4 + distcc-rs daemon" ;;
    esac
}

printf '%-6s %-32s %9s %11s %12s %16s\n' round side makespan efficiency "jobs fast/slow" "last fast/slow s"
round=1
while [ $round -le "$RUNS" ]; do
    # The side that goes first turns round by round.
    order=$(echo "$SIDES" | tr ' ' '\n' | grep . | awk -v r="$round" '{ a[NR] = $0 } END {
        for (i = 0; i < NR; i++) print a[(i + r - 1) % NR + 1] }')
    for side in $order; do
        farm_build "$side" "$round"
        eff=$(awk -v i="$ideal" -v m="$r_makespan" 'BEGIN { printf "%.1f", 100 * i / m }')
        eval "eff_${side%%-*}_${side#*-}_$round=$eff"
        printf '%-6s %-32s %8ss %10s%% %12s %16s\n' "$round" "$(label "$side")" "$r_makespan" "$eff" \
            "$r_fast/$r_slow" \
            "$(tail_of "$side" "$round" | tr ' ' /)"
    done
    for side in $SIDES; do
        [ "$side" != d ] || continue
        eval "a=\$eff_${side%%-*}_${side#*-}_$round b=\${eff_d_d_$round:-}"
        [ -z "$b" ] || echo "       round $round: efficiency $(label "$side") / distcc 3.4: $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }')"
    done
    round=$((round + 1))
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
