//! `porin status` for people: the dataplane and the flow pipeline as `key value` lines.

use crate::getfmt::Bytes;

/// The dataplane part of `porin status`.
pub fn dataplane_table(d: &serde_json::Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    };
    let _ = writeln!(out, "{:<16} {}", "Dataplane", s(&d["mode"]));
    if d["mode"].as_str() == Some("none") || d.is_null() {
        return out;
    }
    let eps = d["endpoints"].as_array().cloned().unwrap_or_default();
    let ok = eps.iter().filter(|e| e["state"] == "programmed").count();
    let _ = writeln!(out, "{:<16} {}", "Programmed rev", s(&d["programmedRevision"]));
    let _ = writeln!(out, "{:<16} {:.2} (compile {:.2})", "Programming (ms)", d["lastProgrammingMillis"].as_f64().unwrap_or(0.0), d["lastCompileMillis"].as_f64().unwrap_or(0.0));
    let _ = writeln!(out, "{:<16} {} ({ok} programmed)", "DP endpoints", eps.len());
    let _ = writeln!(out, "{:<16} {}", "Identities", s(&d["identities"]));
    for m in d["occupancy"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "{:<16} {}/{}", format!("Map {}", s(&m["map"]).trim_start_matches("porin_")), s(&m["entries"]), s(&m["maxEntries"]));
    }
    let drops: Vec<String> = d["drops"].as_object().into_iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(out, "{:<16} {}", "Drops", if drops.is_empty() { "0".to_string() } else { drops.join(" ") });
    for e in eps.iter().filter(|e| e["state"] != "programmed") {
        let _ = writeln!(out, "{:<16} {} {} {}", "Endpoint", s(&e["pod"]), s(&e["state"]), s(&e["error"]));
    }
    for e in d["errors"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "{:<16} {}", "DP error", s(e));
    }
    out
}

/// The flow-pipeline part of `porin status`: events read, loss by stage, records stored, store size.
pub fn flows_table(f: &serde_json::Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if f.is_null() {
        return out;
    }
    let c = &f["counters"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let lost: Vec<String> = f["lostByStage"].as_object().into_iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    let st = &f["storeStats"];
    let _ = writeln!(out, "{:<16} {} records, flushed every {} ms{}", "Flows", f["aggregation"].as_str().unwrap_or("-"), n(&f["flushIntervalMillis"]),
        if f["readingEvents"].as_bool() == Some(true) { "" } else { " (not reading events yet)" });
    let _ = writeln!(out, "{:<16} {} in, {} records out, {} stored", "Flow events", n(&c["events_in"]), n(&c["records_out"]), n(&c["records_stored"]));
    let _ = writeln!(out, "{:<16} {} ({})", "Flow events lost", n(&f["lostTotal"]), lost.join(" "));
    let _ = writeln!(out, "{:<16} {} packets in {} kernel aggregates", "Denied, summed", n(&c["denied_aggregated_packets"]), n(&c["denied_aggregates"]));
    let _ = writeln!(
        out,
        "{:<16} {} records, {} of {} (file {})",
        "Flow store",
        n(&st["records"]),
        Bytes(n(&st["bytes"])),
        Bytes(n(&f["storeMaxBytes"])),
        Bytes(n(&st["file_bytes"]))
    );
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn flow_store_sizes_are_human_sized() {
        let f = serde_json::json!({
            "aggregation": "per-connection", "flushIntervalMillis": 1000, "readingEvents": true,
            "counters": {"events_in": 10, "records_out": 4, "records_stored": 4},
            "lostTotal": 0, "lostByStage": {},
            "storeStats": {"records": 4, "bytes": 97075, "file_bytes": 1_310_720},
            "storeMaxBytes": 1_073_741_824u64,
        });
        let out = super::flows_table(&f);
        assert!(out.contains("Flow store       4 records, 94.8 KiB of 1.0 GiB (file 1.2 MiB)\n"), "{out}");
    }
}
