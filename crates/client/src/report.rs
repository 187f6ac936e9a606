//! Inputs of `porin report run` read from the agent: a stored GlobalReport's spec, the flows of a window.

use crate::Result;
use http_body_util::BodyExt;
use hyper::Method;
use porin_model::{Kind, Resource};

use crate::client::{Client, block_on, collection_path, enc};

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
