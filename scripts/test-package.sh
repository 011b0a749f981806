#!/usr/bin/env bash
# Checks the Debian package end to end (CI runs it after the test suite; as root):
#   1. scripts/package-deb.sh builds it;
#   2. lintian: no error (its warnings and infos are printed);
#   3. each man page renders with `man -l`, without a warning from groff;
#   4. each completion script loads in bash, zsh and fish, and completes a subcommand;
#   5. in a Debian 12 root made by debootstrap: `dpkg -i`, then the root is booted with systemd-nspawn, where
#      `systemctl start barge` must succeed (Type=notify: the agent said READY=1), `barge status` must answer over
#      the control socket, the `barge` group must exist and the unit must still be disabled (nothing enabled
#      without being asked).
# BARGE_DEB_ROOT names the root (default /var/tmp/barge-deb-root; made once, reused).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run as root (dpkg, debootstrap, systemd-nspawn)" >&2; exit 1; }
bash scripts/install-deps.sh --packaging

echo "== package"
deb=$(bash scripts/package-deb.sh)
echo "$deb"
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'

contents=$(mktemp -d)
trap 'rm -rf "$contents"' EXIT

echo "== lintian (errors fail; overrides: packaging/debian/lintian-overrides)"
status=0
lintian --fail-on error --display-level ">=info" "$deb" > "$contents/lintian.txt" 2>&1 || status=$?
grep -v "^running with root privileges" "$contents/lintian.txt" || true
[ "$status" -eq 0 ] || { echo "lintian found errors (exit status $status)" >&2; exit 1; }
echo "lintian: no error; overridden, with the reasons: $(grep -v "^#" packaging/debian/lintian-overrides | tr "\n" " ")"
dpkg-deb -x "$deb" "$contents"

echo "== man pages"
for page in "$contents"/usr/share/man/man*/*.gz; do
    warnings=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null || echo "man failed")
    [ -z "$warnings" ] || { echo "$(basename "$page"): $warnings" >&2; exit 1; }
    lines=$(MANWIDTH=80 man -l "$page" 2>/dev/null | wc -l)
    [ "$lines" -gt 20 ] || { echo "$(basename "$page") rendered only $lines lines" >&2; exit 1; }
    echo "$(basename "$page"): $lines lines, no warning"
done

echo "== completions"
completions=$contents/usr/share
bash -c "source '$completions/bash-completion/completions/barge' && complete -p barge" 
zsh -f -c "autoload -Uz compinit && compinit -u -d '$contents/zcompdump' && source '$completions/zsh/vendor-completions/_barge' && (( \$+functions[_barge] )) && echo 'zsh: _barge defined'"
offered=$(fish -c "source '$completions/fish/vendor_completions.d/barge.fish'; complete -C 'barge sta'")
echo "fish offers for 'barge sta': $offered"
grep -q '^status' <<<"$offered" || { echo "fish did not complete 'barge sta' to status" >&2; exit 1; }

echo "== dpkg -i and systemctl start barge in a Debian 12 root"
root=${BARGE_DEB_ROOT:-/var/tmp/barge-deb-root}
if [ ! -x "$root/lib/systemd/systemd" ]; then
    mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
    debootstrap --variant=minbase \
        --include=systemd,systemd-sysv,dbus,libcurl4,libnl-route-3-200,libsqlite3-0,adduser,ca-certificates \
        bookworm "$root" "${mirror:-http://deb.debian.org/debian}" >/dev/null
fi
nspawn=(systemd-nspawn -D "$root" --quiet --register=no --keep-unit --private-network)
cp "$deb" "$root/root/barge.deb"
"${nspawn[@]}" dpkg -i /root/barge.deb
cat > "$root/root/check.sh" <<'CHECK'
#!/bin/sh
# Runs once the container has booted; its output is read by the host after the container powers off.
exec > /root/check.log 2>&1
systemctl start barge && echo "started"
systemctl is-active barge
barge status && echo "status answered"
getent group barge
echo "enabled: $(systemctl is-enabled barge)"
systemctl stop barge && echo "stopped"
systemctl poweroff
CHECK
chmod 0755 "$root/root/check.sh"
cat > "$root/etc/systemd/system/barge-package-check.service" <<'UNIT'
[Unit]
Description=Checks the barge package once the system is up
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/root/check.sh
[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/barge-package-check.service \
    "$root/etc/systemd/system/multi-user.target.wants/barge-package-check.service"
rm -f "$root/root/check.log"
timeout 180 "${nspawn[@]}" --boot >/dev/null 2>&1 || true
rm -f "$root/etc/systemd/system/multi-user.target.wants/barge-package-check.service"
cat "$root/root/check.log"
for expected in "^started$" "^active$" "^status answered$" "^barge:x:" "^enabled: disabled$" "^stopped$"; do
    grep -q "$expected" "$root/root/check.log" || { echo "missing in the booted root: $expected" >&2; exit 1; }
done
"${nspawn[@]}" dpkg --purge barge >/dev/null
echo "the package installs, starts under systemd, answers, stops and purges"
