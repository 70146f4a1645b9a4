#!/usr/bin/env bash
# filesync against rsync and unison in one run: initial sync, no-op sync, and a sync after
# `make-tree.py DIR mutate 1`, on the `small` and `mixed` trees. Prints seconds (best of
# BENCH_ROUNDS rounds, the tool order reversed every other round: on this VM whichever tool runs
# first after a tree is made pays for it, by up to 50 %) and each tool's time relative to rsync.
#   rsync, unison  over a throwaway loopback OpenSSH sshd (each runs its own program there)
#   filesync       against that same sshd with nothing installed there (remote stat walk)
#   fs-serve       against `filesync daemon` on loopback (its SFTP server and watcher): our
#                  program at the far end, as on the hub
# And what an fsync per file costs on the disk under the remote folders (fsync_floor.py).
# usage: benches/remote_sync.sh   (BENCH_PROFILES="small mixed", BENCH_TOOLS, BENCH_BIN,
#                                  BENCH_ROUNDS=2)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
peers=$repo/../shared/peers
profiles=${BENCH_PROFILES:-small mixed}
tools=${BENCH_TOOLS:-fs-serve filesync rsync unison}
rounds=${BENCH_ROUNDS:-2}
bin=${BENCH_BIN:-$(cd "$repo" && . scripts/lib.sh && target_dir)/release/filesync}
if [ -z "${BENCH_BIN:-}" ]; then
    (cd "$repo" && cargo build --release --quiet)
fi
for t in $tools; do
    case $t in filesync|fs-serve) continue ;; esac
    command -v "$t" >/dev/null || { echo "bench: $t is not installed (apt-get install $t)" >&2; exit 1; }
done

work=$(mktemp -d)
serve_pid=
cleanup() {
    [ -s "$work/sshd/sshd.pid" ] && kill "$(cat "$work/sshd/sshd.pid")" 2>/dev/null || true
    [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
eval "$(bash "$peers/start-sshd.sh" "$work/sshd")"
home=$work/home
mkdir -p "$home/.ssh"
cp "$SSHD_KEY" "$home/.ssh/id_ed25519"
cp "$SSHD_KNOWN_HOSTS" "$home/.ssh/known_hosts"

# Our hub, same client key: `filesync daemon` (watcher + SFTP server in one process, as the
# Pi runs it), started for each remote folder (it serves one root).
cp "$SSHD_KEY.pub" "$work/serve_authorized_keys"
serve_port=
stop_serve() {
    [ -n "$serve_pid" ] && { kill "$serve_pid" 2>/dev/null; wait "$serve_pid" 2>/dev/null || true; }
    serve_pid=
}
start_serve() { # root
    stop_serve
    serve_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    cat > "$work/serve.toml" <<CFG
root = "$1"
[server]
listen = "127.0.0.1:$serve_port"
host_key = "$work/serve_host_key"
authorized_keys = "$work/serve_authorized_keys"
CFG
    FILESYNC_CONFIG="$work/serve.toml" XDG_RUNTIME_DIR=$work RUST_LOG=warn "$bin" daemon \
        >"$work/serve.out" 2>"$work/serve.log" &
    serve_pid=$!
    local up=
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$serve_port") 2>/dev/null && { up=1; break; }
        sleep 0.1
    done
    [ -n "$up" ] || { echo "bench: filesync daemon did not start:" >&2; cat "$work/serve.log" >&2; exit 1; }
    # Known like a configured peer's: no --accept-new on the first sync.
    echo "[127.0.0.1]:$serve_port $(ssh-keygen -y -f "$work/serve_host_key")" >>"$home/.ssh/known_hosts"
}

now() { date +%s.%N; }
run_tool() { # tool local remote
    case $1 in
        filesync) env -u FILESYNC_CONFIG HOME=$home XDG_CONFIG_HOME=$home/.config SSH_AUTH_SOCK='' \
                  "$bin" sync --no-progress --quiet "sftp://$SSHD_USER@127.0.0.1:$SSHD_PORT$3" "$2" >/dev/null ;;
        fs-serve) env -u FILESYNC_CONFIG HOME=$home XDG_CONFIG_HOME=$home/.config SSH_AUTH_SOCK='' \
                  "$bin" sync --no-progress --quiet "sftp://$SSHD_USER@127.0.0.1:$serve_port/" "$2" >/dev/null ;;
        *) bash "$peers/peer-sync.sh" "$1" "$work/sshd" "$2" "$3" ;;
    esac
}
# Before each timed step: the kernel's writeback of the last step done, and a second for any
# tool's background work after it (our hub's watcher reading what the last sync wrote) — the
# same pause for every tool; a person's syncs are minutes apart, not back to back.
settle() { sync; sleep 1; }
timed() { local s; s=$(now); "$@"; awk -v a="$s" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }

# What the server's disk charges for one fsync per file, with no SSH at all: a first sync to
# plain sshd cannot be faster than rsync (which makes none) plus this, as long as every file
# is durable before it is renamed into place. As many writers as the SFTP channels a sync
# opens there (`PLAIN_CHANNELS` in src/store/sftp/mod.rs);
# measured first, before this run's deletions slow the disk's next creations.
floor=
if [[ " $tools " == *" filesync "* ]]; then
    floor=$(python3 "$repo/benches/fsync_floor.py" "$work" 10000 8)
fi

declare -A T
keep_best() { # key seconds
    if [ -z "${T[$1]:-}" ] || awk -v a="$2" -v b="${T[$1]}" 'BEGIN{exit !(a<b)}'; then T[$1]=$2; fi
}
reversed() { local out=; for t in "$@"; do out="$t $out"; done; echo $out; }
for p in $profiles; do
    python3 "$peers/make-tree.py" "$work/$p-src" "$p" >/dev/null
    for round in $(seq "$rounds"); do
        order=$tools
        [ $((round % 2)) -eq 0 ] && order=$(reversed $tools)
        for t in $order; do
            # Fresh paths each round: unison remembers a pair of roots it has synced.
            loc=$work/$p-$t-local-$round dst=$work/$p-$t-remote-$round
            cp -a "$work/$p-src" "$loc"
            mkdir -p "$dst"
            [ "$t" = fs-serve ] && start_serve "$dst"
            settle
            keep_best "$p,$t,initial" "$(timed run_tool "$t" "$loc" "$dst")"
            settle
            keep_best "$p,$t,noop" "$(timed run_tool "$t" "$loc" "$dst")"
            python3 "$peers/make-tree.py" "$loc" mutate 1 >/dev/null
            settle
            keep_best "$p,$t,mutate1" "$(timed run_tool "$t" "$loc" "$dst")"
            if ! diff -r -q -x '.sync*' "$loc" "$dst" >/dev/null; then
                echo "bench: $t left $p trees different" >&2
                exit 1
            fi
            # Stopped before its folder is deleted: a running watcher would be writing there.
            [ "$t" = fs-serve ] && stop_serve
        done
        rm -rf "$work/$p-"*-local-"$round" "$work/$p-"*-remote-"$round"
        [ "$round" = "$rounds" ] && rm -rf "$work/$p-src"
        # ext4 passes over inodes freed in the last minute when it allocates new ones: the next
        # round (or profile) would pay for these deletions.
        [ "$round" = "$rounds" ] && [ "$p" = "${profiles##* }" ] || sleep 65
    done
done

printf '%-7s %-8s' profile step
for t in $tools; do printf ' %10s' "$t"; done
for t in $tools; do [ "$t" = rsync ] || printf ' %14s' "$t/rsync"; done
echo
for p in $profiles; do
    for s in initial noop mutate1; do
        printf '%-7s %-8s' "$p" "$s"
        for t in $tools; do printf ' %9ss' "${T[$p,$t,$s]}"; done
        for t in $tools; do
            [ "$t" = rsync ] && continue
            awk -v a="${T[$p,$t,$s]}" -v b="${T[$p,rsync,$s]:-0}" 'BEGIN{ if (b>0) printf " %13.2fx", a/b; else printf " %14s", "-" }'
        done
        echo
    done
done

if [ -n "$floor" ]; then echo "durability floor on this disk: $floor"; fi
