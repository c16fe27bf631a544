#!/bin/sh
# The demo: start the static distcc-rs daemon on loopback and compile
# through it with the distcc-rs client and with Debian's real distcc client,
# over protocol 1 and protocol 2 (LZO), then check the objects against a
# local compile.
#
#   BIN=target/x86_64-unknown-linux-musl/release/distcc-rs sh contrib/demo.sh
set -eu

BIN=$(readlink -f "${BIN:?set BIN to the distcc-rs binary}")
command -v distcc >/dev/null || { echo "demo: distcc is missing: sudo make deps" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/distcc-rs-demo.XXXXXX")
chmod 755 "$work"
pid=""
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

# The whitelist: a masquerade directory of compiler names linked to distcc-rs.
# Debian's client sends x86_64-linux-gnu-gcc when you type gcc.
mkdir "$work/masq" "$work/tmp" "$work/.distcc"
chmod 1777 "$work/tmp"
for cc in gcc cc x86_64-linux-gnu-gcc; do ln -s "$BIN" "$work/masq/$cc"; done

# A free port on 127.0.0.1: try a few random ones (exit 102 means taken).
for try in 1 2 3 4 5 6 7 8; do
	port=$(( $(od -An -N2 -tu2 /dev/urandom) % 30000 + 20000 ))
	TMPDIR="$work/tmp" "$BIN" daemon --no-detach --log-stderr --listen 127.0.0.1 \
		--port "$port" --allow 127.0.0.1 --masquerade-dir "$work/masq" \
		2>"$work/daemon.log" &
	pid=$!
	for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
		grep -q "serving with" "$work/daemon.log" 2>/dev/null && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	grep -q "serving with" "$work/daemon.log" && break
	wait "$pid" 2>/dev/null || true
	pid=""
done
[ -n "$pid" ] || { cat "$work/daemon.log" >&2; echo "demo: daemon did not start" >&2; exit 1; }
echo "distcc-rs daemon listening on 127.0.0.1:$port (pid $pid)"

cd "$work"
cat > hello.c <<'C'
#include <stdio.h>
int main(void) { printf("hello from distcc-rs\n"); return 0; }
C
gcc -c hello.c -o local.o
for client in distcc-rs distcc; do
	for spec in "127.0.0.1:$port" "127.0.0.1:$port,lzo"; do
		echo "+ DISTCC_HOSTS='$spec' $client gcc -c hello.c -o hello.o"
		[ "$client" = distcc-rs ] && set -- "$BIN" || set -- distcc
		rm -f hello.o
		DISTCC_HOSTS="$spec" DISTCC_DIR="$work/.distcc" DISTCC_FALLBACK=0 "$@" gcc -c hello.c -o hello.o
		cmp hello.o local.o && echo "  object identical to a local compile"
	done
done
gcc hello.o -o hello && ./hello
echo "daemon log:"
sed 's/^/  /' "$work/daemon.log"
grep -c COMPILE_OK "$work/daemon.log" | grep -qx 4 || { echo "demo: expected 4 remote compiles" >&2; exit 1; }
kill "$pid"; wait "$pid" && echo "daemon stopped cleanly"; pid=""
