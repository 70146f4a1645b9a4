#!/usr/bin/env bash
# Checks image/nocloud.sh (the reader of Raspberry Pi Imager's NoCloud files on the image)
# against the files Imager 2.x and 1.8 write, kept in image/test-data/: each must read as its
# `expected`. Part of `just test` (scripts/check-scripts.sh); the boot itself is
# `just image-test`.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
for d in image/test-data/imager-*/; do
    if ! diff -u "$d/expected" <(sh image/nocloud.sh "$d/user-data" "$d/network-config"); then
        echo "FAIL: image/nocloud.sh reads $d differently" >&2; fail=1
    fi
done
# A file it cannot read is an error, not an empty result.
if sh image/nocloud.sh /nonexistent/user-data 2>/dev/null; then
    echo "FAIL: image/nocloud.sh accepted a missing file" >&2; fail=1
fi
[ "$fail" = 0 ] && echo "nocloud reader OK ($(ls -d image/test-data/imager-*/ | wc -l) Imager layouts)"
exit "$fail"
