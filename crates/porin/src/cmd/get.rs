//! `porin get KIND[,KIND...] [NAME...] | KIND/NAME... [-n NS | -A] [-l SELECTOR] [-o FORMAT] [--watch]`.

use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use clap::Args;
use http_body_util::BodyExt;
use hyper::Method;
use porin_model::Kind;
use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, ServerError, block_on, collection_path, enc, type_name};
use crate::getfmt::{GetOutput, parse_output};
use crate::printers::{self, TableOptions};

#[derive(Args, Debug)]
pub struct GetArgs {
    /// What to get: `KIND [NAME...]`, `KIND1,KIND2` or `KIND/NAME...`. A kind is a plural, singular or short name
    /// (`pods`, `netpol`, `gnp`, `networkpolicies.porin.io`); `all` is pods, tiers, every policy kind and the
    /// network sets.
    #[arg(required = true, value_name = "KIND[/NAME]")]
    pub targets: Vec<String>,
    /// Namespace of namespaced kinds [default: default].
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
    /// Label selector, kubectl syntax (`app=web,tier!=db,env in (a,b),!legacy`) or Calico's
    /// (`app == 'web' && tier != 'db'`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Output format: table, wide, yaml, json, name (`kind/name`), `jsonpath=TEMPLATE` (like
    /// `{.items[*].metadata.name}`), `custom-columns=HEADER:PATH,...` (like `NAME:.metadata.name`).
    #[arg(short = 'o', long = "output", default_value = "table", value_parser = parse_output, value_name = "FORMAT")]
    pub output: GetOutput,
    /// With -o yaml|json: print the objects as this API version. `projectcalico.org/v3` gives Calico v3
    /// manifests (policies in a non-default tier named TIER.NAME, server-set metadata dropped).
    #[arg(long, value_name = "GROUP/VERSION", value_parser = ["projectcalico.org/v3"])]
    pub api_version: Option<String>,
    /// A LABELS column at the end of the table.
    #[arg(long)]
    pub show_labels: bool,
    /// Tables and custom columns without their header line.
    #[arg(long)]
    pub no_headers: bool,
    /// After the current state, print each change as it happens: a table row (or the chosen format) per change;
    /// with `-o json` the raw events, one JSON object a line.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// With --watch: an EVENT column (ADDED, MODIFIED, DELETED) before each row.
    #[arg(long, requires = "watch")]
    pub output_watch_events: bool,
    /// With --watch: only changes after this revision (no initial listing).
    #[arg(long, requires = "watch")]
    pub resource_version: Option<u64>,
    #[command(flatten)]
    pub client: ClientArgs,
}

use porin_client::targets::targets;

pub fn get(a: GetArgs) -> Result<ExitCode> {
    let targets = targets(&a.targets)?;
    if let Some(s) = &a.selector {
        porin_selector::labelsel::parse_any(s).map_err(|e| anyhow!("invalid selector: {e}"))?;
    }
    let c = Client::new(&a.client);
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
            return watch(&c, &a, *kind, &path_of(*kind, name), &query, ns.as_deref()).await;
        }
        // Each answer with the kind it lists: one object (a NAME) or a list.
        let mut answers: Vec<(Kind, bool, Value)> = Vec::new();
        let expanded = a.targets.first().is_some_and(|t| t.split(',').any(|k| k.eq_ignore_ascii_case("all")));
        for (kind, name) in &targets {
            let v = match c.call(Method::GET, &format!("{}{}", path_of(*kind, name), query(&[])), None).await {
                Ok(v) => v,
                // `get all` as a scoped token: the kinds it may not list (global policies) are left out, as the
                // kinds a namespaced Role does not grant are in `kubectl get all`.
                Err(porin_client::Error::Server(s)) if expanded && s.reason == "Forbidden" => continue,
                Err(e) => return Err(e.into()),
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
            if !matches!(a.output, GetOutput::Json | GetOutput::Yaml) {
                bail!("--api-version applies to -o yaml and -o json");
            }
            let mut renamed = 0;
            let mut out = Vec::new();
            for (k, v) in &items {
                let c = porin_model::calico_export::to_calico_v3(*k, v)?;
                renamed += usize::from(c["metadata"]["name"] != v["metadata"]["name"]);
                out.push(c);
            }
            if renamed > 0 {
                eprintln!(
                    "note: {renamed} tiered polic{} named TIER.NAME as Calico requires; the Porin name is in the annotation {}",
                    if renamed == 1 { "y is" } else { "ies are" },
                    porin_model::calico_export::NAME_ANNOTATION
                );
            }
            let doc = match (answers.as_slice(), out.len()) {
                ([(_, true, _)], 1) => out.remove(0),
                _ => json!({"apiVersion": "v1", "kind": "List", "items": out}),
            };
            match a.output {
                GetOutput::Json => println!("{}", serde_json::to_string_pretty(&doc)?),
                _ => print!("{}", serde_saphyr::to_string(&doc)?),
            }
            return Ok(ExitCode::SUCCESS);
        }
        match &a.output {
            GetOutput::Json => println!("{}", serde_json::to_string_pretty(&whole())?),
            GetOutput::Yaml => print!("{}", serde_saphyr::to_string(&whole())?),
            // As kubectl: exactly the template, no newline added (`{"\n"}` adds one).
            GetOutput::JsonPath(t) => print!("{}", t.render(&whole())),
            _ if items.is_empty() => no_resources(&targets, ns.as_deref()),
            GetOutput::Name => {
                for (k, v) in &items {
                    println!("{}/{}", type_name(*k), v["metadata"]["name"].as_str().unwrap_or(""));
                }
            }
            GetOutput::CustomColumns(cols) => {
                let objs: Vec<Value> = items.iter().map(|(_, v)| v.clone()).collect();
                print!("{}", printers::render_table(&crate::getfmt::custom_rows(cols, &objs), a.no_headers));
            }
            GetOutput::Table | GetOutput::Wide => {
                let mut kinds: Vec<Kind> = Vec::new();
                for (k, _) in &items {
                    if !kinds.contains(k) {
                        kinds.push(*k);
                    }
                }
                // Names read `type/name` when more than one kind was asked for, even if only one had objects.
                let several = targets.iter().any(|(k, _)| *k != targets[0].0);
                for (i, k) in kinds.iter().enumerate() {
                    let of_kind: Vec<Value> = items.iter().filter(|(x, _)| x == k).map(|(_, v)| v.clone()).collect();
                    let o = table_options(&a, several.then(|| type_name(*k)));
                    if i > 0 {
                        println!();
                    }
                    print!("{}", printers::render_table(&printers::resource_rows(*k, &of_kind, &[], &o), a.no_headers));
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })?
}

fn table_options(a: &GetArgs, name_prefix: Option<String>) -> TableOptions {
    TableOptions {
        all_namespaces: a.all_namespaces,
        wide: a.output == GetOutput::Wide,
        show_labels: a.show_labels,
        events: a.output_watch_events,
        name_prefix,
        now: porin_agent::timefmt::now_secs(),
    }
}

fn no_resources(targets: &[(Kind, Option<String>)], ns: Option<&str>) {
    match ns {
        Some(ns) if targets.iter().any(|(k, _)| k.info().namespaced) => {
            eprintln!("No resources found in {ns} namespace.")
        }
        _ => eprintln!("No resources found"),
    }
}

/// `--watch`: with `-o json` the server's events as they come; otherwise the current state (unless
/// `--resource-version` asks for changes only), then one row (name, custom columns, jsonpath) per change.
async fn watch(
    c: &Client,
    a: &GetArgs,
    kind: Kind,
    path: &str,
    query: &dyn Fn(&[String]) -> String,
    ns: Option<&str>,
) -> Result<ExitCode> {
    use std::io::Write;
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
        match &a.output {
            GetOutput::Table | GetOutput::Wide => {
                let rows = printers::resource_rows(kind, &items, &events, &o);
                widths = printers::column_widths(&rows);
                if !items.is_empty() {
                    print!("{}", printers::render_table(&rows, a.no_headers));
                    header_done = true;
                }
            }
            GetOutput::CustomColumns(cols) => {
                let rows = crate::getfmt::custom_rows(cols, &items);
                widths = printers::column_widths(&rows);
                if !items.is_empty() {
                    print!("{}", printers::render_table(&rows, a.no_headers));
                    header_done = true;
                }
            }
            _ => items.iter().for_each(|it| print!("{}", line_of(a, kind, it))),
        }
        if items.is_empty() {
            no_resources(&[(kind, None)], ns);
        }
        std::io::stdout().flush()?;
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
    let mut stdout = std::io::stdout();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        if raw {
            stdout.write_all(&data)?;
            stdout.flush()?;
            continue;
        }
        buf.extend_from_slice(&data);
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let ev: Value = serde_json::from_slice(&line).map_err(|e| anyhow!("bad watch event from server: {e}"))?;
            let ty = ev["type"].as_str().unwrap_or("");
            if ty == "ERROR" {
                return Err(ServerError::from_body(hyper::StatusCode::INTERNAL_SERVER_ERROR, &ev["object"]).into());
            }
            let obj = &ev["object"];
            let rows = match &a.output {
                GetOutput::Table | GetOutput::Wide => {
                    printers::resource_rows(kind, std::slice::from_ref(obj), &[ty], &o)
                }
                GetOutput::CustomColumns(cols) => crate::getfmt::custom_rows(cols, std::slice::from_ref(obj)),
                _ => {
                    let prefix = if a.output_watch_events { format!("{ty}   ") } else { String::new() };
                    write!(stdout, "{prefix}{}", line_of(a, kind, obj))?;
                    stdout.flush()?;
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
                write!(stdout, "{}", printers::render_row(&rows[0], &widths))?;
                header_done = true;
            }
            write!(stdout, "{}", printers::render_row(&rows[1], &widths))?;
            stdout.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One object in a line format (`-o name`, `-o jsonpath=`), newline included (a watch prints one a line).
fn line_of(a: &GetArgs, kind: Kind, obj: &Value) -> String {
    match &a.output {
        GetOutput::JsonPath(t) => format!("{}\n", t.render(obj)),
        _ => format!("{}/{}\n", type_name(kind), obj["metadata"]["name"].as_str().unwrap_or("")),
    }
}
