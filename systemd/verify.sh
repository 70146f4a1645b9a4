#!/usr/bin/env bash
# Check the unit files: systemd-analyze verify on all of them and the exposure score of
# the hub unit (systemd-analyze security). ExecStart must name an existing binary for
# verify, so the units are checked as copies pointing at a stand-in binary
# (VERIFY_BIN, default: cargo's release build if there is one, else /bin/true).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v systemd-analyze >/dev/null || { echo "error: systemd-analyze missing (apt-get install systemd)" >&2; exit 1; }
. scripts/lib.sh
bin=${VERIFY_BIN:-}
[ -n "$bin" ] || { release=$(target_dir)/release/filesync; [ -x "$release" ] && bin=$release || bin=/bin/true; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/system" "$tmp/user"
for u in filesync.service filesync-announce.service filesync-announce.path; do sed "s#/usr/bin/filesync#$bin#; s#/usr/lib/filesync/announce#/bin/true#" "systemd/$u" > "$tmp/system/$u"; done
sed "s#/usr/bin/filesync#$bin#" systemd/filesync-user.service > "$tmp/user/filesync.service"
sed "s#/usr/lib/filesync/firstboot#/bin/true#" image/filesync-firstboot.service > "$tmp/system/filesync-firstboot.service"
echo "==> systemd-analyze verify (system units)"
(cd "$tmp/system" && systemd-analyze verify --man=no ./filesync.service ./filesync-firstboot.service ./filesync-announce.service ./filesync-announce.path)
echo "==> systemd-analyze --user verify (user unit)"
(cd "$tmp/user" && XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$tmp} systemd-analyze --user verify --man=no ./filesync.service)
echo "==> systemd-analyze security filesync.service"
systemd-analyze security --offline=true --no-pager "$tmp/system/filesync.service" | tail -n "${SECURITY_LINES:-3}"
echo "==> units OK"
