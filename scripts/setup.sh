#!/usr/bin/env bash
# Install what Porin's build, demo and tests need on a fresh Debian 12 machine (run as root).
# Idempotent and quiet when everything is already there.
set -euo pipefail
pkgs=(clang llvm libbpf-dev iproute2 nftables iptables bpftool iperf3 conntrack tcpdump iputils-ping
      etcd-server etcd-client protobuf-compiler libprotobuf-dev socat curl chromium
      containerd runc containernetworking-plugins busybox-static tshark)
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
# kubectl for the tests of Porin's Kubernetes API (crates/porin/tests/kubectl_real.rs): Debian's kubernetes-client,
# unless a kubectl is already installed (its /usr/bin/kubectl would conflict).
if ! command -v kubectl >/dev/null; then
  echo "setup: installing kubernetes-client (kubectl)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null; }
fi
command -v cargo >/dev/null || { echo "setup: cargo (Rust stable >= 1.95) is required" >&2; exit 1; }

# The web console (web/): Node >= 20.19 builds it (npm ci with the committed lockfile); the porin binary embeds
# web/dist. Debian's chromium (above) runs its browser tests through playwright-core (no browser downloads).
if ! command -v npm >/dev/null; then
  echo "setup: installing nodejs npm"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>22||(a===22&&b>=12)||(a===20&&b>=19)||a===21?0:1)' ||
  { echo "setup: Node.js >= 20.19 is required to build the web console (found $(node --version))" >&2; exit 1; }
web="$(dirname "$0")/../web"
if [ ! -f "$web/node_modules/.package-lock.json" ] || [ "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ]; then
  echo "setup: npm ci (web console)"
  (cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ ! -f "$web/dist/index.html" ] || [ -n "$(find "$web/src" "$web/index.html" "$web/package-lock.json" "$web/vite.config.ts" -newer "$web/dist/index.html" 2>/dev/null | head -1)" ]; then
  echo "setup: building the web console"
  (cd "$web" && npm run --silent build >/dev/null)
fi
