#!/usr/bin/env bash
# Builds dist/kqueue_VERSION_ARCH.deb (make deb). The version is the top
# entry of packaging/debian/changelog; the binary reports the same. The binary
# links glibc dynamically (cgo), as Debian expects of a binary package, and
# user lookups go through NSS.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
go=${GO:-go}
deb=packaging/debian
version=$(dpkg-parsechangelog -l "$deb/changelog" -S Version)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
p=$stage/kqueue

install -d "$p/DEBIAN" "$p/usr/bin" "$p/lib/systemd/system" "$p/usr/share/kqueue/php" \
	"$p/usr/lib/tmpfiles.d" "$p/etc/kqueue" "$p/usr/share/doc/kqueue"
CGO_ENABLED=1 GOARCH=$arch "$go" build -trimpath -buildvcs=false -buildmode=pie \
	-ldflags "-s -w -linkmode=external -extldflags=-Wl,-z,relro,-z,now -X main.version=$version -X github.com/kqueue/kqueue/exec/php.Dir=/usr/share/kqueue/php" \
	-o "$p/usr/bin/kqueue" ./cmd/kqueue
install -d "$p/usr/share/man/man1"
gzip -9n <packaging/kqueue.1 >"$p/usr/share/man/man1/kqueue.1.gz"
install -m 644 units/*.* "$p/lib/systemd/system/"
install -d "$p/lib/systemd/system-generators"
install -m 755 units/generators/kqueue-generator "$p/lib/systemd/system-generators/"
install -m 644 exec/php/*.php "$p/usr/share/kqueue/php/"
# Prometheus alert rules and a Grafana dashboard, for operators to copy.
install -d "$p/usr/share/kqueue/monitoring"
install -m 644 packaging/monitoring/kqueue-rules.yml packaging/monitoring/kqueue-dashboard.json "$p/usr/share/kqueue/monitoring/"
# The optional Laravel package, Debian style: require_once '/usr/share/php/KQueue/autoload.php'.
for d in . Console Contracts Jobs; do
	install -d "$p/usr/share/php/KQueue/$d"
	install -m 644 php-library/src/$d/*.php "$p/usr/share/php/KQueue/$d/"
done
install -m 644 kqueue.toml "$p/etc/kqueue/default.toml"
install -m 644 "$deb/tmpfiles.conf" "$p/usr/lib/tmpfiles.d/kqueue.conf"
install -m 644 "$deb/copyright" README.md "$p/usr/share/doc/kqueue/"
gzip -9n <"$deb/changelog" >"$p/usr/share/doc/kqueue/changelog.gz"
chmod 644 "$p/usr/share/doc/kqueue/changelog.gz"

install -m 755 "$deb/postinst" "$deb/prerm" "$deb/postrm" "$p/DEBIAN/"
install -m 644 "$deb/conffiles" "$p/DEBIAN/"
# The newest glibc symbol version the binary needs.
libc=$(objdump -T "$p/usr/bin/kqueue" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n1)
size=$(du -sk --exclude=DEBIAN "$p" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" -e "s/@LIBC@/$libc/" "$deb/control" >"$p/DEBIAN/control"
(cd "$p" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\0' | sort -z | xargs -0 md5sum) >"$p/DEBIAN/md5sums"
chmod 644 "$p/DEBIAN/md5sums"

mkdir -p dist
out=dist/kqueue_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$p" "$out" >/dev/null
echo "$out"
