#!/bin/sh
# filesync image: apply settings from the boot partition (run by filesync-firstboot.service):
# Raspberry Pi Imager's NoCloud files (user-data, network-config) and our own files.
set -eu
B=${FIRSTBOOT_BOOT:-/boot/firmware}
NOCLOUD=${FIRSTBOOT_NOCLOUD:-/usr/lib/filesync/nocloud}
# The hub's state folder (filesync.service's StateDirectory, `[server] state_dir`).
STATE=${FIRSTBOOT_STATE:-/var/lib/filesync}
say() { echo "filesync-firstboot: $*"; }
applied() { mv -f "$1" "$1.applied"; }

set_hostname() {
    h=$(printf %s "$1" | tr -cd 'A-Za-z0-9-' | cut -c1-63)
    [ -n "$h" ] || return 0
    echo "$h" > /etc/hostname
    sed -i "s/^127\.0\.1\.1.*/127.0.1.1\t$h/" /etc/hosts
    hostname "$h" 2>/dev/null || true
    say "hostname set to $h (reachable as $h.local)"
}

# Appends the key lines of stdin to FILE (made with MODE, its folder 0700 if missing), each
# once; nothing is made when there is no key.
add_keys() {
    file=$1 mode=$2
    while IFS= read -r key; do
        case $key in ssh-* | ecdsa-* | sk-*)
            [ -d "$(dirname "$file")" ] || install -d -m 0700 "$(dirname "$file")"
            [ -f "$file" ] || install -m "$mode" /dev/null "$file"
            grep -qxF "$key" "$file" || echo "$key" >> "$file" ;;
        esac
    done
    return 0
}

# Wi-Fi starts when wlan0 appears: a Pi without Wi-Fi (or a boot without its driver) does not
# wait for a device that never comes.
enable_wifi() {
    install -m 0600 "$1" /etc/wpa_supplicant/wpa_supplicant-wlan0.conf
    systemctl add-wants sys-subsystem-net-devices-wlan0.device wpa_supplicant@wlan0.service >/dev/null 2>&1 || true
    if [ -e /sys/class/net/wlan0 ]; then systemctl --no-block start wpa_supplicant@wlan0.service >/dev/null 2>&1 || true; fi
}

# --- Raspberry Pi Imager's OS customisation (NoCloud: user-data, network-config) ---------
# The value (or, with `all`, every value) of a setting in the facts file $F.
get() { awk -v k="$1" 'BEGIN { FS = "\t" } $1 == k { sub(/^[^\t]*\t/, ""); print; exit }' "$F"; }
all() { awk -v k="$1" 'BEGIN { FS = "\t" } $1 == k { sub(/^[^\t]*\t/, ""); print }' "$F"; }

# Imager's user (`user:` in 2.x, `users: - name:` before): made an administrator (sudo) who
# logs in with the keys and password chosen in Imager.
nocloud_user() {
    p=$1 name=$(get "$1/name")
    case $name in '' | default | root) return 0 ;; esac
    printf %s "$name" | grep -Eq '^[a-z_][a-z0-9_-]{0,31}$' || { say "user name '$name' is not valid; skipped"; return 0; }
    if ! id "$name" >/dev/null 2>&1; then
        useradd -m -s "$(get "$p/shell" | grep -x '/[a-z/]*' || echo /bin/bash)" -G sudo "$name"
    fi
    hash=$(get "$p/passwd")
    [ -n "$hash" ] && usermod -p "$hash" "$name"
    [ "$(get "$p/lock_passwd")" = true ] && usermod -L "$name"
    rule=$(get "$p/sudo")
    case $rule in '' | null | false) ;; *)
        # A line sudo cannot parse would lock every administrator out: checked first.
        rules=$(mktemp)
        printf '%s %s\n' "$name" "$rule" > "$rules"
        if visudo -cqf "$rules" >/dev/null 2>&1; then
            install -m 0440 "$rules" "/etc/sudoers.d/010_$name-nopasswd"
        else
            say "user-data's sudo rule for $name is not valid sudoers syntax; $name uses sudo with its password"
        fi
        rm -f "$rules" ;;
    esac
    home=$(getent passwd "$name" | cut -d: -f6)
    install -d -m 0700 -o "$name" -g "$name" "$home/.ssh"
    all "$p/ssh_authorized_keys[]" | add_keys "$home/.ssh/authorized_keys" 0600
    chown "$name:$name" "$home/.ssh/authorized_keys"
    all "$p/ssh_authorized_keys[]" >> "$ADMIN_KEYS"
    say "user $name created (administrator: sudo; ssh $name@$(cat /etc/hostname).local)"
}

# Wi-Fi from netplan's `wifis: wlan0:` (with or without the `network:` wrapper).
nocloud_wifi() {
    w=$1 conf=$(mktemp)
    country=$(get "$w/regulatory-domain" | tr -cd 'A-Za-z' | cut -c1-2)
    printf 'ctrl_interface=DIR=/run/wpa_supplicant\n' > "$conf"
    [ -n "$country" ] && printf 'country=%s\n' "$country" >> "$conf"
    found=0
    # One access point a line (an SSID may hold spaces).
    aps=$(awk -v p="$w/access-points/" 'BEGIN { FS = "\t" } index($1, p) == 1 {
              k = substr($1, length(p) + 1); sub(/\/.*/, "", k); if (!(k in seen)) { seen[k]; print k } }' "$F")
    while IFS= read -r ap; do
        [ -n "$ap" ] || continue
        ssid=$(printf %s "$ap" | sed 's/%2F/\//g; s/%25/%/g')
        pass=$(get "$w/access-points/$ap/password")
        # wpa_supplicant reads a quoted value up to its last quote, with no escapes: an SSID
        # with a quote in it goes as hex.
        { case $ssid in
          *'"'*) printf 'network={\n\tssid=%s\n' "$(printf %s "$ssid" | od -An -tx1 | tr -d ' \n')" ;;
          *) printf 'network={\n\tssid="%s"\n' "$ssid" ;;
          esac
          if printf %s "$pass" | grep -Eqx '[0-9a-fA-F]{64}'; then printf '\tpsk=%s\n' "$pass"
          elif [ -n "$pass" ]; then printf '\tpsk="%s"\n' "$pass"
          else printf '\tkey_mgmt=NONE\n'; fi
          [ "$(get "$w/access-points/$ap/hidden")" = true ] && printf '\tscan_ssid=1\n'
          printf '}\n'; } >> "$conf"
        found=1
    done <<APS
$aps
APS
    if [ "$found" = 1 ]; then enable_wifi "$conf"; say "Wi-Fi configured from network-config (wpa_supplicant@wlan0)"; fi
    rm -f "$conf"
}

apply_nocloud() {
    files=""
    for f in user-data network-config; do [ -f "$B/$f" ] && files="$files $B/$f"; done
    [ -n "$files" ] || return 0
    F=$(mktemp) ADMIN_KEYS=$(mktemp)
    # shellcheck disable=SC2086
    if ! "$NOCLOUD" $files > "$F"; then say "cannot read$files; left as they are"; return 0; fi
    h=$(get hostname); [ -n "$h" ] && set_hostname "$h"
    tz=$(get timezone | tr -cd 'A-Za-z0-9_+/-')
    if [ -n "$tz" ] && [ "${tz#*..}" = "$tz" ] && [ -f "/usr/share/zoneinfo/$tz" ]; then
        ln -sf "/usr/share/zoneinfo/$tz" /etc/localtime; echo "$tz" > /etc/timezone; say "time zone $tz"
    fi
    [ -n "$(get user/name)" ] && nocloud_user user
    for u in $(cut -f1 "$F" | sed -n 's#^\(users\[[0-9]*\]\)/name$#\1#p'); do nocloud_user "$u"; done
    all 'ssh_authorized_keys[]' | add_keys /root/.ssh/authorized_keys 0600
    case $(get ssh_pwauth) in
    true) echo 'PasswordAuthentication yes' > /etc/ssh/sshd_config.d/50-imager.conf ;;
    false) echo 'PasswordAuthentication no' > /etc/ssh/sshd_config.d/50-imager.conf ;;
    esac
    # The hub's devices: `filesync: authorized_keys:` if given, else the keys chosen in Imager
    # (whoever holds them administers the Pi already).
    if [ -n "$(get 'filesync/authorized_keys[]')" ]; then
        all 'filesync/authorized_keys[]' | add_keys /etc/filesync/authorized_keys 0644
    elif [ ! -f /etc/filesync/authorized_keys ] && [ -s "$ADMIN_KEYS" ]; then
        add_keys /etc/filesync/authorized_keys 0644 < "$ADMIN_KEYS"
    fi
    [ -f /etc/filesync/authorized_keys ] && say "filesync devices: $(grep -c . /etc/filesync/authorized_keys) keys"
    for w in network/wifis/wlan0 wifis/wlan0; do
        [ -n "$(awk -v p="$w/" 'index($0, p) == 1' "$F")" ] && nocloud_wifi "$w"
    done
    rm -f "$F" "$ADMIN_KEYS"
    for f in user-data network-config meta-data; do
        if [ -f "$B/$f" ]; then applied "$B/$f"; fi
    done
}

# Grow the root partition and file system to fill the SD card (once).
if [ ! -e /var/lib/filesync-firstboot/grown ] && [ -z "${FIRSTBOOT_BOOT:-}" ]; then
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

apply_nocloud

if [ -f "$B/hostname" ]; then
    set_hostname "$(cat "$B/hostname")"
    applied "$B/hostname"
fi

if [ -f "$B/filesync/config.toml" ]; then
    install -m 0640 -o root -g filesync "$B/filesync/config.toml" /etc/filesync/config.toml
    applied "$B/filesync/config.toml"; say "installed /etc/filesync/config.toml"
    # Its listen port (or announce = false) for avahi: the path unit is not watching yet.
    [ -x /usr/lib/filesync/announce ] && /usr/lib/filesync/announce >/dev/null || true
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
    enable_wifi "$B/wpa_supplicant.conf"
    applied "$B/wpa_supplicant.conf"
    say "Wi-Fi configured (wpa_supplicant@wlan0)"
fi

# A pairing code: into the hub's state folder (only the service reads it there), and off the
# FAT, which every local user can read and which outlives the code.
if [ -f "$B/filesync/pair-code.txt" ]; then
    install -d -m 0700 -o filesync -g filesync "$STATE"
    install -m 0600 -o filesync -g filesync "$B/filesync/pair-code.txt" "$STATE/pair-code.txt"
    rm -f "$B/filesync/pair-code.txt"
    say "pairing code moved to $STATE/pair-code.txt: taken for an hour from the hub's start, until a laptop pairs with it"
fi
say "filesync starts after this; add a laptop with \`filesync pair $(hostname).local CODE\`"
