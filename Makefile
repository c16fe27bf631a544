# Build, install and check distcc-rs: one static multicall binary.
#
#   make               static-pie x86_64 musl release binary, checked with file(1)
#   make demo          installs what is missing, builds, starts a daemon on
#                      loopback and compiles through it with Debian's distcc
#   make deps          installs the Debian packages and Rust targets (root)
#   make cross         static powerpc and armv7 binaries, checked and run under qemu
#   make check-openbsd cargo check for powerpc- and x86_64-unknown-openbsd, std
#                      built from rustup's rust-src (-Zbuild-std, with
#                      RUSTC_BOOTSTRAP=1 on a stable toolchain); CI runs it
#   make test          the full test suite: cargo test, then tests/kernel.sh
#                      (Linux 6.1 tinyconfig built locally, through distcc-rs
#                      and in pump mode, objects compared; about 10 min on
#                      2 CPUs)
#   make lint          rustfmt and clippy, warnings are errors
#   make bench         bench/run.sh (daemons), then bench/kernel.sh (clients,
#                      per-job overhead and kernel builds), then bench/extras.sh
#                      (the monitor, the object check), then bench/pump.sh
#                      (pump mode: per-job overhead, the 0.25-CPU slow
#                      client, the include server), then make bench-farm
#                      (the farms and placement's cost), then bench/trust.sh
#                      (the encrypted channel), then bench/sandbox.sh (the
#                      compilers' sandbox on against off), on the release
#                      binary
#   make bench-kernel  bench/kernel.sh alone
#   make bench-extras  bench/extras.sh alone
#   make bench-pump    bench/pump.sh alone
#   make bench-trust   bench/trust.sh alone (the encrypted channel against
#                      plain TCP; the powerpc client under qemu)
#   make bench-farm    bench/farm.sh alone (a farm of sleeping compilers on
#                      loopback: placement by distcc 3.4's clients and ours;
#                      8x8 with 3 client machines, with 1, and 16 hosts x 4
#                      slots), then bench/placement.sh (what placement adds
#                      to a job)
#   make bench-identity BIN_BEFORE=... bench/identity.sh alone (the compiler
#                      identity check's cost per job, against a distcc-rs
#                      without it; make bench runs it when BIN_BEFORE is set)
#   make bench-sandbox bench/sandbox.sh alone (the daemon's cost per job with
#                      the compilers' sandbox on and off)
#   make install       $(DESTDIR)$(PREFIX)/bin/distcc-rs plus a relative symlink
#                      for every applet link in its applet table (distcc-rs
#                      --install -s), the systemd units (SYSTEMDUNITDIR) and
#                      rc.d script (RCDIR)
#   make uninstall     removes what install made (the links by distcc-rs
#                      --uninstall, only where they lead to the binary)
#   make clean
#
# Per-target rustflags and cross linkers live in .cargo/config.toml, which sets
# only [target.<triple>] tables, so the host build used by `cargo test` and
# `cargo clippy` is untouched. In short:
#   x86_64-unknown-linux-musl: +crt-static, rustc's default static-pie: no
#     dynamic dependencies, and the main image keeps ASLR. file(1) reports it
#     as "static-pie linked"; `all` requires that and rejects a dynamic binary
#     or a non-PIE static one (which file(1) calls "statically linked").
#   powerpc/armv7 gnu: linked by Debian's powerpc-linux-gnu-gcc and
#     arm-linux-gnueabihf-gcc with +crt-static (static glibc). rustc has no
#     static-pie for these targets, so that is already a plain static binary.
# A RUSTFLAGS environment variable replaces those per-target flags; the file(1)
# checks below then fail rather than ship a dynamic binary.

CARGO ?= cargo
RUSTUP ?= rustup
FILE ?= file
INSTALL ?= install

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
DESTDIR ?=
# The service files: systemd units, and the OpenBSD rc.d script (kept under
# share/ on other systems; set RCDIR=/etc/rc.d on OpenBSD). Installed with
# @BINDIR@ replaced by $(BINDIR).
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
RCDIR ?= $(PREFIX)/share/distcc-rs/rc.d
SERVICE_FILES = systemd/distcc-rs.service systemd/distcc-rs.socket rc.d/distccd

NAME = distcc-rs
TARGET = x86_64-unknown-linux-musl
CROSS_TARGETS = powerpc-unknown-linux-gnu armv7-unknown-linux-gnueabihf
# Checked only (no OpenBSD linker here): rustup ships no std for them, so std
# is built from source. Their own target dir keeps the host build valid.
OPENBSD_TARGETS = powerpc-unknown-openbsd x86_64-unknown-openbsd
OPENBSD_TARGET_DIR ?= $(CURDIR)/target/openbsd

# The main target dir (as cargo test uses it) and a separate one for the cross
# builds, so that a `cargo test` that runs `make cross` (tests/common/cross.rs)
# never waits on the build-directory lock it holds itself.
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
CROSS_TARGET_DIR ?= $(CURDIR)/target/cross

# The static release binary that `all` makes and `install` installs.
BIN = $(TARGET_DIR)/$(TARGET)/release/$(NAME)
cross_bin = $(CROSS_TARGET_DIR)/$(1)/release/$(NAME)
BIN_PPC = $(call cross_bin,powerpc-unknown-linux-gnu)
BIN_ARMV7 = $(call cross_bin,armv7-unknown-linux-gnueabihf)

qemu_powerpc-unknown-linux-gnu = qemu-ppc-static
qemu_armv7-unknown-linux-gnueabihf = qemu-arm-static
linker_powerpc-unknown-linux-gnu = powerpc-linux-gnu-gcc
linker_armv7-unknown-linux-gnueabihf = arm-linux-gnueabihf-gcc

.PHONY: all cross check-openbsd test lint bench bench-kernel bench-extras bench-pump bench-farm bench-trust bench-sandbox bench-identity install uninstall clean deps demo \
	rustup-targets rustup-cross-targets cross-tools

all: rustup-targets
	CARGO_TARGET_DIR='$(TARGET_DIR)' $(CARGO) build --release --target $(TARGET)
	@$(FILE) -L '$(BIN)'
	@! $(FILE) -L '$(BIN)' | grep -Eq 'dynamically linked|interpreter' || \
		{ echo "error: $(BIN) is dynamically linked" >&2; exit 1; }
	@$(FILE) -L '$(BIN)' | grep -q 'static-pie linked' || \
		{ echo "error: $(BIN) is not static-pie (static, with ASLR)" >&2; exit 1; }
	@$(FILE) -L '$(BIN)' | grep -q 'stripped' && ! $(FILE) -L '$(BIN)' | grep -q 'not stripped' || \
		{ echo "error: $(BIN) is not stripped" >&2; exit 1; }

# Adds a rustup target only if it is missing (no rustup: assume the toolchain
# has it and let cargo say otherwise).
rustup_add = if command -v $(RUSTUP) >/dev/null 2>&1 && \
		! $(RUSTUP) target list --installed | grep -qx '$(1)'; then \
		echo "rustup target add $(1)"; $(RUSTUP) target add '$(1)'; fi

rustup-targets:
	@$(call rustup_add,$(TARGET))

rustup-cross-targets:
	@$(foreach t,$(CROSS_TARGETS),$(call rustup_add,$(t)) &&) true

cross-tools:
	@for tool in $(foreach t,$(CROSS_TARGETS),$(linker_$(t)) $(qemu_$(t))) $(FILE); do \
		command -v $$tool >/dev/null 2>&1 || { echo "error: $$tool not found (apt-get install" \
		"gcc-powerpc-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-powerpc-cross" \
		"libc6-dev-armhf-cross qemu-user-static file; see .ci/run)" >&2; exit 1; }; \
	done

cross: cross-tools rustup-cross-targets
	@set -e; for t in $(CROSS_TARGETS); do \
		echo "CARGO_TARGET_DIR='$(CROSS_TARGET_DIR)' $(CARGO) build --release --target $$t"; \
		CARGO_TARGET_DIR='$(CROSS_TARGET_DIR)' $(CARGO) build --release --target $$t; \
	done
	@set -e; $(foreach t,$(CROSS_TARGETS), \
		bin='$(call cross_bin,$(t))'; \
		$(FILE) -L "$$bin"; \
		$(FILE) -L "$$bin" | grep -q 'statically linked' || \
			{ echo "error: $$bin is not statically linked" >&2; exit 1; }; \
		echo "$(qemu_$(t)) $$bin --version"; \
		out=$$($(qemu_$(t)) "$$bin" --version) || \
			{ echo "error: $$bin --version under $(qemu_$(t)) failed" >&2; exit 1; }; \
		echo "$$out"; \
		echo "$$out" | head -n 1 | grep -q '^$(NAME) .* $(t)$$' || \
			{ echo "error: $$bin --version under $(qemu_$(t)) did not name $(t)" >&2; exit 1; }; \
	)

# rust-src is what -Zbuild-std compiles std from (contrib/deps.sh installs it).
check-openbsd:
	@if command -v $(RUSTUP) >/dev/null 2>&1 && \
		! $(RUSTUP) component list --installed | grep -q '^rust-src'; then \
		echo "rustup component add rust-src"; $(RUSTUP) component add rust-src; fi
	@set -e; for t in $(OPENBSD_TARGETS); do \
		echo "RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR='$(OPENBSD_TARGET_DIR)' $(CARGO) check -Zbuild-std=std,panic_abort --target $$t"; \
		RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR='$(OPENBSD_TARGET_DIR)' \
			$(CARGO) check -Zbuild-std=std,panic_abort --target $$t; \
	done

deps:
	sh contrib/deps.sh

demo: deps all
	BIN='$(BIN)' sh contrib/demo.sh

# tests/kernel.sh builds target/release/distcc-rs itself (DISTCC_RS overrides).
test:
	$(CARGO) test
	sh tests/kernel.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

bench: all cross
	BIN='$(BIN)' sh bench/run.sh
	BIN='$(BIN)' sh bench/kernel.sh
	BIN='$(BIN)' sh bench/extras.sh
	BIN='$(BIN)' sh bench/pump.sh
	$(MAKE) bench-farm
	BIN='$(BIN)' BIN_PPC='$(BIN_PPC)' sh bench/trust.sh
	BIN='$(BIN)' sh bench/sandbox.sh
	if [ -n '$(BIN_BEFORE)' ]; then BIN='$(BIN)' BIN_BEFORE='$(BIN_BEFORE)' sh bench/identity.sh; \
	else echo 'bench/identity.sh: skipped, BIN_BEFORE (a distcc-rs without the identity check) is not set'; fi

bench-identity: all
	BIN='$(BIN)' BIN_BEFORE='$(BIN_BEFORE)' sh bench/identity.sh

bench-trust: all cross
	BIN='$(BIN)' BIN_PPC='$(BIN_PPC)' sh bench/trust.sh

bench-kernel: all
	BIN='$(BIN)' sh bench/kernel.sh

bench-extras: all
	BIN='$(BIN)' sh bench/extras.sh

bench-pump: all
	BIN='$(BIN)' sh bench/pump.sh

bench-farm: all
	BIN='$(BIN)' BENCH_FARM_SIDES='d rs rs0' sh bench/farm.sh
	BIN='$(BIN)' BENCH_FARM_SIDES='d rs rs0' BENCH_FARM_CLIENTS=1 sh bench/farm.sh
	BIN='$(BIN)' BENCH_FARM_SIDES='d rs rs0' BENCH_FARM_HOSTS=16 BENCH_FARM_SLOTS=4 sh bench/farm.sh
	BIN='$(BIN)' sh bench/placement.sh

bench-sandbox: all
	BIN='$(BIN)' sh bench/sandbox.sh

install: all
	$(INSTALL) -d '$(DESTDIR)$(BINDIR)'
	$(INSTALL) -m 0755 '$(BIN)' '$(DESTDIR)$(BINDIR)/$(NAME)'
	'$(DESTDIR)$(BINDIR)/$(NAME)' --install -s '$(DESTDIR)$(BINDIR)'
	$(INSTALL) -d '$(DESTDIR)$(SYSTEMDUNITDIR)' '$(DESTDIR)$(RCDIR)'
	@set -e; for f in $(SERVICE_FILES); do \
		case $$f in systemd/*) dir='$(SYSTEMDUNITDIR)'; mode=0644;; *) dir='$(RCDIR)'; mode=0555;; esac; \
		echo "sed 's|@BINDIR@|$(BINDIR)|g' contrib/$$f > '$(DESTDIR)'$$dir/$${f##*/}"; \
		sed 's|@BINDIR@|$(BINDIR)|g' contrib/$$f > '$(DESTDIR)'$$dir/$${f##*/}.tmp; \
		chmod $$mode '$(DESTDIR)'$$dir/$${f##*/}.tmp; \
		mv '$(DESTDIR)'$$dir/$${f##*/}.tmp '$(DESTDIR)'$$dir/$${f##*/}; \
	done

# Removes the binary and those links that still lead to it (the installed
# binary names them, from its applet table). Under a DESTDIR it also removes
# the directories down to $(DESTDIR) that are left empty; without one it
# leaves system directories such as /usr/local/bin alone.
uninstall:
	if [ -x '$(DESTDIR)$(BINDIR)/$(NAME)' ]; then \
		'$(DESTDIR)$(BINDIR)/$(NAME)' --uninstall '$(DESTDIR)$(BINDIR)'; fi
	rm -f '$(DESTDIR)$(BINDIR)/$(NAME)'
	rm -f '$(DESTDIR)$(SYSTEMDUNITDIR)/distcc-rs.service' '$(DESTDIR)$(SYSTEMDUNITDIR)/distcc-rs.socket' \
		'$(DESTDIR)$(RCDIR)/distccd'
	@if [ -n '$(DESTDIR)' ]; then \
		for d in '$(DESTDIR)$(BINDIR)' '$(DESTDIR)$(SYSTEMDUNITDIR)' '$(DESTDIR)$(RCDIR)'; do \
		top='$(DESTDIR)'; \
		while [ "$${d%/}" != "$${top%/}" ] && [ -d "$$d" ] && rmdir "$$d" 2>/dev/null; do \
			echo "rmdir '$$d'"; d=$$(dirname "$$d"); \
		done; \
		done; \
	fi

clean:
	$(CARGO) clean
	rm -rf '$(CROSS_TARGET_DIR)'
