//! `porin report`: a report computed over an interval from what the agent reads back (its objects, a stored
//! GlobalReport's spec, the audit trail, the flows of the window), archived reports, and the list of archives.

use std::io::Write;

use crate::{Error, Result};
use http_body_util::BodyExt;
use hyper::Method;
use porin_model::{Kind, Resource};
use porin_report::{AuditRecordView, History, Report, ReportType, Scope};
use porin_selector::Selector;

use crate::client::{Client, block_on, collection_path, enc};
use crate::live::fetch_live;

pub fn parse_time(flag: &str, s: &str) -> Result<i64> {
    if s == "now" {
        return Ok(porin_agent::timefmt::now_secs());
    }
    porin_agent::timefmt::parse_since(s).ok_or_else(|| invalid!("{flag} {s:?}: expected a duration like 24h or an RFC 3339 time"))
}

/// A stored GlobalReport's spec.
pub fn stored_spec(c: &Client, name: &str) -> Result<porin_model::report::GlobalReportSpec> {
    let v = block_on(c.call(Method::GET, &format!("{}/{}", collection_path(Kind::GlobalReport, None), enc(name)), None))??;
    let r = porin_model::load::to_resource(Kind::GlobalReport, v).map_err(|(p, m)| invalid!("GlobalReport {name:?}: {p}: {m}"))?;
    let Resource::GlobalReport(o) = r else { unreachable!("decoded as GlobalReport") };
    Ok(o.spec)
}

/// The flow records of `[start, end]` (epoch seconds), and the lines of the answer that are not records (a
/// `{"lagged": N}` notice or anything else: for the caller to report, never guessed at).
pub fn fetch_flows(c: &Client, start: i64, end: i64) -> Result<(Vec<porin_flow::FlowRecord>, Vec<String>)> {
    let (s, e) = (porin_agent::timefmt::rfc3339(start), porin_agent::timefmt::rfc3339(end));
    let path = format!("/porin/v1/flows?arg=--since&arg={}&arg=--until&arg={}", enc(&s), enc(&e));
    block_on(async {
        let resp = c.send(Method::GET, &path, None).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("reading flows: {status}: {}", String::from_utf8_lossy(&body));
        }
        let (mut out, mut skipped) = (Vec::new(), Vec::new());
        for line in body.split(|b| *b == b'\n').filter(|l| !l.trim_ascii().is_empty()) {
            match serde_json::from_slice::<porin_flow::FlowRecord>(line) {
                Ok(r) => out.push(r),
                Err(_) => skipped.push(String::from_utf8_lossy(line).into_owned()),
            }
        }
        Ok((out, skipped))
    })?
}

/// What `porin report run` computes: a report type or a stored GlobalReport's name, the interval as typed, and
/// the scope that replaces the GlobalReport's.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub report: String,
    pub since: String,
    pub until: Option<String>,
    pub namespaces: Vec<String>,
    pub selector: Option<String>,
    /// Run the stored GlobalReport in the agent and archive the result (admin).
    pub archive: bool,
}

/// `porin report run`: the report over the interval, computed here from the agent's objects, audit trail and
/// flows (lines of the flow answer that are not records are warned about on `err`), or run and archived by the
/// agent.
pub fn run(c: &Client, a: &RunOptions, err: &mut dyn Write) -> Result<Report> {
    let start = parse_time("--since", &a.since)?;
    let end = match &a.until {
        Some(u) => parse_time("--until", u)?,
        None => porin_agent::timefmt::now_secs(),
    };
    if start >= end {
        bail!("--since {} is not before --until ({} >= {})", a.since, porin_agent::timefmt::rfc3339(start), porin_agent::timefmt::rfc3339(end));
    }
    if a.archive {
        if ReportType::parse(&a.report).is_some() {
            bail!("--archive runs a stored GlobalReport: give its NAME, not a report type");
        }
        if !a.namespaces.is_empty() || a.selector.is_some() {
            bail!("--archive runs the GlobalReport as stored: --namespace and --selector do not apply");
        }
        let v = block_on(c.call(
            Method::POST,
            &format!("/porin/v1/reports/{}/run?start={start}&end={end}&archive=true", enc(&a.report)),
            None,
        ))??;
        return decode(v, "reading the report");
    }
    let objects: Vec<Resource> = fetch_live(c)?.into_iter().map(|d| d.resource).collect();
    // A GlobalReport's type and scope as the agent's scheduler reads them (namespace selectors against the
    // namespaces' labels now); --namespace and --selector replace its scope.
    let (kind, mut scope, name) = match ReportType::parse(&a.report) {
        Some(t) => (t, Scope::default(), t.as_str().to_string()),
        None => {
            let spec = stored_spec(c, &a.report)?;
            let (t, s) = porin_agent::reports::scope_of(&a.report, &spec, &objects).map_err(|e| Error::ReportRun(Box::new(e)))?;
            (t, s, a.report.clone())
        }
    };
    if !a.namespaces.is_empty() {
        scope.namespaces = a.namespaces.iter().cloned().collect();
    }
    if let Some(s) = &a.selector {
        scope.selector = Some(Selector::parse(s).map_err(|e| invalid!("--selector {s:?}: {e}"))?);
    }
    let audit = block_on(c.call(Method::GET, &format!("/porin/v1/audit?since={start}"), None))??;
    let records: Vec<AuditRecordView> = decode(audit["items"].clone(), "reading the audit trail the agent returned")?;
    let flows = if kind == ReportType::NetworkAccess {
        let (flows, skipped) = fetch_flows(c, start, end)?;
        for line in skipped {
            writeln!(err, "warning: skipped a line of the flow answer that is not a record: {line}").map_err(Error::write)?;
        }
        flows
    } else {
        Vec::new()
    };
    let history = History::new(&objects, records);
    let mut r = porin_report::compute(kind, &name, &scope, &history, &flows, start, end).map_err(|e| Error::Report(Box::new(e)))?;
    r.generated_by = format!("porin {} report run", env!("CARGO_PKG_VERSION"));
    Ok(r)
}

fn decode<T: serde::de::DeserializeOwned>(v: serde_json::Value, what: &str) -> Result<T> {
    serde_json::from_value(v).map_err(|e| Error::Context { what: what.into(), source: Box::new(Error::Invalid(e.to_string())) })
}

/// An archived report: the GlobalReport's name and the archive's end time (or `latest`).
pub fn archived(c: &Client, name: &str, end: &str) -> Result<Report> {
    let v = block_on(c.call(Method::GET, &format!("/porin/v1/reports/{}/{}", enc(name), enc(end)), None))??;
    decode(v, "reading the archived report")
}

/// The table of `porin report list` (the agent's answer to `GET /porin/v1/reports`); None when no report is
/// archived.
pub fn list_table(v: &serde_json::Value) -> Option<String> {
    let mut rows = vec![["NAME", "TYPE", "START", "END", "END (EPOCH)", "ENDPOINTS", "INGRESS-PROTECTED", "EGRESS-PROTECTED"].map(String::from).to_vec()];
    for it in v["items"].as_array().into_iter().flatten() {
        let t = |k: &str| it[k].as_i64().map(porin_agent::timefmt::rfc3339).unwrap_or_default();
        let n = |k: &str| it[k].as_u64().map(|x| x.to_string()).unwrap_or_else(|| "-".into());
        rows.push(vec![
            it["name"].as_str().unwrap_or("").to_string(),
            it["reportType"].as_str().unwrap_or("").to_string(),
            t("start"),
            t("end"),
            n("end"),
            n("endpoints"),
            n("ingressProtected"),
            n("egressProtected"),
        ]);
    }
    if rows.len() == 1 {
        return None;
    }
    let mut w = vec![0; rows[0].len()];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r.iter().enumerate().map(|(i, c)| format!("{c:<width$}", width = w[i])).collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    Some(out)
}
