#!/usr/bin/env bash
# Dataplane benchmarks of "Kernel enforcement" (B1 throughput + request/response, B2 new connections/s,
# B4 time to enforce/revoke, B5 programming cost), measured on this machine in ONE run so the variants
# (no policy, Porin, iptables chain, nftables set) are compared as ratios. Needs root.
#
# Everything happens inside a porin-lab (network namespaces named porin-pbench-<pid>-*): iptables/nft
# rules only inside the lab's node netns, traffic only between the lab's pods; the lab is removed on exit.
#
#   scripts/bench-dataplane.sh                 # everything, ~10 min on 2 vCPUs
#   scripts/bench-dataplane.sh --smoke         # seconds, what CI runs (cargo test -p porin-bench)
#   scripts/bench-dataplane.sh --reps 3 --only b1   # any porin-bench flag (see --help)
#
# Output: the markdown summary on stdout, also in $OUT/summary.md, all samples in $OUT/results.json.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench-dataplane: run as root (network namespaces, BPF, iptables)" >&2; exit 1; }
scripts/setup.sh   # iperf3, iptables, nftables, iproute2, clang/libbpf for the BPF object
for t in iperf3 iptables-restore nft ip; do
  command -v "$t" >/dev/null || { echo "bench-dataplane: $t missing after setup" >&2; exit 1; }
done
cargo build --release -q -p porin-bench
cargo build --release -q -p porin || echo "bench-dataplane: porin did not build; B4 through the agent uses whatever target/release/porin exists (or is skipped)" >&2
BIN="${CARGO_TARGET_DIR:-target}/release/porin-bench"
OUT=${OUT:-target/bench-dataplane}
mkdir -p "$OUT"
read -r l1 l5 l15 _ < /proc/loadavg
echo "bench-dataplane: load average $l1 $l5 $l15 on $(nproc) CPUs (other work on this machine skews the numbers; < 1.5 is quiet)" >&2
"$BIN" --json "$OUT/results.json" "$@" | tee "$OUT/summary.md"
echo "bench-dataplane: wrote $OUT/summary.md and $OUT/results.json" >&2
