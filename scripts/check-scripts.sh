#!/usr/bin/env bash
# Cheap checks of the build scripts (part of `just test`; the builds themselves take an hour):
# every script parses, every script finds cargo's output where cargo puts it (CARGO_TARGET_DIR
# set or not), and every Debian package a script installs is in the archive (--check-deps).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

scripts=$(git ls-files '*.sh' image/deb/postinst image/deb/prerm image/deb/postrm \
    image/rootfs/etc/kernel/postinst.d/z51-filesync-pi5)
for s in $scripts; do
    case $(head -n1 "$s") in
    '#!/bin/sh'*) sh -n "$s" || die "$s does not parse" ;;
    *) bash -n "$s" || die "$s does not parse" ;;
    esac
done

# Cargo decides where its output goes; a script that spells out target/ misses CARGO_TARGET_DIR.
if grep -nE '(^|[^_[:alnum:]])target/(release|debug|aarch64)' $scripts Justfile; then
    die "the lines above name cargo's output folder; use target_dir from scripts/lib.sh"
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
[ "$(env -u CARGO_TARGET_DIR bash -c '. scripts/lib.sh && target_dir')" = "$PWD/target" ] ||
    die "target_dir without CARGO_TARGET_DIR is not $PWD/target"
[ "$(CARGO_TARGET_DIR="$tmp/out" bash -c '. scripts/lib.sh && target_dir')" = "$tmp/out" ] ||
    die "target_dir does not follow an absolute CARGO_TARGET_DIR"
[ "$(CARGO_TARGET_DIR=elsewhere/out bash -c '. scripts/lib.sh && target_dir')" = "$PWD/elsewhere/out" ] ||
    die "target_dir does not follow a relative CARGO_TARGET_DIR"

# The package lists: each one must exist in the archive (a slip shows as a missing package).
if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial)" ] && [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq
fi
for s in cross/build-pi.sh image/build-deb.sh image/build-image.sh image/test-image.sh; do
    log "$s --check-deps"
    BUILD_PI_MODE=native "$s" --check-deps || die "$s --check-deps failed"
done
image/test-nocloud.sh
# The launchd agent must load as a property list, with the placeholders its install fills in.
python3 - launchd/org.filesync.daemon.plist <<'PY' || die "launchd/org.filesync.daemon.plist is not a valid agent"
import plistlib, sys
d = plistlib.load(open(sys.argv[1], "rb"))
assert d["Label"] == "org.filesync.daemon" and d["ProgramArguments"][:2] == ["@BIN@", "daemon"]
PY
log "build scripts OK"
