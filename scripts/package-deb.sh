#!/usr/bin/env bash
# Builds barge_VERSION_ARCH.deb from the release build: the binary, the system and user units, the sample config,
# an empty /etc/barge/manifests.d, the man pages barge(1) (from the argument parser), barge.yaml(5) and
# barge-manifest(5) (from docs/config.md and docs/manifest.md, by pandoc), bash/zsh/fish completions (from the
# argument parser), the docs, and maintainer scripts that make the `barge` system group and enable nothing.
#
#   scripts/package-deb.sh [OUTPUT-DIRECTORY]      (default: .build/deb; prints the .deb's path)
#
# Needs dpkg-dev and pandoc (scripts/install-deps.sh installs them); lintian checks the result in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${1:-$root/.build/deb}
mkdir -p "$out"
out=$(cd "$out" && pwd)

bin=$(bash scripts/build-release.sh barge)
barge="$bin/barge"
version=$("$barge" --version)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg="$stage/barge"

install -D -m 0755 "$barge" "$pkg/usr/bin/barge"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$pkg/usr/bin/barge"

# Units: the binary is /usr/bin/barge here (the units in etc/ name /usr/local/bin for a hand install).
install -D -m 0644 etc/systemd/barge.service "$pkg/lib/systemd/system/barge.service"
install -D -m 0644 etc/systemd/user/barge.service "$pkg/usr/lib/systemd/user/barge.service"
sed -i 's|/usr/local/bin/barge|/usr/bin/barge|' "$pkg/lib/systemd/system/barge.service" \
    "$pkg/usr/lib/systemd/user/barge.service"
sed -i '/^#   install -m 0644/d; /^#   systemctl daemon-reload/d' "$pkg/lib/systemd/system/barge.service"

# The sample config (a conffile) and the drop-in directory, empty: nothing is mirrored until a manifest is added.
install -D -m 0644 etc/barge/barge.yaml "$pkg/etc/barge/barge.yaml"
install -d -m 0755 "$pkg/etc/barge/manifests.d"

# Man pages.
man1="$pkg/usr/share/man/man1"
man5="$pkg/usr/share/man/man5"
install -d "$man1" "$man5"
bash scripts/man/generate.sh "$version" "$stage/man"
for page in barge.1 barge.yaml.5 barge-manifest.5; do
    section=${page##*.}
    gzip -9n -c "$stage/man/$page" > "$pkg/usr/share/man/man$section/$page.gz"
done

# Shell completions, as the argument parser makes them.
install -d "$pkg/usr/share/bash-completion/completions" "$pkg/usr/share/zsh/vendor-completions" \
    "$pkg/usr/share/fish/vendor_completions.d"
# (bash's without its #! line: the file is sourced, never run.)
"$barge" --generate-completion-script bash | sed '1{/^#!/d}' > "$pkg/usr/share/bash-completion/completions/barge"
"$barge" --generate-completion-script zsh > "$pkg/usr/share/zsh/vendor-completions/_barge"
"$barge" --generate-completion-script fish > "$pkg/usr/share/fish/vendor_completions.d/barge.fish"
chmod 0644 "$pkg"/usr/share/*/*completions*/*

# Documentation (the units' Documentation= names agent.md), the copyright file and the changelog (a native package's).
doc="$pkg/usr/share/doc/barge"
install -d "$doc"
install -m 0644 docs/*.md "$doc/"
install -m 0644 packaging/debian/copyright "$doc/copyright"
sed "s/@VERSION@/$version/; s/@DATE@/$(date -R -u -d @"${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}")/" \
    packaging/debian/changelog | gzip -9n > "$doc/changelog.gz"

# Lintian's overrides, each with its reason (packaging/debian/lintian-overrides).
install -D -m 0644 packaging/debian/lintian-overrides "$pkg/usr/share/lintian/overrides/barge"

# Control files.
install -d "$pkg/DEBIAN"
for script in postinst prerm postrm; do
    install -m 0755 "packaging/debian/$script" "$pkg/DEBIAN/$script"
done
printf '/etc/barge/barge.yaml\n' > "$pkg/DEBIAN/conffiles"
# The shared libraries' packages, as dpkg-shlibdeps finds them (it wants a debian/control beside it).
mkdir -p "$stage/shlibs/debian"
printf 'Source: barge\n\nPackage: barge\nArchitecture: any\n' > "$stage/shlibs/debian/control"
depends=$(cd "$stage/shlibs" && dpkg-shlibdeps -O "$pkg/usr/bin/barge" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@DEPENDS@/$depends, adduser/" -e "s/@SIZE@/$size/" \
    packaging/debian/control > "$pkg/DEBIAN/control"
(cd "$pkg" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) > "$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/md5sums" "$pkg/DEBIAN/conffiles" "$pkg/DEBIAN/control"

deb="$out/barge_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >&2
echo "$deb"
