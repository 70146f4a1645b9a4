#!/usr/bin/env bash
# Build the Debian packages dist/filesync_<version>_arm64.deb (Raspberry Pi) and
# dist/filesync_<version>_amd64.deb (laptops), version from Cargo.toml.
#
#   image/build-deb.sh             # both; ARCHES="arm64" image/build-deb.sh for one
#   image/build-deb.sh --check-deps   # the Debian packages it would install, nothing built
#
# arm64 uses the cross-built binary (cross/build-pi.sh, run if missing or older than the
# sources), amd64 `cargo build --release`. DEB_SKIP_BUILD=1 packages whatever binaries
# exist. Then dpkg-deb --info/--contents and lintian (if installed) check the result.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. scripts/lib.sh
apt_install dpkg-dev binutils binutils-aarch64-linux-gnu file gzip
[ "${DEB_LINTIAN:-1}" = 1 ] && apt_install lintian
deps_checked
TARGET_DIR=$(target_dir)

SDE=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)
[ -n "$VERSION" ] || die "no version in Cargo.toml"
ARCHES=${ARCHES:-"arm64 amd64"}
mkdir -p dist

stale() { # binary missing or older than any source file
    [ ! -x "$1" ] || [ -n "$(find src Cargo.toml Cargo.lock -newer "$1" -print -quit)" ]
}

for arch in $ARCHES; do
    case $arch in
    arm64) bin=$TARGET_DIR/aarch64-unknown-linux-gnu/release/filesync; objdump=aarch64-linux-gnu-objdump
           if [ "${DEB_SKIP_BUILD:-0}" != 1 ] && stale "$bin"; then cross/build-pi.sh; fi ;;
    amd64) bin=$TARGET_DIR/release/filesync; objdump=objdump
           if [ "${DEB_SKIP_BUILD:-0}" != 1 ] && stale "$bin"; then log "cargo build --release"; cargo build --release --locked; fi ;;
    *) die "unknown architecture $arch" ;;
    esac
    [ -x "$bin" ] || die "$bin missing"
    command -v "$objdump" >/dev/null || objdump=objdump

    pkg="dist/deb/filesync_${VERSION}_$arch"
    log "assembling $pkg"
    rm -rf "$pkg"; mkdir -p "$pkg/DEBIAN"
    install -D -m 0755 "$bin" "$pkg/usr/bin/filesync"
    # Symbols off (Cargo's strip = "debuginfo" keeps them): smaller, and Debian policy.
    "${objdump%objdump}strip" --strip-unneeded --remove-section=.comment "$pkg/usr/bin/filesync"
    install -D -m 0644 systemd/filesync.service "$pkg/usr/lib/systemd/system/filesync.service"
    install -D -m 0644 systemd/filesync-user.service "$pkg/usr/lib/systemd/user/filesync.service"
    install -D -m 0644 systemd/filesync-announce.path "$pkg/usr/lib/systemd/system/filesync-announce.path"
    install -D -m 0644 systemd/filesync-announce.service "$pkg/usr/lib/systemd/system/filesync-announce.service"
    install -D -m 0755 image/announce.sh "$pkg/usr/lib/filesync/announce"
    install -D -m 0644 systemd/filesync.sysusers "$pkg/usr/lib/sysusers.d/filesync.conf"
    install -D -m 0644 systemd/filesync.tmpfiles "$pkg/usr/lib/tmpfiles.d/filesync.conf"
    install -D -m 0644 image/config.toml "$pkg/etc/filesync/config.toml"
    install -D -m 0644 image/filesync.1 "$pkg/usr/share/man/man1/filesync.1"
    gzip -9n "$pkg/usr/share/man/man1/filesync.1"
    install -D -m 0644 image/copyright "$pkg/usr/share/doc/filesync/copyright"
    printf 'filesync (%s) unstable; urgency=medium\n\n  * Release %s.\n\n -- filesync developers <filesync@example.invalid>  %s\n' \
        "$VERSION" "$VERSION" "$(date -R -u -d "@$SDE")" \
        | gzip -9n > "$pkg/usr/share/doc/filesync/changelog.gz"; chmod 0644 "$pkg/usr/share/doc/filesync/changelog.gz"

    # Dependencies: the newest glibc symbol version the binary uses, and its other libraries.
    glibc=$("$objdump" -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)
    deps="libc6 (>= $glibc)"
    "$objdump" -p "$bin" | grep -q 'NEEDED *libgcc_s' && deps="$deps, libgcc-s1"
    deps="$deps, systemd"
    size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
    cat > "$pkg/DEBIAN/control" <<CONTROL
Package: filesync
Version: $VERSION
Architecture: $arch
Maintainer: filesync developers <filesync@example.invalid>
Installed-Size: $size
Depends: $deps
Recommends: avahi-daemon, libnss-mdns
Section: net
Priority: optional
Homepage: https://example.invalid/filesync
Description: keep folders in sync over SSH/SFTP, with a Raspberry Pi hub
 filesync keeps a folder on several machines in sync over plain SFTP. Each
 replica keeps an index with version vectors, so concurrent edits are both
 kept and nothing is silently lost; replaced files go to a trash folder.
 .
 This package contains the filesync command, the hardened filesync.service
 system unit (the always-on hub: an SFTP server on port 2222 that also pulls
 from laptops on a schedule) and a user unit for laptops. Laptops join it with
 a one-time code (filesync pair). With avahi-daemon it is announced on the
 local network as _sftp-ssh._tcp ([server] announce = false turns that off).
CONTROL
    echo /etc/filesync/config.toml > "$pkg/DEBIAN/conffiles"
    for s in postinst prerm postrm; do install -m 0755 "image/deb/$s" "$pkg/DEBIAN/$s"; done

    # Reproducible: every mtime is the last commit's time.
    find "$pkg" -exec touch -h -d "@$SDE" {} +
    out="dist/filesync_${VERSION}_$arch.deb"
    dpkg-deb --root-owner-group -Zxz --build "$pkg" "$out" >/dev/null
    log "built $out ($(du -h "$out" | cut -f1))"
    dpkg-deb --info "$out"
    dpkg-deb --contents "$out"
    if command -v lintian >/dev/null && [ "${DEB_LINTIAN:-1}" = 1 ]; then
        log "lintian $out (kept tags are explained in image/README.md)"
        lintian --tag-display-limit 0 "$out" || true
    fi
done
