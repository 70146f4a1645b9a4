#!/usr/bin/env bash
# Throughput of our SFTP server against OpenSSH's sshd (internal-sftp), same run, same client
# (OpenSSH sftp), same cipher: upload and download of one big file and of the `small` tree.
# usage: benches/sftp_server.sh [BIG_MIB]   (default 1024; env CIPHER, KEEP=1 keeps the temp dir,
#        BENCH_BIN=path to a filesync binary instead of building one, ROUNDS=2)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
peers="$repo/../shared/peers"
[ -x "$peers/start-sshd.sh" ] || { echo "bench: $peers/start-sshd.sh not found (clone shared/ next to the repo)" >&2; exit 1; }
big_mib=${1:-1024}
cipher=${CIPHER:-aes128-gcm@openssh.com}
work=$(mktemp -d "${TMPDIR:-/tmp}/sftp-bench.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$work/sshd/sshd.pid" ] && kill "$(cat "$work/sshd/sshd.pid")" 2>/dev/null || true
    [ "${KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

bin=${BENCH_BIN:-$(cd "$repo" && . scripts/lib.sh && target_dir)/release/filesync}
if [ -z "${BENCH_BIN:-}" ]; then
    echo "building release binary..." >&2
    (cd "$repo" && cargo build --release --quiet)
fi

# Payloads.
mkdir -p "$work/src" "$work/ours" "$work/theirs" "$work/back"
dd if=/dev/urandom of="$work/src/big.bin" bs=1M count="$big_mib" status=none
python3 "$peers/make-tree.py" "$work/src/small" small >/dev/null

# OpenSSH's server, serving $work/theirs (sftp starts in the login user's HOME; use absolute paths).
eval "$("$peers/start-sshd.sh" "$work/sshd")"

# Our server, same client key.
cp "$SSHD_KEY.pub" "$work/ours_authorized_keys"
cat > "$work/ours.toml" <<CFG
[server]
host_key = "$work/ours_host_key"
authorized_keys = "$work/ours_authorized_keys"
CFG
FILESYNC_CONFIG="$work/ours.toml" RUST_LOG=warn "$bin" serve --root "$work/ours" --listen 127.0.0.1:0 >"$work/ours.out" 2>"$work/ours.log" &
our_pid=$!
pids+=("$our_pid")
for _ in $(seq 100); do grep -q "listening on" "$work/ours.out" 2>/dev/null && break; sleep 0.1; done
our_port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$work/ours.out")
[ -n "$our_port" ] || { echo "bench: our server did not start:" >&2; cat "$work/ours.log" >&2; exit 1; }

sftp_run() { # port remote_prefix batch
    sftp -q -b - -c "$cipher" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o IdentitiesOnly=yes -o LogLevel=ERROR -i "$SSHD_KEY" -P "$1" "$SSHD_USER@127.0.0.1" >/dev/null <<<"$2"
}

now() { date +%s.%N; }
mbps() { python3 -c "import sys; print(f'{$1/1e6/($3-$2):.1f}')"; }

small_bytes=$(du -sb "$work/src/small" | cut -f1)
big_bytes=$(stat -c %s "$work/src/big.bin")

declare -A R
keep_best() { # key value
    if [ -z "${R[$1]:-}" ] || python3 -c "import sys; sys.exit(0 if $2 > ${R[$1]} else 1)"; then R[$1]=$2; fi
}
# Each round writes into fresh folders and deletes only the big file: deleting 10,000 small
# files right before the other server's turn would slow its file creation (ext4 skips
# recently freed inodes) and favour whichever server went first.
measure() { # name port remote_dir round
    local name=$1 port=$2 dir=$3/r$4 t0 t1 back=$work/back-$1-$4
    mkdir -p "$back"
    sftp_run "$port" "mkdir $dir"
    sync; t0=$(now); sftp_run "$port" "put $work/src/big.bin $dir/big.bin"; t1=$(now)
    keep_best "$name,up_big" "$(mbps "$big_bytes" "$t0" "$t1")"
    sync; t0=$(now); sftp_run "$port" "get $dir/big.bin $back/big.bin"; t1=$(now)
    keep_best "$name,down_big" "$(mbps "$big_bytes" "$t0" "$t1")"
    cmp -s "$work/src/big.bin" "$back/big.bin" || { echo "bench: $name big download differs" >&2; exit 1; }
    sftp_run "$port" "rm $dir/big.bin"; rm -f "$back/big.bin"
    sync; t0=$(now); sftp_run "$port" "put -r $work/src/small $dir/small"; t1=$(now)
    keep_best "$name,up_small" "$(mbps "$small_bytes" "$t0" "$t1")"
    sync; t0=$(now); sftp_run "$port" "get -r $dir/small $back/small"; t1=$(now)
    keep_best "$name,down_small" "$(mbps "$small_bytes" "$t0" "$t1")"
    diff -r -q "$work/src/small" "$back/small" >/dev/null || { echo "bench: $name small download differs" >&2; exit 1; }
}

rounds=${ROUNDS:-2}
for round in $(seq "$rounds"); do
    # Alternate who goes first.
    if [ $((round % 2)) = 1 ]; then order="openssh filesync"; else order="filesync openssh"; fi
    for who in $order; do
        echo "round $round/$rounds: $who..." >&2
        case $who in
            openssh) measure openssh "$SSHD_PORT" "$work/theirs" "$round" ;;
            filesync) measure filesync "$our_port" "" "$round" ;;
        esac
    done
done

printf '\nSFTP throughput (best of %s rounds), OpenSSH sftp client, cipher %s, %s MiB file, small tree %s files / %s bytes\n' \
    "$rounds" "$cipher" "$big_mib" "$(find "$work/src/small" -type f | wc -l)" "$small_bytes"
printf '%-22s %12s %12s %8s\n' "transfer" "filesync MB/s" "openssh MB/s" "ratio"
for k in up_big down_big up_small down_small; do
    ratio=$(python3 -c "print(f'{${R[filesync,$k]}/${R[openssh,$k]}:.2f}')")
    printf '%-22s %12s %12s %8s\n' "$k" "${R[filesync,$k]}" "${R[openssh,$k]}" "$ratio"
done
printf 'filesync server peak RSS: %s\n' "$(awk '/VmHWM/ {print $2, $3}' "/proc/$our_pid/status" 2>/dev/null || echo unknown)"
