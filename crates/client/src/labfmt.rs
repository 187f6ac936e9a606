//! Renderings of a kernel lab: observed reachability as `porin matrix` grids, the lab's status table.

use std::collections::BTreeSet;

use porin_lab::cluster::FullStatus;

/// The observed matrices as `porin matrix` grids.
pub fn observed_tables(m: &porin_lab::ObservedMatrices) -> String {
    let mut out = String::new();
    for (i, x) in m.matrices.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let allowed: BTreeSet<(&str, &str)> = x.allowed.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        out.push_str(&crate::printers::matrix_grid(x.protocol.as_str(), x.port, &x.pods, &|a, b| {
            allowed.contains(&(x.pods[a].as_str(), x.pods[b].as_str()))
        }));
    }
    out
}

/// `porin lab status`: the lab, its agents (revisions, endpoints, drops, errors), its pods and external hosts.
pub fn status_table(s: &FullStatus) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "Lab {}: {}", s.lab.name, if s.lab.alive { "up" } else { "down" });
    if let Some(srv) = &s.server {
        let _ = writeln!(out, "API: export PORIN_SERVER={}", srv.display());
    }
    if let Some(e) = s.etcd {
        let _ = writeln!(out, "etcd: {}", if e { "running" } else { "NOT running" });
    }
    for a in &s.agents {
        let st = &a["status"];
        let d = &st["dataplane"];
        let _ = writeln!(
            out,
            "agent {} ({}): {}; policy rev {}, programmed rev {}, {} endpoint(s), last programming {:.1} ms, drops {}",
            a["node"].as_str().unwrap_or("?"),
            a["netns"].as_str().unwrap_or("?"),
            if a["alive"] == true { "running" } else { "NOT running" },
            st["policyRevision"],
            d["programmedRevision"],
            d["endpoints"].as_array().map_or(0, |e| e.len()),
            d["lastProgrammingMillis"].as_f64().unwrap_or(0.0),
            d["drops"].as_object().map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum::<u64>()),
        );
        for e in d["errors"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "  error: {}", e.as_str().unwrap_or(""));
        }
    }
    let _ = writeln!(out, "{:<16} {:<6} {:<16} {:<10} PORTS", "POD", "NODE", "IP", "HOST-IF");
    for p in &s.lab.pods {
        let _ = writeln!(
            out,
            "{:<16} n{:<5} {:<16} {:<10} {}",
            p.key,
            p.node,
            p.ipv4,
            p.host_ifname,
            porin_lab::spec::format_ports(&p.ports)
        );
    }
    if !s.lab.hosts.is_empty() {
        let _ = writeln!(out, "{:<16} {:<6} {:<16} {:<10} PORTS", "EXTERNAL HOST", "VIA", "IP", "NODE-IF");
        for h in &s.lab.hosts {
            let _ = writeln!(
                out,
                "{:<16} n{:<5} {:<16} {:<10} {}",
                h.name,
                h.node,
                h.ipv4,
                h.node_ifname,
                porin_lab::spec::format_ports(&h.ports)
            );
        }
    }
    out
}
