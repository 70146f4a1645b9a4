#!/usr/bin/env bash
# Release binaries into dist/: filesync-<target> for this machine (Linux), and for macOS on
# Apple silicon and Intel (linked by zig, cross/macos-check.sh), and for Windows (x86_64,
# mingw-w64, cross/windows-check.sh). The Raspberry Pi's comes
# from `just build-pi` / `just deb`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

mkdir -p dist
dir=$(target_dir)
host=$(rustc -vV | sed -n 's/^host: //p')
cargo build --locked --release --bin filesync
cp "$dir/release/filesync" "dist/filesync-$host"
cross/macos-check.sh --release
for t in aarch64-apple-darwin x86_64-apple-darwin; do
    cp "$dir/$t/release/filesync" "dist/filesync-$t"
done
cross/windows-check.sh --release
cp "$dir/x86_64-pc-windows-gnu/release/filesync.exe" dist/filesync-x86_64-pc-windows-gnu.exe
ls -l dist/filesync-*
