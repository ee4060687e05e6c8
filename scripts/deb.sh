#!/usr/bin/env bash
# Builds the Debian package of Furiwake: target/deb/furiwake_VERSION_amd64.deb
# (README, "Installing the package"). The binary is the statically linked
# build (DPDK and its PMDs inside; the libraries it needs become the
# package's Depends, by dpkg-shlibdeps), with furiwake.service, a default
# configuration that serves nothing, the console login shell and the README.
#
#   bash scripts/deb.sh [--binary PATH]   # PATH: a static build to package
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

bin=""
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) bin="$2"; shift 2 ;;
        *) echo "usage: $0 [--binary PATH]" >&2; exit 2 ;;
    esac
done
if [ -z "$bin" ]; then
    cargo build --release -p furiwake --features static --target-dir target/static
    bin=target/static/release/furiwake
fi

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
name="furiwake_${version}_amd64"
out="$PWD/target/deb"
root="$out/$name"
rm -rf "$root"
install -d "$root/DEBIAN" "$root/usr/bin" "$root/usr/lib/furiwake" "$root/lib/systemd/system" \
    "$root/etc/furiwake" "$root/usr/share/doc/furiwake"
# Debug information stays out of the package (the build keeps it).
objcopy --strip-debug "$bin" "$root/usr/bin/furiwake"
install -m 0644 packaging/furiwake.service "$root/lib/systemd/system/furiwake.service"
install -m 0600 packaging/furiwake.toml "$root/etc/furiwake/furiwake.toml"
install -m 0755 packaging/console-shell "$root/usr/lib/furiwake/console-shell"
install -m 0644 README.md "$root/usr/share/doc/furiwake/README.md"
gzip -9n "$root/usr/share/doc/furiwake/README.md"
install -m 0644 docs/architecture.md "$root/usr/share/doc/furiwake/architecture.md"
gzip -9n "$root/usr/share/doc/furiwake/architecture.md"
cat > "$root/usr/share/doc/furiwake/copyright" <<'TXT'
Furiwake: load-balancer appliance firmware in Rust on DPDK.
The binary links DPDK (BSD-3-Clause) and Rust crates under their own
licenses (MIT, Apache-2.0, BSD, ISC); see each crate's license.
TXT
for s in postinst prerm postrm; do install -m 0755 "packaging/$s" "$root/DEBIAN/$s"; done
echo /etc/furiwake/furiwake.toml > "$root/DEBIAN/conffiles"

# The shared libraries the binary needs, as package dependencies.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/debian"
printf 'Source: furiwake\n\nPackage: furiwake\nArchitecture: amd64\n' > "$work/debian/control"
depends=$(cd "$work" && dpkg-shlibdeps -O "$root/usr/bin/furiwake" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { echo "deb.sh: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<TXT
Package: furiwake
Version: $version
Architecture: amd64
Maintainer: Furiwake developers <furiwake@example.org>
Installed-Size: $size
Depends: $depends, kmod, systemd, adduser
Recommends: pciutils
Section: net
Priority: optional
Description: load-balancer appliance firmware on DPDK
 Furiwake spreads client connections for virtual IPs over pools of real
 servers: NAT, full-NAT and direct server return on DPDK poll-mode
 workers, health checks, VRRP with connection-state sync, an L7 proxy
 for HTTP and TLS, and an operator console. This package holds the
 statically linked binary (DPDK and its PMDs inside), its systemd
 service and a configuration that serves nothing until edited.
TXT
dpkg-deb --root-owner-group -Zxz --build "$root" "$out/$name.deb" >/dev/null
echo "$out/$name.deb ($(du -h "$out/$name.deb" | cut -f1))"
