//! Filter semantics: same flag OR, different flags AND, `--not` negates the next filter.

mod common;

use common::*;
use porin_dataplane::{Direction, EventType};
use porin_flow::filter::{FilterTerm, FlowFilter, parse_args};
use porin_flow::{AggregationLevel, FlowRecord, Pipeline};

/// Records: web-1→db (allowed), web-2→db (allowed), web-1→world (denied, staged would-allow),
/// web-1→db ingress at db (allowed).
fn records() -> Vec<FlowRecord> {
    use Direction::*;
    use EventType::*;
    let mut p = Pipeline::new(cfg(AggregationLevel::FiveTuple), enricher());
    for e in [
        ev(NewAllowed, Egress, 1.0, WEB1, ID_DB, RULE_ALLOW_DB, "10.0.0.11", 40000, "10.0.0.13", 5432),
        ev(NewAllowed, Egress, 2.0, WEB2, ID_DB, RULE_ALLOW_DB, "10.0.0.12", 40001, "10.0.0.13", 5432),
        ev(Denied, Egress, 3.0, WEB1, ID_WORLD, RULE_DENY_WORLD, "10.0.0.11", 50000, "8.8.8.8", 53),
        ev(NewAllowed, Ingress, 4.0, DB, ID_WEB1, RULE_ALLOW_DB, "10.0.0.11", 40000, "10.0.0.13", 5432),
    ] {
        p.push(&e);
    }
    p.flush(10 * SEC)
}

/// Which of the four records pass, as a bit string.
fn pass(args: &[&str]) -> String {
    let q = parse_args(args.iter().copied(), EPOCH).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    records().iter().map(|r| if q.filter.matches(r) { '1' } else { '0' }).collect()
}

#[test]
fn single_flags() {
    assert_eq!(pass(&[]), "1111");
    assert_eq!(pass(&["--from-pod", "prod/web-7d9f-abc"]), "1011");
    assert_eq!(pass(&["--from-pod", "web-"]), "1111");
    assert_eq!(pass(&["--to-pod", "db"]), "1101");
    assert_eq!(pass(&["--pod", "prod/db-0"]), "1101");
    assert_eq!(pass(&["--namespace", "prod"]), "1111");
    assert_eq!(pass(&["-n", "kube-system"]), "0000");
    assert_eq!(pass(&["--to-namespace", "prod"]), "1101");
    assert_eq!(pass(&["--to-label", "app == 'db'"]), "1101");
    assert_eq!(pass(&["--from-label", "pod-template-hash starts with 'web-7d9f-f'"]), "0100");
    assert_eq!(pass(&["--label", "tier == 'data'"]), "1101");
    assert_eq!(pass(&["--ip", "8.8.0.0/16"]), "0010");
    assert_eq!(pass(&["--from-ip", "10.0.0.12"]), "0100");
    assert_eq!(pass(&["--to-ip", "10.0.0.0/24"]), "1101");
    assert_eq!(pass(&["--port", "53"]), "0010");
    assert_eq!(pass(&["--port", "40000"]), "1001");
    assert_eq!(pass(&["--protocol", "TCP"]), "1111");
    assert_eq!(pass(&["--protocol", "udp"]), "0000");
    assert_eq!(pass(&["--verdict", "denied"]), "0010");
    assert_eq!(pass(&["--verdict", "FORWARDED"]), "1101");
    assert_eq!(pass(&["--verdict", "would-allow"]), "0010");
    assert_eq!(pass(&["--policy", "no-egress"]), "0010");
    assert_eq!(pass(&["--policy", "default/prod/knp.default.db"]), "1101");
    assert_eq!(pass(&["--policy", "staged:"]), "0010");
}

#[test]
fn hubble_flags_node_identity_direction_type() {
    assert_eq!(pass(&["--node", "node-1"]), "1111");
    assert_eq!(pass(&["--node-name", "node-*"]), "1111");
    assert_eq!(pass(&["--node", "*-1"]), "1111");
    assert_eq!(pass(&["--node", "node-2"]), "0000");
    assert_eq!(pass(&["--node", "node"]), "0000");
    // Identities are known for the peer end: the egress records' destinations, the ingress record's source.
    assert_eq!(pass(&["--to-identity", &ID_DB.to_string()]), "1100");
    assert_eq!(pass(&["--from-identity", &ID_WEB1.to_string()]), "0001");
    assert_eq!(pass(&["--identity", &ID_WORLD.to_string()]), "0010");
    assert_eq!(pass(&["--identity", "1013", "--identity", "2"]), "1110");
    assert_eq!(pass(&["--traffic-direction", "ingress"]), "0001");
    assert_eq!(pass(&["--traffic-direction", "EGRESS"]), "1110");
    assert_eq!(pass(&["-t", "drop"]), "0010");
    assert_eq!(pass(&["--type", "trace"]), "1101");
    assert_eq!(pass(&["--type", "policy-verdict"]), "1111");
    assert_eq!(pass(&["--not", "--type", "drop", "--traffic-direction", "egress"]), "1100");
    for bad in [["--identity", "web"], ["--traffic-direction", "up"], ["--type", "l7"]] {
        let e = parse_args(bad.iter().copied(), EPOCH).unwrap_err().to_string();
        assert!(e.contains(&format!("{} {:?}", bad[0], bad[1])), "{e}");
    }
}

#[test]
fn same_flag_ors_different_flags_and() {
    assert_eq!(pass(&["--port", "53", "--port", "40001"]), "0110");
    assert_eq!(pass(&["--from-ip", "10.0.0.11", "--to-port", "5432"]), "1001");
    assert_eq!(pass(&["--from-ip", "10.0.0.11", "--from-ip", "10.0.0.12", "--verdict", "allowed"]), "1101");
}

#[test]
fn not_negates_the_next_filter_only() {
    assert_eq!(pass(&["--not", "--verdict", "denied"]), "1101");
    assert_eq!(pass(&["--not", "--port", "53", "--not", "--port", "40001"]), "1001");
    // --not applies to --from-ip only; --to-port stays positive.
    assert_eq!(pass(&["--not", "--from-ip", "10.0.0.11", "--to-port", "5432"]), "0100");
    assert_eq!(pass(&["--to-port", "5432", "--not", "--from-ip", "10.0.0.11"]), "0100");
    // Positive and negated values of the same flag.
    assert_eq!(pass(&["--from-pod", "web", "--not", "--from-pod", "web-7d9f-f"]), "1011");
    // --flag=value form.
    assert_eq!(pass(&["--not", "--verdict=denied", "--port=5432"]), "1101");
}

#[test]
fn truth_table_of_filter_groups() {
    // Two predicates A (from web-1) and B (to port 5432) over the records: A = 1011, B = 1101.
    let a = || FilterTerm::parse("from-ip", "10.0.0.11").unwrap();
    let b = || FilterTerm::parse("to-port", "5432").unwrap();
    let eval = |terms: Vec<(bool, FilterTerm)>| -> String {
        let f = FlowFilter::new(terms);
        records().iter().map(|r| if f.matches(r) { '1' } else { '0' }).collect()
    };
    assert_eq!(eval(vec![(false, a())]), "1011");
    assert_eq!(eval(vec![(false, b())]), "1101");
    assert_eq!(eval(vec![(false, a()), (false, b())]), "1001"); // A AND B
    assert_eq!(eval(vec![(true, a()), (false, b())]), "0100"); // !A AND B
    assert_eq!(eval(vec![(false, a()), (true, b())]), "0010"); // A AND !B
    assert_eq!(eval(vec![(true, a()), (true, b())]), "0000"); // !A AND !B
    let c = || FilterTerm::parse("from-ip", "10.0.0.12").unwrap();
    assert_eq!(eval(vec![(false, a()), (false, c())]), "1111"); // A OR C (same flag)
    assert_eq!(eval(vec![(true, a()), (true, c())]), "0000"); // !(A OR C)
    assert_eq!(eval(vec![(false, a()), (true, c())]), "1011"); // A AND !C
}

#[test]
fn selection_flags_and_errors() {
    let q = parse_args(["--since", "5m", "--until", "2024-05-06T07:00:10Z", "--last", "3"], EPOCH).unwrap();
    assert_eq!(q.since, Some(EPOCH - 300 * SEC));
    assert_eq!(q.until, Some(EPOCH + 10 * SEC));
    assert_eq!(q.last, Some(3));
    assert!(q.filter.is_empty());
    let err = |a: &[&str]| parse_args(a.iter().copied(), EPOCH).unwrap_err().to_string();
    assert_eq!(err(&["--not"]), "--not must be followed by a filter flag (it was followed by nothing)");
    assert_eq!(err(&["--not", "--since", "5m"]), "--not must be followed by a filter flag (it was followed by --since)");
    assert!(err(&["--port", "http"]).contains("--port \"http\": expected a port number"));
    assert!(err(&["--from-label", "app == web"]).contains("--from-label"));
    assert!(err(&["--ip", "10.0.0.300"]).contains("expected an IP address or CIDR"));
    assert!(err(&["--verdict", "maybe"]).contains("would-allow"));
    assert!(err(&["--since", "yesterday"]).contains("invalid time"));
    let q = parse_args(["--not", "--pod", "a", "--port", "1"], EPOCH).unwrap();
    assert_eq!(q.filter.describe(), ["--not --pod \"a\"", "--port \"1\""]);
}

/// The canonical argument list a client ships to the agent parses back into the same filter.
#[test]
fn to_argv_roundtrips_order_and_negation() {
    use clap::{CommandFactory, FromArgMatches, Parser};
    #[derive(Parser)]
    #[command(no_binary_name = true)]
    struct Cli {
        #[command(flatten)]
        f: porin_flow::FilterArgs,
    }
    for args in [
        &["--not", "--pod", "prod/web-2", "--port", "5432", "--last", "3"][..],
        &["--verdict", "denied", "--from-namespace", "prod", "--not", "--to-ip", "8.8.8.8", "--since", "5m"],
        &["--policy", "default|prod/knp.default.db", "--not", "--protocol", "udp", "--not", "--protocol", "icmp"],
        &[],
    ] {
        let m = Cli::command().try_get_matches_from(args.iter().copied()).unwrap();
        let c = Cli::from_arg_matches(&m).unwrap();
        let argv = c.f.to_argv(&m).unwrap();
        let a = c.f.query_from_matches(&m, EPOCH).unwrap();
        let b = parse_args(argv.iter().cloned(), EPOCH).unwrap();
        assert_eq!(a.filter.describe(), b.filter.describe(), "{args:?} -> {argv:?}");
        assert_eq!((a.since, a.until, a.last, a.first), (b.since, b.until, b.last, b.first));
        let recs = records();
        let pa: Vec<bool> = recs.iter().map(|r| a.filter.matches(r)).collect();
        let pb: Vec<bool> = recs.iter().map(|r| b.filter.matches(r)).collect();
        assert_eq!(pa, pb, "{args:?}");
    }
    let m = Cli::command().try_get_matches_from(["--not", "--last", "2"]).unwrap();
    assert!(Cli::from_arg_matches(&m).unwrap().f.to_argv(&m).is_err(), "a dangling --not is an error");
}
