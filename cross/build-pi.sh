#!/usr/bin/env bash
# Build the release binary for the Raspberry Pi (aarch64-unknown-linux-gnu).
#
#   cross/build-pi.sh            # -> $CARGO_TARGET_DIR (or target)/aarch64-unknown-linux-gnu/release/filesync
#   cross/build-pi.sh --check-deps   # the Debian packages it would install, nothing built
#
# With a running container engine (docker info / podman info succeed) this uses cross-rs.
# Otherwise it uses the container-free path that works on Debian/Ubuntu: rustup's aarch64
# std plus Debian's gcc-aarch64-linux-gnu as linker and C compiler (ring and blake3 build C
# and assembly). Debian bookworm's cross toolchain links against glibc 2.36, the glibc of
# Raspberry Pi OS bookworm, which is therefore the minimum.
#
# Environment: BUILD_PI_MODE=cross|native forces a path;
# CARGO_PROFILE_RELEASE_LTO=thin speeds up development builds.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=aarch64-unknown-linux-gnu
. scripts/lib.sh

engine_runs() {
    { command -v docker >/dev/null && docker info >/dev/null 2>&1; } ||
    { command -v podman >/dev/null && podman info >/dev/null 2>&1; }
}

mode=${BUILD_PI_MODE:-}
if [ -z "$mode" ]; then
    if engine_runs && command -v cross >/dev/null; then mode=cross; else mode=native; fi
fi

[ "$mode" = native ] && apt_install gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu
apt_install file qemu-user
deps_checked
BIN="$(target_dir)/$TARGET/release/filesync"

start=$(date +%s)
case "$mode" in
cross)
    log "container engine found: cross build --release --target $TARGET"
    export CROSS_CONFIG=${CROSS_CONFIG:-cross/Cross.toml}
    cross build --release --locked --target "$TARGET"
    ;;
native)
    log "no container engine (or cross not installed): container-free build with Debian's aarch64 gcc"
    if command -v rustup >/dev/null; then
        rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
    fi
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
    export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
    export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
    cargo build --release --locked --target "$TARGET"
    ;;
*) die "BUILD_PI_MODE must be cross or native, not $mode" ;;
esac
log "built $BIN in $(( $(date +%s) - start ))s ($(du -h "$BIN" | cut -f1))"

# Check: an aarch64 ELF that runs under user-mode emulation.
file -b "$BIN" | tee /dev/stderr | grep -q 'ARM aarch64' || die "$BIN is not an aarch64 ELF"
maxglibc=$(aarch64-linux-gnu-objdump -T "$BIN" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1 || true)
[ -n "$maxglibc" ] && log "newest glibc symbol version needed: $maxglibc"
need_cmd qemu-aarch64 qemu-user
log "qemu-aarch64: $(qemu-aarch64 -L /usr/aarch64-linux-gnu "$BIN" --version)"
