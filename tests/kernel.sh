#!/bin/sh
# tests/kernel.sh: the kernel end-to-end test. Builds Linux 6.1 (tinyconfig,
# x86_64, vmlinux) once locally with gcc, once through distcc to a
# `distcc-rs daemon` on 127.0.0.1, and once more in pump mode (under
# `distcc-rs pump`, the host marked ,cpp,lzo), in the same out-of-tree
# directory, and checks for each distcc build that
#   - every object file (and vmlinux) is byte-identical to the local build's;
#   - the daemon really compiled them: at least 80% of the .c files the build
#     compiled with $CC appear as COMPILE_OK jobs in the daemon's log, and in
#     the pump build at least KERNEL_PUMP_PERCENT (default 95%) as pump jobs;
#   - the dependency files (-Wp,-MMD, then fixdep) of those are complete.
#
#   tests/kernel.sh                       (make test runs it after cargo test)
#   DISTCC_RS=path/to/distcc-rs tests/kernel.sh
#   CLIENT="distcc gcc" tests/kernel.sh   (Debian's client against our daemon)
#
# DISTCC_RS: the binary whose daemon (and by default client) is tested.
#   Default: `cargo build --release` here, then target/release/distcc-rs
#   (under $CARGO_TARGET_DIR if set): the host build, which needs no musl
#   target. `make` builds the static musl one; pass it as DISTCC_RS to test that.
# CLIENT: the compiler command for the distcc build (default "$DISTCC_RS gcc").
# JOBS: make -j and daemon slots (default nproc).
# KERNEL_PUMP=0 leaves the pump build out (distcc 3.4's client, as CLIENT,
# sends the kernel's -Wp,-MMD,FILE as it is, and the .d file stays on the
# server, so that build cannot work).
# KERNEL_TMPDIR, KERNEL_TARBALL, KERNEL_TIMEOUT, KERNEL_KEEP: see tests/kernel-lib.sh.
#
# Object files compared: all of them. init/version*.o embed the build number,
# user, host and date (pinned by KBUILD_BUILD_* in kernel-lib.sh, so the same
# in both builds) and the compiler string CONFIG_CC_VERSION_TEXT, the first
# line of `$CC --version`. Debian's distcc runs that locally but as
# x86_64-linux-gnu-gcc (it rewrites gcc to the target name), so the line
# reads "x86_64-linux-gnu-gcc (Debian 12.2.0-14+deb12u1) 12.2.0" instead of
# "gcc (Debian ...". Only when the two builds' strings differ, and only for
# init/version.o, init/version-timestamp.o and the two links that contain
# them (vmlinux.o, vmlinux), a difference is accepted if: the two objects'
# strings(1) are equal but for lines with the compiler string, the links'
# symbol names and types (nm) are equal, and .config is equal but for
# CONFIG_CC_VERSION_TEXT (Kconfig's compiler probes gave the same answers).
#
# It fails, naming the Debian package, when a tool or the kernel source is
# missing: it never skips. On 2 CPUs a build took 1.6-3 min, the whole test
# 4-6.5 min, depending on the load of the machine.

set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
kl_name=kernel.sh
. "$root/tests/kernel-lib.sh"

kl_need_build_tools
kl_need strings binutils
kl_need nm binutils
if [ -z "${DISTCC_RS:-}" ]; then
    kl_need cargo "rustup (https://rustup.rs)"
    (cd "$root" && cargo build --release --quiet) || kl_die "cargo build --release failed"
    DISTCC_RS=${CARGO_TARGET_DIR:-$root/target}/release/distcc-rs
fi
DISTCC_RS=$(kl_absolute "$DISTCC_RS")
[ -x "$DISTCC_RS" ] || kl_die "DISTCC_RS=$DISTCC_RS is not an executable file"
CLIENT=${CLIENT:-"$DISTCC_RS gcc"}
JOBS=${JOBS:-$(nproc)}

kl_init
kl_start_rs "$DISTCC_RS" "$JOBS" daemon
kl_client_env "$kl_port" "$JOBS"
kl_note "daemon: $DISTCC_RS on 127.0.0.1:$kl_port (log $kl_log); client: $CLIENT"
# Before ten minutes of building: does the client reach the daemon at all?
kl_try_client "$CLIENT" "$kl_log" || {
    cat "$kl_work/try/out" >&2
    kl_die "'$CLIENT -c probe.c' did not compile through the daemon (is the client built?)"
}

kl_prepare
kl_build local gcc "$JOBS"
local_seconds=$kl_seconds
mkdir "$kl_work/local"
cp "$kl_build/.config" "$kl_work/local.config"
(cd "$kl_build" && find . \( -name '*.o' -o -name vmlinux \) -type f -print) >"$kl_work/local.list"
(cd "$kl_build" && tar -cf - -T "$kl_work/local.list") | (cd "$kl_work/local" && tar -xf -)
kl_note "saved $(wc -l <"$kl_work/local.list") local objects"

# --- Identical objects ---------------------------------------------------------
cc_text() { sed -n 's/^CONFIG_CC_VERSION_TEXT="\(.*\)"$/\1/p' "$1"; }
cc_local=$(cc_text "$kl_work/local.config")
sort "$kl_work/local.list" >"$kl_work/a"
# Accepted differences, see the header: $1 is the object.
accepted() {
    [ "$cc_local" != "$cc_distcc" ] || return 1
    case $1 in
    ./init/version.o | ./init/version-timestamp.o)
        strings -a "$kl_work/local/$1" | grep -vF "$cc_local" >"$kl_work/s1"
        strings -a "$kl_build/$1" | grep -vF "$cc_distcc" >"$kl_work/s2"
        ;;
    ./vmlinux.o | ./vmlinux)
        nm "$kl_work/local/$1" | awk '{ print $(NF - 1), $NF }' >"$kl_work/s1"
        nm "$kl_build/$1" | awk '{ print $(NF - 1), $NF }' >"$kl_work/s2"
        ;;
    *) return 1 ;;
    esac
    cmp -s "$kl_work/s1" "$kl_work/s2"
}
# compare_objects LABEL: the build in $kl_build against the local one; sets
# fail=1 on a difference, and naccepted. The sets of objects are compared
# without scripts/: kconfig's host objects are made by tinyconfig, removed
# by `make clean`, and made again only by a build whose CC changed (the
# distcc build's, not the pump build's, which has the same CC).
compare_objects() {
    (cd "$kl_build" && find . \( -name '*.o' -o -name vmlinux \) -type f -print) |
        grep -v '^\./scripts/' | sort >"$kl_work/b"
    grep -v '^\./scripts/' "$kl_work/a" >"$kl_work/a.t"
    if ! cmp -s "$kl_work/a.t" "$kl_work/b"; then
        echo "kernel.sh: $1: the two builds made different sets of objects (< local, > $1):" >&2
        diff "$kl_work/a.t" "$kl_work/b" | grep '^[<>]' | head -n 20 >&2
        fail=1
    fi
    cc_distcc=$(cc_text "$kl_build/.config")
    extra=$(diff "$kl_work/local.config" "$kl_build/.config" | grep '^[<>]' | grep -v CONFIG_CC_VERSION_TEXT= || true)
    if [ -n "$extra" ]; then
        printf 'kernel.sh: %s: .config differs beyond CONFIG_CC_VERSION_TEXT:\n%s\n' "$1" "$extra" >&2
        fail=1
    fi
    ndiff=0 naccepted=0
    while read -r f; do
        [ -f "$kl_build/$f" ] || continue
        cmp -s "$kl_work/local/$f" "$kl_build/$f" && continue
        if accepted "$f"; then
            kl_note "$1: differs only by the compiler string (accepted): $f"
            naccepted=$((naccepted + 1))
        else
            echo "kernel.sh: $1: differs from the local build: $f" >&2
            ndiff=$((ndiff + 1))
        fi
    done <"$kl_work/a"
    [ $ndiff = 0 ] || fail=1
    [ "$cc_local" = "$cc_distcc" ] ||
        kl_note "$1: compiler string: local \"$cc_local\", distcc \"$cc_distcc\""
    kl_note "$1: compared $(wc -l <"$kl_work/a") objects: $ndiff differ, $naccepted by the compiler string only"
}

# --- Compiled by the daemon ----------------------------------------------------
# The .c files the build compiled with $CLIENT: their .cmd files say
# `cmd_X.o := $CLIENT ...` and `source_X.o := path.c` (host programs use
# HOSTCC and are not counted).
# Their dependencies went through the client too (-Wp,-MMD,dir/.x.o.d, then
# fixdep into the .cmd file): every one must list include/linux/kconfig.h,
# which the kernel's command line -includes into every C file.
# count_remote LABEL PATTERN PERCENT: the .c files whose jobs the daemon's
# log shows as COMPILE_OK lines matching PATTERN (a sed regex before the
# source name) must be at least PERCENT of them. Sets remote and total.
count_remote() {
    : >"$kl_work/no-deps"
    find "$kl_build" -name '.*.o.cmd' -print | while read -r f; do
        grep -q "^cmd_[^ ]* := $CLIENT " "$f" || continue
        grep -q '^source_[^ ]* := .*\.c$' "$f" || continue
        sed -n 's/^source_[^ ]* := \(.*\.c\)$/\1/p' "$f"
        grep -q '^  .*/include/linux/kconfig\.h' "$f" || echo "$f" >>"$kl_work/no-deps"
    done | sort -u >"$kl_work/c-sources"
    total=$(wc -l <"$kl_work/c-sources")
    if [ -s "$kl_work/no-deps" ]; then
        echo "kernel.sh: $1: $(wc -l <"$kl_work/no-deps") .cmd files lack the dependencies -MMD should give, e.g.:" >&2
        head -n 5 "$kl_work/no-deps" >&2
        fail=1
    fi
    sed -n "s/.* COMPILE_OK $2 \([^ ]*\)\$/\1/p" "$kl_log" | sort -u >"$kl_work/remote-sources"
    remote=$(comm -12 "$kl_work/c-sources" "$kl_work/remote-sources" | wc -l)
    jobs_ok=$(grep -c ' COMPILE_OK exit:' "$kl_log" || true)
    jobs_failed=$(grep -c ' COMPILE_ERROR \| COMPILE_TIMEOUT \| COMPILE_NO_OUTPUT ' "$kl_log" || true)
    kl_note "$1: daemon: $jobs_ok jobs COMPILE_OK, $jobs_failed failed (probes of compiler options fail by design);" \
        "$remote of the $total .c files compiled with CC went through it as $1 jobs"
    if [ "$total" -lt 100 ]; then
        echo "kernel.sh: $1: only $total .c files compiled with '$CLIENT': the build did not use it" >&2
        fail=1
    elif [ $((remote * 100)) -lt $((total * $3)) ]; then
        echo "kernel.sh: $1: fewer than $3% of the .c files were compiled by the daemon as $1 jobs; others:" >&2
        comm -23 "$kl_work/c-sources" "$kl_work/remote-sources" | head -n 10 >&2
        fail=1
    fi
}

fail=0
: >"$kl_log"
kl_build distcc "$CLIENT" "$JOBS"
distcc_seconds=$kl_seconds
compare_objects distcc
distcc_accepted=$naccepted
count_remote distcc '.*' 80
distcc_remote="$remote/$total"

if [ "${KERNEL_PUMP:-1}" = 0 ]; then
    [ $fail = 0 ] || kl_die "the distcc build does not match (KERNEL_KEEP=1 keeps $kl_work)"
    kl_note "PASS: local build ${local_seconds}s, distcc build ${distcc_seconds}s (-j$JOBS);" \
        "objects identical ($distcc_accepted by the compiler string only), $distcc_remote .c files compiled remotely"
    exit 0
fi

# --- Pump mode -----------------------------------------------------------------
# The same build under `distcc-rs pump`, to the same daemon as a ,cpp,lzo
# host: the client sends sources and headers, and the daemon preprocesses.
# The daemon logs a pump job a second time, as "COMPILE_OK in pump mode
# (protocol 3): SOURCE".
: >"$kl_log"
DISTCC_HOSTS="$DISTCC_HOSTS,cpp,lzo"
kl_wrap="$DISTCC_RS pump"
kl_build pump "$CLIENT" "$JOBS"
pump_seconds=$kl_seconds
kl_wrap=""
compare_objects pump
pump_accepted=$naccepted
count_remote pump 'in pump mode (protocol 3):' "${KERNEL_PUMP_PERCENT:-95}"
pump_remote="$remote/$total"

[ $fail = 0 ] || kl_die "a distcc build does not match (KERNEL_KEEP=1 keeps $kl_work)"
kl_note "PASS: local build ${local_seconds}s, distcc build ${distcc_seconds}s, pump build ${pump_seconds}s (-j$JOBS);" \
    "objects identical ($distcc_accepted and $pump_accepted by the compiler string only);" \
    ".c files compiled remotely: $distcc_remote plain, $pump_remote in pump mode"
