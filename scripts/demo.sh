#!/usr/bin/env bash
# The main job: build Porin and show zero-trust policy on the shipped microservice shop, first computed
# (validate, matrix, trace), then enforced by the kernel on real packets (`porin demo`, needs root).
# `./scripts/demo.sh --exit` tears the lab down at the end instead of waiting for Ctrl-C (CI).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --locked -p porin
porin=./target/release/porin
echo "== porin validate -f examples/shop"
$porin validate -f examples/shop
echo
echo "== porin matrix -f examples/shop --port 9000   (computed; rows: from, columns: to)"
$porin matrix -f examples/shop --port 9000
echo
echo "== porin trace -f examples/shop --from shop/frontend --to shop/payment --port 9000"
$porin trace -f examples/shop --from shop/frontend --to shop/payment --port 9000
echo
if [ "$(id -u)" != 0 ]; then
  echo "porin demo (the kernel lab) needs root: sudo $porin demo" >&2
  exit 1
fi
exec $porin demo --dir examples/shop "$@"
