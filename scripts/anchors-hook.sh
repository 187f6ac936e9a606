#!/usr/bin/env bash
# Porin as a variant of an A/B enforcement harness that implements the "hook interface":
#
#   anchors-hook.sh up     install enforcement in $BENCH_NODE_NS; exit 0 only once it is in force
#   anchors-hook.sh down   undo `up` and stop everything it started (also called after a failed `up`)
#
# Porin runs as in production: one `porin agent` (embedded store, flow pipeline on with its defaults:
# five-tuple records, 1 s flush, flow store) inside $BENCH_NODE_NS, pinned to $BENCH_HOOK_CPU, with its data
# directory, API socket and bpffs under $BENCH_HOOK_DIR. `up` applies $BENCH_RULES_YAML with the two pods bound
# to their node-side veths, then waits until the agent reports the store's revision programmed with both
# endpoints `programmed` and no errors. `down` stops the agent by its pid and unmounts its bpffs (dropping the
# pinned links detaches the programs).
#
# Environment (besides the harness's BENCH_*): PORIN_BIN (default: porin on PATH), PORIN_HOOK_WAIT_S (how long
# `up` waits for programming, default 110), PORIN_HOOK_BIND (both|server: which pods are bound to a veth;
# default both, as a CNI would bind every pod of the node), PORIN_HOOK_AGENT_ARGS (extra agent flags),
# PORIN_LOG (agent log level, default warn), PORIN_HOOK_CAPTURE (`nomatch`: also apply a PacketCapture of every
# pod whose filter matches none of the harness's traffic, TCP port 1, to measure what an idle capture costs;
# scripts/anchors-hook-capture.sh sets it). By default the agent runs with `--policy-quota 0` (only the policy
# map's size limits one endpoint's policy): the harness's N = 10,000 policy needs ~30,000 policy-map entries for
# the server pod, more than the default per-endpoint quota (16,384), which would lock the pod down (deny all).
set -uo pipefail

PORIN=${PORIN_BIN:-porin}
D=${BENCH_HOOK_DIR:?BENCH_HOOK_DIR is not set (run from the harness)}
DATA=$D/data
BPF=$D/bpf
SOCK=$D/porin.sock
PIDF=$D/agent.pid
MANIFEST=$D/policy-porin.yaml
NODE=${BENCH_NODE_NS:?}
BIND=${PORIN_HOOK_BIND:-both}

log() { echo "porin-anchors-hook[$1]: ${*:2}"; }
ms() { date +%s%3N; }
status_json() { "$PORIN" status -o json --server "$SOCK" 2>/dev/null; }
agent_alive() { [ -f "$PIDF" ] && kill -0 "$(cat "$PIDF")" 2>/dev/null; }

# The ONE place that tells Porin which host interface is which pod's: one system-owned WorkloadEndpoint per
# pod (node, pod, host-side veth, addresses = the pod's status.podIP), applied as admin (root on the socket)
# together with the manifests. Writes $MANIFEST from $BENCH_RULES_YAML; prints the number of bound pods.
bind_endpoints() {
    python3 - "$BENCH_RULES_YAML" "$MANIFEST" "${BENCH_NODE_IF_CLIENT:?}" "${BENCH_NODE_IF_SERVER:?}" "$NODE" "$BIND" <<'EOF'
import sys, yaml
src, dst, if_client, if_server, node, mode = sys.argv[1:7]
docs = [d for d in yaml.safe_load_all(open(src)) if d]
weps = []
for d in docs:
    if d.get("kind") != "Pod":
        continue
    name = d["metadata"]["name"]
    ifname = {"client": if_client, "server": if_server}.get(name)
    if ifname is None or (mode == "server" and name != "server"):
        continue
    ip = d["status"]["podIP"]
    weps.append({
        "apiVersion": "porin.io/v1",
        "kind": "WorkloadEndpoint",
        "metadata": {"name": f"{node}-k8s-{name}-eth0", "namespace": d["metadata"].get("namespace", "default")},
        "spec": {"node": node, "pod": name, "interfaceName": ifname,
                 "ipNetworks": [ip + ("/128" if ":" in ip else "/32")], "orchestrator": "k8s", "endpoint": "eth0"},
    })
import os
extra = []
if os.environ.get("PORIN_HOOK_CAPTURE") == "nomatch":
    for ns in sorted({d["metadata"].get("namespace", "default") for d in docs if d.get("kind") == "Pod"}):
        extra.append({"apiVersion": "porin.io/v1", "kind": "PacketCapture",
                      "metadata": {"name": "porin-bench-nomatch", "namespace": ns},
                      "spec": {"selector": "all()", "filters": [{"protocol": "TCP", "ports": [1]}]}})
yaml.safe_dump_all(docs + weps + extra, open(dst, "w"), sort_keys=False)
print(len(weps))
EOF
}

start_agent() {
    local pin=()
    [ -n "${BENCH_HOOK_CPU:-}" ] && pin=(taskset -c "$BENCH_HOOK_CPU")
    # shellcheck disable=SC2086 # PORIN_HOOK_AGENT_ARGS is a list of flags
    PORIN_LOG=${PORIN_LOG:-warn} "${pin[@]}" "$PORIN" agent --data-dir "$DATA" --socket "$SOCK" --bpf-dir "$BPF" \
        --netns "$NODE" --node "$NODE" --flow-store-max-bytes 64Mi ${PORIN_HOOK_AGENT_ARGS:---policy-quota 0} >"$D/agent.log" 2>&1 &
    echo $! >"$PIDF"
    local i
    for ((i = 0; i < 600; i++)); do
        status_json | jq -e '.synced == true' >/dev/null 2>&1 && return 0
        agent_alive || { log up "agent exited"; tail -20 "$D/agent.log"; return 1; }
        sleep 0.05
    done
    log up "agent API not ready after 30 s"
    tail -20 "$D/agent.log"
    return 1
}

# Programmed: the store's revision (or a later one) enforced, nothing pending, every bound endpoint programmed.
programmed() {
    jq -e --argjson r "$1" --argjson e "$2" '
        (.dataplane.programmedRevision // 0) as $p
        | ($p >= $r or ((.cacheRevision // 0) >= $r and $p == (.policyRevision // 0) and $p > 0))
          and .dataplane.requestedRevision == $p
          and ([.dataplane.endpoints[]? | select(.state == "programmed")] | length) >= $e
          and ((.dataplane.errors // []) | length) == 0' >/dev/null 2>&1
}

up() {
    local t0 t1 t2 t3 bound rev s ok=0 deadline last
    t0=$(ms)
    mkdir -p "$DATA" "$BPF"
    bound=$(bind_endpoints) || { log up "binding the pods to their veths failed"; return 1; }
    start_agent || return 1
    t1=$(ms)
    "$PORIN" apply --server "$SOCK" -f "$MANIFEST" >"$D/apply.out" 2>&1 || { log up "apply failed"; cat "$D/apply.out"; return 1; }
    t2=$(ms)
    rev=$(status_json | jq -r '.storeRevision // 0')
    deadline=$(($(ms) + ${PORIN_HOOK_WAIT_S:-110} * 1000))
    last=$(ms)
    while [ "$(ms)" -lt "$deadline" ]; do
        s=$(status_json) || s='{}'
        if programmed "$rev" "$bound" <<<"$s"; then ok=1; break; fi
        agent_alive || { log up "agent exited"; tail -20 "$D/agent.log"; return 1; }
        if [ $(($(ms) - last)) -ge 5000 ]; then
            last=$(ms)
            log up "+$((last - t2)) ms waiting: $(jq -c '{store: .storeRevision, dp: (.dataplane | {programmedRevision, requestedRevision, errors})}' <<<"$s" 2>/dev/null | cut -c1-400)"
        fi
        sleep 0.02
    done
    t3=$(ms)
    echo "$s" >"$D/status.json"
    [ $ok = 1 ] || { log up "not programmed within ${PORIN_HOOK_WAIT_S:-110} s"; jq -c .dataplane <<<"$s"; return 1; }
    log up "N=${BENCH_N:-?} agent ready $((t1 - t0)) ms, apply $((t2 - t1)) ms, programmed +$((t3 - t2)) ms (total $((t3 - t0)) ms)"
}

# With PORIN_HOOK_BPF_STATS=1 (and `sysctl kernel.bpf_stats_enabled=1`, set by whoever runs the harness): the
# run count and average run time of each program the agent attached (found through its pinned links), over the
# whole bundle.
bpf_stats() {
    local f id
    for f in $(find "$BPF" -path '*links*' -type f 2>/dev/null); do
        id=$(bpftool link show pinned "$f" -j 2>/dev/null | jq -r '.prog_id // empty')
        [ -n "$id" ] || continue
        bpftool prog show id "$id" -j 2>/dev/null |
            jq -r --arg l "$(basename "$f")" '"porin-anchors-hook[down]: bpf_stats \($l) \(.name) id=\(.id) run_cnt=\(.run_cnt // 0) run_time_ns=\(.run_time_ns // 0) avg_ns=\(if (.run_cnt // 0) > 0 then ((.run_time_ns / .run_cnt) | floor) else 0 end)"'
    done
}

down() {
    local pid i
    if [ -f "$PIDF" ]; then
        pid=$(cat "$PIDF")
        if kill -0 "$pid" 2>/dev/null; then
            # what the flow pipeline saw and lost during the bundle, and the agent's memory
            status_json | jq -c '.flows | {counters: .counters | {events_in, records_out, records_stored, denied_aggregates, denied_aggregated_packets}, lostByStage}' 2>/dev/null |
                sed 's/^/porin-anchors-hook[down]: flows /'
            # the agent's own CPU time (it runs on BENCH_HOOK_CPU, so the harness does not count it) and how often
            # the ring-buffer reader thread was woken (voluntary context switches)
            log down "agent pid $pid rss_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null)" \
                "cpu_ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null)" \
                "reader_wakeups=$(for t in /proc/"$pid"/task/*; do [ "$(cat "$t/comm" 2>/dev/null)" = porin-flow-rb ] && awk '/^voluntary_ctxt_switches/ {print $2}' "$t/status"; done)"
            [ "${PORIN_HOOK_BPF_STATS:-0}" = 1 ] && bpf_stats "$pid"
            kill "$pid" 2>/dev/null
            for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
        fi
        rm -f "$PIDF"
    fi
    if mountpoint -q "$BPF" 2>/dev/null; then umount "$BPF" || umount -l "$BPF"; fi
    return 0
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *)
        echo "usage: $0 up|down (called by the harness; see its hook interface)" >&2
        exit 2
        ;;
esac
