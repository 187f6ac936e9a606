//! Golden files for everything a person or program reads: compact, JSON, table, colour, and the
//! filter flags' `--help`. Regenerate with `PORIN_BLESS=1 cargo test -p porin-flow --test golden`.

mod common;

use std::path::PathBuf;

use clap::{CommandFactory, Parser};
use common::*;
use porin_dataplane::{Direction, EventType};
use porin_flow::{AggregationLevel, FilterArgs, FlowRecord, OutputFormat, Pipeline, Printer};

fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("PORIN_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (run with PORIN_BLESS=1)", path.display()));
    assert!(expected == actual, "{} differs (PORIN_BLESS=1 to accept):\n--- expected\n{expected}\n--- actual\n{actual}", path.display());
}

fn records(level: AggregationLevel) -> Vec<FlowRecord> {
    use Direction::*;
    use EventType::*;
    let mut p = Pipeline::new(cfg(level), enricher());
    let mut evs = web_to_db_connection(40000, 1.0);
    evs.extend(web_to_db_connection(40001, 1.25));
    evs.push(ev(NewAllowed, Ingress, 1.0, DB, ID_WEB1, RULE_ALLOW_DB, "10.0.0.11", 40000, "10.0.0.13", 5432));
    for i in 0..3 {
        evs.push(ev(Denied, Egress, 2.0 + f64::from(i), WEB1, ID_WORLD, RULE_DENY_WORLD, "10.0.0.11", 50000, "8.8.8.8", 53));
    }
    let mut icmp = ev(Denied, Ingress, 4.5, DB, ID_WORLD, RULE_DEFAULT_DENY, "2001:db8::1", 0, "fd00::13", 0x0800);
    icmp.proto = 58;
    icmp.tcp_flags = 0;
    icmp.reason = porin_dataplane::Reason::DropNoPolicy;
    evs.push(icmp);
    for e in &evs {
        p.push(e);
    }
    p.flush(10 * SEC)
}

fn render(format: OutputFormat, color: bool, level: AggregationLevel) -> String {
    let mut pr = Printer::new(Vec::new(), format, color);
    for r in records(level) {
        pr.print(&r).unwrap();
    }
    String::from_utf8(pr.finish().unwrap()).unwrap()
}

#[test]
fn compact() {
    check("compact.txt", &render(OutputFormat::Compact, false, AggregationLevel::FiveTuple));
    check("compact-workload.txt", &render(OutputFormat::Compact, false, AggregationLevel::Workload));
}

#[test]
fn compact_colour() {
    let out = render(OutputFormat::Compact, true, AggregationLevel::FiveTuple);
    assert!(out.contains("\x1b[32mALLOWED\x1b[0m") && out.contains("\x1b[31mDENIED\x1b[0m"));
    check("compact-color.txt", &out);
    assert!(!render(OutputFormat::Compact, false, AggregationLevel::FiveTuple).contains('\x1b'));
}

#[test]
fn json_lines() {
    let out = render(OutputFormat::Json, false, AggregationLevel::FiveTuple);
    for line in out.lines() {
        serde_json::from_str::<FlowRecord>(line).unwrap();
    }
    check("flows.jsonl", &out);
}

#[test]
fn table() {
    check("table.txt", &render(OutputFormat::Table, false, AggregationLevel::FiveTuple));
    check("table-workload.txt", &render(OutputFormat::Table, false, AggregationLevel::Workload));
}

/// `-o hubble`: Hubble's GetFlowsResponse field names, which jq scripts for `hubble observe -o json` read.
#[test]
fn hubble_json() {
    let out = render(OutputFormat::Hubble, false, AggregationLevel::FiveTuple);
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), records(AggregationLevel::FiveTuple).len());
    let first = &lines[0];
    assert_eq!(first["node_name"], "node-1");
    assert_eq!(first["time"], first["flow"]["time"]);
    let f = &first["flow"];
    assert_eq!(f["verdict"], "FORWARDED");
    assert_eq!(f["traffic_direction"], "INGRESS");
    assert_eq!(f["source"]["namespace"], "prod");
    assert_eq!(f["source"]["pod_name"], "web-7d9f-abcde");
    assert!(f["source"]["labels"].as_array().unwrap().iter().any(|l| l == "k8s:app=web"));
    assert_eq!(f["l4"]["TCP"]["destination_port"], 5432);
    assert_eq!(f["l4"]["TCP"]["flags"]["SYN"], true);
    assert_eq!(f["IP"]["ipVersion"], "IPv4");
    assert_eq!(f["ingress_allowed_by"][0]["name"], "knp.default.db");
    assert_eq!(f["ingress_allowed_by"][0]["namespace"], "prod");
    let dropped: Vec<&serde_json::Value> = lines.iter().map(|l| &l["flow"]).filter(|f| f["verdict"] == "DROPPED").collect();
    assert!(!dropped.is_empty());
    for f in &dropped {
        assert!(f["drop_reason_desc"].as_str().unwrap().starts_with("POLICY_DEN"), "{f}");
        assert_eq!(f["event_type"]["type"], 1);
    }
    assert!(dropped.iter().any(|f| f["destination"]["labels"].as_array().unwrap().iter().any(|l| l == "reserved:world")));
    assert!(dropped.iter().any(|f| f["l4"]["ICMPv6"]["type"].is_number()));
    check("flows-hubble.jsonl", &out);
}

#[test]
fn compact_with_node_name() {
    let mut pr = Printer::new(Vec::new(), OutputFormat::Compact, false).print_node_name(true);
    let r = &records(AggregationLevel::FiveTuple)[0];
    pr.print(r).unwrap();
    let out = String::from_utf8(pr.finish().unwrap()).unwrap();
    assert!(out.contains(" [node-1]:  prod/web-7d9f-abcde:40000 -> prod/db-0:5432"), "{out}");
}

#[derive(Parser)]
#[command(name = "observe", about = "Show flows")]
struct Observe {
    #[command(flatten)]
    filters: FilterArgs,
}

#[test]
fn filter_flags_help() {
    let help = Observe::command().term_width(100).render_help().to_string();
    check("observe-help.txt", &help);
}
