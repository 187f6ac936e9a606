#!/usr/bin/env bash
# The main job: build Porin and show zero-trust policy on the shipped microservice shop.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --locked -p porin
porin=./target/release/porin
echo "== porin validate -f examples/shop"
$porin validate -f examples/shop
echo
echo "== porin matrix -f examples/shop   (every declared port; rows: from, columns: to)"
$porin matrix -f examples/shop
echo
echo "== porin trace -f examples/shop --from shop/frontend --to shop/payment --port 9000"
$porin trace -f examples/shop --from shop/frontend --to shop/payment --port 9000
