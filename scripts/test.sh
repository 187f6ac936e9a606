#!/usr/bin/env bash
# Run every test: unit, property, golden, real-etcd, and real-kernel (network namespaces, eBPF) tests.
# Kernel tests need root; they fail (not skip) without it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# Leftovers of a crashed earlier run of the dataplane tests (their namespaces are never live outside a test run).
# Lab namespaces are not touched here: the lab removes its own stale ones (marked, owner dead) at every start,
# so a demo lab that is up on this machine survives a test run.
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^porin-dpt-' || true); do ip netns delete "$ns" || true; done
# The web console's component tests (Vitest); setup.sh has built web/dist, which the binary embeds.
(cd web && npm test --silent)
cargo build --workspace --all-targets --locked
cargo test --workspace --locked -- --test-threads="${PORIN_TEST_THREADS:-2}"
# The console end to end in a real browser against a kernel lab (needs root); screenshots in web/test-artifacts/.
(cd web && PORIN_BIN="$(cd .. && realpath "${CARGO_TARGET_DIR:-target}")/debug/porin" npm run --silent e2e)
