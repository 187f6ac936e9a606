//! `GlobalReport` (`porin.io/v1`, also Calico's `projectcalico.org/v3` shape; cluster-scoped): a compliance
//! report, run on a cron schedule by the agent and archived in the store, or on demand with
//! `porin report run NAME`.
//!
//! ```yaml
//! apiVersion: porin.io/v1
//! kind: GlobalReport
//! metadata: {name: weekly-pci}
//! spec:
//!   reportType: inventory            # inventory | network-access | policy-audit
//!   endpoints:
//!     selector: pci == 'true'        # Calico selector over the pods' labels (default: all)
//!     namespaces: {names: [shop]}    # or {selector: ...} over the namespaces' labels (default: all)
//!   schedule: "0 6 * * 1"            # cron (5 fields); each run covers the time since the previous one
//! ```

use serde::{Deserialize, Serialize};

/// The report types (Calico's, by name).
pub const REPORT_TYPES: [&str; 3] = ["inventory", "network-access", "policy-audit"];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobalReportSpec {
    pub report_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<ReportEndpoints>,
    /// Cron expression, 5 fields (minute hour day-of-month month day-of-week), UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Calico's node selector for report jobs; accepted for compatibility, reports run in the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_node_selector: Option<std::collections::BTreeMap<String, String>>,
    /// No scheduled runs while true (on-demand runs still work).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReportEndpoints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<NamesOrSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<NamesOrSelector>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamesOrSelector {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

/// Field problems: (path, message).
pub fn check(s: &GlobalReportSpec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if !REPORT_TYPES.contains(&s.report_type.as_str()) {
        out.push(("spec.reportType".into(), format!("{:?}: expected one of {}", s.report_type, REPORT_TYPES.join(", "))));
    }
    if let Some(e) = &s.endpoints {
        let sel = |path: &str, v: &Option<String>, out: &mut Vec<(String, String)>| {
            if let Some(v) = v
                && let Err(err) = porin_selector::Selector::parse(v)
            {
                out.push((path.into(), format!("{v:?}: {err}")));
            }
        };
        sel("spec.endpoints.selector", &e.selector, &mut out);
        if let Some(n) = &e.namespaces {
            sel("spec.endpoints.namespaces.selector", &n.selector, &mut out);
        }
        if let Some(n) = &e.service_accounts {
            sel("spec.endpoints.serviceAccounts.selector", &n.selector, &mut out);
        }
    }
    if let Some(c) = &s.schedule
        && let Err(e) = parse_schedule(c)
    {
        out.push(("spec.schedule".into(), e));
    }
    out
}

/// A 5-field cron expression (minute hour day-of-month month day-of-week), UTC.
pub fn parse_schedule(expr: &str) -> Result<croner::Cron, String> {
    if expr.split_whitespace().count() != 5 {
        return Err(format!("{expr:?}: expected 5 fields (minute hour day-of-month month day-of-week)"));
    }
    expr.parse::<croner::Cron>().map_err(|e| format!("{expr:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_type_selectors_and_schedule() {
        let ok = GlobalReportSpec { report_type: "inventory".into(), schedule: Some("0 6 * * 1".into()), ..Default::default() };
        assert!(check(&ok).is_empty());
        let bad = GlobalReportSpec {
            report_type: "inventroy".into(),
            schedule: Some("0 25 * * *".into()),
            endpoints: Some(ReportEndpoints { selector: Some("app ==".into()), ..Default::default() }),
            ..Default::default()
        };
        let paths: Vec<String> = check(&bad).into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["spec.reportType", "spec.endpoints.selector", "spec.schedule"]);
        assert!(parse_schedule("* * * * * *").is_err(), "seconds are not part of the schedule");
    }
}
