#!/usr/bin/env bash
# Checks how the image reads Raspberry Pi Imager's NoCloud files, against the files Imager
# 2.x and 1.8 write (kept in image/test-data/): image/nocloud.sh must read each as its
# `expected`, and firstboot's Wi-Fi step must turn its network-config into `expected-wpa`
# (wpa_supplicant). Part of `just test` (scripts/check-scripts.sh); the boot itself is
# `just image-test`.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
facts=$(mktemp); trap 'rm -f "$facts"' EXIT
for d in image/test-data/imager-*/; do
    if ! diff -u "$d/expected" <(sh image/nocloud.sh "$d/user-data" "$d/network-config"); then
        echo "FAIL: image/nocloud.sh reads $d differently" >&2; fail=1
    fi
    sh image/nocloud.sh "$d/network-config" > "$facts"
    wifi=$(grep -q '^network/' "$facts" && echo network/wifis/wlan0 || echo wifis/wlan0)
    # firstboot's own functions, with the install step replaced by printing the file.
    if ! diff -u "$d/expected-wpa" <(sh -c '
            F=$1
            eval "$(sed -n "/^get()/p; /^all()/p; /^nocloud_wifi()/,/^}/p" image/firstboot.sh)"
            say() { :; }
            enable_wifi() { cat "$1"; }
            nocloud_wifi "$2"' sh "$facts" "$wifi"); then
        echo "FAIL: firstboot turns $d/network-config into a different wpa_supplicant file" >&2; fail=1
    fi
done
# A file it cannot read is an error, not an empty result.
if sh image/nocloud.sh /nonexistent/user-data 2>/dev/null; then
    echo "FAIL: image/nocloud.sh accepted a missing file" >&2; fail=1
fi
[ "$fail" = 0 ] && echo "NoCloud reading OK ($(ls -d image/test-data/imager-*/ | wc -l) Imager layouts)"
exit "$fail"
