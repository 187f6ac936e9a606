//! `porin review unused` over several agents: their answers merged into one.

use std::collections::BTreeMap;

use serde_json::{Value, json};

pub fn later(a: &Value, b: &Value) -> Value {
    match (a.as_str(), b.as_str()) {
        (Some(x), Some(y)) => json!(x.max(y)),
        (Some(_), None) => a.clone(),
        _ => b.clone(),
    }
}

/// Merges the nodes' answers: last hits are the latest, connections add up, complete only if every node's is.
pub fn merge(answers: Vec<Value>) -> Value {
    let mut it = answers.into_iter();
    let Some(mut out) = it.next() else { return Value::Null };
    for v in it {
        out["complete"] = json!(out["complete"].as_bool() == Some(true) && v["complete"].as_bool() == Some(true));
        out["countersSince"] = json!(out["countersSince"].as_str().max(v["countersSince"].as_str()));
        let theirs: BTreeMap<String, &Value> =
            v["policies"].as_array().into_iter().flatten().map(|p| (p["traceName"].as_str().unwrap_or("").to_string(), p)).collect();
        for p in out["policies"].as_array_mut().into_iter().flatten() {
            let Some(q) = theirs.get(p["traceName"].as_str().unwrap_or("")) else { continue };
            p["lastHit"] = later(&p["lastHit"], &q["lastHit"]);
            p["connections"] = json!(p["connections"].as_u64().unwrap_or(0) + q["connections"].as_u64().unwrap_or(0));
            p["unused"] = json!(p["lastHit"].is_null());
            let qr = q["rules"].as_array().cloned().unwrap_or_default();
            for r in p["rules"].as_array_mut().into_iter().flatten() {
                if let Some(o) = qr.iter().find(|o| o["direction"] == r["direction"] && o["index"] == r["index"]) {
                    r["lastHit"] = later(&r["lastHit"], &o["lastHit"]);
                    r["connections"] = json!(r["connections"].as_u64().unwrap_or(0) + o["connections"].as_u64().unwrap_or(0));
                    r["unused"] = json!(r["lastHit"].is_null());
                }
            }
        }
    }
    out
}
