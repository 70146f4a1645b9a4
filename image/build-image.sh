#!/usr/bin/env bash
# Build the flashable Raspberry Pi (3, 4, 400, CM4, 5; 64-bit) image:
#   dist/filesync-pi-<version>-arm64.img.xz, .img.xz.sha256 and .rpi-imager-manifest
#
# A Debian trixie arm64 system from Debian's archive alone (mmdebstrap), with the
# trixie-backports kernel (pinned: trixie's own 6.12 cannot drive a Pi 5), avahi (the hub
# is HOSTNAME.local and announced as _sftp-ssh._tcp), dist/filesync_<version>_arm64.deb
# installed (image/build-deb.sh is run if it is missing) and filesync.service enabled.
# First-boot settings come from the FAT boot partition: Raspberry Pi Imager's NoCloud files
# (user-data, network-config, meta-data) or our own (image/boot-template/filesync/README.txt).
# Assembled without loop mounts: mke2fs -d (ext4 root from a tarball), mkfs.vfat + mcopy
# (boot), sfdisk (plain MBR: the Pi 4 firmware refuses a hybrid GPT) + dd.
#
# Needs: root (mmdebstrap --mode=root) or unprivileged user namespaces (--mode=unshare),
# and binfmt_misc with qemu-aarch64 (qemu-user-static) on a non-arm64 host.
# `image/build-image.sh --check-deps` lists the Debian packages it would install, nothing built.
# Environment: MIRROR (default http://deb.debian.org/debian), IMAGE_KEEP=1 keeps
# the intermediate files in dist/image-build/, IMAGE_REUSE=1 reuses a kept
# dist/image-build/rootfs.tar and boot/ (skips mmdebstrap, the slow part) and lays the
# current .deb's files and image/'s own files over it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
t0=$(date +%s)
apt_install mmdebstrap debian-archive-keyring qemu-user-static binfmt-support arch-test \
    e2fsprogs dosfstools mtools fdisk xz-utils uidmap fakeroot
deps_checked

VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)
DEB=dist/filesync_${VERSION}_arm64.deb
OUT=dist/filesync-pi-${VERSION}-arm64.img
W=dist/image-build
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
BOOT_MB=${BOOT_MB:-256}
SUITE=trixie

[ -f "$DEB" ] || ARCHES=arm64 image/build-deb.sh
[ -f "$DEB" ] || die "$DEB was not built"

# arm64 maintainer scripts run under qemu-aarch64 through binfmt_misc.
if [ "$(dpkg --print-architecture)" != arm64 ] && ! arch-test arm64 >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
        mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
        if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
            conf=/usr/lib/binfmt.d/qemu-aarch64.conf
            [ -f "$conf" ] || die "no $conf (apt-get install qemu-user-static)"
            grep -v '^#' "$conf" > /proc/sys/fs/binfmt_misc/register
        fi
    fi
    arch-test arm64 >/dev/null || die "this host cannot run arm64 binaries: install qemu-user-static and enable binfmt_misc (update-binfmts --enable qemu-aarch64)"
fi
if [ "$(id -u)" -eq 0 ]; then MODE=root; else MODE=unshare; fi

reuse=0
if [ "${IMAGE_REUSE:-0}" = 1 ] && [ -s "$W/rootfs.tar" ] && [ -d "$W/boot" ]; then
    reuse=1; log "reusing $W/rootfs.tar and $W/boot"
else
    rm -rf "$W"; mkdir -p "$W/overlay" "$W/boot"
fi
# Files added to the root file system.
cp -a image/rootfs/. "$W/overlay/"
install -D -m 0755 image/firstboot.sh "$W/overlay/usr/lib/filesync/firstboot"
install -D -m 0755 image/nocloud.sh "$W/overlay/usr/lib/filesync/nocloud"
install -D -m 0644 image/filesync-firstboot.service "$W/overlay/usr/lib/systemd/system/filesync-firstboot.service"
install -D -m 0644 "$DEB" "$W/overlay/tmp/filesync.deb"

PACKAGES=(systemd-sysv udev kmod linux-image-arm64 raspi-firmware firmware-brcm80211
    wireless-regdb openssh-server systemd-resolved systemd-timesyncd wpasupplicant iproute2
    iputils-ping cloud-guest-utils e2fsprogs dosfstools fdisk ca-certificates less procps
    avahi-daemon libnss-mdns avahi-utils sudo tzdata initramfs-tools)
# initramfs-tools, not dracut (which the backports kernel would pull in): raspi-firmware's
# hooks expect it, and its initrd is half the size (it is stored twice: /boot and the FAT).


[ "$reuse" = 1 ] || {
log "mmdebstrap $SUITE arm64 ($MODE mode) from $MIRROR, kernel from $SUITE-backports"
mmdebstrap --arch=arm64 --variant=minbase --mode="$MODE" \
    --components="main contrib non-free-firmware" \
    --include="$(IFS=,; echo "${PACKAGES[*]}")" \
    --aptopt='APT::Install-Recommends "false"' \
    --setup-hook="sync-in $PWD/image/rootfs-setup /" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook="sync-in $W/overlay /" \
    --customize-hook='chroot "$1" dpkg -i /tmp/filesync.deb && rm -f "$1/tmp/filesync.deb"' \
    --customize-hook='chroot "$1" systemctl enable filesync-firstboot.service systemd-networkd.service systemd-resolved.service systemd-timesyncd.service ssh.service filesync.service' \
    --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
    --customize-hook='ln -sf /run/systemd/resolve/stub-resolv.conf "$1/etc/resolv.conf"' \
    --customize-hook='printf "\n# filesync image\nROOTPART=LABEL=RASPIROOT\nCONSOLES=\"ttyS1,115200 ttyAMA10,115200 tty0\"\n" >> "$1/etc/default/raspi-firmware"' \
    --customize-hook='chroot "$1" env DEB_MAINT_PARAMS=configure /etc/kernel/postinst.d/z50-raspi-firmware' \
    --customize-hook='chroot "$1" /etc/kernel/postinst.d/z51-filesync-pi5' \
    --customize-hook="sync-out /boot/firmware $W/boot" \
    --customize-hook='rm -rf "$1"/boot/firmware/*' \
    "$SUITE" "$W/rootfs.tar" \
    "deb $MIRROR $SUITE main contrib non-free-firmware" \
    "deb $MIRROR $SUITE-updates main contrib non-free-firmware" \
    "deb $MIRROR $SUITE-backports main contrib non-free-firmware" \
    "deb $SECURITY_MIRROR $SUITE-security main contrib non-free-firmware"
}
t1=$(date +%s)
log "root file system: $(du -h "$W/rootfs.tar" | cut -f1) tarball in $((t1 - t0))s"
ls "$W/boot"/vmlinuz* "$W/boot"/initrd.img* >/dev/null 2>&1 || die "raspi-firmware put no kernel/initrd into /boot/firmware"

# Boot (FAT32) partition: the firmware, kernel, initrd, config.txt, cmdline.txt from
# raspi-firmware, and the first-boot folder.
rm -rf "$W/boot/filesync"; mkdir -p "$W/boot/filesync"
cp image/boot-template/filesync/README.txt "$W/boot/filesync/README.txt"
cp image/config.toml "$W/boot/filesync/config.toml.example"
rm -f "$W/boot.vfat"
mkfs.vfat -F 32 -n RASPIFIRM -C "$W/boot.vfat" $((BOOT_MB * 1024)) >/dev/null
mcopy -s -p -m -i "$W/boot.vfat" "$W/boot"/* ::/
# Root (ext4) partition straight from the tarball; room to grow until first boot resizes it.
tar_mb=$(( $(stat -c %s "$W/rootfs.tar") / 1048576 ))
ROOT_MB=${ROOT_MB:-$(( tar_mb * 13 / 10 + 256 ))}
rm -f "$W/root.ext4"
# mke2fs -d takes a tarball only from e2fsprogs 1.47.1 (bookworm has 1.47.0): unpack it,
# under fakeroot when not root so that owners and device nodes stay right.
rm -rf "$W/rootfs"; mkdir "$W/rootfs"
# A reused root file system gets the current package's files laid over it (same version: the
# dpkg database stays right), so a rebuild with a new binary takes minutes, not an hour.
refresh=""
# Our own files (first boot, network, kernel hook) are laid over it too.
[ "$reuse" = 1 ] && refresh="dpkg-deb -x $DEB $W/rootfs && cp -a $W/overlay/. $W/rootfs/ && rm -f $W/rootfs/tmp/filesync.deb && "
mkfs_root="tar -xpf $W/rootfs.tar -C $W/rootfs --numeric-owner && $refresh mke2fs -q -t ext4 -L RASPIROOT -m 1 -d $W/rootfs $W/root.ext4 ${ROOT_MB}M"
if [ "$(id -u)" -eq 0 ]; then sh -c "$mkfs_root"; else fakeroot sh -c "$mkfs_root"; fi
rm -rf "$W/rootfs"

# Raspberry Pi Imager's description of the image (its "repository" JSON, as Imager's own
# doc/local_json/create_local_json.py writes it): opened in Imager, it offers OS customisation
# (host name, user and SSH key, Wi-Fi, time zone), written as NoCloud files on the FAT
# partition (init_format cloudinit) that firstboot applies. The url names this image where it
# was built; after moving the image, change it to the new place.
imager_manifest() {
    local img=$1 raw_size raw_sha xz_size xz_sha
    raw_size=$(stat -c %s "$img"); raw_sha=$(sha256sum "$img" | cut -d' ' -f1)
    xz_size=$(stat -c %s "$img.xz"); xz_sha=$(sha256sum "$img.xz" | cut -d' ' -f1)
    cat <<JSON
{
  "os_list": [
    {
      "name": "filesync hub $VERSION (Debian $SUITE, 64-bit)",
      "description": "The filesync hub: an SFTP server that laptops and phones sync with. Raspberry Pi 3, 4, 400, CM4 and 5.",
      "icon": "",
      "url": "file://$(readlink -f "$img.xz")",
      "extract_size": $raw_size,
      "extract_sha256": "$raw_sha",
      "image_download_size": $xz_size,
      "image_download_sha256": "$xz_sha",
      "release_date": "$(date -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}" +%Y-%m-%d)",
      "init_format": "cloudinit",
      "architecture": "armv8",
      "devices": ["pi5-64bit", "pi4-64bit", "pi3-64bit"]
    }
  ]
}
JSON
}

# Assemble: MBR (the Pi firmware reads MBR), 4 MiB aligned.
boot_start=8192; boot_sectors=$((BOOT_MB * 2048))
root_start=$((boot_start + boot_sectors)); root_sectors=$((ROOT_MB * 2048))
rm -f "$OUT"; truncate -s $(( (root_start + root_sectors) * 512 )) "$OUT"
sfdisk -q "$OUT" <<SFDISK
label: dos
unit: sectors
start=$boot_start, size=$boot_sectors, type=c, bootable
start=$root_start, size=$root_sectors, type=83
SFDISK
dd if="$W/boot.vfat" of="$OUT" bs=1M seek=$((boot_start * 512)) oflag=seek_bytes conv=notrunc,sparse status=none
dd if="$W/root.ext4" of="$OUT" bs=1M seek=$((root_start * 512)) oflag=seek_bytes conv=notrunc,sparse status=none
t2=$(date +%s)
log "assembled $OUT ($(du -h --apparent-size "$OUT" | cut -f1)) in $((t2 - t1))s"

# Kernel and initrd beside the image, for image/test-image.sh.
cp "$W"/boot/vmlinuz* "$W"/boot/initrd.img* dist/ 2>/dev/null || true

rm -f "$OUT.xz"
xz -T0 -6 -k -f "$OUT"
(cd dist && sha256sum "$(basename "$OUT").xz" > "$(basename "$OUT").xz.sha256")
imager_manifest "$OUT" > "${OUT%.img}.rpi-imager-manifest"
t3=$(date +%s)
log "compressed in $((t3 - t2))s"
[ "${IMAGE_KEEP:-0}" = 1 ] || rm -f "$W/rootfs.tar" "$W/root.ext4" "$W/boot.vfat"
log "done in $((t3 - t0))s: $OUT.xz ($(du -h "$OUT.xz" | cut -f1); raw $(du -h --apparent-size "$OUT" | cut -f1))"
cat "$OUT.xz.sha256"
