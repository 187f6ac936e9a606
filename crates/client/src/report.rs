//! Inputs of `porin report run` read from the agent: a stored GlobalReport's spec, the flows of a window.

use anyhow::{Result, anyhow, bail};
use http_body_util::BodyExt;
use hyper::Method;
use porin_model::{Kind, Resource};

use crate::client::{Client, block_on, collection_path, enc};

pub fn parse_time(flag: &str, s: &str) -> Result<i64> {
    if s == "now" {
        return Ok(porin_agent::timefmt::now_secs());
    }
    porin_agent::timefmt::parse_since(s).ok_or_else(|| anyhow!("{flag} {s:?}: expected a duration like 24h or an RFC 3339 time"))
}

/// A stored GlobalReport's spec.
pub fn stored_spec(c: &Client, name: &str) -> Result<porin_model::report::GlobalReportSpec> {
    let v = block_on(c.call(Method::GET, &format!("{}/{}", collection_path(Kind::GlobalReport, None), enc(name)), None))??;
    let r = porin_model::load::to_resource(Kind::GlobalReport, v).map_err(|(p, m)| anyhow!("GlobalReport {name:?}: {p}: {m}"))?;
    let Resource::GlobalReport(o) = r else { unreachable!("decoded as GlobalReport") };
    Ok(o.spec)
}

pub fn fetch_flows(c: &Client, start: i64, end: i64) -> Result<Vec<porin_flow::FlowRecord>> {
    let (s, e) = (porin_agent::timefmt::rfc3339(start), porin_agent::timefmt::rfc3339(end));
    let path = format!("/porin/v1/flows?arg=--since&arg={}&arg=--until&arg={}", enc(&s), enc(&e));
    block_on(async {
        let resp = c.send(Method::GET, &path, None).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("reading flows: {status}: {}", String::from_utf8_lossy(&body));
        }
        let mut out = Vec::new();
        for line in body.split(|b| *b == b'\n').filter(|l| !l.trim_ascii().is_empty()) {
            match serde_json::from_slice::<porin_flow::FlowRecord>(line) {
                Ok(r) => out.push(r),
                // A `{"lagged": N}` notice or anything else that is not a record: reported, never guessed.
                Err(_) => eprintln!("warning: skipped a line of the flow answer that is not a record: {}", String::from_utf8_lossy(line)),
            }
        }
        Ok(out)
    })?
}
