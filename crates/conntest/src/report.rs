//! The results as a table (people), JSON (programs) and JUnit XML (CI systems). Golden-file tested
//! (crates/porin/tests/golden).

use std::fmt::Write as _;

use porin_client::printers;
use porin_model::conntest::PeerSpec;
use serde_json::{Value, json};

use crate::eval::{CaseResult, GuardResult};

/// Traces printed per failing case; the count of the rest is given.
const MAX_TRACES: usize = 10;

/// A peer as written, on one line.
fn peer_text(p: &PeerSpec) -> String {
    match p {
        PeerSpec::Text(s) => s.clone(),
        PeerSpec::Object(o) => {
            if let Some(n) = &o.network_set {
                format!("networkSet {n}")
            } else if let Some(n) = &o.global_network_set {
                format!("globalNetworkSet {n}")
            } else {
                let sel = o.selector.as_deref().unwrap_or("");
                match &o.namespace {
                    Some(ns) => format!("{ns}: {sel}"),
                    None => format!("*: {sel}"),
                }
            }
        }
    }
}

pub(crate) fn table(results: &[CaseResult], guards: &[GuardResult<'_>]) -> String {
    let mut rows =
        vec![["RESULT", "TEST", "CASE", "FROM", "TO", "PACKET", "EXPECT", "ACTUAL"].map(String::from).to_vec()];
    for r in results {
        rows.push(vec![
            if r.passed() { "PASS" } else { "FAIL" }.to_string(),
            r.test.clone(),
            r.label(),
            peer_text(&r.case.from),
            peer_text(&r.case.to),
            r.packet.clone(),
            r.expected(),
            r.actual(),
        ]);
    }
    for g in guards {
        let (from, to) = g.spec().map(|s| (GuardResult::side(&s.from), GuardResult::side(&s.to))).unwrap_or_default();
        rows.push(vec![
            if g.violation.is_none() { "PASS" } else { "FAIL" }.to_string(),
            format!("ReachabilityGuard/{}", g.name),
            "guard".to_string(),
            from,
            to,
            g.packet(),
            g.expect(),
            g.actual(),
        ]);
    }
    let mut out = printers::render_columns(&rows);
    for (g, v) in guards.iter().filter_map(|g| g.violation.as_ref().map(|v| (g, v))) {
        let _ = writeln!(out);
        let _ = writeln!(out, "--- FAIL ReachabilityGuard/{}: {v}", g.name);
    }
    for r in results.iter().filter(|r| !r.passed()) {
        let _ = writeln!(out);
        let _ = writeln!(out, "--- FAIL {} {}: expected {}, got {}", r.test, r.label(), r.expected(), r.actual());
        for f in r.failures.iter().take(MAX_TRACES) {
            let _ = writeln!(out);
            out.push_str(&f.trace_text);
        }
        if r.failures.len() > MAX_TRACES {
            let _ = writeln!(
                out,
                "\n... and {} more failing pairs (-o json lists them all)",
                r.failures.len() - MAX_TRACES
            );
        }
    }
    let failed = results.iter().filter(|r| !r.passed()).count() + guards.iter().filter(|g| g.violation.is_some()).count();
    let _ = writeln!(out);
    let _ = writeln!(out, "{} passed, {failed} failed", results.len() + guards.len() - failed);
    out
}

pub(crate) fn to_json(results: &[CaseResult], guards: &[GuardResult<'_>]) -> Value {
    let failed = results.iter().filter(|r| !r.passed()).count() + guards.iter().filter(|g| g.violation.is_some()).count();
    let cases: Vec<Value> = results
        .iter()
        .map(|r| {
            json!({
                "test": r.test,
                "case": r.label(),
                "index": r.index,
                "from": r.case.from,
                "to": r.case.to,
                "packet": r.packet,
                "expect": r.case.expect,
                "expectPending": r.case.expect_pending,
                "passed": r.passed(),
                "pairs": r.pairs,
                "failures": r.failures.iter().map(|f| json!({
                    "from": f.from,
                    "to": f.to,
                    "actual": f.actual,
                    "actualPending": f.actual_pending,
                    "trace": f.trace_json,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut out = json!({"passed": results.len() + guards.len() - failed, "failed": failed, "cases": cases});
    if !guards.is_empty() {
        out["guards"] = guards
            .iter()
            .map(|g| json!({"name": g.name, "expect": g.expect(), "passed": g.violation.is_none(), "violation": g.violation}))
            .collect();
    }
    out
}

/// Text for XML content and attribute values: the five predefined entities escaped; characters XML 1.0
/// cannot carry at all (most C0 controls) replaced by U+FFFD.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: one testsuite per ConnectivityTest, one testcase per case, a failure with the traces.
pub(crate) fn junit(results: &[CaseResult], guards: &[GuardResult<'_>]) -> String {
    let mut suites: Vec<(&str, Vec<&CaseResult>)> = Vec::new();
    for r in results {
        match suites.iter_mut().find(|(n, _)| *n == r.test) {
            Some((_, v)) => v.push(r),
            None => suites.push((&r.test, vec![r])),
        }
    }
    let gfailed = guards.iter().filter(|g| g.violation.is_some()).count();
    let failed = results.iter().filter(|r| !r.passed()).count() + gfailed;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"porin test\" tests=\"{}\" failures=\"{failed}\" errors=\"0\">",
        results.len() + guards.len()
    );
    if !guards.is_empty() {
        let _ = writeln!(
            out,
            "  <testsuite name=\"ReachabilityGuards\" tests=\"{}\" failures=\"{gfailed}\" errors=\"0\" skipped=\"0\">",
            guards.len()
        );
        for g in guards {
            let _ = write!(out, "    <testcase name=\"{}\" classname=\"porin.guards\">", xml_escape(&g.name));
            match &g.violation {
                None => {
                    let _ = writeln!(out, "</testcase>");
                }
                Some(v) => {
                    let _ = writeln!(
                        out,
                        "\n      <failure message=\"{}\" type=\"GuardViolated\">{}</failure>\n    </testcase>",
                        xml_escape(&format!("expected {}, got {}", g.expect(), g.actual())),
                        xml_escape(&v.to_string())
                    );
                }
            }
        }
        let _ = writeln!(out, "  </testsuite>");
    }
    for (name, cases) in suites {
        let f = cases.iter().filter(|r| !r.passed()).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\" errors=\"0\" skipped=\"0\">",
            xml_escape(name),
            cases.len()
        );
        for r in cases {
            let title = format!("{} -> {} {}", peer_text(&r.case.from), peer_text(&r.case.to), r.packet);
            let _ = write!(
                out,
                "    <testcase name=\"{}\" classname=\"porin.{}\">",
                xml_escape(&format!("{}: {title}", r.label())),
                xml_escape(&r.test)
            );
            if r.passed() {
                let _ = writeln!(out, "</testcase>");
                continue;
            }
            let message = format!("expected {}, got {}", r.expected(), r.actual());
            let mut body = String::new();
            for f in &r.failures {
                body.push_str(&f.trace_text);
                body.push('\n');
            }
            let _ = writeln!(
                out,
                "\n      <failure message=\"{}\" type=\"ConnectivityMismatch\">{}</failure>\n    </testcase>",
                xml_escape(&message),
                xml_escape(&body)
            );
        }
        let _ = writeln!(out, "  </testsuite>");
    }
    out.push_str("</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escape_covers_markup_and_forbidden_characters() {
        assert_eq!(xml_escape("a<b>&\"c'\u{1}\n"), "a&lt;b&gt;&amp;&quot;c&apos;\u{FFFD}\n");
    }
}
