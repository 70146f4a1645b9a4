#!/usr/bin/env bash
# Big files: bytes on the wire and wall time for a change in one big file, filesync against
# rsync in the same run. A BENCH_DELTA_MB file (default 256 MiB) is synced up whole, then:
#   up-edit    1 MiB rewritten in the middle here, synced up
#   down-edit  1 MiB rewritten in the middle on the server, synced down
#   insert     100 KiB inserted at the start here, synced up
# to our hub (`filesync daemon`, its watcher keeping the far chunk lists) and to a plain
# OpenSSH sshd (nothing installed there), each behind a loopback relay that counts the bytes
# both ways; rsync runs over the same relay in front of the same sshd. OpenSSH cannot hash
# a file: a delta upload there reads its result back to check it before the rename, and
# the far scan reads a changed file to hash it, so either way its wire holds the file once.
# Prints seconds, bytes on the wire as a share of the file, and time relative to rsync.
# usage: benches/delta.sh   (BENCH_DELTA_MB, BENCH_BIN)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
peers=${BENCH_PEERS:-$repo/../shared/peers}
mb=${BENCH_DELTA_MB:-256}
bin=${BENCH_BIN:-$(cd "$repo" && . scripts/lib.sh && target_dir)/release/filesync}
if [ -z "${BENCH_BIN:-}" ]; then
    (cd "$repo" && cargo build --release --quiet)
fi
command -v rsync >/dev/null || { echo "bench: rsync is not installed (apt-get install rsync)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
    [ -s "$work/sshd/sshd.pid" ] && kill "$(cat "$work/sshd/sshd.pid")" 2>/dev/null || true
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# A loopback relay that counts the bytes it forwards, both ways; `count PORT` reads them.
cat > "$work/relay.py" <<'PY'
import socket, sys, threading
listen, to, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
total = 0
lock = threading.Lock()
def pump(a, b):
    global total
    try:
        while True:
            d = a.recv(1 << 16)
            if not d:
                break
            b.sendall(d)
            with lock:
                total += len(d)
                open(out, "w").write(str(total))
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", listen))
srv.listen(64)
open(out, "w").write("0")
while True:
    c, _ = srv.accept()
    u = socket.create_connection(("127.0.0.1", to))
    for a, b in ((c, u), (u, c)):
        threading.Thread(target=pump, args=(a, b), daemon=True).start()
PY
relay() { # to-port name: starts it; its port in RELAY_PORT
    RELAY_PORT=$(free_port)
    python3 "$work/relay.py" "$RELAY_PORT" "$1" "$work/$2.count" >/dev/null 2>&1 &
    pids+=($!)
    for _ in $(seq 50); do [ -s "$work/$2.count" ] && break; sleep 0.1; done
}
count() { cat "$work/$1.count"; }

eval "$(bash "$peers/start-sshd.sh" "$work/sshd")"
home=$work/home
mkdir -p "$home/.ssh"
cp "$SSHD_KEY" "$home/.ssh/id_ed25519"
relay "$SSHD_PORT" sshd
sshd_relay=$RELAY_PORT
sed "s/^\[127.0.0.1\]:$SSHD_PORT/[127.0.0.1]:$sshd_relay/" "$SSHD_KNOWN_HOSTS" >"$home/.ssh/known_hosts"

# Our hub: `filesync daemon` (watcher + SFTP server, as the Pi runs it).
hub_root=$work/hub
mkdir -p "$hub_root"
cp "$SSHD_KEY.pub" "$work/authorized_keys"
hub_port=$(free_port)
cat >"$work/hub.toml" <<CFG
root = "$hub_root"
[server]
listen = "127.0.0.1:$hub_port"
host_key = "$work/hub_host_key"
authorized_keys = "$work/authorized_keys"
CFG
FILESYNC_CONFIG="$work/hub.toml" XDG_RUNTIME_DIR=$work RUST_LOG=warn "$bin" daemon \
    >"$work/hub.out" 2>"$work/hub.log" &
pids+=($!)
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$hub_port") 2>/dev/null && break
    sleep 0.1
done
relay "$hub_port" hub
hub_relay=$RELAY_PORT
echo "[127.0.0.1]:$hub_relay $(ssh-keygen -y -f "$work/hub_host_key")" >>"$home/.ssh/known_hosts"

sshcmd="ssh -p $sshd_relay -i $SSHD_KEY -o UserKnownHostsFile=$home/.ssh/known_hosts -o BatchMode=yes"
user=$(id -un)
run() { # tool local remote direction
    case $1 in
        hub) env -u FILESYNC_CONFIG HOME=$home XDG_CONFIG_HOME=$home/.config SSH_AUTH_SOCK='' \
             "$bin" sync --no-progress --quiet "sftp://$user@127.0.0.1:$hub_relay/" "$2" >/dev/null ;;
        sshd) env -u FILESYNC_CONFIG HOME=$home XDG_CONFIG_HOME=$home/.config SSH_AUTH_SOCK='' \
              "$bin" sync --no-progress --quiet "sftp://$user@127.0.0.1:$sshd_relay$3" "$2" >/dev/null ;;
        rsync) if [ "$4" = up ]; then rsync -a -e "$sshcmd" "$2/" "$user@127.0.0.1:$3/"
               else rsync -a -e "$sshcmd" "$user@127.0.0.1:$3/" "$2/"; fi ;;
    esac
}
relay_of() { case $1 in hub) echo hub ;; *) echo sshd ;; esac; }
now() { date +%s.%N; }

# Rewrites LEN bytes at OFFSET of FILE with fresh random bytes, or inserts them (insert).
edit() { # file offset len [insert]
    python3 - "$@" <<'PY'
import os, sys
path, off, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = open(path, "rb").read()
new = os.urandom(n)
data = data[:off] + new + data[off + (n if len(sys.argv) < 5 else 0):]
open(path, "wb").write(data)
PY
    touch -d "@$(( $(date +%s) - RANDOM % 100 - 10 ))" "$1"
}

size=$((mb << 20))
head -c "$size" /dev/urandom >"$work/big.src"
declare -A S B
for t in hub sshd rsync; do
    loc=$work/$t-local
    mkdir -p "$loc"
    cp "$work/big.src" "$loc/big.bin"
    if [ "$t" = hub ]; then rem=$hub_root; else rem=$work/$t-remote; mkdir -p "$rem"; fi
    r=$(relay_of "$t")
    for step in initial up-edit down-edit insert; do
        case $step in
            up-edit) edit "$loc/big.bin" $((size / 2)) $((1 << 20)) ;;
            down-edit) edit "$rem/big.bin" $((size / 3)) $((1 << 20))
                       # The hub's watcher takes the change in (its chunk list with it), as
                       # between two syncs a person makes minutes apart.
                       sleep 3 ;;
            insert) edit "$loc/big.bin" 0 $((100 << 10)) insert ;;
        esac
        dir=up; [ "$step" = down-edit ] && dir=down
        sync; sleep 1
        b0=$(count "$r"); s0=$(now)
        run "$t" "$loc" "$rem" "$dir"
        S[$t,$step]=$(awk -v a="$s0" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}')
        B[$t,$step]=$(( $(count "$r") - b0 ))
        cmp -s "$loc/big.bin" "$rem/big.bin" || { echo "bench: $t $step left the files different" >&2; exit 1; }
    done
done

printf '%-10s' step
for t in hub sshd rsync; do printf ' %9s %8s' "$t s" "wire"; done
printf ' %11s %11s\n' "hub/rsync" "sshd/rsync"
for step in initial up-edit down-edit insert; do
    printf '%-10s' "$step"
    for t in hub sshd rsync; do
        printf ' %8ss %7.2f%%' "${S[$t,$step]}" "$(awk -v b="${B[$t,$step]}" -v s="$size" 'BEGIN{print 100*b/s}')"
    done
    for t in hub sshd; do
        awk -v a="${S[$t,$step]}" -v b="${S[rsync,$step]}" 'BEGIN{ if (b>0) printf " %10.2fx", a/b; else printf " %11s", "-" }'
    done
    echo
done
echo "(wire: bytes through the relay, both ways, as a share of the ${mb} MiB file)"
