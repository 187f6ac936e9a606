#!/usr/bin/env bash
# Install what Porin's build, demo and tests need on a fresh Debian 12 machine (run as root).
# Idempotent and quiet when everything is already there.
set -euo pipefail
pkgs=(clang llvm libbpf-dev iproute2 nftables iptables bpftool iperf3 conntrack tcpdump iputils-ping
      etcd-server etcd-client protobuf-compiler libprotobuf-dev socat
      containerd runc containernetworking-plugins busybox-static)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo (Rust stable >= 1.95) is required" >&2; exit 1; }
