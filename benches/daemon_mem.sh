#!/usr/bin/env bash
# Daemon memory and idle CPU on the 100,000-file tree of ../shared/peers/make-tree.py.
# Builds the release binary, generates the tree (cached in $BENCH_DIR), starts the daemon,
# waits until it is idle, then reports resident memory (VmRSS, VmHWM) and CPU time used over
# 30 s of idling (from /proc/PID/stat). Run from the repository root:  benches/daemon_mem.sh
# (BENCH_BIN=path to a filesync binary instead of building one)
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/filesync-bench-daemon}
IDLE_SECS=${IDLE_SECS:-30}
TREE="$BENCH_DIR/tree"
WORK=$(mktemp -d)
PID=
cleanup() {
    if [[ -n "$PID" ]] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

. scripts/lib.sh
BIN=${BENCH_BIN:-$(target_dir)/release/filesync}
[ -n "${BENCH_BIN:-}" ] || cargo build --release --quiet

if [[ ! -f "$BENCH_DIR/tree.made" ]]; then
    rm -rf "$TREE"
    mkdir -p "$TREE"
    python3 ../shared/peers/make-tree.py "$TREE" many
    touch "$BENCH_DIR/tree.made"
fi
rm -f "$TREE/.made"
rm -f "$TREE/.sync" "$TREE/.sync.lock"

mkdir -p "$WORK/home" "$WORK/run"
echo 'name = "bench"' > "$WORK/config.toml"
export HOME="$WORK/home" XDG_RUNTIME_DIR="$WORK/run" RUST_LOG=info NO_COLOR=1

ticks() { # utime + stime of a process, in clock ticks
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}
rss() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

start=$(date +%s.%N)
"$BIN" --config "$WORK/config.toml" daemon --root "$TREE" 2>"$WORK/daemon.log" &
PID=$!
until grep -q "index loaded" "$WORK/daemon.log"; do
    kill -0 "$PID" 2>/dev/null || { cat "$WORK/daemon.log"; exit 1; }
    sleep 0.2
done
ready=$(date +%s.%N)
# Idle: CPU time stops growing for 2 s.
prev=-1
while :; do
    now=$(ticks "$PID")
    [[ "$now" == "$prev" ]] && break
    prev=$now
    sleep 2
done

hz=$(getconf CLK_TCK)
t0=$(ticks "$PID")
sleep "$IDLE_SECS"
t1=$(ticks "$PID")
files=$("$BIN" --config "$WORK/config.toml" status --root "$TREE" | awk '/^indexed:/ { print $2 }')

printf 'daemon on %s files (make-tree.py many)\n' "$files"
printf '  first scan + index write: %.1f s\n' "$(echo "$ready - $start" | bc)"
printf '  resident memory (VmRSS): %d MiB, peak (VmHWM): %d MiB\n' \
    $(( $(rss "$PID" VmRSS) / 1024 )) $(( $(rss "$PID" VmHWM) / 1024 ))
printf '  CPU over %d s idle: %d ms\n' "$IDLE_SECS" $(( (t1 - t0) * 1000 / hz ))
