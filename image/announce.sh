#!/bin/sh
# filesync: announce the hub's SFTP server on the local network through avahi (mDNS/DNS-SD),
# as `_sftp-ssh._tcp` on the port of `[server] listen`, so phones' and laptops' file
# managers list it and `HOSTNAME.local` names it. Writes avahi's static service file from
# /etc/filesync/config.toml, or removes it when there is no [server] or `announce = false`.
# Run by the package's postinst and by filesync-announce.path whenever config.toml changes;
# avahi-daemon notices the file by itself.
#   /usr/lib/filesync/announce [CONFIG [SERVICE_FILE]]
set -eu
conf=${1:-/etc/filesync/config.toml}
out=${2:-/etc/avahi/services/filesync.service}

# The value of KEY in the [server] table (quotes stripped), or nothing.
server_value() {
    awk -v key="$1" '
        /^[[:space:]]*\[/ { in_server = ($0 ~ /^[[:space:]]*\[server\][[:space:]]*(#.*)?$/); next }
        in_server && $0 ~ "^[[:space:]]*" key "[[:space:]]*=" {
            sub(/^[^=]*=[[:space:]]*/, ""); sub(/[[:space:]]+#.*$/, ""); gsub(/"/, ""); print; exit
        }' "$conf"
}
has_server() { grep -Eq '^[[:space:]]*\[server\][[:space:]]*(#.*)?$' "$conf"; }

remove() {
    if [ -e "$out" ]; then rm -f "$out"; echo "filesync: not announced on the network ($1)"; fi
    exit 0
}
[ -r "$conf" ] || remove "no $conf"
has_server || remove "no [server] in $conf"
[ "$(server_value announce)" = false ] && remove "announce = false"
[ -d "$(dirname "$out")" ] || exit 0   # avahi-daemon is not installed

listen=$(server_value listen)
port=${listen##*:}
[ -n "$listen" ] || port=2222
case $port in ''|*[!0-9]*) echo "filesync: cannot read the port of [server] listen = \"$listen\" in $conf; not announced" >&2; exit 1 ;; esac

tmp="$out.tmp.$$"
cat > "$tmp" <<XML
<?xml version="1.0" standalone='no'?>
<!DOCTYPE service-group SYSTEM "avahi-service.dtd">
<!-- Written by /usr/lib/filesync/announce from $conf: edit that file, not this one. -->
<service-group>
  <name replace-wildcards="yes">filesync on %h</name>
  <service>
    <type>_sftp-ssh._tcp</type>
    <port>$port</port>
    <txt-record>u=filesync</txt-record>
    <txt-record>path=/</txt-record>
  </service>
</service-group>
XML
chmod 0644 "$tmp"
if [ -f "$out" ] && cmp -s "$tmp" "$out"; then rm -f "$tmp"; exit 0; fi
mv -f "$tmp" "$out"
echo "filesync: announced as _sftp-ssh._tcp on port $port"
