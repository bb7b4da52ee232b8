#!/usr/bin/env bash
# make package: build/pkg/efs-relay_<version>_<arch>.deb and
# build/pkg/efs-relay-<version>-1.<arch>.rpm (amd64 / x86_64 here) from the single executable in
# build/sea, with dpkg-deb and rpmbuild. The version is package.json's.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=$(node -p "require('./package.json').version")
DATE=$(date -u -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}" +%Y-%m-%d)
# The binary is a copy of this machine's node: the packages are for this machine's architecture.
DEB_ARCH=$(dpkg --print-architecture)
RPM_ARCH=$(uname -m)
BIN=build/sea/efs-relayd
OUT=build/pkg
[ -x "$BIN" ] || { echo "package.sh: $BIN is missing; run make sea first" >&2; exit 1; }
rm -rf "$OUT"
mkdir -p "$OUT"

# Files both packages carry. $1: root, $2: systemd unit dir.
stage() {
  local root=$1 unitdir=$2
  install -D -m0755 "$BIN" "$root/usr/sbin/efs-relayd"
  mkdir -p "$root/usr/bin"
  ln -s ../sbin/efs-relayd "$root/usr/bin/efsctl"
  install -D -m0644 etc/config.yaml "$root/etc/efs-relay/config.yaml"
  install -D -m0644 etc/amazon-root-cas.pem "$root/etc/efs-relay/amazon-root-cas.pem"
  install -D -m0644 etc/systemd/efs-relayd.service "$root$unitdir/efs-relayd.service"
  install -D -m0644 etc/prometheus/efs-relay-alerts.yml "$root/usr/share/efs-relay/efs-relay-alerts.yml"
  install -D -m0644 etc/prometheus/efs-relay-scrape.yml "$root/usr/share/efs-relay/efs-relay-scrape.yml"
  mkdir -p "$root/usr/share/man/man8"
  for m in efs-relayd efsctl mount.efs; do
    sed -e "s/@VERSION@/$VERSION/g" -e "s/@DATE@/$DATE/g" "packaging/man/$m.8" | gzip -9n > "$root/usr/share/man/man8/$m.8.gz"
    chmod 0644 "$root/usr/share/man/man8/$m.8.gz"
  done
  install -D -m0644 packaging/completion/efsctl.bash "$root/usr/share/bash-completion/completions/efsctl"
}

echo "package.sh: deb"
DEB=$OUT/deb-root
stage "$DEB" /lib/systemd/system
# Debian 12 still ships mount helpers in /sbin (merged into /usr/sbin on most systems).
mkdir -p "$DEB/sbin"
ln -s /usr/sbin/efs-relayd "$DEB/sbin/mount.efs"  # absolute: it crosses top-level directories (Debian policy 10.5)
install -d -m0755 "$DEB/usr/share/doc/efs-relay"
gzip -9n < packaging/changelog > "$DEB/usr/share/doc/efs-relay/changelog.gz"
cat > "$DEB/usr/share/doc/efs-relay/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: efs-relay

Files: *
Copyright: 2026 efs-relay developers
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 can be found in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
chmod 0644 "$DEB/usr/share/doc/efs-relay/"*
install -D -m0644 packaging/deb/lintian-overrides "$DEB/usr/share/lintian/overrides/efs-relay"
install -d -m0755 "$DEB/DEBIAN"
for s in postinst prerm postrm; do install -m0755 "packaging/deb/$s" "$DEB/DEBIAN/$s"; done
printf '/etc/efs-relay/config.yaml\n/etc/efs-relay/amazon-root-cas.pem\n' > "$DEB/DEBIAN/conffiles"
(cd "$DEB" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | sort | xargs md5sum) > "$DEB/DEBIAN/md5sums"
cat > "$DEB/DEBIAN/control" <<CONTROL
Package: efs-relay
Version: $VERSION
Architecture: $DEB_ARCH
Maintainer: efs-relay developers <maintainers@efs-relay.dev>
Installed-Size: $(du -sk --exclude=DEBIAN "$DEB" | cut -f1)
Depends: libc6 (>= 2.28), libstdc++6 (>= 5), libgcc-s1, nfs-common, util-linux (>= 2.20)
Conflicts: amazon-efs-utils
Section: net
Priority: optional
Homepage: https://github.com/efs-relay/efs-relay
Description: TLS tunnels for Amazon EFS mounts in one daemon
 efs-relayd keeps Amazon EFS traffic encrypted in transit: one local relay
 per file system, TLS 1.2 with AES-256-GCM verified against the Amazon root
 CAs and the file system's name. efsctl drives it; mount.efs makes
 "mount -t efs -o tls" and fstab lines of type efs work. Self-contained: no
 Node.js is needed on the host.
CONTROL
dpkg-deb --root-owner-group -Zxz -z6 --build "$DEB" "$OUT/efs-relay_${VERSION}_${DEB_ARCH}.deb" >/dev/null

echo "package.sh: rpm"
RPM=$OUT/rpm-root
stage "$RPM" /usr/lib/systemd/system
ln -s efs-relayd "$RPM/usr/sbin/mount.efs"
install -D -m0644 LICENSE "$RPM/usr/share/licenses/efs-relay/LICENSE"
install -D -m0644 packaging/changelog "$RPM/usr/share/doc/efs-relay/changelog"
sed -e "s/@VERSION@/$VERSION/g" -e "s/@ARCH@/$RPM_ARCH/g" packaging/rpm/efs-relay.spec > "$OUT/efs-relay.spec"
TOP=$(pwd)/$OUT/rpmbuild
rpmbuild -bb --quiet --target "$RPM_ARCH" \
  --define "_topdir $TOP" --define "stage $(pwd)/$RPM" --define "_binary_payload w6.xzdio" \
  "$OUT/efs-relay.spec" >/dev/null
mv "$TOP/RPMS/$RPM_ARCH/efs-relay-${VERSION}-1.${RPM_ARCH}.rpm" "$OUT/"
ls -la "$OUT"/*.deb "$OUT"/*.rpm
