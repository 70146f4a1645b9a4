# Shared by the build scripts (cross/, image/, benches/, scripts/): logging, where cargo's
# output is, and installing Debian packages. Source it after `cd` to the repository root.

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Where cargo puts what it builds: CARGO_TARGET_DIR, a config's build.target-dir, or target/.
# Cargo is asked rather than guessed, so every script finds the binary cargo made.
target_dir() {
    local meta dir
    meta=$(cargo metadata --format-version 1 --no-deps 2>&1) ||
        die "cannot ask cargo where its output goes: $(printf '%s' "$meta" | tail -n1)"
    dir=$(printf '%s' "$meta" | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    [ -n "$dir" ] || die "cargo metadata names no target_directory"
    printf '%s\n' "$dir"
}

# `SCRIPT --check-deps`: list the Debian packages the script installs and check that the
# archive has each, then stop before building anything (see deps_checked).
CHECK_DEPS=${CHECK_DEPS:-0}
for arg in "$@"; do [ "$arg" = --check-deps ] && CHECK_DEPS=1; done
deps_failed=0

# Installs the Debian packages that are missing (as root), else says what to install.
apt_install() {
    if [ "$CHECK_DEPS" = 1 ]; then
        local p state
        for p in "$@"; do
            if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed'; then
                state=installed
            elif apt-cache show --no-all-versions "$p" >/dev/null 2>&1; then
                state="to install"
            else
                state="NOT IN THE ARCHIVE (or run apt-get update)"; deps_failed=1
            fi
            printf '  %-28s %s\n' "$p" "$state" >&2
        done
        return 0
    fi
    local missing=()
    for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        die "missing packages; run: sudo apt-get install ${missing[*]}"
    fi
}

# Ends a --check-deps run after the script's apt_install calls: 0 when every package is there.
deps_checked() {
    [ "$CHECK_DEPS" = 1 ] || return 0
    [ "$deps_failed" = 0 ] || die "some packages are not in the archive"
    exit 0
}

# Fails naming the package when a command a script runs is not there after installing.
need_cmd() { # need_cmd COMMAND PACKAGE
    command -v "$1" >/dev/null || die "$1 is missing: apt-get install $2"
}
