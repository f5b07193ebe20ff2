#!/usr/bin/env bash
# Install everything gitfs-p2p needs on a Debian machine: system packages, a
# virtual environment in .venv, and the package itself in editable mode.
# Idempotent: a second run only checks, and installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
    fuse3 libfuse3-dev pkg-config gcc python3-dev git     # the mount (pyfuse3 builds from source)
    transmission-cli transmission-daemon aria2             # stock BitTorrent clients for interop
    rtorrent qbittorrent-nox                               # more stock clients (a few interop pairs)
    python3-libtorrent opentracker                         # libtorrent peer, Debian's tracker
    iproute2                                               # `ip`: the interop test's private network namespace
    gnupg                                                  # gpg: signed tags verify after a transfer; OpenPGP-signed manifests
    busybox                                                # its httpd (Range requests): a plain web seed in a test
)
PYTHON=${PYTHON:-python3}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: installing system packages: ${missing[*]}" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "setup: need root or sudo to install ${missing[*]}" >&2; exit 1; }
        SUDO=sudo
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating virtual environment .venv" >&2
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.gitfs-p2p-installed
rebuild=""
[ -f "$stamp" ] || rebuild=yes
for f in setup.cfg setup.py pyproject.toml gitfs_p2p/pack/*.c; do
    if [ "$f" -nt "$stamp" ]; then rebuild=yes; fi
done
if [ -n "$rebuild" ]; then
    echo "setup: installing gitfs-p2p (compiling its C part) and its test tools into .venv" >&2
    .venv/bin/pip install -q --upgrade pip >/dev/null
    .venv/bin/pip install -q -e '.[test]'
    touch "$stamp"
fi
