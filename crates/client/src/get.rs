//! `porin get`: the objects a set of `KIND[/NAME]` targets names, in the chosen `-o` format, and `--watch`'s
//! stream of changes. The caller parses the flags into [`GetOptions`]; the output goes to the writers it gives.

use std::io::Write;

use http_body_util::BodyExt;
use hyper::Method;
use porin_model::Kind;
use serde_json::{Value, json};

use crate::client::{Client, ServerError, block_on, collection_path, enc, type_name};
use crate::getfmt::{GetOutput, custom_rows};
use crate::printers::{self, TableOptions};
use crate::targets::targets;
use crate::{Error, Result};

/// What `porin get` was asked for (its flags, parsed).
#[derive(Debug, Clone)]
pub struct GetOptions {
    /// `KIND [NAME...]`, `KIND1,KIND2` or `KIND/NAME...`, as typed.
    pub targets: Vec<String>,
    pub namespace: Option<String>,
    pub all_namespaces: bool,
    pub selector: Option<String>,
    pub output: GetOutput,
    pub api_version: Option<String>,
    pub show_labels: bool,
    pub no_headers: bool,
    pub watch: bool,
    pub output_watch_events: bool,
    pub resource_version: Option<u64>,
}

fn json_err(e: impl std::fmt::Display) -> Error {
    Error::Invalid(e.to_string())
}

/// Run `porin get`: the objects (or, with `watch`, the changes as they happen) to `out`; notes and "No
/// resources found" to `err`.
pub fn get(c: &Client, a: &GetOptions, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    let targets = targets(&a.targets)?;
    if let Some(s) = &a.selector {
        porin_selector::labelsel::parse_any(s).map_err(|e| invalid!("invalid selector: {e}"))?;
    }
    let ns = if a.all_namespaces { None } else { Some(a.namespace.clone().unwrap_or_else(|| "default".into())) };
    let path_of = |kind: Kind, name: &Option<String>| {
        let base = collection_path(kind, ns.as_deref());
        match name {
            Some(n) => format!("{base}/{n}"),
            None => base,
        }
    };
    let query = |extra: &[String]| {
        let mut q: Vec<String> = a.selector.iter().map(|s| format!("labelSelector={}", enc(s))).collect();
        q.extend(extra.iter().cloned());
        if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) }
    };
    block_on(async {
        if a.watch {
            let [(kind, name)] = targets.as_slice() else {
                bail!("--watch works on one kind (and at most one name) at a time");
            };
            return watch(c, a, *kind, &path_of(*kind, name), &query, ns.as_deref(), out, err).await;
        }
        // Each answer with the kind it lists: one object (a NAME) or a list.
        let mut answers: Vec<(Kind, bool, Value)> = Vec::new();
        let expanded = a.targets.first().is_some_and(|t| t.split(',').any(|k| k.eq_ignore_ascii_case("all")));
        for (kind, name) in &targets {
            let v = match c.call(Method::GET, &format!("{}{}", path_of(*kind, name), query(&[])), None).await {
                Ok(v) => v,
                // `get all` as a scoped token: the kinds it may not list (global policies) are left out, as the
                // kinds a namespaced Role does not grant are in `kubectl get all`.
                Err(Error::Server(s)) if expanded && s.reason == "Forbidden" => continue,
                Err(e) => return Err(e),
            };
            answers.push((*kind, name.is_some(), v));
        }
        let items: Vec<(Kind, Value)> = answers
            .iter()
            .flat_map(|(k, one, v)| {
                let vs = if *one { vec![v.clone()] } else { v["items"].as_array().cloned().unwrap_or_default() };
                vs.into_iter().map(move |x| (*k, x))
            })
            .collect();
        // What JSON, YAML and jsonpath see: the server's answer, or a List of everything when several were asked.
        let whole = || match answers.as_slice() {
            [(_, _, v)] => v.clone(),
            _ => {
                json!({"apiVersion": "v1", "kind": "List", "items": items.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>()})
            }
        };
        if a.api_version.is_some() {
            return calico_v3(a, &answers, &items, out, err);
        }
        match &a.output {
            GetOutput::Json => writeln!(out, "{}", serde_json::to_string_pretty(&whole()).map_err(json_err)?),
            GetOutput::Yaml => write!(out, "{}", serde_saphyr::to_string(&whole()).map_err(json_err)?),
            // As kubectl: exactly the template, no newline added (`{"\n"}` adds one).
            GetOutput::JsonPath(t) => write!(out, "{}", t.render(&whole())),
            _ if items.is_empty() => no_resources(&targets, ns.as_deref(), err),
            GetOutput::Name => items.iter().try_for_each(|(k, v)| {
                writeln!(out, "{}/{}", type_name(*k), v["metadata"]["name"].as_str().unwrap_or(""))
            }),
            GetOutput::CustomColumns(cols) => {
                let objs: Vec<Value> = items.iter().map(|(_, v)| v.clone()).collect();
                write!(out, "{}", printers::render_table(&custom_rows(cols, &objs), a.no_headers))
            }
            GetOutput::Table | GetOutput::Wide => tables(a, &targets, &items, out),
        }
        .map_err(Error::write)
    })?
}

/// `-o table|wide`: one table per kind, blank lines between them.
fn tables(a: &GetOptions, targets: &[(Kind, Option<String>)], items: &[(Kind, Value)], out: &mut dyn Write) -> std::io::Result<()> {
    let mut kinds: Vec<Kind> = Vec::new();
    for (k, _) in items {
        if !kinds.contains(k) {
            kinds.push(*k);
        }
    }
    // Names read `type/name` when more than one kind was asked for, even if only one had objects.
    let several = targets.iter().any(|(k, _)| *k != targets[0].0);
    for (i, k) in kinds.iter().enumerate() {
        let of_kind: Vec<Value> = items.iter().filter(|(x, _)| x == k).map(|(_, v)| v.clone()).collect();
        let o = table_options(a, several.then(|| type_name(*k)));
        if i > 0 {
            writeln!(out)?;
        }
        write!(out, "{}", printers::render_table(&printers::resource_rows(*k, &of_kind, &[], &o), a.no_headers))?;
    }
    Ok(())
}

/// `--api-version projectcalico.org/v3`: the objects as Calico v3 manifests (YAML or JSON).
fn calico_v3(
    a: &GetOptions,
    answers: &[(Kind, bool, Value)],
    items: &[(Kind, Value)],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    if !matches!(a.output, GetOutput::Json | GetOutput::Yaml) {
        bail!("--api-version applies to -o yaml and -o json");
    }
    let mut renamed = 0;
    let mut docs = Vec::new();
    for (k, v) in items {
        let c = porin_model::calico_export::to_calico_v3(*k, v).map_err(json_err)?;
        renamed += usize::from(c["metadata"]["name"] != v["metadata"]["name"]);
        docs.push(c);
    }
    if renamed > 0 {
        writeln!(
            err,
            "note: {renamed} tiered polic{} named TIER.NAME as Calico requires; the Porin name is in the annotation {}",
            if renamed == 1 { "y is" } else { "ies are" },
            porin_model::calico_export::NAME_ANNOTATION
        )
        .map_err(Error::write)?;
    }
    let doc = match (answers, docs.len()) {
        ([(_, true, _)], 1) => docs.remove(0),
        _ => json!({"apiVersion": "v1", "kind": "List", "items": docs}),
    };
    match a.output {
        GetOutput::Json => writeln!(out, "{}", serde_json::to_string_pretty(&doc).map_err(json_err)?),
        _ => write!(out, "{}", serde_saphyr::to_string(&doc).map_err(json_err)?),
    }
    .map_err(Error::write)
}

fn table_options(a: &GetOptions, name_prefix: Option<String>) -> TableOptions {
    TableOptions {
        all_namespaces: a.all_namespaces,
        wide: a.output == GetOutput::Wide,
        show_labels: a.show_labels,
        events: a.output_watch_events,
        name_prefix,
        now: porin_agent::timefmt::now_secs(),
    }
}

fn no_resources(targets: &[(Kind, Option<String>)], ns: Option<&str>, err: &mut dyn Write) -> std::io::Result<()> {
    match ns {
        Some(ns) if targets.iter().any(|(k, _)| k.info().namespaced) => {
            writeln!(err, "No resources found in {ns} namespace.")
        }
        _ => writeln!(err, "No resources found"),
    }
}

/// `--watch`: with `-o json` the server's events as they come; otherwise the current state (unless
/// `--resource-version` asks for changes only), then one row (name, custom columns, jsonpath) per change.
#[allow(clippy::too_many_arguments)]
async fn watch(
    c: &Client,
    a: &GetOptions,
    kind: Kind,
    path: &str,
    query: &dyn Fn(&[String]) -> String,
    ns: Option<&str>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    if a.output == GetOutput::Yaml {
        bail!("--watch prints tables, names, custom columns, jsonpath or (with -o json) events; not YAML");
    }
    let raw = a.output == GetOutput::Json;
    let o = table_options(a, None);
    let mut widths: Vec<usize> = Vec::new();
    let mut header_done = a.no_headers;
    let mut after = a.resource_version;
    if after.is_none() && !raw {
        let v = c.call(Method::GET, &format!("{path}{}", query(&[])), None).await?;
        let one = v.get("items").is_none();
        let items = if one { vec![v.clone()] } else { v["items"].as_array().cloned().unwrap_or_default() };
        after = v["metadata"]["resourceVersion"].as_str().and_then(|s| s.parse().ok());
        let events = vec!["ADDED"; items.len()];
        let rows = match &a.output {
            GetOutput::Table | GetOutput::Wide => Some(printers::resource_rows(kind, &items, &events, &o)),
            GetOutput::CustomColumns(cols) => Some(custom_rows(cols, &items)),
            _ => None,
        };
        match rows {
            Some(rows) => {
                widths = printers::column_widths(&rows);
                if !items.is_empty() {
                    write!(out, "{}", printers::render_table(&rows, a.no_headers)).map_err(Error::write)?;
                    header_done = true;
                }
            }
            None => items.iter().try_for_each(|it| write!(out, "{}", line_of(a, kind, it))).map_err(Error::write)?,
        }
        if items.is_empty() {
            no_resources(&[(kind, None)], ns, err).map_err(Error::write)?;
        }
        out.flush().map_err(Error::write)?;
    }
    let mut extra = vec!["watch=true".to_string()];
    if let Some(rv) = after {
        extra.push(format!("resourceVersion={rv}"));
    }
    let resp = c.send(Method::GET, &format!("{path}{}", query(&extra)), None).await?;
    let status = resp.status();
    if !status.is_success() {
        let b = resp.into_body().collect().await?.to_bytes();
        let v: Value = serde_json::from_slice(&b).unwrap_or_default();
        return Err(ServerError::from_body(status, &v).into());
    }
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        if raw {
            out.write_all(&data).map_err(Error::write)?;
            out.flush().map_err(Error::write)?;
            continue;
        }
        buf.extend_from_slice(&data);
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let ev: Value = serde_json::from_slice(&line).map_err(|e| invalid!("bad watch event from server: {e}"))?;
            let ty = ev["type"].as_str().unwrap_or("");
            if ty == "ERROR" {
                return Err(ServerError::from_body(hyper::StatusCode::INTERNAL_SERVER_ERROR, &ev["object"]).into());
            }
            let obj = &ev["object"];
            let rows = match &a.output {
                GetOutput::Table | GetOutput::Wide => {
                    printers::resource_rows(kind, std::slice::from_ref(obj), &[ty], &o)
                }
                GetOutput::CustomColumns(cols) => custom_rows(cols, std::slice::from_ref(obj)),
                _ => {
                    let prefix = if a.output_watch_events { format!("{ty}   ") } else { String::new() };
                    write!(out, "{prefix}{}", line_of(a, kind, obj)).map_err(Error::write)?;
                    out.flush().map_err(Error::write)?;
                    continue;
                }
            };
            // Widths grow to fit, never shrink, so the columns of later rows stay where they were.
            let now = printers::column_widths(&rows);
            widths.resize(widths.len().max(now.len()), 0);
            for (w, n) in widths.iter_mut().zip(now) {
                *w = (*w).max(n);
            }
            if !header_done {
                write!(out, "{}", printers::render_row(&rows[0], &widths)).map_err(Error::write)?;
                header_done = true;
            }
            write!(out, "{}", printers::render_row(&rows[1], &widths)).map_err(Error::write)?;
            out.flush().map_err(Error::write)?;
        }
    }
    Ok(())
}

/// One object in a line format (`-o name`, `-o jsonpath=`), newline included (a watch prints one a line).
fn line_of(a: &GetOptions, kind: Kind, obj: &Value) -> String {
    match &a.output {
        GetOutput::JsonPath(t) => format!("{}\n", t.render(obj)),
        _ => format!("{}/{}\n", type_name(kind), obj["metadata"]["name"].as_str().unwrap_or("")),
    }
}
