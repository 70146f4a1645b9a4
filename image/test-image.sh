#!/usr/bin/env bash
# Boot test of the Raspberry Pi image under emulation (slow; not part of `just test`).
#
#   image/test-image.sh [dist/filesync-pi-<version>-arm64.img.xz]
#
# 1. runs the cross-built binary under qemu-aarch64 user emulation (--version, index, status);
# 2. checks what a Raspberry Pi needs on the image: a plain MBR, the Pi 4 and Pi 5 device
#    trees and config.txt sections on the FAT, the kernel's Pi 5 drivers (SD controller,
#    RP1, Ethernet, PCIe), the Imager manifest; copies the image and puts first-boot files on
#    its FAT partition with mtools as Raspberry Pi Imager writes them (NoCloud user-data with
#    host name, an administrator with an SSH key, the hub's device key; network-config with
#    Wi-Fi; meta-data; ds=nocloud on cmdline.txt) plus our own ssh/authorized_keys (root),
#    grows the copy by 1 GiB to exercise the first-boot resize;
# 3. boots it in qemu-system-aarch64 -M virt -cpu cortex-a72 (TCG) with the image's own
#    kernel and initrd, a virtio disk, user networking forwarding 127.0.0.1:$PORT to the SFTP
#    port 2222 and 127.0.0.1:$SSH_PORT to ssh, serial console to dist/image-test/serial.log;
# 4. waits for filesync.service to report READY (systemd prints "Started filesync.service"
#    on the console only once a Type=notify service sent READY=1) and reports boot-to-READY;
# 5. checks over ssh what first boot applied (host name, the Imager user with sudo, Wi-Fi)
#    and that avahi announces the hub (_sftp-ssh._tcp, HOSTNAME.local); then from the host:
#    an OpenSSH sftp session against the filesync SFTP server with the device key from
#    user-data, and `filesync sync` with the VM as the peer, files on both sides; then a
#    second laptop pairs by the code on the boot partition and syncs at once.
# The VM is always stopped on exit. TIMEOUT (default 900 s) bounds the wait for READY.
# IMAGE_TEST_BIN_ARM=FILE replaces /usr/bin/filesync in the test copy (debugfs, no mount),
# e.g. to test a newer aarch64 build without rebuilding the image; IMAGE_TEST_BIN_HOST=FILE
# is the host's filesync used for `filesync sync` (default: cargo's release build).
# `image/test-image.sh --check-deps` lists the Debian packages it would install, nothing run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
# The NIC gets no boot ROM (romfile=): the kernel is loaded directly, never network-booted, and
# the ROM's package (ipxe-qemu) is only a Recommends of qemu-system-arm.
apt_install qemu-system-arm qemu-user mtools xz-utils openssh-client \
    libc6-dev-arm64-cross fdisk e2fsprogs diffutils python3
deps_checked
need_cmd qemu-system-aarch64 qemu-system-arm
need_cmd qemu-aarch64 qemu-user
TARGET_DIR=$(target_dir)

VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)
IMG=${1:-dist/filesync-pi-${VERSION}-arm64.img.xz}
[ -f "$IMG" ] || [ -f "${IMG%.xz}" ] || die "no image $IMG: run image/build-image.sh first"
T=dist/image-test
PORT=${PORT:-22222}; SSH_PORT=${SSH_PORT:-22022}
TIMEOUT=${TIMEOUT:-900}
BIN_ARM=$TARGET_DIR/aarch64-unknown-linux-gnu/release/filesync
failures=()
fail_soft() { printf 'FAIL: %s\n' "$*" >&2; failures+=("$*"); }

rm -rf "$T"; mkdir -p "$T"

# 1. The cross-built binary under user-mode emulation.
if [ -x "$BIN_ARM" ]; then
    log "qemu-aarch64: $(qemu-aarch64 -L /usr/aarch64-linux-gnu "$BIN_ARM" --version)"
    mkdir -p "$T/user-emu"; echo hello > "$T/user-emu/a.txt"
    : > "$T/user-emu.toml"
    qemu-aarch64 -L /usr/aarch64-linux-gnu "$BIN_ARM" --config "$T/user-emu.toml" index --root "$T/user-emu" >&2 &&
        [ -f "$T/user-emu/.sync" ] && log "qemu-aarch64: filesync index wrote .sync" ||
        fail_soft "filesync index under qemu-aarch64"
else
    log "skipped qemu-aarch64 user emulation: $BIN_ARM not built (cross/build-pi.sh)"
fi

# 2. A working copy of the image with first-boot files on its boot partition.
log "preparing $T/disk.img from $IMG"
if [ -f "$IMG" ] && [ "${IMG%.xz}" != "$IMG" ]; then xz -dc -T0 "$IMG" > "$T/disk.img"; else cp --sparse=always "${IMG%.xz}" "$T/disk.img"; fi
truncate -s +1G "$T/disk.img"
sfdisk -d "$T/disk.img" > "$T/partitions.txt"
grep -q '^label: dos' "$T/partitions.txt" || fail_soft "the partition table is not a plain MBR"
grep -qi 'type=ee' "$T/partitions.txt" && fail_soft "a partition of type 0xEE (hybrid GPT): the Pi 4 firmware refuses it"
boot_off=$(( $(sed -n 's/.*start= *\([0-9]*\).*type=c.*/\1/p' "$T/partitions.txt" | head -n1) * 512 ))
root_off=$(( $(sed -n 's/.*start= *\([0-9]*\).*type=83.*/\1/p' "$T/partitions.txt" | head -n1) * 512 ))
[ "$boot_off" -gt 0 ] || die "no FAT partition in the image"
FAT="$T/disk.img@@$boot_off"

# What a Raspberry Pi reads from the FAT, and the kernel's drivers for a Pi 5.
mdir -b -i "$FAT" ::/ | sed 's#^::/##' > "$T/fat.txt"
for dtb in bcm2837-rpi-3-b.dtb bcm2711-rpi-4-b.dtb bcm2711-rpi-400.dtb bcm2712-rpi-5-b.dtb bcm2712d0-rpi-5-b.dtb; do
    grep -qx "$dtb" "$T/fat.txt" || fail_soft "no $dtb on the boot partition"
done
for f in start4.elf fixup4.dat config.txt cmdline.txt; do grep -qx "$f" "$T/fat.txt" || fail_soft "no $f on the boot partition"; done
mtype -i "$FAT" ::/config.txt > "$T/config.txt"
for section in '[pi4]' '[pi5]' '[all]'; do grep -qxF "$section" "$T/config.txt" || fail_soft "config.txt has no $section section"; done
grep -q '^kernel=vmlinuz-' "$T/config.txt" && grep -q '^initramfs initrd.img-' "$T/config.txt" ||
    fail_soft "config.txt names no kernel or initramfs"
debugfs -R 'ls -p /boot' "$T/disk.img?offset=$root_off" 2>/dev/null | awk -F/ '{print $6}' | grep '^config-' > "$T/kconfigs.txt" || true
kconfig=$(sort -V "$T/kconfigs.txt" | tail -n1)
if [ -n "$kconfig" ]; then
    debugfs -R "cat /boot/$kconfig" "$T/disk.img?offset=$root_off" > "$T/kernel-config" 2>/dev/null
    for opt in CONFIG_MMC_SDHCI_BRCMSTB CONFIG_MISC_RP1 CONFIG_MACB CONFIG_PCIE_BRCMSTB CONFIG_PINCTRL_RP1 CONFIG_COMMON_CLK_RP1; do
        grep -Eq "^$opt=(y|m)$" "$T/kernel-config" || fail_soft "the kernel ($kconfig) lacks $opt (Raspberry Pi 5)"
    done
    log "kernel ${kconfig#config-}: Pi 5 drivers present (SDHCI_BRCMSTB, RP1, MACB, PCIE_BRCMSTB)"
else
    fail_soft "no /boot/config-* in the root file system"
fi
manifest=${IMG%.img*}.rpi-imager-manifest
if [ -f "$manifest" ]; then
    python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["os_list"][0]; assert e["init_format"]=="cloudinit", e; assert e["extract_size"]>0' "$manifest" ||
        fail_soft "$manifest is not an Imager manifest with init_format cloudinit"
else
    fail_soft "no $manifest beside the image"
fi

# First-boot settings as Raspberry Pi Imager 2.x writes them, plus our own root key file.
ssh-keygen -q -t ed25519 -N '' -C filesync-image-test -f "$T/id_ed25519"
ssh-keygen -q -t ed25519 -N '' -C filesync-image-device -f "$T/device_ed25519"
cat > "$T/user-data" <<USERDATA
#cloud-config
manage_resolv_conf: false

hostname: filesync-test
manage_etc_hosts: true
timezone: Europe/Berlin
user:
  name: admin
  shell: /bin/bash
  lock_passwd: true
  ssh_authorized_keys:
    - "$(cat "$T/id_ed25519.pub")"
  sudo: ALL=(ALL) NOPASSWD:ALL
ssh_pwauth: false
filesync:
  authorized_keys:
    - "$(cat "$T/device_ed25519.pub")"
runcmd:
  - [ systemctl, enable, --now, ssh ]
USERDATA
cat > "$T/network-config" <<NETWORK
network:
  version: 2
  wifis:
    wlan0:
      dhcp4: true
      regulatory-domain: "DE"
      access-points:
        "Test Net":
          password: "$(printf '%064d' 0)"
      optional: true
NETWORK
echo "instance-id: rpi-imager-$(date +%s)000" > "$T/meta-data"
mtype -i "$FAT" ::/cmdline.txt | tr -d '\n' > "$T/cmdline.txt"
printf ' cfg80211.ieee80211_regdom=DE ds=nocloud;i=rpi-imager-1' >> "$T/cmdline.txt"
for f in user-data network-config meta-data cmdline.txt; do mcopy -o -i "$FAT" "$T/$f" "::/$f"; done
mmd -D s -i "$FAT" ::/ssh 2>/dev/null || true
mcopy -o -i "$FAT" "$T/id_ed25519.pub" ::/ssh/authorized_keys
# A pairing code on the boot partition, written by `filesync pair --new --file` on the host (as
# a laptop does to a card): a laptop pairs with it after boot, with nothing else set up.
BIN_HOST=${IMAGE_TEST_BIN_HOST:-$TARGET_DIR/release/filesync}
if [ -z "${IMAGE_TEST_BIN_HOST:-}" ]; then
    log "cargo build --release (the host side of filesync pair and sync)"; cargo build --release --locked >&2
fi
[ -x "$BIN_HOST" ] || die "no host binary $BIN_HOST (cargo build --release)"
: > "$T/empty.toml"
PAIR_CODE=$("$BIN_HOST" --config "$T/empty.toml" pair --new --file "$T/pair-code.txt" | sed -n 's/^code: //p')
[ -n "$PAIR_CODE" ] || die "filesync pair --new --file printed no code"
mmd -D s -i "$FAT" ::/filesync 2>/dev/null || true
mcopy -o -i "$FAT" "$T/pair-code.txt" ::/filesync/pair-code.txt
if [ -n "${IMAGE_TEST_BIN_ARM:-}" ]; then
    debugfs -w -f - "$T/disk.img?offset=$root_off" >/dev/null 2>"$T/debugfs.err" <<DEBUGFS
rm /usr/bin/filesync
write $IMAGE_TEST_BIN_ARM /usr/bin/filesync
set_inode_field /usr/bin/filesync mode 0100755
set_inode_field /usr/bin/filesync uid 0
set_inode_field /usr/bin/filesync gid 0
DEBUGFS
    log "replaced /usr/bin/filesync in the test copy with $IMAGE_TEST_BIN_ARM"
fi
kernel=$(mdir -b -i "$FAT" ::/ | sed 's#^::/##' | grep -m1 '^vmlinuz-') || die "no vmlinuz-* on the boot partition"
initrd=$(mdir -b -i "$FAT" ::/ | sed 's#^::/##' | grep -m1 '^initrd.img-') || die "no initrd.img-* on the boot partition"
mcopy -o -i "$FAT" "::/$kernel" "$T/vmlinuz"; mcopy -o -i "$FAT" "::/$initrd" "$T/initrd.img"
log "kernel $kernel, initrd $initrd (from the image's boot partition)"

# 3. Boot.
SSH=(ssh -p "$SSH_PORT" -i "$T/id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
     -o LogLevel=ERROR -o ConnectTimeout=10 -o BatchMode=yes root@127.0.0.1)
cleanup() {
    if [ -f "$T/qemu.pid" ]; then
        pid=$(cat "$T/qemu.pid"); kill "$pid" 2>/dev/null || true
        for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$pid" 2>/dev/null || true; rm -f "$T/qemu.pid"
    fi
}
trap cleanup EXIT
accel=tcg
log "booting qemu-system-aarch64 -M virt -cpu cortex-a72 -m 1024 ($accel); console: $T/serial.log"
start=$(date +%s)
qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 1024 -accel "$accel" \
    -kernel "$T/vmlinuz" -initrd "$T/initrd.img" \
    -append "root=LABEL=RASPIROOT rw rootwait console=ttyAMA0 net.ifnames=0 systemd.show_status=1" \
    -drive "file=$T/disk.img,format=raw,if=none,id=hd0,cache=unsafe" -device virtio-blk-pci,drive=hd0 \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$PORT-:2222,hostfwd=tcp:127.0.0.1:$SSH_PORT-:22" \
    -device virtio-net-pci,netdev=n0,romfile= -device virtio-rng-pci \
    -display none -monitor none -serial "file:$T/serial.log" \
    -pidfile "$T/qemu.pid" -daemonize

# 4. Wait for READY. systemd prints "Started filesync.service" on the console only once the
# Type=notify service sent READY=1, but it stops printing once a getty owns the console: from
# the login prompt on, ask systemd over ssh (active = READY sent).
ready=""
while :; do
    el=$(( $(date +%s) - start ))
    # The console has colour codes around the unit name: strip them.
    sed 's/\x1b\[[0-9;]*m//g' "$T/serial.log" 2>/dev/null > "$T/serial.txt" || true
    if grep -aq 'Started filesync.service' "$T/serial.txt"; then ready=$el; break; fi
    if grep -aq 'Failed to start filesync.service' "$T/serial.txt"; then break; fi
    if grep -aq ' login: *$' "$T/serial.txt"; then
        case $("${SSH[@]}" systemctl is-active filesync.service 2>/dev/null) in
        active) ready=$(( $(date +%s) - start )); break ;;
        failed) break ;;
        esac
    fi
    if grep -aqi 'Kernel panic' "$T/serial.log" 2>/dev/null; then break; fi
    [ "$el" -lt "$TIMEOUT" ] || break
    kill -0 "$(cat "$T/qemu.pid")" 2>/dev/null || die "qemu exited early; see $T/serial.log"
    sleep 1
done
grep -a 'filesync-firstboot:' "$T/serial.log" | sed 's/^/    console: /' >&2 || true

# Over ssh: what systemd says about the service (also when it failed).
ssh_ok=""
for _ in $(seq 60); do "${SSH[@]}" true 2>/dev/null && { ssh_ok=1; break; }; sleep 2; done
if [ -n "$ssh_ok" ]; then
    log "ssh root@VM: hostname $("${SSH[@]}" hostname), root fs $("${SSH[@]}" "df -h / | awk 'NR==2{print \$2}'")"
    "${SSH[@]}" "systemctl --no-pager status filesync.service; journalctl --no-pager -b -u filesync.service | tail -n 20; systemd-analyze" > "$T/service.txt" 2>&1 || true
    sed 's/^/    vm: /' "$T/service.txt" | head -n 40 >&2
    state=$("${SSH[@]}" systemctl is-active filesync.service 2>/dev/null || true)
    log "filesync.service is $state"
    # What first boot took from Imager's NoCloud files.
    [ "$("${SSH[@]}" hostname)" = filesync-test ] || fail_soft "user-data's hostname was not applied"
    ADMIN=(ssh -p "$SSH_PORT" -i "$T/id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
           -o LogLevel=ERROR -o ConnectTimeout=10 -o BatchMode=yes admin@127.0.0.1)
    "${ADMIN[@]}" sudo -n true 2>/dev/null && log "user-data: user admin logs in with its key and has sudo" ||
        fail_soft "user-data's user admin cannot log in with its key or has no sudo"
    "${SSH[@]}" "grep -qF 'ssid=\"Test Net\"' /etc/wpa_supplicant/wpa_supplicant-wlan0.conf" ||
        fail_soft "network-config's Wi-Fi was not applied"
    [ "$("${SSH[@]}" cat /etc/timezone 2>/dev/null)" = Europe/Berlin ] || fail_soft "user-data's time zone was not applied"
    "${SSH[@]}" test -f /boot/firmware/user-data.applied || fail_soft "user-data was not marked applied"
    # The network announcement: avahi resolves its own services.
    avahi=""
    for _ in $(seq 30); do
        avahi=$("${SSH[@]}" avahi-browse -rpt _sftp-ssh._tcp 2>/dev/null | grep '^=' | head -n1) || true
        [ -n "$avahi" ] && break; sleep 1
    done
    echo "$avahi" > "$T/avahi.txt"
    # Fields: =;iface;proto;name;type;domain;host;address;port;txt. The host is the Pi's name,
    # or that name with avahi's "-N" when it met a clash (qemu's user network can echo
    # multicast back, which avahi takes for another host of that name).
    mdns_host=$(echo "$avahi" | cut -d';' -f7)
    if echo "$mdns_host" | grep -Eqx 'filesync-test(-[0-9]+)?\.local' &&
       [ "$(echo "$avahi" | cut -d';' -f9)" = 2222 ] && echo "$avahi" | grep -q '"u=filesync"'; then
        log "avahi: $(echo "$avahi" | cut -d';' -f4-9 | tr ';' ' ')"
    else
        fail_soft "avahi does not announce _sftp-ssh._tcp on port 2222 as filesync-test.local (got: ${avahi:-nothing})"
    fi
    "${SSH[@]}" getent hosts "${mdns_host:-filesync-test.local}" >/dev/null ||
        fail_soft "${mdns_host:-filesync-test.local} does not resolve on the Pi (libnss-mdns)"
else
    fail_soft "no ssh to the VM on 127.0.0.1:$SSH_PORT"
fi
if [ -z "$ready" ]; then
    tail -n 30 "$T/serial.log" | sed 's/^/    console: /' >&2
    die "filesync.service did not become READY within ${TIMEOUT}s (see $T/serial.log, $T/service.txt)"
fi
since_kernel=$("${SSH[@]}" systemctl show -p ActiveEnterTimestampMonotonic --value filesync.service 2>/dev/null || echo 0)
log "boot-to-READY: ${ready}s (qemu start to READY=1, TCG emulation); $(( ${since_kernel:-0} / 1000000 ))s from the kernel's start"
echo "$ready" > "$T/boot-to-ready.txt"

# 5. Talk to the hub from the host.
SFTP_OPTS=(-P "$PORT" -i "$T/device_ed25519" -o StrictHostKeyChecking=accept-new
           -o UserKnownHostsFile="$T/known_hosts" -o BatchMode=yes -o LogLevel=ERROR)
echo "from sftp $(date)" > "$T/from-sftp.txt"
cat > "$T/sftp.batch" <<BATCH
put $T/from-sftp.txt from-sftp.txt
ls -l
get from-sftp.txt $T/from-sftp.back
BATCH
if sftp "${SFTP_OPTS[@]}" -b "$T/sftp.batch" filesync@127.0.0.1 > "$T/sftp.out" 2>&1 &&
   cmp -s "$T/from-sftp.txt" "$T/from-sftp.back" &&
   "${SSH[@]}" test -f /srv/filesync/from-sftp.txt; then
    log "OpenSSH sftp: put/ls/get against the filesync server OK"
else
    fail_soft "OpenSSH sftp session (see $T/sftp.out)"
fi

if [ -x "$BIN_HOST" ]; then
    L="$T/laptop"; mkdir -p "$L/root"
    echo "from the laptop" > "$L/root/from-laptop.txt"
    "${SSH[@]}" "runuser -u filesync -- sh -c 'echo from the pi > /srv/filesync/from-pi.txt'" || true
    cat > "$L/config.toml" <<TOML
root = "$PWD/$L/root"
name = "laptop"
[peers.pi]
url = "sftp://filesync@127.0.0.1:$PORT/"
identity = "$PWD/$T/device_ed25519"
known_hosts = "$PWD/$T/known_hosts"
TOML
    if "$BIN_HOST" --config "$L/config.toml" sync pi --accept-new --no-progress > "$T/sync.out" 2>&1 &&
       [ -f "$L/root/from-pi.txt" ] && [ -f "$L/root/from-sftp.txt" ] &&
       "${SSH[@]}" test -f /srv/filesync/from-laptop.txt; then
        log "filesync sync with the VM: files arrived on both sides"
    else
        fail_soft "filesync sync pi (see $T/sync.out)"
    fi
    # First boot moved the code off the FAT into the state folder, for the service alone.
    [ "$("${SSH[@]}" "test ! -e /boot/firmware/filesync/pair-code.txt && stat -c '%a %U' /var/lib/filesync/pair-code.txt" 2>/dev/null)" = "600 filesync" ] ||
        fail_soft "first boot did not move filesync/pair-code.txt to /var/lib/filesync (0600, filesync)"
    # A second laptop pairs by the boot partition's code and syncs without --accept-new.
    P="$T/paired"; mkdir -p "$P/home" "$P/root"
    echo "from the paired laptop" > "$P/root/from-paired.txt"
    : > "$P/config.toml"
    if HOME="$PWD/$P/home" "$BIN_HOST" --config "$P/config.toml" pair "127.0.0.1:$PORT" "$PAIR_CODE" \
            --as paired --root "$PWD/$P/root" > "$T/pair.out" 2>&1 &&
       peer=$(sed -n 's/^now: filesync sync //p' "$T/pair.out") && [ -n "$peer" ] &&
       HOME="$PWD/$P/home" "$BIN_HOST" --config "$P/config.toml" sync "$peer" --no-progress >> "$T/pair.out" 2>&1 &&
       [ -f "$P/root/from-pi.txt" ] && "${SSH[@]}" test -f /srv/filesync/from-paired.txt; then
        log "filesync pair with the boot partition's code, then sync: OK"
    else
        fail_soft "filesync pair with the boot partition's code (see $T/pair.out)"
    fi
else
    fail_soft "no host binary $BIN_HOST (cargo build --release) for filesync sync"
fi

if [ ${#failures[@]} -gt 0 ]; then
    printf 'FAIL: %s\n' "${failures[@]}" >&2; exit 1
fi
log "image test passed (boot-to-READY ${ready}s)"
