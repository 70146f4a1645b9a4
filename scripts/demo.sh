#!/usr/bin/env bash
# The main job on an embedded default: a "pi" hub served by `filesync serve` on a loopback
# port, a "phone" that edits it with OpenSSH's sftp client, and a "laptop" folder that syncs
# with the hub over SFTP — edits on both sides, one conflict, nothing lost.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in ssh-keygen sftp; do
    if ! command -v "$tool" >/dev/null; then
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
            apt-get update -qq && apt-get install -y -qq openssh-client >/dev/null
        else
            echo "the demo needs OpenSSH's $tool: install openssh-client" >&2
            exit 1
        fi
    fi
done
. scripts/lib.sh
cargo build --quiet
BIN="$(target_dir)/debug/filesync"
work=$(mktemp -d)
server_pid=""
cleanup() {
    [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
export HOME="$work/home" RUST_LOG=warn
mkdir -p "$HOME/.ssh" "$work/laptop" "$work/pi"
laptop="$work/laptop" pi="$work/pi"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ssh-keygen -q -t ed25519 -N '' -f "$HOME/.ssh/id_ed25519"
cat >"$work/pi.toml" <<TOML
root = "$pi"
name = "pi"
[server]
listen = "127.0.0.1:$port"
host_key = "$work/pi-host-key"
authorized_keys = "$HOME/.ssh/id_ed25519.pub"
TOML
hub="sftp://demo@127.0.0.1:$port/"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() {
    for side in laptop pi; do
        echo "-- $side:"
        (cd "$work/$side" && find . -path ./.sync-trash -prune -o -type f ! -name '.sync*' -print | sort |
            while read -r f; do printf '   %-58s %s\n' "$f" "$(head -c 40 "$f" | tr '\n' ' ')"; done)
    done
}
phone() { # an SFTP app on a phone, talking to the hub
    sftp -q -b - -P "$port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o LogLevel=ERROR -i "$HOME/.ssh/id_ed25519" demo@127.0.0.1 >/dev/null
}

say "The hub: filesync serve on 127.0.0.1:$port, serving $pi"
"$BIN" --config "$work/pi.toml" serve &
server_pid=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

say "A laptop and a phone put files on their side"
mkdir -p "$laptop/docs"
echo "shopping: milk" >"$laptop/docs/notes.md"
echo "draft 1" >"$laptop/docs/report.txt"
echo "la la la" >"$work/song" && printf "mkdir music\nput %s music/song.txt\n" "$work/song" | phone
show

say "First sync, laptop <-> hub over SFTP (the hub's host key is new: --accept-new)"
"$BIN" sync --accept-new "$hub" "$laptop"
show

say "Edits: the same note on laptop and phone, a delete on the laptop, a rename on the phone"
echo "shopping: milk, eggs (laptop)" >"$laptop/docs/notes.md"
echo "shopping: milk, bread (phone)" >"$work/note" && printf 'put %s docs/notes.md\n' "$work/note" | phone
rm "$laptop/docs/report.txt"
printf 'mkdir photos\nrename music/song.txt music/chorus.txt\n' | phone
# The hub offers what its clients upload once they have been quiet for a moment (a file
# still being written is never sent): as a person's next sync would, wait that long.
sleep 2.5

say "Sync again"
"$BIN" sync "$hub" "$laptop"
show

say "Nothing lost: what was replaced or deleted is in .sync-trash/ on each side"
(cd "$work" && find laptop/.sync-trash pi/.sync-trash -type f 2>/dev/null || true) | sort | sed "s/^/   /"

say "A third sync has nothing to do"
third=$("$BIN" sync "$hub" "$laptop" 2>&1)
echo "$third"

say "Status of the laptop replica"
"$BIN" status --root "$laptop"

# The demo is also a check (`just test` runs it): what it shows must be what happened.
fail() { echo "demo: $*" >&2; exit 1; }
diff -r -q -x '.sync*' "$laptop" "$pi" >/dev/null || fail "laptop and hub differ after the syncs"
ls "$laptop"/docs/notes.sync-conflict-*.md >/dev/null 2>&1 || fail "no conflict copy of docs/notes.md"
[[ -f $laptop/music/chorus.txt && ! -e $laptop/docs/report.txt ]] || fail "rename or delete not carried"
[[ $third == "sent 0 files (0 B), received 0 files (0 B), moved 0, deleted 0, conflicts 0,"* &&
    $third != *$'\n'* ]] ||
    fail "the third sync had something to do"
