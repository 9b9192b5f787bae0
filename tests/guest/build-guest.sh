#!/usr/bin/env bash
# Copied from the project's shared tools (../shared/tools/build-guest.sh) so a clean checkout has it.
# Builds a tiny real guest from Debian packages: the cloud kernel and a busybox initramfs whose
# /init loads virtio-net, asks DHCP on eth0, pings target= from the kernel command line, prints
# GUEST: lines on the serial console and powers off. Output: DIR/vmlinuz, DIR/initrd.gz.
# Boot (TCG; this machine's KVM is PVM and boots no stock kernel):
#   qemu-system-x86_64 -accel tcg -m 256 -nographic -no-reboot -kernel DIR/vmlinuz -initrd DIR/initrd.gz \
#     -append "console=ttyS0 quiet panic=-1 target=IP" -netdev tap,id=n0,ifname=TAP,script=no,downscript=no \
#     -device virtio-net-pci,netdev=n0          # or -netdev tap,id=n0,fd=3 3<>/dev/tapN for macvtap
set -eu
DIR=${1:-/tmp/realguest}
mkdir -p "$DIR/dl" && cd "$DIR/dl"
command -v cpio >/dev/null || apt-get install -y -qq cpio >/dev/null
command -v qemu-system-x86_64 >/dev/null || apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null
KPKG=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image/{print $2; exit}')
[ -f .got ] || { apt-get download busybox-static "$KPKG" >/dev/null 2>&1; touch .got; }
rm -rf k bb ir && dpkg-deb -x linux-image-*.deb k && dpkg-deb -x busybox-static*.deb bb
M=$(ls -d k/lib/modules/*)
mkdir -p ir/bin ir/proc ir/sys ir/dev ir/mod
cp bb/bin/busybox ir/bin/
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net; do
  cp "$(find "$M" -name "$m.ko" | head -1)" ir/mod/
done
cat > ir/init <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net; do insmod /mod/$m.ko; done
printf '#!/bin/sh\ncase "$1" in bound|renew) ip addr add "$ip/${mask:-24}" dev "$interface"; [ -n "$router" ] && ip route add default via "${router%%%% *}";; esac\n' > /udhcpc.sh
chmod +x /udhcpc.sh
ip link set lo up; ip link set eth0 up
udhcpc -i eth0 -n -q -t 5 -s /udhcpc.sh && echo "GUEST: lease $(ip -4 -o addr show dev eth0 | awk '{print $4}')"
T=$(sed -n 's/.*target=\([^ ]*\).*/\1/p' /proc/cmdline)
ping -c 2 -W 1 "$T" >/dev/null && echo "GUEST: ping $T ok" || echo "GUEST: ping $T failed"
poweroff -f
INIT
chmod +x ir/init
(cd ir && find . | cpio -o -H newc 2>/dev/null | gzip -1 > "$DIR/initrd.gz")
cp k/boot/vmlinuz-* "$DIR/vmlinuz"
ls -la "$DIR/vmlinuz" "$DIR/initrd.gz"
