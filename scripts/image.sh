#!/usr/bin/env bash
# Builds the Furiwake appliance: a bootable x86-64 disk image (raw and
# qcow2) of Debian 12 with the furiwake package installed (README, "The
# appliance image"). It boots by BIOS or UEFI (GRUB), brings the kernel
# console and a login up on the serial port ttyS0, reserves hugepages on
# the kernel command line and starts furiwake.service. The operator
# account, `admin`, logs in to the Furiwake console; there is no network
# login and no root login.
#
#   sudo bash scripts/image.sh [options]
#     --out DIR              where the images go (target/image)
#     --config FILE          the appliance's /etc/furiwake/furiwake.toml
#                            (default: the package's, which serves nothing)
#     --password-file FILE   the admin password (first line); without it
#                            (or --password-hash) a random one is made,
#                            written to DIR/admin-password and must be
#                            changed at the first login
#     --password-hash HASH   the admin password as a crypt(3) hash
#     --root-password-file FILE  a root login on the serial console too
#                            (recovery, tests); root is locked without it
#     --hugepages N          2 MiB hugepages reserved at boot (512)
#     --isolcpus LIST        CPUs kept off the scheduler for the workers
#     --deb FILE             the package to install (default: scripts/deb.sh)
#     --mirror URL           the Debian mirror (http://deb.debian.org/debian)
#
# Needs root (the image's files are root's); no loop device or mount:
# the root file system is made from a directory (mkfs.ext4 -d), the EFI
# system partition with mtools, GRUB's images with grub-mkimage.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

out=target/image config="" password_file="" password_hash="" root_password_file="" hugepages=512 isolcpus="" deb=""
mirror=http://deb.debian.org/debian
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        --config) config="$2"; shift 2 ;;
        --password-file) password_file="$2"; shift 2 ;;
        --password-hash) password_hash="$2"; shift 2 ;;
        --root-password-file) root_password_file="$2"; shift 2 ;;
        --hugepages) hugepages="$2"; shift 2 ;;
        --isolcpus) isolcpus="$2"; shift 2 ;;
        --deb) deb="$2"; shift 2 ;;
        --mirror) mirror="$2"; shift 2 ;;
        *) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "image.sh: run as root" >&2; exit 1; }
[[ "$hugepages" =~ ^[0-9]+$ ]] || { echo "image.sh: --hugepages N: a number" >&2; exit 2; }
[[ -z "$isolcpus" || "$isolcpus" =~ ^[0-9,-]+$ ]] || { echo "image.sh: --isolcpus LIST: e.g. 1-3" >&2; exit 2; }
[ -z "$config" ] || [ -f "$config" ] || { echo "image.sh: $config: no such file" >&2; exit 2; }

# The tools, from Debian, idempotently.
need=()
for t in mmdebstrap:mmdebstrap mkfs.ext4:e2fsprogs mkfs.fat:dosfstools mcopy:mtools sfdisk:fdisk \
         grub-mkimage:grub-common qemu-img:qemu-utils dpkg-shlibdeps:dpkg-dev openssl:openssl; do
    command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
[ -d /usr/lib/grub/i386-pc ] || need+=(grub-pc-bin)
[ -d /usr/lib/grub/x86_64-efi ] || need+=(grub-efi-amd64-bin)
if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

# The package.
if [ -z "$deb" ]; then
    deb=$(bash scripts/deb.sh | tail -n 1 | cut -d' ' -f1)
fi
[ -f "$deb" ] || { echo "image.sh: $deb: no package" >&2; exit 1; }

# A password file's first line, hashed (SHA-512 crypt); an empty one is
# refused (it would make an account without a password).
hash_of() {
    local pw
    pw=$(head -n 1 "$1" | tr -d '\r\n')
    [ -n "$pw" ] || { echo "image.sh: $1: empty password" >&2; exit 2; }
    printf '%s' "$pw" | openssl passwd -6 -stdin
}
valid_hash() { [[ "$1" =~ ^\$(6|5|y|gy)\$[./A-Za-z0-9=\$]+$ ]]; }

# The admin password: given, or random and changed at the first login.
expire=0
if [ -n "$password_file" ]; then
    password_hash=$(hash_of "$password_file")
elif [ -z "$password_hash" ]; then
    mkdir -p "$out"
    ( umask 077; openssl rand -base64 12 > "$out/admin-password" )
    password_hash=$(hash_of "$out/admin-password")
    expire=1
fi
valid_hash "$password_hash" || { echo "image.sh: the admin password hash is not a crypt(3) SHA-512, SHA-256 or yescrypt hash" >&2; exit 2; }
root_hash=""
[ -z "$root_password_file" ] || root_hash=$(hash_of "$root_password_file")
# GRUB's menu editor and command line (kernel arguments such as
# init=/bin/sh) are root's alone: its password, or, with root locked, one
# nobody knows. Booting the entry needs none.
if [ -n "$root_password_file" ]; then
    grub_pw=$(head -n 1 "$root_password_file" | tr -d '\r\n')
else
    grub_pw=$(openssl rand -base64 24)
fi
grub_hash=$(printf '%s\n%s\n' "$grub_pw" "$grub_pw" | grub-mkpasswd-pbkdf2 | sed -n 's/.* is \(grub\.pbkdf2\..*\)$/\1/p')
unset grub_pw
[ -n "$grub_hash" ] || { echo "image.sh: grub-mkpasswd-pbkdf2 failed" >&2; exit 1; }

mkdir -p "$out"
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

cmdline="console=tty0 console=ttyS0,115200n8 default_hugepagesz=2M hugepagesz=2M hugepages=$hugepages"
[ -z "$isolcpus" ] || cmdline="$cmdline isolcpus=$isolcpus nohz_full=$isolcpus rcu_nocbs=$isolcpus"

# The root file system: Debian 12, its kernel, systemd, the package.
cp "$deb" "$work/furiwake.deb"
[ -z "$config" ] || cp "$config" "$work/furiwake.toml"
mmdebstrap --variant=minbase --components=main \
    --include=systemd-sysv,udev,kmod,dbus,linux-image-amd64,procps,pciutils,less,ca-certificates \
    --customize-hook='copy-in "'"$work"'/furiwake.deb" /tmp' \
    --customize-hook='chroot "$1" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends /tmp/furiwake.deb' \
    --customize-hook='rm -f "$1/tmp/furiwake.deb"' \
    bookworm "$rootfs" "$mirror"

# The appliance's own settings.
echo furiwake > "$rootfs/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tfuriwake\n' > "$rootfs/etc/hosts"
printf 'LABEL=furiwake-root / ext4 errors=remount-ro 0 1\n' > "$rootfs/etc/fstab"
[ -z "$config" ] || install -m 0600 "$work/furiwake.toml" "$rootfs/etc/furiwake/furiwake.toml"
chroot "$rootfs" useradd --create-home --shell /usr/lib/furiwake/console-shell --groups furiwake,systemd-journal admin
# Hashes through chpasswd's stdin, never on a command line.
printf 'admin:%s\n' "$password_hash" | chroot "$rootfs" chpasswd -e
[ "$expire" = 0 ] || chroot "$rootfs" chage -d 0 admin
if [ -n "$root_hash" ]; then
    printf 'root:%s\n' "$root_hash" | chroot "$rootfs" chpasswd -e
else
    chroot "$rootfs" passwd --lock root >/dev/null
fi
chroot "$rootfs" systemctl enable furiwake.service >/dev/null 2>&1
# The journal stays on disk (the service's lines go there).
mkdir -p "$rootfs/var/log/journal"
# Nothing listens on the network: no ssh is installed; no timers that
# reach out either.
chroot "$rootfs" systemctl mask apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1 || true
rm -f "$rootfs/etc/machine-id" && : > "$rootfs/etc/machine-id"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb

kver=$(ls "$rootfs/boot" | sed -n 's/^vmlinuz-//p' | sort -V | tail -n 1)
[ -n "$kver" ] || { echo "image.sh: no kernel in the image" >&2; exit 1; }
mkdir -p "$rootfs/boot/grub"
# The kernel by Debian's /vmlinuz and /initrd.img links, which a kernel
# upgrade moves. Booting needs no password; editing the entry or GRUB's
# command line needs root's.
[ -e "$rootfs/vmlinuz" ] && [ -e "$rootfs/initrd.img" ] || { echo "image.sh: no /vmlinuz or /initrd.img link" >&2; exit 1; }
cat > "$rootfs/boot/grub/grub.cfg" <<EOF
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set superusers="root"
password_pbkdf2 root $grub_hash
set timeout=2
menuentry 'Furiwake' --unrestricted {
    search --no-floppy --label furiwake-root --set=root
    linux /vmlinuz root=LABEL=furiwake-root ro quiet $cmdline
    initrd /initrd.img
}
EOF
chmod 0600 "$rootfs/boot/grub/grub.cfg"

# GRUB, for BIOS (core.img in a BIOS boot partition) and UEFI (the
# removable-media path, so no NVRAM entry is needed).
cat > "$work/early.cfg" <<'EOF'
search --no-floppy --label furiwake-root --set=root
set prefix=($root)/boot/grub
configfile ($root)/boot/grub/grub.cfg
EOF
mods="part_gpt ext2 search search_label configfile normal linux echo test serial terminal password_pbkdf2"
grub-mkimage -O i386-pc -o "$work/core.img" -c "$work/early.cfg" -p /boot/grub biosdisk $mods
grub-mkimage -O x86_64-efi -o "$work/BOOTX64.EFI" -c "$work/early.cfg" -p /boot/grub efi_gop $mods

# The partitions: BIOS boot (1 MiB), EFI system (64 MiB, FAT32), root.
mib=$((1024 * 1024))
root_mib=$(( $(du -sm "$rootfs" | cut -f1) * 13 / 10 + 64 ))
mkfs.ext4 -q -F -L furiwake-root -d "$rootfs" "$work/root.img" "${root_mib}M"
truncate -s 64M "$work/esp.img"
mkfs.fat -F 32 -s 1 -n FURIWAKEEFI "$work/esp.img" >/dev/null
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT
mcopy -i "$work/esp.img" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI

raw="$out/furiwake.raw"
rm -f "$raw"
truncate -s $(( (1 + 1 + 64 + root_mib + 1) * mib )) "$raw"
sfdisk -q "$raw" <<EOF
label: gpt
start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, name=bios
start=4096, size=131072, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp
start=135168, size=$((root_mib * 2048)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root
EOF
dd if="$work/esp.img" of="$raw" bs=512 seek=4096 conv=notrunc,sparse status=none
dd if="$work/root.img" of="$raw" bs=512 seek=135168 conv=notrunc,sparse status=none

# BIOS: boot.img's code in the MBR (the partition table kept), pointing at
# core.img in the BIOS boot partition, whose first sector lists the rest
# (what grub-bios-setup does on a disk).
core_sectors=$(( ($(stat -c %s "$work/core.img") + 511) / 512 ))
[ "$core_sectors" -le 2048 ] || { echo "image.sh: core.img does not fit" >&2; exit 1; }
python3 - "$raw" "$work/core.img" /usr/lib/grub/i386-pc/boot.img "$core_sectors" <<'EOF'
import struct, sys
raw, core, boot, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
CORE_LBA = 2048
b = bytearray(open(boot, 'rb').read())
b[0x5c:0x64] = struct.pack('<Q', CORE_LBA)            # GRUB_BOOT_MACHINE_KERNEL_SECTOR
b[0x66:0x68] = b'\x90\x90'                            # a hard disk: drive 0x80 when the BIOS passes one without bit 7
c = bytearray(open(core, 'rb').read())
c += b'\0' * (n * 512 - len(c))
c[0x1f4:0x1fc] = struct.pack('<Q', CORE_LBA + 1)      # the rest of core.img: first sector
c[0x1fc:0x1fe] = struct.pack('<H', n - 1)             # and how many
with open(raw, 'r+b') as f:
    f.seek(0); f.write(b[:440])                       # the code only: the table stays
    f.seek(CORE_LBA * 512); f.write(c)
EOF

qcow="$out/furiwake.qcow2"
qemu-img convert -f raw -O qcow2 "$raw" "$qcow"
elapsed=$(( $(date +%s) - started ))
echo "image.sh: $raw: $(du -h --apparent-size "$raw" | cut -f1) ($(du -h "$raw" | cut -f1) used)"
echo "image.sh: $qcow: $(du -h "$qcow" | cut -f1)"
echo "image.sh: kernel $kver, command line: $cmdline"
[ "$expire" = 0 ] || echo "image.sh: admin's first password is in $out/admin-password (to be changed at the first login)"
echo "image.sh: built in ${elapsed} s"
