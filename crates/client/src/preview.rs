//! `porin preview`: the flows the agent recorded replayed through the policy engine with and without a change,
//! and the connections whose verdict flips (a table for people, JSON for programs).

use std::fmt::Write as _;
use std::path::PathBuf;

use http_body_util::BodyExt;
use hyper::Method;
use porin_model::{Document, Kind, load_paths_partial, validate_set};
use porin_policy::preview::{Flip, Side, preview as replay};
use porin_policy::{Cluster, Variant};
use serde_json::json;

use crate::client::{Client, block_on, enc};
use crate::live::{fetch_live, overlay};
use crate::{Error, Result, pretty_json, printers};

pub fn table(flips: &[Flip], records: usize, staged: bool) -> String {
    let what = if staged { "the staged policies" } else { "the change" };
    let mut out = String::new();
    if flips.is_empty() {
        let _ = writeln!(out, "no observed flow changes verdict with {what} ({records} flow records replayed)");
        return out;
    }
    let mut rows = vec![["CHANGE", "FROM", "TO", "PORT", "FLOWS", "BEFORE", "AFTER"].map(String::from).to_vec()];
    for f in flips {
        rows.push(vec![
            if f.breaks() { "allowed -> denied" } else { "denied -> allowed" }.to_string(),
            f.from.clone(),
            f.to.clone(),
            format!("{}/{}", f.protocol, f.port),
            f.flows.to_string(),
            f.before.clone(),
            f.after.clone(),
        ]);
    }
    out.push_str(&printers::render_columns(&rows));
    let breaks = flips.iter().filter(|f| f.breaks()).count();
    let _ = writeln!(
        out,
        "\n{breaks} observed connection group(s) would be denied, {} would be allowed, with {what} ({records} flow records replayed)",
        flips.len() - breaks
    );
    out
}

fn deleted(spec: &str) -> Result<(Kind, Option<String>, String)> {
    let parts: Vec<&str> = spec.split('/').collect();
    let (kind, ns, name) = match parts.as_slice() {
        [k, n] => (*k, None, *n),
        [k, ns, n] => (*k, Some(ns.to_string()), *n),
        _ => bail!("--delete {spec:?}: expected KIND/NAME or KIND/NAMESPACE/NAME"),
    };
    let kind = Kind::from_cli(kind).ok_or_else(|| invalid!("--delete {spec:?}: unknown kind {kind:?}"))?;
    let ns = if kind.info().namespaced { Some(ns.unwrap_or_else(|| "default".into())) } else { None };
    Ok((kind, ns, name.to_string()))
}

/// What `porin preview` found: the rendering (table or JSON) and how many observed connections the change denies.
#[derive(Debug, Clone)]
pub struct Preview {
    pub text: String,
    pub breaks: usize,
}

/// Replay the flows recorded since `since` through the live model with and without the change (`files` applied,
/// `delete` removed; neither: the staged policies). None after writing the input errors to `err`.
pub fn preview(c: &Client, files: &[PathBuf], delete: &[String], since: &str, json: bool, err: &mut dyn std::io::Write) -> Result<Option<Preview>> {
    let (changes, errors) = if files.is_empty() { (vec![], vec![]) } else { load_paths_partial(files) };
    let mut errors = errors;
    if let Err(e) = validate_set(&changes, &Default::default()) {
        errors.extend(e);
    }
    if !errors.is_empty() {
        for e in &errors {
            writeln!(err, "{e}").map_err(Error::write)?;
        }
        writeln!(err, "{} error(s); nothing was previewed", errors.len()).map_err(Error::write)?;
        return Ok(None);
    }
    let dels = delete.iter().map(|d| deleted(d)).collect::<Result<Vec<_>>>()?;
    let live = fetch_live(c)?;
    for (k, ns, n) in &dels {
        if !live.iter().any(|d| d.resource.kind() == *k && d.resource.namespace().map(str::to_string) == *ns && d.resource.name() == n) {
            bail!("--delete {k}/{}{n}: not found on the server", ns.as_ref().map(|s| format!("{s}/")).unwrap_or_default());
        }
    }
    let staged_only = changes.is_empty() && dels.is_empty();
    let after_docs: Vec<Document> = overlay(live.clone(), changes)
        .into_iter()
        .filter(|d| !dels.iter().any(|(k, ns, n)| d.resource.kind() == *k && d.resource.namespace().map(str::to_string) == *ns && d.resource.name() == n))
        .collect();
    let build = |docs: &[Document], what: &str| {
        Cluster::build(docs.iter().map(|d| &d.resource)).map_err(|e| Error::Context { what: what.into(), source: Box::new(e.into()) })
    };
    let before = build(&live, "building the current policy model")?;
    let after = build(&after_docs, "building the model with the change")?;

    let path = format!("/porin/v1/flows?arg=--since&arg={}", enc(since));
    let body = block_on(async {
        let resp = c.send(Method::GET, &path, None).await?;
        let status = resp.status();
        let b = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
            bail!("Error from server ({}): {}", v["reason"].as_str().unwrap_or(status.as_str()), v["message"].as_str().unwrap_or("?"));
        }
        Ok(b)
    })??;
    let mut records = 0usize;
    let observed: Vec<_> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice::<porin_flow::FlowRecord>(l).ok())
        .inspect(|_| records += 1)
        .filter_map(|r| porin_agent::api::recommend::observation(&r))
        .collect();
    let (b, af) = if staged_only {
        (Side { cluster: &before, variant: Variant::Enforced }, Side { cluster: &before, variant: Variant::Pending })
    } else {
        (Side { cluster: &before, variant: Variant::Enforced }, Side { cluster: &after, variant: Variant::Enforced })
    };
    let flips = replay(b, af, &observed);
    let breaks = flips.iter().filter(|f| f.breaks()).count();
    let text = if json {
        pretty_json(&json!({
            "records": records,
            "change": if staged_only { "staged policies" } else { "manifests" },
            "allowedToDenied": breaks,
            "deniedToAllowed": flips.len() - breaks,
            "flipped": flips,
        }))?
    } else {
        table(&flips, records, staged_only)
    };
    Ok(Some(Preview { text, breaks }))
}
