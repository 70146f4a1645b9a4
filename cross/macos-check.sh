#!/usr/bin/env bash
# Compile and link filesync for macOS (aarch64 and x86_64) on Linux, with zig as the linker.
#
#   cross/macos-check.sh             # both Apple targets, debug, binary at <target>/<triple>/debug
#   cross/macos-check.sh --release   # release binaries (what `just dist` ships)
#   cross/macos-check.sh --check-deps   # the Debian packages it would install, nothing built
#
# Needs rustup's std for the targets and cargo-zigbuild + ziglang (PyPI); it installs them.
# zig carries libSystem but no frameworks: cross/macos-sdk/Frameworks holds stand-ins that
# name the CoreServices/CoreFoundation symbols notify's FSEvents backend calls, so every
# other symbol is checked for real. On a Mac, plain `cargo build --release` is the build.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

TARGETS=(aarch64-apple-darwin x86_64-apple-darwin)
# The check builds without optimisation or debug info: linking is what it checks, and a cold
# build of both targets took 176-246 s here this way (2 cores), against about 350 s with
# the dev profile.
profile=(--config 'profile.dev.debug=0')
for p in '"*"' ring blake3 argon2; do profile+=(--config "profile.dev.package.$p.opt-level=0"); done
kind=debug
for arg in "$@"; do [ "$arg" = --release ] && profile=(--release) && kind=release; done

apt_install file
deps_checked
for t in "${TARGETS[@]}"; do
    rustup target list --installed | grep -qx "$t" || rustup target add "$t"
done
if ! command -v cargo-zigbuild >/dev/null || ! python3 -m ziglang version >/dev/null 2>&1; then
    log "installing ziglang and cargo-zigbuild (pip)"
    python3 -m pip install --quiet ziglang cargo-zigbuild 2>/dev/null ||
        python3 -m pip install --quiet --break-system-packages ziglang cargo-zigbuild
    hash -r
fi
command -v cargo-zigbuild >/dev/null || die "cargo-zigbuild is not on PATH after pip install"

frameworks="$PWD/cross/macos-sdk/Frameworks"
start=$(date +%s)
args=()
for t in "${TARGETS[@]}"; do args+=(--target "$t"); done
# Only the binary: linking it is the check; the tests run on Linux.
RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-F$frameworks" \
    cargo zigbuild --locked "${profile[@]}" --bin filesync "${args[@]}"
dir=$(target_dir)
for t in "${TARGETS[@]}"; do
    bin="$dir/$t/$kind/filesync"
    [ -x "$bin" ] || die "no binary at $bin"
    file "$bin" | grep -q 'Mach-O 64-bit' || die "$bin is not a Mach-O binary: $(file -b "$bin")"
    log "$t: $(file -b "$bin" | cut -d, -f1)"
done
log "macOS build took $(( $(date +%s) - start )) s"
