//! A report as JSON (everything), CSV (one row per endpoint, or per policy change) for auditors' tools, and a
//! self-contained HTML page with charts for people (no script, no external file: it opens anywhere).

use std::fmt::Write as _;

use crate::{Report, ReportType};

/// Seconds since the epoch as RFC 3339 UTC (the flow crate's one formatter).
pub fn rfc3339(secs: i64) -> String {
    porin_flow::time::format_rfc3339(u64::try_from(secs).unwrap_or(0).saturating_mul(1_000_000_000))
}

pub fn json(r: &Report) -> String {
    serde_json::to_string_pretty(r).expect("reports always serialize")
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

fn csv_row(out: &mut String, fields: &[String]) {
    let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
    out.push_str(&line.join(","));
    out.push_str("\r\n");
}

/// CSV (RFC 4180): endpoints for inventory and network-access, changes for policy-audit.
pub fn csv(r: &Report) -> String {
    let mut out = String::new();
    if r.report_type == ReportType::PolicyAudit {
        csv_row(&mut out, &["time", "user", "verb", "action", "kind", "namespace", "name", "affectedEndpoints"].map(String::from));
        for c in &r.policy_changes {
            csv_row(
                &mut out,
                &[
                    c.time.clone(),
                    c.user.clone(),
                    c.verb.clone(),
                    c.action.clone(),
                    c.kind.clone(),
                    c.namespace.clone().unwrap_or_default(),
                    c.name.clone(),
                    c.affected_endpoints.join(" "),
                ],
            );
        }
        return out;
    }
    let mut header: Vec<String> = [
        "namespace",
        "pod",
        "serviceAccount",
        "ingressProtected",
        "egressProtected",
        "ingressUnprotectedSeconds",
        "egressUnprotectedSeconds",
        "firstSeen",
        "lastSeen",
        "ingressPolicies",
        "egressPolicies",
    ]
    .map(String::from)
    .to_vec();
    let access = r.report_type == ReportType::NetworkAccess;
    if access {
        header.extend(
            ["ingressFromInternet", "egressToInternet", "ingressFromOtherNamespaces", "egressToOtherNamespaces"].map(String::from),
        );
    }
    csv_row(&mut out, &header);
    for e in &r.endpoints {
        let mut row = vec![
            e.namespace.clone(),
            e.pod.clone(),
            e.service_account.clone(),
            e.ingress_protected.to_string(),
            e.egress_protected.to_string(),
            e.ingress_unprotected_seconds.to_string(),
            e.egress_unprotected_seconds.to_string(),
            rfc3339(e.first_seen),
            rfc3339(e.last_seen),
            e.ingress_policies.join(" "),
            e.egress_policies.join(" "),
        ];
        if access {
            let a = e.access.clone().unwrap_or_default();
            row.extend([
                a.ingress_from_internet.to_string(),
                a.egress_to_internet.to_string(),
                a.ingress_from_other_namespaces.into_iter().collect::<Vec<_>>().join(" "),
                a.egress_to_other_namespaces.into_iter().collect::<Vec<_>>().join(" "),
            ]);
        }
        csv_row(&mut out, &row);
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// One horizontal bar: `part` of `whole`, labelled; patterned as well as coloured (readable in greyscale).
fn bar(out: &mut String, y: usize, label: &str, part: usize, whole: usize) {
    let w = if whole == 0 { 0.0 } else { 400.0 * part as f64 / whole as f64 };
    let _ = write!(
        out,
        r##"<text x="0" y="{ty}" font-size="13">{label}</text><rect x="220" y="{y}" width="400" height="18" fill="#eee" stroke="#999"/><rect x="220" y="{y}" width="{w:.1}" height="18" fill="url(#ok)" stroke="#1b5e20"><title>{label}: {part} of {whole}</title></rect><text x="630" y="{ty}" font-size="13">{part} / {whole}</text>"##,
        ty = y + 14,
        label = esc(label),
    );
}

/// A self-contained HTML page: summary, a chart, and the table.
pub fn html(r: &Report) -> String {
    let s = &r.summary;
    let mut h = String::new();
    let title = format!("Porin {} report {}", r.report_type.as_str(), r.name);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font:14px system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}th{{background:#f4f4f4}}\
         .no{{color:#b71c1c;font-weight:bold}}.yes{{color:#1b5e20}}</style></head><body>\
         <h1>{t}</h1><p>Interval: <b>{a}</b> to <b>{b}</b>.</p><p>How this was established: {m}.</p>",
        t = esc(&title),
        a = rfc3339(r.start),
        b = rfc3339(r.end),
        m = esc(&r.method),
    );
    let bars: Vec<(&str, usize, usize)> = match r.report_type {
        ReportType::PolicyAudit => vec![],
        _ => {
            let mut v = vec![
                ("Ingress-protected endpoints", s.ingress_protected, s.endpoints),
                ("Egress-protected endpoints", s.egress_protected, s.endpoints),
                ("Fully protected namespaces", s.namespaces_fully_protected, s.namespaces),
            ];
            if r.report_type == ReportType::NetworkAccess {
                v.push(("Reached from the internet", s.ingress_from_internet, s.endpoints));
                v.push(("Reaching the internet", s.egress_to_internet, s.endpoints));
            }
            v
        }
    };
    if !bars.is_empty() {
        let height = 28 * bars.len() + 10;
        let _ = write!(
            h,
            r##"<h2>Summary</h2><svg role="img" aria-label="summary chart" width="720" height="{height}" xmlns="http://www.w3.org/2000/svg"><defs><pattern id="ok" width="6" height="6" patternUnits="userSpaceOnUse"><rect width="6" height="6" fill="#66bb6a"/><path d="M0 6L6 0" stroke="#1b5e20" stroke-width="1"/></pattern></defs>"##
        );
        for (i, (label, part, whole)) in bars.iter().enumerate() {
            bar(&mut h, 28 * i + 4, label, *part, *whole);
        }
        h.push_str("</svg>");
    }
    let _ = write!(
        h,
        "<p>{} endpoints in {} namespaces, {} service accounts.</p>",
        s.endpoints, s.namespaces, s.service_accounts
    );
    let yn = |b: bool| if b { "<span class=\"yes\">yes</span>" } else { "<span class=\"no\">NO</span>" };
    if r.report_type == ReportType::PolicyAudit {
        let _ = write!(h, "<h2>Policy changes ({})</h2><table><tr><th>Time</th><th>User</th><th>Action</th><th>Policy</th><th>Affected endpoints</th></tr>", r.policy_changes.len());
        for c in &r.policy_changes {
            let name = match &c.namespace {
                Some(ns) => format!("{} {ns}/{}", c.kind, c.name),
                None => format!("{} {}", c.kind, c.name),
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.time),
                esc(&c.user),
                esc(&c.action),
                esc(&name),
                esc(&c.affected_endpoints.join(", "))
            );
        }
        h.push_str("</table>");
    } else {
        let access = r.report_type == ReportType::NetworkAccess;
        h.push_str("<h2>Endpoints</h2><table><tr><th>Endpoint</th><th>Service account</th><th>Ingress protected</th><th>Egress protected</th><th>Policies (ingress / egress)</th>");
        if access {
            h.push_str("<th>From internet</th><th>To internet</th><th>From namespaces</th><th>To namespaces</th>");
        }
        h.push_str("</tr>");
        for e in &r.endpoints {
            let _ = write!(
                h,
                "<tr><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td>",
                esc(&e.namespace),
                esc(&e.pod),
                esc(&e.service_account),
                yn(e.ingress_protected),
                yn(e.egress_protected),
                esc(&e.ingress_policies.join(", ")),
                esc(&e.egress_policies.join(", "))
            );
            if let Some(a) = e.access.as_ref().filter(|_| access) {
                let _ = write!(
                    h,
                    "<td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
                    a.ingress_from_internet,
                    a.egress_to_internet,
                    esc(&a.ingress_from_other_namespaces.iter().cloned().collect::<Vec<_>>().join(", ")),
                    esc(&a.egress_to_other_namespaces.iter().cloned().collect::<Vec<_>>().join(", "))
                );
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_csv_quoting() {
        assert!(rfc3339(951_782_400).starts_with("2000-02-29T00:00:00"));
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
