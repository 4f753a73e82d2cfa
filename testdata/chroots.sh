#!/bin/sh
# Build the Laravel version matrix's chroots (docs/laravel-queue.md), as
# root, outside the repository:
#
#   KQ_CHROOTS/trixie   Debian trixie: Laravel 10.48, PHP 8.4; and moto's
#                       server, the SQS tests' emulator (not in Debian 12)
#   KQ_CHROOTS/sid      Debian sid:    Laravel 13.x,  PHP 8.4
#
# KQ_CHROOTS defaults to /var/tmp/kqueue-chroots. Each chroot is cached: it
# is rebuilt only when its recipe (suite, packages, hooks, this script's
# build command) changes; the recipe's hash is kept in KQ_CHROOTS/SUITE.key.
# A build goes to a temporary folder first, so an interrupted build never
# leaves a chroot that looks finished.
#
# Usage: testdata/chroots.sh [SUITE...]   (default: trixie sid)
# The mirror is the host's first apt source (or KQ_MIRROR).
set -eu

root=${KQ_CHROOTS:-/var/tmp/kqueue-chroots}
suites=${*:-trixie sid}
packages=php-cli,php-redis,php-sqlite3,php-mysql,php-pgsql,php-mbstring,php-laravel-framework
# Debian installs the framework's config/ where Laravel >= 11 does not look
# for it; a fresh chroot has no /etc/hosts.
hook_config='if [ -d "$1/usr/share/php/Illuminate/config" ] && [ ! -e "$1/usr/share/config" ]; then ln -s php/Illuminate/config "$1/usr/share/config"; fi'
hook_hosts='[ -e "$1/etc/hosts" ] || printf "127.0.0.1\tlocalhost\n::1\tlocalhost\n" >"$1/etc/hosts"'

mirror=${KQ_MIRROR:-}
if [ -z "$mirror" ]; then
	for f in /etc/apt/sources.list.d/debian.sources; do
		[ -r "$f" ] && mirror=$(sed -n 's/^URIs: *//p' "$f" | head -1)
	done
fi
if [ -z "$mirror" ] && [ -r /etc/apt/sources.list ]; then
	mirror=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list)
fi
[ -n "$mirror" ] || { echo "chroots.sh: no Debian mirror found: set KQ_MIRROR" >&2; exit 1; }
if [ "$(id -u)" != 0 ]; then
	# The tests skip the Laravel 10 and 13 cases then, except under CI.
	echo "chroots.sh: building a chroot needs root; the Laravel 10 and 13 tests will be skipped" >&2
	[ -z "${CI:-}" ] || exit 1
	exit 0
fi
command -v mmdebstrap >/dev/null || { echo "chroots.sh: mmdebstrap is not installed: apt-get install mmdebstrap" >&2; exit 1; }

mkdir -p "$root"
for suite in $suites; do
	include=$packages
	[ "$suite" != trixie ] || include=$packages,python3-moto,python3-flask,python3-flask-cors
	# The key covers everything that decides what the chroot holds, not
	# the mirror (the same recipe from another mirror is the same chroot).
	key=$(printf '%s\n' "v1" "$suite" "$include" "$hook_config" "$hook_hosts" | sha256sum | cut -d' ' -f1)
	if [ -x "$root/$suite/usr/bin/php" ] && [ "$(cat "$root/$suite.key" 2>/dev/null)" = "$key" ]; then
		echo "chroot $suite: cached ($root/$suite)"
		continue
	fi
	echo "chroot $suite: building $root/$suite"
	start=$(date +%s)
	rm -rf "$root/$suite.new"
	mmdebstrap --quiet --mode=root --variant=apt \
		--aptopt='Acquire::Check-Valid-Until "false"' --aptopt='APT::Install-Recommends "false"' \
		--include="$include" \
		--customize-hook="$hook_config" \
		--customize-hook="$hook_hosts" \
		"$suite" "$root/$suite.new" "$mirror"
	rm -rf "$root/$suite" "$root/$suite.key"
	mv "$root/$suite.new" "$root/$suite"
	echo "$key" >"$root/$suite.key"
	echo "chroot $suite: built in $(($(date +%s) - start))s: $(chroot "$root/$suite" php -r 'echo "PHP ", PHP_VERSION;'), Laravel $(sed -n "s/.*const VERSION = '\\(.*\\)';/\\1/p" "$root/$suite/usr/share/php/Illuminate/Foundation/Application.php")"
done
