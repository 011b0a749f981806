#!/usr/bin/env bash
# Installs the system packages Barge builds and tests with (Debian 12, as root); `--packaging` adds the packaging
# tools.
# The Swift 6 toolchain itself must already be on PATH (swift.org's Linux build).
set -euo pipefail
packages=(
    libcurl4-openssl-dev    # the transfer engine (libcurl)
    libnl-3-dev libnl-route-3-dev   # the netlink monitor
    libsqlite3-dev          # the store (GRDB links the system SQLite)
    libyaml-dev             # YAML (Yams embeds libyaml; the headers are on the design card)
    libsystemd-dev          # sd-bus: NetworkManager's and ModemManager's verdicts on the system bus
    pkg-config
    iproute2                # the network tests' namespaces and veth pairs (ip netns, ip link)
    python3                 # the network tests' origin inside a namespace (python3 -m http.server)
    nginx-light openssl     # the tests' real HTTP(S) origin (started by the tests on 127.0.0.1, free ports)
    openssh-server vsftpd samba   # the tests' sftp://, ftp(s):// and smb:// servers (private configs, free ports)
    dbus-daemon python3-dbus python3-gi   # the D-Bus tests' own bus and stand-in NetworkManager/ModemManager
)
# --packaging: also what scripts/package-deb.sh and scripts/test-package.sh use.
if [ "${1:-}" = "--packaging" ]; then
    packages+=(
        dpkg-dev pandoc         # dpkg-shlibdeps; the section-5 man pages from the docs
        lintian man-db          # the package's checks; `man -l`
        zsh fish                # the completion scripts are loaded in each shell
        debootstrap systemd-container   # a Debian 12 root to install into and boot (systemd-nspawn)
    )
fi
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing packages: ${missing[*]}; run this script as root (or: sudo apt-get install ${missing[*]})" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    [ "${BARGE_APT_UPDATED:-0}" = 1 ] || apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
fi
command -v swift >/dev/null || { echo "swift is not on PATH; install the Swift 6 toolchain first" >&2; exit 1; }
# The upload tests' tus server (tuspyserver), the upload benchmark's tus client (tuspy) and the metrics tests'
# Prometheus parser (prometheus_client), all from PyPI, in a venv of their own; BARGE_TEST_VENV names another place.
venv="${BARGE_TEST_VENV:-${HOME:-/root}/.cache/barge/test-venv}"
if ! "$venv/bin/python" -c "import tuspyserver, uvicorn, fastapi, tusclient, prometheus_client" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check tuspyserver==4.4.3 uvicorn fastapi tuspy prometheus_client
fi
