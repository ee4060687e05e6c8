#!/usr/bin/env bash
# Installs everything Furiwake needs on Debian 12, idempotently: DPDK 22.11
# (runtime, headers, testpmd), the toolchain bits bindgen needs, and the
# real peers the demo and tests start (nginx, socat, curl, wrk, scapy,
# keepalived, tcpdump/tshark, tcpreplay, nftables), and what builds and
# boots the appliance image (mmdebstrap, GRUB, mtools, QEMU, nmap).
set -euo pipefail

PKGS=(
  dpdk dpdk-dev libdpdk-dev libsystemd-dev pkg-config clang libclang-dev build-essential
  iproute2 iputils-ping ethtool nftables procps coreutils python3 python3-scapy
  nginx-light socat curl wrk tcpdump tshark tcpreplay keepalived gnuplot-nox tmux
  openssl testssl.sh
  qemu-system-x86 qemu-utils ovmf mmdebstrap grub-common grub-pc-bin grub-efi-amd64-bin
  dosfstools mtools fdisk e2fsprogs dpkg-dev nmap
)

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Rust: the machine's toolchain, or rustup's on a bare Debian box.
if ! command -v cargo >/dev/null 2>&1; then
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: installing Rust with rustup"
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile default
  . "$HOME/.cargo/env"
fi
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
# Miri (the test suite runs the dataplane's low-level tests under it) needs
# a nightly toolchain with the miri and rust-src components.
if ! cargo +nightly miri --version >/dev/null 2>&1; then
  echo "setup: installing nightly Rust with Miri"
  rustup toolchain install nightly --profile minimal --component miri,rust-src
fi
# cargo-fuzz: the suite runs the fuzz targets (fuzz/) under libFuzzer with
# coverage guidance, on the nightly toolchain above.
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "setup: installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

pkg-config --modversion libdpdk >/dev/null || { echo "setup: libdpdk not found by pkg-config" >&2; exit 1; }
echo "setup: DPDK $(pkg-config --modversion libdpdk), $(cargo --version)"
