#!/usr/bin/env bash
# Builds a flat apt repository in dist/apt from the .debs in dist (make
# apt-repo). Serve or copy the folder anywhere, then on each host:
#
#   echo 'deb [trusted=yes] file:/srv/kqueue-apt ./' >/etc/apt/sources.list.d/kqueue.list
#   apt-get update && apt-get install kqueue
#
# The repository is unsigned, hence trusted=yes: it is meant for your own
# hosts, reached over a channel you already trust.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=dist/apt
rm -rf "$repo"
mkdir -p "$repo"
cp dist/*.deb "$repo/"
cd "$repo"
dpkg-scanpackages --multiversion . /dev/null 2>/dev/null >Packages
gzip -9nk Packages
{
	echo "Origin: kqueue"
	echo "Label: kqueue"
	echo "Suite: stable"
	echo "Codename: kqueue"
	echo "Architectures: $(dpkg --print-architecture) all"
	echo "Date: $(LC_ALL=C date -Ru)"
	echo "Description: kqueue packages"
	echo "SHA256:"
	for f in Packages Packages.gz; do
		printf ' %s %s %s\n' "$(sha256sum "$f" | cut -d' ' -f1)" "$(stat -c %s "$f")" "$f"
	done
} >Release
echo "$repo"
