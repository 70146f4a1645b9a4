#!/usr/bin/env bash
# Installs what the test suite runs against: OpenSSH (client + server), the SFTP client stacks
# phone and desktop apps embed (curl/libssh2, rclone/Go, PuTTY, libssh, JSch, Trilead, Ruby
# net-sftp from Debian; paramiko and asyncssh from PyPI; node's ssh2 from npm), rsync, unison,
# restic, the applications people point at a hub (sshfs, lftp, duplicity, gio/gvfs),
# util-linux's setpriv, iproute2 (network namespaces for the mDNS test),
# fusefat/fuse/dosfstools and fusepy (receivers that fold names), and rustfmt/clippy. On
# Debian/Ubuntu as root (or with sudo) it installs them; elsewhere it says exactly what is
# missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing_apt=()
need() { command -v "$1" >/dev/null 2>&1 || missing_apt+=("$2"); }
need_file() { [[ -e $1 ]] || missing_apt+=("$2"); }
need sftp openssh-client
need ssh-keygen openssh-client
[[ -x /usr/sbin/sshd ]] || command -v sshd >/dev/null 2>&1 || missing_apt+=(openssh-server)
need curl curl
need rclone rclone
need restic restic
need scp openssh-client
need rsync rsync
need unison unison
need setpriv util-linux
need ip iproute2
need python3 python3
need pip3 python3-pip
need psftp putty-tools
need puttygen putty-tools
need cc gcc
need_file /usr/include/libssh/libssh.h libssh-dev
# Desktop and backup applications pointed at the hub (tests/integration/server_apps.rs).
need sshfs sshfs
need lftp lftp
need duplicity duplicity
# duplicity's sftp backend runs on Debian's python3 and needs its paramiko.
/usr/bin/python3 -c 'import paramiko' 2>/dev/null || missing_apt+=(python3-paramiko)
need gio libglib2.0-bin
need dbus-run-session dbus-daemon
need ssh-agent openssh-client
need_file /usr/libexec/gvfsd-sftp gvfs-backends
need_file /usr/libexec/gvfsd gvfs-daemons
need java default-jdk-headless
need javac default-jdk-headless
need_file /usr/share/java/jsch.jar libjsch-java
need_file /usr/share/java/jenkins-trilead-ssh2.jar libjenkins-trilead-ssh2-java
need ruby ruby
ruby -e 'require "net/sftp"' 2>/dev/null || missing_apt+=(ruby-net-sftp)
need node nodejs
need npm npm
# Receivers that fold names (tests/integration/sync_fold.rs): a FAT image and a FUSE one.
need fusefat fusefat
need fusermount fuse
need_file /usr/sbin/mkfs.vfat dosfstools
# The Windows check (cross/windows-check.sh): mingw-w64 builds it, wine64 runs it.
need wine wine
[[ -x /usr/lib/wine/wine64 ]] || missing_apt+=(wine64)
need x86_64-w64-mingw32-gcc gcc-mingw-w64-x86-64
/sbin/ldconfig -p 2>/dev/null | grep -q 'libfuse\.so\.2 ' || missing_apt+=(libfuse2)

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

for module in paramiko asyncssh; do
    if ! python3 -c "import $module" 2>/dev/null; then
        echo "installing: $module (pip)"
        python3 -m pip install --quiet "$module" 2>/dev/null \
            || python3 -m pip install --quiet --break-system-packages "$module" \
            || { echo "cannot install $module: run 'python3 -m pip install $module'" >&2; exit 1; }
    fi
done

# fusepy (module `fuse`) runs tests/integration/foldfs/foldfs.py.
if ! python3 -c "import fuse" 2>/dev/null; then
    echo "installing: fusepy (pip)"
    python3 -m pip install --quiet fusepy 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages fusepy \
        || { echo "cannot install fusepy: run 'python3 -m pip install fusepy'" >&2; exit 1; }
fi

# node's ssh2 at the version package-lock.json pins, pure JavaScript (no native builds).
if [[ ! -d tests/clients/node_modules/ssh2 ]]; then
    echo "installing: ssh2 (npm)"
    npm ci --prefix tests/clients --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null \
        || { echo "cannot install node's ssh2: run 'npm ci --prefix tests/clients --ignore-scripts'" >&2; exit 1; }
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
