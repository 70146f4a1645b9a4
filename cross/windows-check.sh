#!/usr/bin/env bash
# Build filesync for Windows (x86_64-pc-windows-gnu, mingw-w64) and run it under wine64: the
# library's unit tests, then a sync of two local folders (edits on both sides, a conflict, a
# delete) checked file by file.
#
#   cross/windows-check.sh               # debug, binary at <target>/x86_64-pc-windows-gnu/debug
#   cross/windows-check.sh --release     # the release .exe (what `just dist` ships), no tests
#   cross/windows-check.sh --check-deps  # the Debian packages it would install, nothing built
#
# wine runs 64-bit programs with wine64 alone (no i386 architecture, no wine32). Its prefix
# is made fresh in a temp folder and removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

TARGET=x86_64-pc-windows-gnu
# Like the macOS check: unoptimised and without debug info, which keeps the cold build and
# the test binary small; the tests themselves are short.
profile=(--config 'profile.dev.debug=0')
for p in '"*"' ring blake3 argon2; do profile+=(--config "profile.dev.package.$p.opt-level=0"); done
kind=debug release=0
for arg in "$@"; do [ "$arg" = --release ] && profile=(--release) && kind=release && release=1; done

apt_install wine wine64 gcc-mingw-w64-x86-64
deps_checked
need_cmd wine wine
need_cmd x86_64-w64-mingw32-gcc gcc-mingw-w64-x86-64
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"

start=$(date +%s)
cargo build --locked "${profile[@]}" --bin filesync --target "$TARGET"
exe="$(target_dir)/$TARGET/$kind/filesync.exe"
[ -f "$exe" ] || die "no binary at $exe"
log "$TARGET: $(file -b "$exe" | cut -d, -f1) ($(( $(date +%s) - start )) s)"
[ "$release" = 1 ] && exit 0

work=$(mktemp -d)
cleanup() {
    WINEPREFIX="$work/prefix" wineserver -k 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
export WINEPREFIX="$work/prefix" WINEDEBUG=-all WINEARCH=win64 WINEDLLOVERRIDES="mscoree,mshtml="
# The prefix is made once, before anything is timed by a test.
wineboot --init >/dev/null 2>&1 || die "wineboot could not make a prefix in $WINEPREFIX"
# Rust's std needs ProcessPrng (bcryptprimitives.dll), which wine before 9.0 lacks.
x86_64-w64-mingw32-gcc -shared -O2 -o "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" \
    cross/wine/bcryptprimitives.c -ladvapi32 || die "cannot build the ProcessPrng shim for wine"

export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
cargo test --locked "${profile[@]}" --lib --target "$TARGET" 2>&1 | tee "$work/tests.log" | grep -E '^test result|FAILED|panicked' || true
grep -q '^test result: ok' "$work/tests.log" || die "the Windows unit tests failed under wine (see above)"
log "unit tests under wine: $(grep '^test result' "$work/tests.log")"

# Two folders, synced, edited on both sides, synced again.
a="$work/a" b="$work/b"
mkdir -p "$a/sub" "$b"
printf 'one\n' >"$a/doc.txt"
printf 'inside\n' >"$a/sub/x.txt"
run() { wine "$exe" "$@"; }
win() { winepath -w "$1" 2>/dev/null; }
export RUST_LOG=warn
run sync --no-progress "$(win "$a")" "$(win "$b")" >"$work/sync1.log" 2>&1 ||
    { cat "$work/sync1.log"; die "first sync failed"; }
cmp -s "$a/doc.txt" "$b/doc.txt" && cmp -s "$a/sub/x.txt" "$b/sub/x.txt" ||
    { cat "$work/sync1.log"; die "the first sync did not copy a's files to b"; }
printf 'from a\n' >"$a/doc.txt"
printf 'from b, longer\n' >"$b/doc.txt"
printf 'new in b\n' >"$b/new.txt"
rm "$a/sub/x.txt"
run sync --no-progress "$(win "$a")" "$(win "$b")" >"$work/sync2.log" 2>&1 ||
    { cat "$work/sync2.log"; die "second sync failed"; }
for side in "$a" "$b"; do
    [ "$(cat "$side/new.txt" 2>/dev/null)" = "new in b" ] || die "new.txt missing in $side"
    [ ! -e "$side/sub/x.txt" ] || die "the delete did not reach $side"
    copies=("$side"/doc.sync-conflict-*.txt)
    [ -f "${copies[0]}" ] || { cat "$work/sync2.log"; die "no conflict copy in $side"; }
    got=$(cat "$side/doc.txt" "${copies[0]}" | sort | tr '\n' '|')
    [ "$got" = "from a|from b, longer|" ] || die "the conflict lost an edit in $side: $got"
done
find "$b/.sync-trash" -name 'x.txt*' | grep -q . || die "the deleted file is not in b's trash"
log "two-folder sync under wine: copy, conflict, delete and trash as on Linux"
run daemon --install --root "$(win "$a")" >"$work/install.log" 2>&1 ||
    { cat "$work/install.log"; die "daemon --install failed"; }
startup=$(find "$WINEPREFIX/drive_c/users" -ipath '*/startup/filesync.cmd' | head -n1)
[ -n "$startup" ] && grep -q 'daemon.*--root' "$startup" ||
    { cat "$work/install.log"; die "daemon --install wrote no Startup-folder filesync.cmd"; }
log "daemon --install under wine: $(basename "$startup") in the Startup folder"
log "Windows check took $(( $(date +%s) - start )) s"
