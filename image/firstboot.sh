#!/bin/sh
# filesync image: apply settings from the boot partition (run by filesync-firstboot.service).
set -eu
B=/boot/firmware
say() { echo "filesync-firstboot: $*"; }
applied() { mv -f "$1" "$1.applied"; }

# Grow the root partition and file system to fill the SD card (once).
if [ ! -e /var/lib/filesync-firstboot/grown ]; then
    src=$(findmnt -n -o SOURCE /)
    disk=/dev/$(lsblk -n -o PKNAME "$src" | head -n1)
    part=$(cat "/sys/class/block/$(basename "$src")/partition" 2>/dev/null || echo 2)
    if [ -b "$disk" ] && command -v growpart >/dev/null; then
        if growpart "$disk" "$part" >/dev/null 2>&1; then
            partx -u "$disk" 2>/dev/null || true
            resize2fs "$src" >/dev/null 2>&1 && say "root file system grown to $(df -h / | awk 'NR==2{print $2}')"
        fi
    fi
    mkdir -p /var/lib/filesync-firstboot && touch /var/lib/filesync-firstboot/grown
fi

# Every flashed card gets its own SSH host keys (the image ships none).
if ! ls /etc/ssh/ssh_host_*_key >/dev/null 2>&1 && command -v ssh-keygen >/dev/null; then
    ssh-keygen -A >/dev/null && say "generated SSH host keys"
fi

if [ -f "$B/hostname" ]; then
    h=$(tr -cd 'A-Za-z0-9-' < "$B/hostname" | cut -c1-63)
    if [ -n "$h" ]; then
        echo "$h" > /etc/hostname
        sed -i "s/^127\.0\.1\.1.*/127.0.1.1\t$h/" /etc/hosts
        hostname "$h" 2>/dev/null || true
        say "hostname set to $h"
    fi
    applied "$B/hostname"
fi

if [ -f "$B/filesync/config.toml" ]; then
    install -m 0640 -o root -g filesync "$B/filesync/config.toml" /etc/filesync/config.toml
    applied "$B/filesync/config.toml"; say "installed /etc/filesync/config.toml"
fi
if [ -f "$B/filesync/authorized_keys" ]; then
    install -m 0644 -o root -g root "$B/filesync/authorized_keys" /etc/filesync/authorized_keys
    applied "$B/filesync/authorized_keys"; say "installed /etc/filesync/authorized_keys ($(grep -c '^[a-z]' /etc/filesync/authorized_keys || true) keys)"
fi

if [ -f "$B/ssh/authorized_keys" ]; then
    install -d -m 0700 /root/.ssh
    install -m 0600 "$B/ssh/authorized_keys" /root/.ssh/authorized_keys
    applied "$B/ssh/authorized_keys"; say "installed root's SSH keys (port 22)"
fi

if [ -f "$B/wpa_supplicant.conf" ]; then
    install -m 0600 "$B/wpa_supplicant.conf" /etc/wpa_supplicant/wpa_supplicant-wlan0.conf
    applied "$B/wpa_supplicant.conf"
    systemctl --no-block enable wpa_supplicant@wlan0.service >/dev/null 2>&1 || true
    systemctl --no-block start wpa_supplicant@wlan0.service >/dev/null 2>&1 || true
    say "Wi-Fi configured (wpa_supplicant@wlan0)"
fi

if [ -f /etc/filesync/authorized_keys ]; then
    say "filesync is configured; it starts after this"
else
    say "filesync is NOT configured: put filesync/authorized_keys on the boot partition and reboot"
fi
