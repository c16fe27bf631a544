# shellcheck shell=sh
# tests/kernel-lib.sh: shared machinery for building Linux 6.1 tinyconfig
# through distcc, sourced by tests/kernel.sh (the end-to-end test) and
# bench/kernel.sh (the kernel benchmark). POSIX sh; it defines functions and
# sets nothing up until they are called.
#
# Everything lives in one private directory, $kl_work (mktemp -d), removed on
# exit with every daemon started here. The daemons may drop root (to the
# distccd user or nobody), so that directory is world-readable and their
# TMPDIRs are world-writable and sticky.
#
# Variables the callers may set before kl_init: KERNEL_TARBALL (default
# /usr/src/linux-source-6.1.tar.xz), KERNEL_TMPDIR (where the directory goes;
# default $TMPDIR or /tmp: the tree and two builds need about 2 GB),
# KERNEL_TIMEOUT (seconds one build may take, default 3600), KERNEL_KEEP=1
# (keep the directory, for a look at the logs after a failure).

KERNEL_TARBALL=${KERNEL_TARBALL:-/usr/src/linux-source-6.1.tar.xz}
KERNEL_TIMEOUT=${KERNEL_TIMEOUT:-3600}
# The same build every time: no clock, user, host or build counter in
# init/version*.o, so that two builds of the same tree can be compared.
KBUILD_BUILD_TIMESTAMP='Thu Jan  1 00:00:00 UTC 1970'
KBUILD_BUILD_USER=distcc-rs
KBUILD_BUILD_HOST=kernel-test
KBUILD_BUILD_VERSION=1
export KBUILD_BUILD_TIMESTAMP KBUILD_BUILD_USER KBUILD_BUILD_HOST KBUILD_BUILD_VERSION

kl_name=${kl_name:-kernel}
kl_pids=""
# Set by the daemon starters: the last daemon's port, pid and log file.
kl_port="" kl_pid="" kl_log=""


kl_die() {
    echo "$kl_name: error: $*" >&2
    exit 1
}

kl_note() { echo "$kl_name: $*"; }

# kl_need PROGRAM PACKAGE: fail, naming the Debian package, if PROGRAM is missing.
kl_need() {
    command -v "$1" >/dev/null 2>&1 ||
        kl_die "$1 is missing: apt-get install $2 (or sh contrib/deps.sh); this test fails rather than skip"
}

# kl_absolute PATH: PATH, made absolute against this directory: the
# benchmarks' commands run in directories of their own.
kl_absolute() {
    case $1 in
    /*) echo "$1" ;;
    *) echo "$PWD/$1" ;;
    esac
}

# kl_distcc_rs TARGET: sets DISTCC_RS to the distcc-rs binary a benchmark
# runs, from $DISTCC_RS or $BIN, made absolute; fails, naming the make
# TARGET that sets BIN, when there is none or it is not executable.
kl_distcc_rs() {
    DISTCC_RS=${DISTCC_RS:-${BIN:-}}
    [ -n "$DISTCC_RS" ] || kl_die "set BIN to the distcc-rs binary (make $1 does)"
    DISTCC_RS=$(kl_absolute "$DISTCC_RS")
    [ -x "$DISTCC_RS" ] || kl_die "$DISTCC_RS is not an executable file (run make first)"
}

# What a tinyconfig build needs, and the kernel source itself.
kl_need_build_tools() {
    [ -r "$KERNEL_TARBALL" ] ||
        kl_die "$KERNEL_TARBALL is missing: apt-get install linux-source-6.1 (or sh contrib/deps.sh)"
    kl_need gcc gcc
    kl_need make make
    kl_need bc bc
    kl_need flex flex
    kl_need bison bison
    kl_need xz xz-utils
    kl_need python3 python3
    kl_need timeout coreutils
    # x86_64 tinyconfig builds objtool, which needs libelf's headers.
    [ -r /usr/include/gelf.h ] ||
        kl_die "/usr/include/gelf.h is missing: apt-get install libelf-dev (or sh contrib/deps.sh)"
}

kl_cleanup() {
    for pid in $kl_pids; do
        kill -TERM "$pid" 2>/dev/null || continue
        i=0
        while [ $i -lt 50 ] && kill -0 "$pid" 2>/dev/null; do
            sleep 0.1
            i=$((i + 1))
        done
        # A daemon that leads its own process group (distccd's preforked
        # children are in it) is killed with its group.
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "${KERNEL_KEEP:-0}" = 1 ]; then
        [ -z "${kl_work:-}" ] || echo "$kl_name: kept $kl_work" >&2
    elif [ -n "${kl_work:-}" ]; then
        rm -rf "$kl_work"
    fi
}

# Makes the private directory and the exit trap.
kl_init() {
    kl_work=$(mktemp -d "${KERNEL_TMPDIR:-${TMPDIR:-/tmp}}/distcc-rs-kernel.XXXXXX") ||
        kl_die "mktemp -d failed"
    chmod 755 "$kl_work"
    trap kl_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    kl_src=$kl_work/src
    kl_build=$kl_work/build
}

# Unpacks the kernel into $kl_src and makes tinyconfig in $kl_build (O=).
# ARCH=x86_64: without it tinyconfig turns 64BIT off and builds i386.
kl_prepare() {
    mkdir "$kl_src" "$kl_build"
    kl_note "unpacking $KERNEL_TARBALL"
    tar -xJf "$KERNEL_TARBALL" -C "$kl_src" --strip-components=1 ||
        kl_die "cannot unpack $KERNEL_TARBALL"
    kl_make gcc 1 tinyconfig >"$kl_work/tinyconfig.log" 2>&1 ||
        { tail -n 30 "$kl_work/tinyconfig.log" >&2; kl_die "make tinyconfig failed"; }
}

# kl_make CC JOBS TARGET...: make in $kl_build with that CC, bounded in time.
# $kl_wrap, if set, is a command that make runs under (`distcc-rs pump`).
kl_wrap=""
kl_make() {
    cc=$1 jobs=$2
    shift 2
    # $kl_wrap is a command of several words on purpose.
    # shellcheck disable=SC2086
    timeout "$KERNEL_TIMEOUT" $kl_wrap make -C "$kl_src" O="$kl_build" ARCH=x86_64 \
        CC="$cc" -j"$jobs" "$@"
}

# kl_build LABEL CC JOBS: cleans, builds vmlinux, sets kl_seconds. The log is
# $kl_work/LABEL.log. Distcc's environment comes from the caller (kl_client_env).
kl_build() {
    kl_make "$2" 1 clean >"$kl_work/$1-clean.log" 2>&1 || kl_die "make clean failed ($1)"
    left=$(find "$kl_build" -path "$kl_build/tools" -prune -o -name '*.o' -print | head -n 3)
    [ -z "$left" ] || kl_die "make clean left objects behind: $left"
    start=$(date +%s.%N)
    if ! kl_make "$2" "$3" vmlinux >"$kl_work/$1.log" 2>&1; then
        tail -n 40 "$kl_work/$1.log" >&2
        kl_die "build '$1' (CC=$2, -j$3) failed; the end of its log is above"
    fi
    end=$(date +%s.%N)
    kl_seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    kl_note "build '$1' (CC=$2, -j$3): ${kl_seconds}s"
}

# kl_client_env PORT SLOTS: exports the client's environment for a daemon on
# 127.0.0.1:PORT. DISTCC_FALLBACK=0 and DISTCC_SKIP_LOCAL_RETRY=1: a job the
# daemon fails is an error, not a quiet local compile. Jobs the client never
# distributes (linking, -E, and with Debian's client .S) still run locally.
kl_client_env() {
    mkdir -p "$kl_work/distcc-dir"
    DISTCC_HOSTS="127.0.0.1:$1/$2"
    DISTCC_DIR=$kl_work/distcc-dir
    DISTCC_FALLBACK=0
    DISTCC_SKIP_LOCAL_RETRY=1
    export DISTCC_HOSTS DISTCC_DIR DISTCC_FALLBACK DISTCC_SKIP_LOCAL_RETRY
    unset DISTCC_VERBOSE DISTCC_LOG DISTCC_SSH DISTCC_POTENTIAL_HOSTS 2>/dev/null || true
}

# kl_start_rs DISTCC_RS SLOTS NAME: starts `distcc-rs daemon` on 127.0.0.1
# with a listener on a free port handed over by socket activation (fd 3,
# LISTEN_FDS=1, LISTEN_PID: python3 binds port 0 and execs the daemon, so
# there is no race for the port). gcc is whitelisted by a masquerade
# directory (Debian's client sends x86_64-linux-gnu-gcc). Sets kl_port,
# kl_pid and kl_log ($kl_work/NAME/log). $kl_rs_args, if set, are more
# daemon options (split on spaces, no quoting).
kl_start_rs() {
    d=$kl_work/$3
    mkdir -p "$d/masq"
    mkdir -m 1777 "$d/tmp"
    for cc in gcc cc x86_64-linux-gnu-gcc; do
        ln -s "$1" "$d/masq/$cc"
    done
    : >"$d/log"
    chmod 666 "$d/log"
    # shellcheck disable=SC2016
    TMPDIR=$d/tmp python3 -c '
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(128)
with open(sys.argv[1], "w") as f:
    f.write("%d\n" % s.getsockname()[1])
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
os.execv(sys.argv[2], sys.argv[2:])
' "$d/port" "$1" daemon --no-detach --allow 127.0.0.1 --jobs "$2" \
        --log-file "$d/log" --masquerade-dir "$d/masq" ${kl_rs_args:-} \
        </dev/null >"$d/out" 2>&1 &
    kl_pid=$!
    kl_pids="$kl_pids $kl_pid"
    kl_log=$d/log
    i=0
    until grep -q 'serving with' "$d/log" 2>/dev/null; do
        if [ $i -ge 100 ] || ! kill -0 "$kl_pid" 2>/dev/null; then
            cat "$d/out" "$d/log" >&2
            kl_die "distcc-rs daemon did not start"
        fi
        sleep 0.1
        i=$((i + 1))
    done
    kl_port=$(cat "$d/port")
}

# kl_start_distccd SLOTS NAME [CCDIR]: starts Debian's distccd on a free
# port of 127.0.0.1 (it has no socket activation: a port that is taken
# between the probe and the bind is retried). Whitelist: DISTCC_CMDLIST,
# which maps gcc, cc and x86_64-linux-gnu-gcc to those of CCDIR (default
# /usr/bin). Sets kl_port, kl_pid and kl_log.
kl_start_distccd() {
    kl_need distccd distcc
    d=$kl_work/$2
    ccdir=${3:-/usr/bin}
    mkdir -p "$d"
    mkdir -m 1777 "$d/tmp"
    printf '%s\n' "$ccdir/gcc" "$ccdir/cc" "$ccdir/x86_64-linux-gnu-gcc" >"$d/cmdlist"
    chmod 644 "$d/cmdlist"
    : >"$d/log"
    chmod 666 "$d/log"
    for try in 1 2 3; do
        kl_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        TMPDIR=$d/tmp DISTCC_CMDLIST=$d/cmdlist distccd --daemon --no-detach \
            --listen 127.0.0.1 --allow 127.0.0.1 --port "$kl_port" --jobs "$1" \
            --log-file "$d/log" </dev/null >"$d/out" 2>&1 &
        kl_pid=$!
        kl_pids="$kl_pids $kl_pid"
        # shellcheck disable=SC2034 # read by the caller
        kl_log=$d/log
        i=0
        while [ $i -lt 50 ] && kill -0 "$kl_pid" 2>/dev/null; do
            if python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' \
                "$kl_port" 2>/dev/null; then
                return 0
            fi
            sleep 0.1
            i=$((i + 1))
        done
        echo "$kl_name: distccd did not start on port $kl_port (try $try)" >&2
        cat "$d/out" "$d/log" >&2
    done
    kl_die "distccd would not start"
}

# kl_try_client CLIENT LOG: compiles a one-line file with CLIENT (the
# environment from kl_client_env) and checks that the daemon logged it.
kl_try_client() {
    mkdir -p "$kl_work/try"
    echo 'int distcc_rs_kernel_probe(void) { return 42; }' >"$kl_work/try/probe.c"
    # $1 is a command of several words on purpose.
    # shellcheck disable=SC2086
    (cd "$kl_work/try" && timeout 60 $1 -c probe.c -o probe.o) >"$kl_work/try/out" 2>&1 &&
        grep -q 'COMPILE_OK.* probe\.c$' "$2"
}

# kl_hello: the benchmarks' hello.c, in $kl_work/hello (that directory in $h).
kl_hello() {
    h=$kl_work/hello
    mkdir "$h"
    printf '#include <stdio.h>\n\nint main(void)\n{\n    printf("hello, world\\n");\n    return 0;\n}\n' >"$h/hello.c"
}

# kl_keys: a server key, a client key and an auth-keys file that lists the
# client's, in $kl_work/keys (that directory in $keys).
kl_keys() {
    keys=$kl_work/keys
    mkdir "$keys"
    "$DISTCC_RS" key generate "$keys/server" >/dev/null
    "$DISTCC_RS" key generate "$keys/client" >"$keys/auth"
    chmod 644 "$keys/auth"
}

# kl_median_ms DIR OUT RUNS CMD...: runs the commands in DIR in RUNS rounds,
# each round every command once in turn (so that a change in the shared
# machine's load hits them alike), after one warm-up round, and writes the
# medians in ms to OUT, one line per command. A command that fails (or,
# with KL_QUIET=1, writes to stderr) stops the benchmark.
kl_median_ms() {
    dir=$1
    out=$2
    shift 2
    (cd "$dir" && KL_QUIET=${KL_QUIET:-0} timeout 1800 python3 -c '
import os, shlex, statistics, subprocess, sys, time
runs, cmds = int(sys.argv[1]), sys.argv[2:]
quiet = os.environ.get("KL_QUIET") == "1"
times = [[] for _ in cmds]
for r in range(runs + 1):
    for i, cmd in enumerate(cmds):
        t = time.perf_counter()
        p = subprocess.run(shlex.split(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if p.returncode != 0 or (quiet and p.stderr):
            sys.exit("%s exited %d: %s" % (cmd, p.returncode, p.stderr.decode(errors="replace")))
        if r > 0:
            times[i].append(time.perf_counter() - t)
for t in times:
    print("%.3f" % (statistics.median(t) * 1000))
' "$@") >"$out" || kl_die "a benchmark command failed"
}
