#!/usr/bin/env bash
# Installs what the test suite runs against: OpenSSH (client + server), curl (libssh2) and
# rclone (Go's SSH) as more SFTP clients, rsync, unison, util-linux's setpriv, Python's
# paramiko, and rustfmt/clippy. On Debian/Ubuntu as root (or
# with sudo) it installs them; elsewhere it says exactly what is missing.
set -euo pipefail

missing_apt=()
need() { command -v "$1" >/dev/null 2>&1 || missing_apt+=("$2"); }
need sftp openssh-client
need ssh-keygen openssh-client
[[ -x /usr/sbin/sshd ]] || command -v sshd >/dev/null 2>&1 || missing_apt+=(openssh-server)
need curl curl
need rclone rclone
need rsync rsync
need unison unison
need setpriv util-linux
need python3 python3
need pip3 python3-pip

if ((${#missing_apt[@]})); then
    # shellcheck disable=SC2207
    pkgs=($(printf '%s\n' "${missing_apt[@]}" | sort -u))
    sudo=""
    if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo="sudo"
    fi
    if command -v apt-get >/dev/null 2>&1 && { [[ $(id -u) -eq 0 ]] || [[ -n $sudo ]]; }; then
        echo "installing: ${pkgs[*]}"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
    else
        echo "missing test tools; install them with your package manager: ${pkgs[*]}" >&2
        exit 1
    fi
fi

if ! python3 -c 'import paramiko' 2>/dev/null; then
    echo "installing: paramiko (pip)"
    python3 -m pip install --quiet paramiko 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages paramiko \
        || { echo "cannot install paramiko: run 'python3 -m pip install paramiko'" >&2; exit 1; }
fi

for c in rustfmt clippy; do
    if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
        if command -v rustup >/dev/null 2>&1; then
            rustup component add "$c"
        else
            echo "missing cargo $c: install the $c component of your Rust toolchain" >&2
            exit 1
        fi
    fi
done
echo "test tools ready"
