//! Human and machine renderings of engine results. Golden-file tested (crates/porin/tests/golden).

use std::fmt::Write;

use porin_policy::diff::Diff;
use porin_policy::{Evaluation, Matrix, Packet, Peer, SideVerdict, Verdict};
use serde_json::json;

fn peer_label(p: &Peer<'_>, v6: bool) -> String {
    match p {
        Peer::Endpoint(e) => match e.ip_of_family(v6) {
            Some(ip) => format!("{} ({ip})", e.id()),
            None => e.id(),
        },
        Peer::Ip(ip) => format!("{ip} (not a pod)"),
    }
}

fn proto_name(n: u8) -> String {
    match n {
        1 => "ICMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        58 => "ICMPv6".into(),
        132 => "SCTP".into(),
        n => format!("proto {n}"),
    }
}

pub fn packet_label(p: &Packet) -> String {
    match (p.port, p.icmp) {
        (Some(port), _) => format!("{}/{port}", proto_name(p.protocol)),
        (None, Some((t, Some(c)))) => format!("{} type {t} code {c}", proto_name(p.protocol)),
        (None, Some((t, None))) => format!("{} type {t}", proto_name(p.protocol)),
        (None, None) => proto_name(p.protocol),
    }
}

fn word(allowed: bool) -> &'static str {
    if allowed { "ALLOWED" } else { "DENIED" }
}

fn side_table(out: &mut String, s: &SideVerdict) {
    let dir = s.direction.to_string().to_uppercase();
    let _ = writeln!(out, "{dir} at {}: {}", s.endpoint, word(s.allowed));
    let _ = writeln!(out, "  reason: {}", s.reason);
    for h in &s.hits {
        let _ = writeln!(out, "  hit:    {h}");
    }
}

fn evaluation_table(out: &mut String, e: &Evaluation, src: &Peer<'_>, dst: &Peer<'_>) {
    match &e.egress {
        Some(s) => side_table(out, s),
        None => {
            let _ = writeln!(out, "EGRESS: not checked ({} is not a pod)", src.describe());
        }
    }
    match &e.ingress {
        Some(s) => side_table(out, s),
        None => {
            let _ = writeln!(out, "INGRESS: not checked ({} is not a pod)", dst.describe());
        }
    }
}

pub fn trace_table(src: &Peer<'_>, dst: &Peer<'_>, pkt: &Packet, v: &Verdict) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "VERDICT  {}", word(v.allowed));
    let _ = writeln!(out, "FROM     {}", peer_label(src, pkt.v6));
    let _ = writeln!(out, "TO       {}", peer_label(dst, pkt.v6));
    let _ = writeln!(out, "PACKET   {}", packet_label(pkt));
    let _ = writeln!(out);
    evaluation_table(&mut out, &v.enforced, src, dst);
    let _ = writeln!(out);
    if v.pending == v.enforced {
        let _ = writeln!(out, "PENDING (staged policies applied): same as enforced");
    } else {
        let _ = writeln!(out, "PENDING (staged policies applied): {}", word(v.pending.allowed));
        evaluation_table(&mut out, &v.pending, src, dst);
    }
    out
}

pub fn trace_json(src: &Peer<'_>, dst: &Peer<'_>, pkt: &Packet, v: &Verdict) -> serde_json::Value {
    let hits = |e: &Evaluation| -> Vec<String> {
        e.egress.iter().chain(e.ingress.iter()).flat_map(|s| s.hits.iter().map(|h| h.to_string())).collect()
    };
    json!({
        "from": src.describe(),
        "to": dst.describe(),
        "protocol": proto_name(pkt.protocol),
        "port": pkt.port,
        "allowed": v.allowed,
        "enforced": v.enforced,
        "enforced_trace": hits(&v.enforced),
        "pending": v.pending,
        "pending_trace": hits(&v.pending),
    })
}

/// A grid: rows are sources, columns destinations; `.` allowed, `X` denied, `-` the pod itself.
pub fn matrix_table(m: &Matrix) -> String {
    matrix_grid(&m.protocol.to_string(), m.port, &m.pods, &|i, j| m.allowed(i, j))
}

/// The grid of [`matrix_table`] for any matrix (computed or observed in the lab).
pub fn matrix_grid(protocol: &str, port: u16, pods: &[String], allowed: &dyn Fn(usize, usize) -> bool) -> String {
    let mut out = String::new();
    let n = pods.len();
    let count = (0..n).flat_map(|i| (0..n).map(move |j| (i, j))).filter(|&(i, j)| i != j && allowed(i, j)).count();
    let _ = writeln!(
        out,
        "{protocol}/{port}: {count} of {} pairs allowed (rows: from, columns: to; . allowed, X denied)",
        n * n.saturating_sub(1)
    );
    let width = pods.iter().map(|p| p.len()).max().unwrap_or(0);
    let _ = write!(out, "{:width$}", "");
    for p in pods {
        let _ = write!(out, " {p}");
    }
    let _ = writeln!(out);
    for (i, from) in pods.iter().enumerate() {
        let _ = write!(out, "{from:width$}");
        for (j, to) in pods.iter().enumerate() {
            let c = if i == j {
                '-'
            } else if allowed(i, j) {
                '.'
            } else {
                'X'
            };
            let w = to.len();
            let _ = write!(out, " {c:>w$}");
        }
        let _ = writeln!(out);
    }
    out
}

pub fn diff_table(d: &Diff) -> String {
    let mut out = String::new();
    if d.opened.is_empty() && d.closed.is_empty() {
        out.push_str("no change in reachability\n");
        return out;
    }
    for (title, list) in [("OPENED", &d.opened), ("CLOSED", &d.closed)] {
        let _ = writeln!(out, "{title} ({})", list.len());
        for c in list.iter() {
            let _ = writeln!(out, "  {} -> {} {}/{}", c.from, c.to, c.protocol, c.port);
        }
    }
    out
}

// ---- control plane: `porin get`, `porin audit`, `porin status` ----

pub fn render_columns(rows: &[Vec<String>]) -> String {
    let widths = column_widths(rows);
    rows.iter().map(|r| render_row(r, &widths)).collect()
}

/// The width of each column over `rows` (characters, not bytes).
pub fn column_widths(rows: &[Vec<String>]) -> Vec<usize> {
    let mut widths = vec![0; rows.iter().map(Vec::len).max().unwrap_or(0)];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    widths
}

/// One table line: columns padded to `widths` (a longer cell pushes the rest right), three spaces apart.
pub fn render_row(r: &[String], widths: &[usize]) -> String {
    let mut line = String::new();
    for (i, c) in r.iter().enumerate() {
        if i + 1 == r.len() {
            line.push_str(c);
        } else {
            let _ = write!(line, "{c:<w$}   ", w = widths.get(i).copied().unwrap_or(0));
        }
    }
    let mut out = line.trim_end().to_string();
    out.push('\n');
    out
}

/// A table from rows whose first is the header; `no_headers` leaves the header out (widths still count it,
/// so a watch's later rows line up with the first ones).
pub fn render_table(rows: &[Vec<String>], no_headers: bool) -> String {
    let widths = column_widths(rows);
    rows.iter().skip(usize::from(no_headers)).map(|r| render_row(r, &widths)).collect()
}

fn labels_text(v: &serde_json::Value) -> String {
    match v["metadata"]["labels"].as_object() {
        Some(m) if !m.is_empty() => m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(","),
        _ => "<none>".into(),
    }
}

fn scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "<none>".into(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0 && f.abs() < 1e15) => {
            format!("{}", n.as_f64().unwrap_or_default() as i64)
        }
        serde_json::Value::Array(a) if a.iter().all(|x| x.is_string()) => {
            a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(",")
        }
        other => other.to_string(),
    }
}

/// How `porin get` draws its table.
#[derive(Debug, Clone, Default)]
pub struct TableOptions {
    /// A NAMESPACE column (with -A, for namespaced kinds).
    pub all_namespaces: bool,
    /// `-o wide`: selectors and labels.
    pub wide: bool,
    /// `--show-labels`: a LABELS column at the end.
    pub show_labels: bool,
    /// `--output-watch-events`: an EVENT column first (rows then start with the event type).
    pub events: bool,
    /// Names as `type/name` (several kinds in one table).
    pub name_prefix: Option<String>,
    /// Now (epoch seconds), for AGE when objects carry `metadata.creationTimestamp`.
    pub now: i64,
}

/// The rows of a `porin get` table, the header first: NAMESPACE (with -A), NAME, kind-specific columns, AGE
/// (when objects carry a creation time); `wide` adds selectors and labels. `events[i]`, when given, is item i's watch event type.
pub fn resource_rows(kind: porin_model::Kind, items: &[serde_json::Value], events: &[&str], o: &TableOptions) -> Vec<Vec<String>> {
    use porin_model::Kind;
    let namespace_col = o.all_namespaces && kind.info().namespaced;
    let age = items.iter().any(|it| it["metadata"]["creationTimestamp"].as_str().is_some());
    let mut header: Vec<&str> = Vec::new();
    if o.events {
        header.push("EVENT");
    }
    if namespace_col {
        header.push("NAMESPACE");
    }
    header.push("NAME");
    let extra: &[(&str, &str)] = match kind {
        Kind::Pod => &[("IP", "/status/podIP"), ("NODE", "/spec/nodeName")],
        Kind::Tier => &[("ORDER", "/spec/order"), ("DEFAULT-ACTION", "/spec/defaultAction")],
        Kind::K8sNetworkPolicy | Kind::StagedKubernetesNetworkPolicy => &[],
        Kind::NetworkPolicy | Kind::GlobalNetworkPolicy | Kind::StagedNetworkPolicy | Kind::StagedGlobalNetworkPolicy => {
            &[("TIER", "/spec/tier"), ("ORDER", "/spec/order")]
        }
        Kind::NetworkSet | Kind::GlobalNetworkSet => &[],
        Kind::Namespace | Kind::ServiceAccount | Kind::ClusterSettings => &[],
        Kind::ConnectivityTest => &[],
        Kind::ReachabilityGuard => &[("EXPECT", "/spec/expect")],
        Kind::GlobalReport => &[("TYPE", "/spec/reportType"), ("SCHEDULE", "/spec/schedule")],
        Kind::GlobalThreatFeed => &[
            ("MODE", "/spec/mode"),
            ("URL", "/spec/pull/http/url"),
            ("ENTRIES", "/status/entries"),
            ("LAST-SYNC", "/status/lastSuccessfulSync"),
            ("OK", "/status/lastAttemptOk"),
        ],
        Kind::Quarantine => &[("ACTOR", "/spec/actor"), ("SINCE", "/spec/since"), ("REASON", "/spec/reason")],
        Kind::Honeypod => &[("DESCRIPTION", "/spec/description")],
        Kind::PacketCapture => &[("SELECTOR", "/spec/selector"), ("START", "/spec/startTime"), ("END", "/spec/endTime")],
        Kind::RecommendationScope => &[("STATUS", "/spec/namespaceSpec/recStatus"), ("INTERVAL", "/spec/interval")],
        Kind::WorkloadEndpoint => &[
            ("POD", "/spec/pod"),
            ("NODE", "/spec/node"),
            ("INTERFACE", "/spec/interfaceName"),
            ("NETWORKS", "/spec/ipNetworks"),
        ],
    };
    header.extend(extra.iter().map(|(h, _)| *h));
    if age {
        header.push("AGE");
    }
    let wide_cols: &[(&str, &str)] = match kind {
        Kind::K8sNetworkPolicy | Kind::StagedKubernetesNetworkPolicy => &[("POD-SELECTOR", "/spec/podSelector")],
        Kind::NetworkPolicy | Kind::GlobalNetworkPolicy | Kind::StagedNetworkPolicy | Kind::StagedGlobalNetworkPolicy => {
            &[("SELECTOR", "/spec/selector")]
        }
        _ => &[],
    };
    if o.wide {
        header.extend(wide_cols.iter().map(|(h, _)| *h));
        header.push("LABELS");
    }
    header.push("RESOURCE-VERSION");
    let labels_last = o.show_labels && !o.wide;
    if labels_last {
        header.push("LABELS");
    }
    let mut rows = vec![header.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
    for (i, it) in items.iter().enumerate() {
        let mut r = Vec::new();
        if o.events {
            r.push(events.get(i).copied().unwrap_or("").to_string());
        }
        if namespace_col {
            r.push(scalar(&it["metadata"]["namespace"]));
        }
        let name = scalar(&it["metadata"]["name"]);
        r.push(match &o.name_prefix {
            Some(p) => format!("{p}/{name}"),
            None => name,
        });
        for (h, p) in extra {
            let v = it.pointer(p).cloned().unwrap_or(serde_json::Value::Null);
            r.push(if *h == "TIER" && v.is_null() { "default".into() } else { scalar(&v) });
        }
        if age {
            r.push(match it["metadata"]["creationTimestamp"].as_str().and_then(porin_agent::timefmt::parse_rfc3339) {
                Some(t) => crate::getfmt::human_age(o.now - t),
                None => "<unknown>".into(),
            });
        }
        if o.wide {
            for (_, p) in wide_cols {
                let v = it.pointer(p).cloned().unwrap_or(serde_json::Value::Null);
                r.push(if v.is_object() { v.to_string() } else { scalar(&v) });
            }
            r.push(labels_text(it));
        }
        r.push(scalar(&it["metadata"]["resourceVersion"]));
        if labels_last {
            r.push(labels_text(it));
        }
        rows.push(r);
    }
    rows
}

/// `porin audit` table: one row per object changed.
pub fn audit_table(records: &[serde_json::Value]) -> String {
    let mut rows = vec![["TIME", "USER", "VERB", "ACTION", "KIND", "NAMESPACE", "NAME", "NODE"].map(String::from).to_vec()];
    for rec in records {
        for e in rec["entries"].as_array().into_iter().flatten() {
            rows.push(vec![
                scalar(&rec["time"]),
                scalar(&rec["user"]),
                scalar(&rec["verb"]),
                scalar(&e["action"]),
                scalar(&e["kind"]),
                e["namespace"].as_str().unwrap_or("-").to_string(),
                scalar(&e["name"]),
                scalar(&rec["node"]),
            ]);
        }
    }
    render_columns(&rows)
}

/// `porin status` as `key: value` lines.
pub fn status_table(v: &serde_json::Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<16} {}", "Node", scalar(&v["node"]));
    let _ = writeln!(out, "{:<16} {}", "Store", scalar(&v["store"]));
    if let Some(d) = v["datastore"].as_str() {
        let state = match (v["connected"].as_bool(), v["disconnectedSince"].as_str()) {
            (Some(true), _) => "connected".to_string(),
            (_, Some(t)) => format!("DISCONNECTED since {t}, serving the last known state read-only"),
            _ => "not connected yet".to_string(),
        };
        let _ = writeln!(out, "{:<16} {d}: {state}", "Datastore");
    }
    for (label, key) in [
        ("Store revision", "storeRevision"),
        ("Cache revision", "cacheRevision"),
        ("Objects", "objects"),
        ("Endpoints", "endpoints"),
        ("Policies", "policies"),
        ("Policy revision", "policyRevision"),
        ("Last recompute", "lastRecompute"),
        ("Recompute (ms)", "recomputeMillis"),
        ("Health", "health"),
    ] {
        let _ = writeln!(out, "{label:<16} {}", scalar(&v[key]));
    }
    if let Some(e) = v["lastError"].as_str() {
        let _ = writeln!(out, "{:<16} {e}", "Last error");
    }
    if let Some(e) = v["policyError"].as_str() {
        let _ = writeln!(out, "{:<16} {e}", "Policy error");
    }
    for u in v["undecodable"].as_array().into_iter().flatten() {
        let scope = match u["namespace"].as_str() {
            Some(ns) => format!("namespace {ns} locked down"),
            None => "every endpoint locked down".to_string(),
        };
        let _ = writeln!(out, "{:<16} {} ({scope}): {}", "Undecodable", scalar(&u["key"]), scalar(&u["error"]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn age_column_only_when_objects_carry_a_creation_time() {
        let now = porin_agent::timefmt::parse_rfc3339("2026-01-02T03:04:05Z").unwrap();
        let o = TableOptions { now, ..Default::default() };
        let plain = [json!({"metadata": {"name": "a", "resourceVersion": "7"}})];
        assert_eq!(render_table(&resource_rows(porin_model::Kind::Namespace, &plain, &[], &o), false), "NAME   RESOURCE-VERSION\na      7\n");
        let dated = [
            json!({"metadata": {"name": "old", "resourceVersion": "3", "creationTimestamp": "2025-12-31T03:04:05Z"}}),
            json!({"metadata": {"name": "new", "resourceVersion": "9", "creationTimestamp": "2026-01-02T03:03:00Z"}}),
            json!({"metadata": {"name": "odd", "resourceVersion": "9", "creationTimestamp": "yesterday"}}),
        ];
        let o = TableOptions { show_labels: true, ..o };
        assert_eq!(
            render_table(&resource_rows(porin_model::Kind::Namespace, &dated, &[], &o), false),
            "NAME   AGE         RESOURCE-VERSION   LABELS\n\
             old    2d          3                  <none>\n\
             new    65s         9                  <none>\n\
             odd    <unknown>   9                  <none>\n"
        );
    }
}
