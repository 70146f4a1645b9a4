# filesync tasks. `just demo` shows a sync; `just test` is what CI runs.

set shell := ["bash", "-euo", "pipefail", "-c"]

default:
    @just --list

# Build the release binary for this machine.
build:
    cargo build --release

# Two folders, edits on both sides (including a conflict), one sync, and what happened.
demo:
    scripts/demo.sh

# Everything CI checks: install test tools, the build scripts' checks, fmt, clippy, all tests,
# and the demo (it checks what it shows).
test:
    scripts/install-test-deps.sh
    scripts/check-scripts.sh
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings
    cross/macos-check.sh
    cross/windows-check.sh
    cargo test --all-targets
    scripts/demo.sh

# The fuzz tests at length: random packets for every SFTP handler, damaged indexes.
fuzz cases="20000":
    FUZZ_CASES={{cases}} cargo test --lib fuzz_

# Speed against peers (rsync, unison, OpenSSH's sftp server) in one run.
bench:
    scripts/bench.sh

# Whether the build scripts parse, find cargo's output, and install packages that exist.
check-scripts:
    scripts/check-scripts.sh

# Release binaries into dist/: this machine's, macOS (aarch64, x86_64) through zig, Windows.
dist:
    scripts/dist.sh

# Compile and link for macOS (both Apple targets) through zig: what CI checks.
macos-check:
    cross/macos-check.sh

# Build for Windows (mingw-w64) and run its unit tests and a two-folder sync under wine64.
windows-check:
    cross/windows-check.sh

# aarch64 binary: cross when a container engine runs, else the container-free path.
build-pi:
    cross/build-pi.sh

# Debian packages (arm64 and amd64) into dist/.
deb:
    image/build-deb.sh

# Flashable Raspberry Pi image into dist/.
image:
    image/build-image.sh

# Boot the image under qemu-system-aarch64 and sync with it.
image-test:
    image/test-image.sh

# systemd-analyze verify on the unit files and the hub unit's security score.
verify-units:
    systemd/verify.sh
