#!/usr/bin/env bash
# The VM tier: a real Debian 12 with systemd as PID 1 and pure cgroup v2,
# booted under qemu (TCG, no KVM needed), runs packaging/vm/guest-test.sh
# against the kqueue .deb and reports back through a 9p shared folder.
#
#   packaging/vm/vm.sh image     build the image, or reuse the cached one
#   packaging/vm/vm.sh run       boot it, run the guest test, power off
#   packaging/vm/vm.sh shell     boot it with a root shell on this terminal
#
# The image (about 700 MB, 2.5 min to build) is cached in $VM_WORK, outside the
# repository, keyed by everything that goes into it (VM_EPOCH adds to the key,
# e.g. VM_EPOCH=$(date +%G-%V) for a weekly rebuild with security updates).
# The .debs, the fixture app and the test travel on the share, so changing
# them never rebuilds the image. Pass/fail comes from the guest's rc file:
# qemu exits 0 on a poweroff, a reboot and a panic alike.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=${VM_WORK:-/var/tmp/kqueue-vm}
suite=bookworm
sources=${VM_SOURCES:-/etc/apt/sources.list.d/debian.sources}
# The guest is offline: everything the package depends on is in the image.
packages=systemd,systemd-sysv,udev,dbus,iproute2,ca-certificates,kmod,procps,curl,e2fsprogs,linux-image-amd64,php-cli,php-redis,php-sqlite3,php-pgsql,php-mbstring,php-laravel-framework,redis-server,postgresql
size=3G
timeout=${VM_TIMEOUT:-1200}
share=$work/share
out=$work/out

log() { printf '[vm %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

key() {
	{
		cat "$here/image-hooks.sh"
		echo "$suite $packages $size ${VM_EPOCH:-}"
	} | sha256sum | cut -c1-12
}

image() {
	local dir
	dir=$work/image-$(key)
	if [ -s "$dir/rootfs.img" ] && [ -s "$dir/vmlinuz" ] && [ -s "$dir/initrd.img" ]; then
		log "image: cached in $dir"
	else
		log "image: building $dir (about 2.5 min)"
		mkdir -p "$work/debcache"
		rm -rf "$dir" "$work/rootfs"
		mkdir -p "$dir"
		local t0=$SECONDS
		mmdebstrap --mode=root --variant=apt --quiet \
			--aptopt='APT::Install-Recommends "false"' \
			--dpkgopt='path-exclude=/usr/share/man/*' \
			--dpkgopt='path-exclude=/usr/share/doc/*' \
			--dpkgopt='path-include=/usr/share/doc/*/copyright' \
			--include="$packages" \
			--setup-hook="mkdir -p \"\$1/var/cache/apt/archives\" && cp -a '$work/debcache/.' \"\$1/var/cache/apt/archives/\"" \
			--essential-hook="'$here/image-hooks.sh' essential \"\$1\"" \
			--customize-hook="'$here/image-hooks.sh' customize \"\$1\"" \
			--customize-hook="cp -a \"\$1\"/var/cache/apt/archives/*.deb '$work/debcache/'" \
			--customize-hook="cp \"\$1\"/boot/vmlinuz-* '$dir/vmlinuz'; cp \"\$1\"/boot/initrd.img-* '$dir/initrd.img'" \
			--skip=essential/unlink \
			"$suite" "$work/rootfs" "$sources"
		mkfs.ext4 -q -F -L root -d "$work/rootfs" "$dir/rootfs.img" "$size"
		rm -rf "$work/rootfs"
		log "image: built in $((SECONDS - t0)) s"
	fi
	# Older images are stale now.
	find "$work" -maxdepth 1 -name 'image-*' ! -path "$dir" -exec rm -rf {} +
	ln -sfn "$dir" "$work/image"
}

qemu() { # extra kernel arguments…
	QEMU=(qemu-system-x86_64 -nodefaults -no-user-config -no-reboot
		-accel tcg,thread=multi -cpu qemu64 -smp "$(nproc)" -m 2048 -display none
		-kernel "$work/image/vmlinuz" -initrd "$work/image/initrd.img"
		-append "root=/dev/vda rw console=ttyS0 panic=-1 quiet systemd.unified_cgroup_hierarchy=1 $*"
		-drive "file=$work/image/rootfs.img,if=virtio,format=raw,snapshot=on"
		-virtfs "local,path=$share,mount_tag=share,security_model=none,id=share"
		-device virtio-rng-pci -nic none)
}

# run DEB_DIR [TEST]: the guest installs kqueue from an apt repository of
# DEB_DIR and runs TEST (default: guest-test.sh).
run() {
	local debs=${1:?usage: vm.sh run DEB_DIR [TEST]} test=${2:-$here/guest-test.sh}
	image
	rm -rf "$share" "$out"
	mkdir -p "$share/out" "$out"
	cp -r "$debs" "$share/repo"
	cp -r "$root/testdata/app" "$share/app"
	install -m 755 "$test" "$share/guest-test.sh"
	qemu "ci.timeout=$((timeout - 60))"
	log "run: booting (TCG; about 20 s to boot, then the test)"
	local t0=$SECONDS rc=0
	timeout --kill-after=10 "$timeout" "${QEMU[@]}" \
		-serial "file:$out/console.log" -serial "file:$out/runner.log" || rc=$?
	cp -a "$share/out/." "$out/"
	log "run: qemu exited ($rc) after $((SECONDS - t0)) s; logs in $out"
	[ -s "$out/summary.txt" ] && cat "$out/summary.txt"
	local guest
	guest=$(cat "$out/rc" 2>/dev/null || echo missing)
	if [ "$guest" != 0 ]; then
		log "run: guest test rc=$guest"
		[ -s "$out/test.log" ] || tail -n 40 "$out/console.log" >&2 || true
		return 1
	fi
}

shell() {
	image
	mkdir -p "$share"
	qemu ci.norun
	exec "${QEMU[@]}" -serial mon:stdio
}

case "${1:-}" in
image) image ;;
run) run "${2:-}" "${3:-}" ;;
shell) shell ;;
*)
	echo "usage: $0 image | run DEB_DIR [TEST] | shell" >&2
	exit 2
	;;
esac
