#!/bin/sh
# mmdebstrap hooks for the VM image (packaging/vm/vm.sh). $2 is the root
# file system being built.
#   essential   before the kernel is installed: a small initrd (virtio, ext4)
#   customize   after every package: boot, console, and the test runner
set -eu
r=$2

essential() {
	# MODULES=list keeps the initrd at about 6 MB (the default probes for
	# every kind of hardware); ext4's metadata checksums need crc32c.
	mkdir -p "$r/etc/initramfs-tools/conf.d" "$r/usr/share/initramfs-tools/modules.d"
	printf 'MODULES=list\nCOMPRESS=zstd\n' >"$r/etc/initramfs-tools/conf.d/kqueue-vm.conf"
	printf 'virtio_pci\nvirtio_blk\next4\ncrc32c_generic\n' >"$r/usr/share/initramfs-tools/modules.d/kqueue-vm"
}

customize() {
	echo kqueue-vm >"$r/etc/hostname"
	printf '127.0.0.1 localhost\n127.0.1.1 kqueue-vm\n' >"$r/etc/hosts"
	echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' >"$r/etc/fstab"
	# Root logs in on the serial console without a password (vm.sh shell).
	chroot "$r" passwd -dq root
	mkdir -p "$r/etc/systemd/system/serial-getty@ttyS0.service.d"
	cat >"$r/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'UNIT'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --keep-baud 115200 %I $TERM
UNIT
	# Timers that would take the dpkg lock (or just CPU) during the test.
	for u in apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service \
		dpkg-db-backup.timer fstrim.timer e2scrub_all.timer e2scrub_reap.service getty@tty1.service; do
		ln -sf /dev/null "$r/etc/systemd/system/$u"
	done

	# The runner: once the boot is done, mount the share, run the test, keep
	# its exit code and the journal there, power off.
	cat >"$r/usr/local/sbin/kqueue-vm-runner" <<'RUNNER'
#!/bin/bash
set -u
exec > >(tee -a /dev/ttyS1) 2>&1
rc=99
modprobe 9pnet_virtio || true
mkdir -p /mnt/share
if mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=none share /mnt/share; then
	limit=$(sed -n 's/.*ci.timeout=\([0-9]*\).*/\1/p' /proc/cmdline)
	timeout --kill-after=15 "${limit:-600}" /mnt/share/guest-test.sh /mnt/share/out 2>&1 | tee /mnt/share/out/test.log
	rc=${PIPESTATUS[0]}
	journalctl -b --no-pager -o short-monotonic >/mnt/share/out/journal.txt 2>&1 || true
	echo "$rc" >/mnt/share/out/rc
	sync
	umount /mnt/share || true
else
	echo "kqueue-vm-runner: cannot mount the share"
fi
echo "kqueue-vm-runner: rc=$rc"
systemctl poweroff --no-block
RUNNER
	chmod 755 "$r/usr/local/sbin/kqueue-vm-runner"
	# Type=simple after multi-user.target: the boot finishes, so the test can
	# wait for it (is-system-running --wait).
	cat >"$r/etc/systemd/system/kqueue-vm-runner.service" <<'UNIT'
[Unit]
Description=kqueue end-to-end test runner
After=multi-user.target
ConditionKernelCommandLine=!ci.norun

[Service]
Type=simple
ExecStart=/usr/local/sbin/kqueue-vm-runner
StandardInput=null
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
UNIT
	chroot "$r" systemctl enable kqueue-vm-runner.service
	# The guest has no network; the local kqueue repository is its only source.
	rm -f "$r/etc/apt/sources.list" "$r/etc/apt/sources.list.d/"*
}

"$1"
