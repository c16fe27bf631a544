#!/bin/sh
# Installs what distcc-rs's build, demo and tests need on Debian: the real
# distcc peers, compilers, cross toolchains, qemu-user, the Rust targets and
# rust-src (which `make check-openbsd` builds std from).
# Idempotent. apt-get runs only when something is missing (or with --force,
# as CI does on a fresh machine); it needs root.
set -eu

APT_PACKAGES="distcc distcc-pump clang ccache qemu-user-static
 gcc-powerpc-linux-gnu libc6-dev-powerpc-cross
 gcc-arm-linux-gnueabihf libc6-dev-armhf-cross
 musl-tools file liblzo2-dev strace procps iproute2 hyperfine python3
 ca-certificates make gcc g++ gobjc
 linux-source-6.1 bc bison flex libelf-dev xz-utils binutils openssh-server openssh-client
 systemd mksh chromium"
RUST_TARGETS="x86_64-unknown-linux-musl powerpc-unknown-linux-gnu armv7-unknown-linux-gnueabihf"

missing=""
for pkg in $APT_PACKAGES; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing="$missing $pkg"
done
if [ -n "$missing" ] || [ "${1:-}" = "--force" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing Debian packages:$missing" >&2
		echo "deps: run as root (sudo make deps) to install them" >&2
		exit 1
	fi
	echo "+ apt-get update && apt-get install$missing"
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		-o Dpkg::Use-Pty=0 $APT_PACKAGES
fi

# rustup lives in the invoking user's home; under sudo, use theirs.
if [ -n "${SUDO_USER:-}" ] && [ -f "$(getent passwd "$SUDO_USER" | cut -d: -f6)/.cargo/env" ]; then
	. "$(getent passwd "$SUDO_USER" | cut -d: -f6)/.cargo/env"
elif [ -f "${CARGO_HOME:-$HOME/.cargo}/env" ]; then
	. "${CARGO_HOME:-$HOME/.cargo}/env"
fi
if ! command -v rustup >/dev/null 2>&1; then
	echo "deps: rustup not found; install Rust with rustup first (https://rustup.rs)" >&2
	exit 1
fi
for target in $RUST_TARGETS; do
	rustup target list --installed | grep -qx "$target" || rustup target add "$target"
done
rustup component list --installed | grep -q '^rust-src' || rustup component add rust-src
echo "deps: everything is installed"
