#!/usr/bin/env bash
# Scale figures on big trees: the first `filesync index` (seconds, peak RSS), the daemon's
# resident memory idle and at peak (its first scan included), the bytes the daemon writes per
# single-file edit once idle (from /proc/PID/io), and a no-op `filesync sync` laptop <-> hub
# (our daemon serving SFTP on loopback, the laptop's own daemon watching its copy, as each
# machine runs them; the median of three runs) and one after 1 % of the laptop's files
# changed (`make-tree.py mutate 1`). With BENCH_PREV_BIN (a build of the
# previous main) every figure is measured for it too, on the same tree in the same run, with
# the ratio. Trees: 100k = `make-tree.py many` (100,000 files in 2,000 folders); 1m = 10,000
# folders of 100 files of 0-1 KiB (~5 GB of disk). Cached in $BENCH_DIR between runs.
# usage: benches/scale.sh   (BENCH_SCALE="100k 1m", BENCH_BIN, BENCH_PREV_BIN, BENCH_DIR,
#                            BENCH_EDITS=10, BENCH_PEERS=the folder of make-tree.py,
#                            BENCH_PARTS="index daemon noop": which figures to take)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
peers=${BENCH_PEERS:-$repo/../shared/peers}
scales=${BENCH_SCALE:-100k}
edits=${BENCH_EDITS:-10}
parts=${BENCH_PARTS:-index daemon noop}
dir=${BENCH_DIR:-${TMPDIR:-/tmp}/filesync-bench-scale}
bin=${BENCH_BIN:-$(cd "$repo" && . scripts/lib.sh && target_dir)/release/filesync}
if [ -z "${BENCH_BIN:-}" ]; then
    (cd "$repo" && cargo build --release --quiet)
fi
bins=("now=$bin")
[ -n "${BENCH_PREV_BIN:-}" ] && bins=("prev=$BENCH_PREV_BIN" "${bins[@]}")

work=$(mktemp -d)
pid= lpid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    [ -n "$lpid" ] && kill "$lpid" 2>/dev/null && wait "$lpid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
export XDG_RUNTIME_DIR=$work NO_COLOR=1
mkdir -p "$work/home/.ssh" "$dir"
ssh-keygen -q -t ed25519 -N '' -f "$work/home/.ssh/id_ed25519"
echo 'name = "laptop"' >"$work/laptop.toml"

make_tree() { # scale -> path
    local t=$dir/tree-$1
    if [ ! -f "$t.made" ]; then
        rm -rf "$t"
        mkdir -p "$t"
        case $1 in
            100k) python3 "$peers/make-tree.py" "$t" many >/dev/null ;;
            1m) python3 - "$t" <<'PY'
import os, random, sys
root, rng = sys.argv[1], random.Random("scale:1m")
for d in range(10_000):
    p = os.path.join(root, f"g{d // 100:03d}", f"d{d:05d}")
    os.makedirs(p)
    for f in range(100):
        with open(os.path.join(p, f"f{f:03d}.txt"), "wb") as fh:
            fh.write(rng.randbytes(rng.randint(0, 1024)))
PY
            ;;
            *) echo "bench: unknown scale $1 (100k or 1m)" >&2; exit 1 ;;
        esac
        touch "$t.made"
    fi
    echo "$t"
}

status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
written() { awk '$1 == "write_bytes:" { print $2 }' "/proc/$1/io"; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
idle() { # pid: until its CPU time stops growing for 2 s
    local prev=-1 now
    while now=$(ticks "$1"); [ "$now" != "$prev" ]; do prev=$now; sleep 2; done
}
forget() { rm -f "$1/.sync" "$1/.sync.journal" "$1/.sync.lock"; }
stop() {
    local p
    for p in $pid $lpid; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done
    pid= lpid=
}

declare -A F
# The median of three runs of a command, in seconds: the cores are shared, so one run alone
# says little.
median3() {
    local times=() s
    for _ in 1 2 3; do
        sync
        sleep 1
        s=$(date +%s.%N)
        "$@" >/dev/null
        times+=("$(awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')")
    done
    printf '%s\n' "${times[@]}" | sort -n | sed -n 2p
}
# First index of the folder: seconds and peak RSS. One untimed run first: whichever build
# runs first after the tree is touched would otherwise pay for a cold page cache.
bench_index() { # name bin tree scale
    forget "$3"
    "$2" --config "$work/laptop.toml" index --root "$3" >/dev/null
    forget "$3"
    sync
    /usr/bin/time -f '%e %M' -o "$work/time" "$2" --config "$work/laptop.toml" index --root "$3" >/dev/null
    read -r secs kib <"$work/time"
    F[$4,index_s,$1]=$secs
    F[$4,index_mib,$1]=$((kib / 1024))
}

# The daemon from nothing: first scan, idle memory; then single-file edits while idle.
bench_daemon() { # name bin tree scale
    forget "$3"
    sync
    RUST_LOG=info "$2" --config "$work/laptop.toml" daemon --root "$3" 2>"$work/daemon.log" &
    pid=$!
    until grep -qs "index loaded" "$work/daemon.log"; do
        kill -0 "$pid" 2>/dev/null || { cat "$work/daemon.log" >&2; exit 1; }
        sleep 0.5
    done
    idle "$pid"
    F[$4,idle_mib,$1]=$(($(status_kib "$pid" VmRSS) / 1024))
    local before files
    before=$(written "$pid")
    mapfile -t files < <(find "$3" -name 'f*' -type f | head -n "$edits")
    for f in "${files[@]}"; do
        printf 'edited at %s\n' "$(date +%s.%N)" >"$f"
        sleep 1.5
    done
    idle "$pid"
    F[$4,edit_kib,$1]=$((($(written "$pid") - before) / 1024 / ${#files[@]}))
    F[$4,peak_mib,$1]=$(($(status_kib "$pid" VmHWM) / 1024))
    stop
}

# A no-op sync laptop <-> hub: the tree served by our daemon, a copy of it as the laptop.
bench_noop() { # name bin tree scale
    local port laptop=$dir/laptop-$4
    [ -d "$laptop" ] || cp -a "$3" "$laptop"
    forget "$3"
    forget "$laptop"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    cp "$work/home/.ssh/id_ed25519.pub" "$work/authorized_keys"
    cat >"$work/hub.toml" <<CFG
name = "hub"
root = "$3"
[server]
listen = "127.0.0.1:$port"
host_key = "$work/hub_host_key"
authorized_keys = "$work/authorized_keys"
CFG
    FILESYNC_CONFIG=$work/hub.toml RUST_LOG=info "$2" daemon 2>"$work/hub.log" &
    pid=$!
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || { cat "$work/hub.log" >&2; exit 1; }
        sleep 0.5
    done
    echo "[127.0.0.1]:$port $(ssh-keygen -y -f "$work/hub_host_key")" >"$work/home/.ssh/known_hosts"
    local run=(env -u FILESYNC_CONFIG HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config"
        SSH_AUTH_SOCK= "$2" --config "$work/laptop.toml" sync --no-progress --quiet
        "sftp://127.0.0.1:$port/" "$laptop")
    "${run[@]}" >/dev/null
    # Without a daemon on the laptop: each sync walks it.
    F[$4,bare_s,$1]=$(median3 "${run[@]}")
    # The laptop's daemon, once its first scan is done and it is idle.
    RUST_LOG=info "$2" --config "$work/laptop.toml" daemon --root "$laptop" 2>"$work/laptop.log" &
    lpid=$!
    until grep -qs "index loaded" "$work/laptop.log"; do
        kill -0 "$lpid" 2>/dev/null || { cat "$work/laptop.log" >&2; exit 1; }
        sleep 0.5
    done
    idle "$lpid"
    "${run[@]}" >/dev/null
    F[$4,noop_s,$1]=$(median3 "${run[@]}")
    local s
    python3 "$peers/make-tree.py" "$laptop" mutate 1 --seed "$(date +%s%N)" >/dev/null
    sync
    sleep 1
    s=$(date +%s.%N)
    "${run[@]}" >/dev/null
    F[$4,change_s,$1]=$(awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    stop
}

for scale in $scales; do
    tree=$(make_tree "$scale")
    for nb in "${bins[@]}"; do
        name=${nb%%=*} b=${nb#*=}
        for part in $parts; do
            "bench_$part" "$name" "$b" "$tree" "$scale"
        done
        echo "bench: $scale done for $name ($b)" >&2
    done
done

printf '%-44s %10s %10s %8s\n' figure prev now now/prev
for scale in $scales; do
    for k in "index_s:first filesync index (s)" "index_mib:filesync index peak RSS (MiB)" \
        "idle_mib:daemon idle RSS (MiB)" "peak_mib:daemon peak RSS, first scan in (MiB)" \
        "edit_kib:written per single-file edit (KiB)" "bare_s:no-op sync laptop <-> hub, no laptop daemon (s)" \
        "noop_s:no-op sync laptop <-> hub, laptop daemon (s)" \
        "change_s:sync of 1 % changed, laptop -> hub (s)"; do
        key=${k%%:*} what="${k#*:}"
        [ -n "${F[$scale,$key,now]:-}" ] || continue
        now=${F[$scale,$key,now]} prev=${F[$scale,$key,prev]:-}
        printf '%-44s %10s %10s' "$scale: $what" "${prev:--}" "$now"
        awk -v a="$now" -v b="${prev:-0}" 'BEGIN { if (b > 0) printf " %7.3fx\n", a / b; else print "       -" }'
    done
done
