//! Reading manifests: YAML multi-document streams and JSON, from files, directories or stdin (`-`); `v1` List
//! objects as `kubectl get -o yaml` writes them.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Kind, Resource};

/// One object read from an input, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// File path, `-` for stdin, or another label such as `request body`.
    pub source: String,
    /// 1-based document number within the source.
    pub doc: usize,
    /// Path prefix inside the document: empty, or `items[3]` for an item of a List.
    pub prefix: String,
    pub resource: Resource,
}

impl Document {
    /// Where this object came from, for messages: `policy.yaml doc 3` or `all.yaml doc 1 items[2]`.
    pub fn location(&self) -> String {
        if self.prefix.is_empty() {
            format!("{} doc {}", self.source, self.doc)
        } else {
            format!("{} doc {} {}", self.source, self.doc, self.prefix)
        }
    }
}

/// An error in an input, located as precisely as possible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ManifestError {
    /// File path, `-` for stdin, or another label.
    pub input: String,
    /// 1-based document number, when known.
    pub doc: Option<usize>,
    /// Field path such as `spec.ingress[0].ports[1].endPort` (empty for whole-document problems).
    pub path: String,
    pub message: String,
}

impl ManifestError {
    pub fn new(source: &str, doc: Option<usize>, path: impl Into<String>, message: impl Into<String>) -> Self {
        ManifestError { input: source.to_string(), doc, path: path.into(), message: message.into() }
    }
    fn render(&self) -> String {
        let mut s = self.input.clone();
        if let Some(d) = self.doc {
            s.push_str(&format!(" doc {d}"));
        }
        if !self.path.is_empty() {
            s.push_str(&format!(": {}", self.path));
        }
        s.push_str(&format!(": {}", self.message));
        s
    }
}

/// Join a path prefix and a field path.
pub fn join_path(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) if path.starts_with('[') => format!("{prefix}{path}"),
        (false, false) => format!("{prefix}.{path}"),
    }
}

/// Parse every document of `text` (YAML stream or JSON). Returns all objects, or every error found.
pub fn parse_documents(source: &str, text: &str) -> Result<Vec<Document>, Vec<ManifestError>> {
    let (docs, errors) = parse_documents_partial(source, text);
    if errors.is_empty() { Ok(docs) } else { Err(errors) }
}

/// Every document that parsed, and every error.
pub fn parse_documents_partial(source: &str, text: &str) -> (Vec<Document>, Vec<ManifestError>) {
    let trimmed = text.trim_start();
    let values: Vec<Value> = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let mut out = Vec::new();
        let stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        for (i, v) in stream.enumerate() {
            match v {
                Ok(Value::Array(items)) => out.extend(items),
                Ok(v) => out.push(v),
                Err(e) => {
                    return (vec![], vec![ManifestError::new(source, Some(i + 1), "", format!("invalid JSON: {e}"))]);
                }
            }
        }
        out
    } else {
        // YAML 1.2 core booleans only: a namespace called `y` or a label value `on` stays a string.
        let mut opts = serde_saphyr::Options::default();
        opts.strict_booleans = true;
        // Allow a 10k-object apply as one stream; the defaults (1,024 documents, 250k nodes) are made for
        // single configuration files.
        let mut budget = serde_saphyr::Budget::default();
        budget.max_documents = 200_000;
        budget.max_nodes = 20_000_000;
        budget.max_events = 40_000_000;
        opts.budget = Some(budget);
        match serde_saphyr::from_multiple_with_options::<Value>(text, opts) {
            Ok(v) => v,
            Err(e) => {
                let msg = e.to_string();
                let msg = msg.lines().next().unwrap_or("").to_string();
                return (vec![], vec![ManifestError::new(source, None, "", format!("invalid YAML: {msg}"))]);
            }
        }
    };
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        if v.is_null() {
            continue; // an empty document (`---` with nothing after it)
        }
        parse_value(source, i + 1, "", v, &mut docs, &mut errors);
    }
    (docs, errors)
}

fn parse_value(
    source: &str,
    doc: usize,
    prefix: &str,
    v: Value,
    docs: &mut Vec<Document>,
    errors: &mut Vec<ManifestError>,
) {
    let err = |path: &str, msg: String| ManifestError::new(source, Some(doc), join_path(prefix, path), msg);
    let Value::Object(map) = &v else {
        errors.push(err("", format!("expected an object with apiVersion and kind, found {}", type_name(&v))));
        return;
    };
    let api_version = match map.get("apiVersion") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => return errors.push(err("apiVersion", format!("expected a string, found {}", type_name(other)))),
        None => return errors.push(err("apiVersion", "missing".into())),
    };
    let kind = match map.get("kind") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => return errors.push(err("kind", format!("expected a string, found {}", type_name(other)))),
        None => return errors.push(err("kind", "missing".into())),
    };
    if kind.ends_with("List") {
        match map.get("items") {
            Some(Value::Array(items)) => {
                for (j, item) in items.iter().enumerate() {
                    let p = join_path(prefix, &format!("items[{j}]"));
                    parse_value(source, doc, &p, item.clone(), docs, errors);
                }
            }
            Some(Value::Null) | None => {}
            Some(other) => errors.push(err("items", format!("expected a list, found {}", type_name(other)))),
        }
        return;
    }
    let Some(k) = Kind::from_manifest(&api_version, &kind) else {
        let hint = if Kind::ALL.iter().any(|k| k.info().kind == kind) {
            let versions: Vec<String> =
                Kind::ALL.iter().filter(|k| k.info().kind == kind).map(|k| k.api_version()).collect();
            format!(" (this kind is served as {})", versions.join(" or "))
        } else {
            String::new()
        };
        errors.push(err("kind", format!("unknown kind {kind:?} in apiVersion {api_version:?}{hint}")));
        return;
    };
    match to_resource(k, v) {
        Ok(mut r) => {
            let info = k.info();
            let meta = r.metadata_mut();
            if info.namespaced {
                if meta.namespace.as_deref().is_none_or(str::is_empty) {
                    meta.namespace = Some("default".to_string());
                }
            } else if meta.namespace.as_deref().is_some_and(|n| !n.is_empty()) {
                errors.push(err("metadata.namespace", format!("{} is cluster-scoped and takes no namespace", info.kind)));
                return;
            } else {
                meta.namespace = None;
            }
            docs.push(Document { source: source.to_string(), doc, prefix: prefix.to_string(), resource: r });
        }
        Err((path, msg)) => errors.push(err(&path, msg)),
    }
}

fn typed<T: DeserializeOwned>(v: Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        (path, e.into_inner().to_string())
    })
}

/// Deserialize a JSON value of a known kind into its typed resource.
pub fn to_resource(kind: Kind, v: Value) -> Result<Resource, (String, String)> {
    Ok(match kind {
        Kind::Namespace => Resource::Namespace(typed(v)?),
        Kind::Pod => Resource::Pod(typed(v)?),
        Kind::K8sNetworkPolicy => Resource::K8sNetworkPolicy(typed(v)?),
        Kind::Tier => Resource::Tier(typed(v)?),
        Kind::NetworkPolicy => Resource::NetworkPolicy(typed(v)?),
        Kind::GlobalNetworkPolicy => Resource::GlobalNetworkPolicy(typed(v)?),
        Kind::StagedNetworkPolicy => Resource::StagedNetworkPolicy(typed(v)?),
        Kind::StagedGlobalNetworkPolicy => Resource::StagedGlobalNetworkPolicy(typed(v)?),
        Kind::StagedKubernetesNetworkPolicy => Resource::StagedKubernetesNetworkPolicy(typed(v)?),
        Kind::NetworkSet => Resource::NetworkSet(typed(v)?),
        Kind::GlobalNetworkSet => Resource::GlobalNetworkSet(typed(v)?),
        Kind::ClusterSettings => Resource::ClusterSettings(typed(v)?),
        Kind::WorkloadEndpoint => Resource::WorkloadEndpoint(Box::new(typed(v)?)),
        Kind::ConnectivityTest => Resource::ConnectivityTest(typed(v)?),
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn is_manifest(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

/// Expand the paths: `-` is stdin, a directory contributes its `*.yaml|*.yml|*.json` files (sorted,
/// recursively), a file is read as it is.
pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<Document>, Vec<ManifestError>> {
    let (docs, errors) = load_paths_partial(paths);
    if errors.is_empty() { Ok(docs) } else { Err(errors) }
}

/// Like [`load_paths`], but returns what did parse alongside every error, so a caller can validate the parsed
/// documents too and report all problems in one round. Never apply a partial result.
pub fn load_paths_partial<P: AsRef<Path>>(paths: &[P]) -> (Vec<Document>, Vec<ManifestError>) {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        let p = p.as_ref();
        let mut files = Vec::new();
        if p == Path::new("-") {
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => {
                    let (d, e) = parse_documents_partial("-", &text);
                    docs.extend(d);
                    errors.extend(e);
                }
                Err(e) => errors.push(ManifestError::new("-", None, "", format!("cannot read stdin: {e}"))),
            }
            continue;
        }
        if p.is_dir() {
            if let Err(e) = collect_dir(p, &mut files) {
                errors.push(ManifestError::new(&p.display().to_string(), None, "", format!("cannot read directory: {e}")));
            }
        } else {
            files.push(p.to_path_buf());
        }
        for f in files {
            let name = f.display().to_string();
            match std::fs::read_to_string(&f) {
                Ok(text) => {
                    let (d, e) = parse_documents_partial(&name, &text);
                    docs.extend(d);
                    errors.extend(e);
                }
                Err(e) => errors.push(ManifestError::new(&name, None, "", format!("cannot read: {e}"))),
            }
        }
    }
    (docs, errors)
}

fn collect_dir(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    entries.sort();
    for e in entries {
        if e.is_dir() {
            collect_dir(&e, out)?;
        } else if is_manifest(&e) {
            out.push(e);
        }
    }
    Ok(())
}
