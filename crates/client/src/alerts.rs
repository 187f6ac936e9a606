//! Alerts (threat-feed hits, honeypod contacts, quarantine and block actions) as table rows, wide rows or JSON
//! lines (the webhook body). Golden-file tested (crates/porin/tests/golden/alerts-*.txt).

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum AlertOutput {
    /// One line per alert: time, kind, name, verdict, description.
    #[default]
    Table,
    /// Also the id, node, both endpoints, protocol and trace.
    Wide,
    /// One JSON object per line.
    Json,
}

/// A string field, or empty.
pub fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

/// How an endpoint of an alert reads: `ns/pod`, `netset:name`, `world:ip`, the address, or `-`.
fn endpoint(e: &Value) -> String {
    if e.is_null() {
        return "-".into();
    }
    let ip = e["ip"].as_str();
    let port = e["port"].as_u64().map(|p| format!(":{p}")).unwrap_or_default();
    let name = match (e["namespace"].as_str(), e["pod"].as_str().or(e["workload"].as_str()), e["network_set"].as_str()) {
        (Some(ns), Some(p), _) => format!("{ns}/{p}"),
        (_, _, Some(n)) => format!("netset:{n}{}", ip.map(|i| format!("({i})")).unwrap_or_default()),
        _ => match (e["kind"].as_str(), ip) {
            (Some("world"), Some(ip)) => format!("world:{ip}"),
            (_, Some(ip)) => ip.to_string(),
            _ => "(hidden)".into(),
        },
    };
    format!("{name}{port}")
}

/// The header line of a table.
pub fn header(o: AlertOutput) -> String {
    match o {
        AlertOutput::Wide => format!(
            "{:<6} {:<20} {:<8} {:<12} {:<20} {:<28} {:<28} {:<6} {:<8} {:<36} DESCRIPTION",
            "ID", "TIME", "NODE", "KIND", "NAME", "SOURCE", "DESTINATION", "PROTO", "VERDICT", "TRACE"
        ),
        _ => format!("{:<20} {:<12} {:<20} {:<8} DESCRIPTION", "TIME", "KIND", "NAME", "VERDICT"),
    }
}

/// `2026-12-03T16:23:56Z` (no fraction) for tables.
fn time(a: &Value) -> String {
    let t = s(a, "time");
    match (t.find('.'), t.ends_with('Z')) {
        (Some(i), true) => format!("{}Z", &t[..i]),
        _ => t.to_string(),
    }
}

/// One alert as a table row (`table` or `wide`) or a JSON line.
pub fn row(a: &Value, o: AlertOutput) -> String {
    let verdict = a["verdict"].as_str().unwrap_or("-");
    match o {
        AlertOutput::Json => serde_json::to_string(a).unwrap_or_default(),
        AlertOutput::Table => format!("{:<20} {:<12} {:<20} {:<8} {}", time(a), s(a, "kind"), s(a, "name"), verdict, s(a, "description")),
        AlertOutput::Wide => {
            let trace: Vec<&str> = a["trace"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            format!(
                "{:<6} {:<20} {:<8} {:<12} {:<20} {:<28} {:<28} {:<6} {:<8} {:<36} {}",
                a["id"].as_u64().unwrap_or(0),
                time(a),
                s(a, "node"),
                s(a, "kind"),
                s(a, "name"),
                endpoint(&a["src"]),
                endpoint(&a["dst"]),
                a["protocol"].as_str().unwrap_or("-"),
                verdict,
                if trace.is_empty() { "-".to_string() } else { trace.join(",") },
                s(a, "description")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden(name: &str, actual: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../porin/tests/golden").join(name);
        if std::env::var_os("PORIN_BLESS").is_some() {
            std::fs::write(&path, actual).unwrap();
            return;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing golden file {}", path.display()));
        assert_eq!(actual, want, "output differs from {} (PORIN_BLESS=1 regenerates)", path.display());
    }

    #[test]
    fn table_and_wide_rows() {
        let alerts: Vec<Value> = [
            r#"{"id":1,"time":"2026-12-03T16:20:01.123456789Z","node":"n0","kind":"threat_feed","name":"feodo",
                "description":"shop/frontend connected to 203.0.113.10:443/tcp, an address of threat feed feodo: denied",
                "src":{"kind":"pod","namespace":"shop","pod":"frontend","ip":"10.10.0.10","port":50714},
                "dst":{"kind":"network_set","network_set":"threatfeed.feodo","ip":"203.0.113.10","port":443},
                "protocol":"tcp","verdict":"denied","trace":["security|block-feodo|egress[0]|deny"],"addresses":["203.0.113.10"]}"#,
            r#"{"id":2,"time":"2026-12-03T16:21:00Z","node":"n1","kind":"block","name":"198.51.100.0/24",
                "description":"uid:0 blocked 198.51.100.0/24 cluster-wide","actor":"uid:0"}"#,
        ]
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
        for (o, file) in [(AlertOutput::Table, "alerts-table.txt"), (AlertOutput::Wide, "alerts-wide.txt")] {
            let mut text = header(o) + "\n";
            for a in &alerts {
                text += &(row(a, o) + "\n");
            }
            golden(file, &text);
        }
        assert_eq!(row(&alerts[1], AlertOutput::Json), serde_json::to_string(&alerts[1]).unwrap());
    }
}
