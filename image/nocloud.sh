#!/bin/sh
# filesync image: reads the NoCloud files Raspberry Pi Imager writes to the boot partition
# (`user-data`, `network-config`; cloud-config YAML) and prints each setting as one line,
# `PATH<TAB>VALUE`, for firstboot to apply: `hostname	mypi`,
# `user/ssh_authorized_keys[]	ssh-ed25519 AAAA…`, `network/wifis/wlan0/access-points/SSID/password	…`.
# Path parts are keys joined by `/` (a `/` or `%` inside a key is written %2F, %25); a list
# item is `[]` for a scalar and `[N]` for a mapping. Enough YAML for what Imager (1.8 and 2.x)
# and a person editing these files write: block mappings and lists, quoted scalars, comments;
# block scalars (`|`, `>`) are skipped and flow collections kept as text.
#   /usr/lib/filesync/nocloud FILE...
set -eu
for f in "$@"; do
    [ -r "$f" ] || { echo "nocloud: cannot read $f" >&2; exit 1; }
    awk '
    function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
    function scalar(v) {
        v = trim(v)
        if (v ~ /^".*"$/) { v = substr(v, 2, length(v) - 2); gsub(/\\"/, "\"", v); gsub(/\\\\/, "\\", v) }
        else if (v ~ /^\047.*\047$/) { v = substr(v, 2, length(v) - 2); gsub(/\047\047/, "\047", v) }
        else { sub(/[ \t]+#.*$/, "", v) }
        return v
    }
    function enc(k) { gsub(/%/, "%25", k); gsub(/\//, "%2F", k); return k }
    function join(p, k) { return p == "" ? k : p "/" k }
    # Splits "key: value" into KEY and VAL; false when the text is not a mapping entry.
    function entry(t,    q) {
        if (t ~ /^"/) {
            q = index(substr(t, 2), "\"")
            if (q == 0) return 0
            KEY = substr(t, 2, q - 1); t = substr(t, q + 2)
            if (t !~ /^:([ \t]|$)/) return 0
            VAL = substr(t, 2); return 1
        }
        if (!match(t, /^[^:#]*:([ \t]|$)/)) return 0
        KEY = trim(substr(t, 1, RLENGTH - (substr(t, RLENGTH, 1) == ":" ? 1 : 2)))
        VAL = substr(t, RLENGTH + 1)
        return 1
    }
    # A mapping entry at indent IND under PARENT: printed, or opened as a new parent.
    function put(ind, parent, t,    path, v) {
        if (!entry(t)) return
        path = join(parent, enc(KEY)); v = trim(VAL)
        if (v == "" ) { n++; sind[n] = ind; spath[n] = path; sitem[n] = 0; return }
        if (v ~ /^[|>][-+0-9]*$/) { block = ind; return }
        print path "\t" scalar(v)
    }
    BEGIN { n = 0; block = -1 }
    {
        line = $0; sub(/\r$/, "", line)
        match(line, /^ */); ind = RLENGTH; body = substr(line, ind + 1)
        if (block >= 0) { if (body == "" || ind > block) next; block = -1 }
        if (body == "" || body ~ /^#/ || body ~ /^---/) next
        if (body ~ /^-([ \t]|$)/) {
            while (n > 0 && (sind[n] > ind || (sind[n] == ind && sitem[n]))) n--
            parent = n > 0 ? spath[n] : ""
            rest = trim(substr(body, 2))
            if (rest == "" || !entry(rest)) { if (rest != "") print parent "[]\t" scalar(rest); next }
            item = parent "[" (count[parent]++) "]"
            n++; sind[n] = ind; spath[n] = item; sitem[n] = 1
            put(ind + 2, item, rest)
            next
        }
        while (n > 0 && sind[n] >= ind) n--
        put(ind, n > 0 ? spath[n] : "", body)
    }' "$f"
done
