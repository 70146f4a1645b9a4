#!/usr/bin/env bash
# Runs every benchmark in one go and prints ratios against the peers measured in the same run.
# Speed is measured here, never asserted in tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh >/dev/null
echo "== index scale (1,000,000 entries)"
cargo bench --quiet --bench index_scale 2>/dev/null | grep -v '^$' || cargo bench --bench index_scale
for b in benches/*.sh; do
    [[ -e $b ]] || continue
    echo
    echo "== $b"
    bash "$b"
done
