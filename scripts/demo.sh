#!/usr/bin/env bash
# The main job on an embedded default: a "laptop" folder and a "pi" folder, edits on both
# sides (one of them a conflict), one sync, and what happened.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
BIN="$PWD/target/debug/filesync"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HOME="$work/home" RUST_LOG=warn
mkdir -p "$HOME" "$work/laptop" "$work/pi"
laptop="$work/laptop" pi="$work/pi"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() {
    for side in laptop pi; do
        echo "-- $side:"
        (cd "$work/$side" && find . -path ./.sync-trash -prune -o -type f ! -name '.sync*' -print | sort |
            while read -r f; do printf '   %-58s %s\n' "$f" "$(head -c 40 "$f" | tr '\n' ' ')"; done)
    done
}

say "Two replicas: a laptop and the pi"
mkdir -p "$laptop/docs" "$pi/music"
echo "shopping: milk" >"$laptop/docs/notes.md"
echo "draft 1" >"$laptop/docs/report.txt"
echo "la la la" >"$pi/music/song.txt"
show

say "First sync: each side gets the other's files"
"$BIN" sync "$laptop" "$pi"
show

say "Edits on both sides: the same note changed on both, a delete, a rename, a new folder"
echo "shopping: milk, eggs (laptop)" >"$laptop/docs/notes.md"
echo "shopping: milk, bread (phone via pi)" >"$pi/docs/notes.md"
rm "$laptop/docs/report.txt"
mv "$pi/music/song.txt" "$pi/music/chorus.txt"
mkdir -p "$pi/photos" && echo "jpeg bytes" >"$pi/photos/cat.jpg"

say "Sync again"
"$BIN" sync "$laptop" "$pi"
show

say "Nothing lost: replaced and deleted files are in .sync-trash/"
(cd "$work" && find laptop/.sync-trash pi/.sync-trash -type f 2>/dev/null | sort | sed 's/^/   /')

say "A third sync has nothing to do"
"$BIN" sync "$laptop" "$pi"

say "Status of the laptop replica"
"$BIN" status --root "$laptop"
