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
///
/// A document whose fields fail to decode is reported with every decoding error and every validation error of
/// the rest of it. Only when such a document is a Tier with a valid name does a name-only stand-in appear
/// among the returned documents, so that set validation does not add "tier does not exist" to each policy of
/// that tier; the error list is never empty then, and a caller never applies a partial result.
pub fn parse_documents_partial(source: &str, text: &str) -> (Vec<Document>, Vec<ManifestError>) {
    let values = match split_values(source, text) {
        Ok(v) => v,
        Err(e) => return (vec![], vec![e]),
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

/// The documents of a YAML stream, a JSON value or a stream of JSON values. Text that looks like JSON (starts
/// with `{` or `[`) but is not is read as YAML, of which JSON is nearly a subset: a YAML flow mapping such as
/// `{kind: Namespace, ...}` loads. A source named `*.json` must be JSON.
fn split_values(source: &str, text: &str) -> Result<Vec<Value>, ManifestError> {
    let trimmed = text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let mut out = Vec::new();
        let mut failed = None;
        for (i, v) in serde_json::Deserializer::from_str(text).into_iter::<Value>().enumerate() {
            match v {
                Ok(Value::Array(items)) => out.extend(items),
                Ok(v) => out.push(v),
                Err(e) => {
                    failed = Some(ManifestError::new(source, Some(i + 1), "", format!("invalid JSON: {e}")));
                    break;
                }
            }
        }
        match failed {
            None => return Ok(out),
            // A `.json` file is JSON: no second reading as YAML (which would take `"a": }` as a null).
            Some(e) if source.ends_with(".json") => return Err(e),
            Some(_) => {}
        }
    }
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
        Ok(v) => Ok(v),
        Err(e) => {
            let msg = e.to_string();
            let msg = msg.lines().next().unwrap_or("").to_string();
            Err(ManifestError::new(source, None, "", format!("invalid YAML: {msg}")))
        }
    }
}

/// Object fields whose values are string maps: a `null` entry there is a value (an error), not an absent field.
const STRING_MAPS: &[&str] = &["labels", "annotations", "matchLabels", "nodeSelector"];

/// Kubernetes decodes `null` as "not set" for every optional field (`matchLabels: null`, `ingress: null`,
/// `ipBlock.except: null`, ...): drop null-valued object fields, so a missing field's default applies. Entries of
/// string maps (labels) and list items are kept, and rejected later, as Kubernetes cannot read them either.
fn strip_nulls(v: &mut Value, string_map: bool) {
    match v {
        Value::Object(map) => {
            if !string_map {
                map.retain(|_, x| !x.is_null());
            }
            for (k, x) in map.iter_mut() {
                strip_nulls(x, !string_map && STRING_MAPS.contains(&k.as_str()));
            }
        }
        Value::Array(items) => {
            for x in items {
                strip_nulls(x, false);
            }
        }
        _ => {}
    }
}

fn parse_value(
    source: &str,
    doc: usize,
    prefix: &str,
    mut v: Value,
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
    strip_nulls(&mut v, false);
    let decoded = decode_all(k, v);
    let Some(mut r) = decoded.resource else {
        // Not even a stand-in could be decoded (the document's top level is unusable).
        errors.extend(decoded.errors.into_iter().map(|(p, m)| err(&p, m)));
        return;
    };
    let info = k.info();
    let meta = r.metadata_mut();
    if info.namespaced {
        if meta.namespace.as_deref().is_none_or(str::is_empty) {
            meta.namespace = Some("default".to_string());
        }
    } else if meta.namespace.as_deref().is_some_and(|n| !n.is_empty()) {
        errors.extend(decoded.errors.into_iter().map(|(p, m)| err(&p, m)));
        errors.push(err("metadata.namespace", format!("{} is cluster-scoped and takes no namespace", info.kind)));
        if let Resource::Tier(t) = &r {
            docs.extend(tier_stand_in(source, doc, prefix, &t.metadata.name));
        }
        return;
    } else {
        meta.namespace = None;
    }
    let d = Document { source: source.to_string(), doc, prefix: prefix.to_string(), resource: r };
    if decoded.errors.is_empty() {
        docs.push(d);
        return;
    }
    // Some fields did not decode: report them, and every validation error of the rest of the document (except
    // where a dropped field is the cause), so one round fixes them all.
    let removed = &decoded.removed;
    let mut found: Vec<(String, String)> = decoded.errors;
    for e in crate::validate::validate_document_untiered(&d) {
        let local = e.path.strip_prefix(prefix).map(|p| p.trim_start_matches('.')).unwrap_or(&e.path).to_string();
        let local = remap_path(&local, &decoded.shifts);
        if removed.iter().any(|r| is_same_or_related(&local, r)) {
            continue;
        }
        found.push((local, e.message));
    }
    found.sort();
    found.dedup();
    errors.extend(found.into_iter().map(|(p, m)| err(&p, m)));
    // A Tier whose spec failed still exists as far as its policies are concerned: its own errors are reported,
    // "tier does not exist" on each policy would only mislead.
    if let Resource::Tier(t) = &d.resource
        && !removed.iter().any(|r| r.starts_with("metadata"))
    {
        docs.extend(tier_stand_in(source, doc, prefix, &t.metadata.name));
    }
}

/// A name-only Tier standing in for one whose document failed (see [`parse_documents_partial`]); none when the
/// name itself is wrong (that error is the document's own, reported once).
fn tier_stand_in(source: &str, doc: usize, prefix: &str, name: &str) -> Option<Document> {
    let tier = crate::Object {
        api_version: Kind::Tier.api_version(),
        kind: Kind::Tier.info().kind.to_string(),
        metadata: crate::ObjectMeta { name: name.to_string(), ..Default::default() },
        spec: Default::default(),
        status: None,
    };
    let d = Document { source: source.to_string(), doc, prefix: prefix.to_string(), resource: Resource::Tier(tier) };
    crate::validate::validate_document_untiered(&d).is_empty().then_some(d)
}

/// Is `path` equal to `removed`, inside it, or one of its ancestors (a whole-object complaint caused by a
/// dropped field)?
fn is_same_or_related(path: &str, removed: &str) -> bool {
    let under = |a: &str, b: &str| {
        b.is_empty() || (a.starts_with(b) && matches!(a.as_bytes().get(b.len()), None | Some(b'.') | Some(b'[')))
    };
    under(path, removed) || under(removed, path)
}

/// What decoding a document with [`decode_all`] found.
struct Decoded {
    /// The resource with every undecodable field dropped; None when the top level itself is unusable.
    resource: Option<Resource>,
    /// (path, message) of every decoding error, paths as in the original document.
    errors: Vec<(String, String)>,
    /// Paths (in the original document) of the dropped fields.
    removed: Vec<String>,
    /// List items dropped, in order: (list path at the time, index at the time), to map later paths back.
    shifts: Vec<(String, usize)>,
}

/// At most this many decoding errors are collected from one document.
const MAX_DECODE_ERRORS: usize = 50;

/// Decode `v` as `kind`, collecting every error: serde stops at the first, so the offending field is dropped
/// (a list item is removed) and decoding retried, until it succeeds.
fn decode_all(kind: Kind, mut v: Value) -> Decoded {
    let mut out = Decoded { resource: None, errors: vec![], removed: vec![], shifts: vec![] };
    // (parent path, key) of object fields dropped so far, to recognise the "missing field" they cause.
    let mut dropped_keys: Vec<(String, String)> = Vec::new();
    for _ in 0..MAX_DECODE_ERRORS {
        let (segments, msg) = match try_resource(kind, &v) {
            Ok(r) => {
                out.resource = Some(r);
                return out;
            }
            Err(e) => e,
        };
        let here = path_string(&segments);
        let original = remap_path(&here, &out.shifts);
        let missing = msg.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')).map(str::to_string);
        let follow_on = missing.is_some_and(|f| dropped_keys.iter().any(|(p, k)| *p == here && *k == f));
        if !follow_on {
            out.errors.push((original.clone(), humanize(&msg, &original)));
        }
        if segments.is_empty() {
            return out; // nothing left to drop
        }
        let (parent, last) = segments.split_at(segments.len() - 1);
        let parent_path = path_string(parent);
        let Some(container) = navigate(&mut v, parent) else { return out };
        match (&last[0], container) {
            (serde_path_to_error::Segment::Map { key }, Value::Object(m)) if m.contains_key(key) => {
                m.remove(key);
                dropped_keys.push((parent_path, key.clone()));
            }
            (serde_path_to_error::Segment::Seq { index }, Value::Array(a)) if *index < a.len() => {
                a.remove(*index);
                out.shifts.push((parent_path, *index));
            }
            _ => return out,
        }
        out.removed.push(original);
    }
    out
}

fn typed<T: DeserializeOwned>(v: Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let msg = e.into_inner().to_string();
        let msg = humanize(&msg, &path);
        (path, msg)
    })
}

type Segments = Vec<serde_path_to_error::Segment>;

fn typed_segments<T: DeserializeOwned>(v: &Value) -> Result<T, (Segments, String)> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let segments = e.path().iter().cloned().collect();
        (segments, e.into_inner().to_string())
    })
}

macro_rules! by_kind {
    ($kind:expr, $v:expr, $f:ident) => {
        match $kind {
            Kind::Namespace => Resource::Namespace($f($v)?),
            Kind::Pod => Resource::Pod($f($v)?),
            Kind::ServiceAccount => Resource::ServiceAccount($f($v)?),
            Kind::K8sNetworkPolicy => Resource::K8sNetworkPolicy($f($v)?),
            Kind::Tier => Resource::Tier($f($v)?),
            Kind::NetworkPolicy => Resource::NetworkPolicy($f($v)?),
            Kind::GlobalNetworkPolicy => Resource::GlobalNetworkPolicy($f($v)?),
            Kind::StagedNetworkPolicy => Resource::StagedNetworkPolicy($f($v)?),
            Kind::StagedGlobalNetworkPolicy => Resource::StagedGlobalNetworkPolicy($f($v)?),
            Kind::StagedKubernetesNetworkPolicy => Resource::StagedKubernetesNetworkPolicy($f($v)?),
            Kind::NetworkSet => Resource::NetworkSet($f($v)?),
            Kind::GlobalNetworkSet => Resource::GlobalNetworkSet($f($v)?),
            Kind::ClusterSettings => Resource::ClusterSettings($f($v)?),
            Kind::WorkloadEndpoint => Resource::WorkloadEndpoint(Box::new($f($v)?)),
            Kind::ConnectivityTest => Resource::ConnectivityTest($f($v)?),
            Kind::ReachabilityGuard => Resource::ReachabilityGuard($f($v)?),
            Kind::GlobalReport => Resource::GlobalReport($f($v)?),
            Kind::GlobalThreatFeed => Resource::GlobalThreatFeed($f($v)?),
            Kind::Quarantine => Resource::Quarantine($f($v)?),
            Kind::Honeypod => Resource::Honeypod($f($v)?),
            Kind::PacketCapture => Resource::PacketCapture($f($v)?),
            Kind::RecommendationScope => Resource::RecommendationScope($f($v)?),
        }
    };
}

/// Deserialize a JSON value of a known kind into its typed resource. Errors are (field path, message), the
/// message in user terms.
pub fn to_resource(kind: Kind, v: Value) -> Result<Resource, (String, String)> {
    Ok(by_kind!(kind, v, typed))
}

fn try_resource(kind: Kind, v: &Value) -> Result<Resource, (Segments, String)> {
    Ok(by_kind!(kind, v, typed_segments))
}

/// A field path as serde_path_to_error prints it: `spec.ingress[0].ports`.
fn path_string(segments: &[serde_path_to_error::Segment]) -> String {
    use serde_path_to_error::Segment;
    let mut s = String::new();
    for seg in segments {
        match seg {
            Segment::Seq { index } => s.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(key);
            }
            Segment::Unknown => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push('?');
            }
        }
    }
    s
}

fn navigate<'a>(v: &'a mut Value, segments: &[serde_path_to_error::Segment]) -> Option<&'a mut Value> {
    use serde_path_to_error::Segment;
    let mut cur = v;
    for seg in segments {
        cur = match (seg, cur) {
            (Segment::Map { key }, Value::Object(m)) => m.get_mut(key)?,
            (Segment::Seq { index }, Value::Array(a)) => a.get_mut(*index)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Map a path of the document with list items dropped back to the original document: undo the drops, latest
/// first (each is recorded in the coordinates of its time).
fn remap_path(path: &str, shifts: &[(String, usize)]) -> String {
    let mut p = path.to_string();
    for (list, removed) in shifts.iter().rev() {
        let Some(rest) = p.strip_prefix(list.as_str()) else { continue };
        let Some(rest) = rest.strip_prefix('[') else { continue };
        let Some((num, tail)) = rest.split_once(']') else { continue };
        let Ok(k) = num.parse::<usize>() else { continue };
        if k >= *removed {
            p = format!("{list}[{}]{tail}", k + 1);
        }
    }
    p
}

/// The allowed values of each enumerated field, by the field's (last) name.
fn allowed_values(field: &str) -> Option<&'static str> {
    Some(match field {
        "policyTypes" | "types" => "Ingress, Egress",
        "action" => "Allow, Deny, Pass, Log",
        "defaultAction" => "Deny, Pass",
        "stagedAction" => "Set, Delete",
        "defaultEndpointAction" => "Allow, Deny",
        "protocol" => "TCP, UDP, SCTP",
        _ => return None,
    })
}

/// Descriptions of the model's types, as a user would call them.
fn type_words(rust: &str) -> &'static str {
    match rust {
        "LabelSelector" => "a label selector (an object with matchLabels/matchExpressions)",
        "LabelSelectorRequirement" => "a match expression (an object with key, operator and values)",
        "ObjectMeta" => "object metadata (an object with name, namespace, labels, annotations)",
        "IpBlock" => "an ipBlock (an object with cidr and except)",
        "K8sPeer" => "a peer (an object with podSelector, namespaceSelector or ipBlock)",
        "K8sPort" => "a port entry (an object with protocol, port and endPort)",
        "K8sIngressRule" => "an ingress rule (an object with from and ports)",
        "K8sEgressRule" => "an egress rule (an object with to and ports)",
        "Rule" => "a rule (an object with action, protocol, source, destination, ...)",
        "EntityRule" => "a rule source or destination (an object with nets, selector, ports, ...)",
        "IcmpMatch" => "an ICMP match (an object with type and code)",
        "ServiceAccountMatch" => "a service-account match (an object with names and selector)",
        "RuleMetadata" => "rule metadata (an object with annotations)",
        "PolicyType" => "one of Ingress, Egress",
        "Protocol" => "one of TCP, UDP, SCTP",
        "Action" => "one of Allow, Deny, Pass, Log",
        "TierDefaultAction" => "one of Deny, Pass",
        "StagedAction" => "one of Set, Delete, Learn, Ignore",
        "DefaultEndpointAction" => "one of Allow, Deny",
        _ => "an object",
    }
}

/// Rewrite a serde message in user terms: no Rust type names, enumerations list their allowed values.
pub(crate) fn humanize(msg: &str, path: &str) -> String {
    let field = path.rsplit('.').next().unwrap_or("").split('[').next().unwrap_or("");
    if let Some(rest) = msg.strip_prefix("data did not match any variant of untagged enum ") {
        return match rest.trim() {
            "ProtocolSpec" => {
                "expected a protocol: a name (TCP, UDP, SCTP, ICMP, ICMPv6, UDPLite) or a number 1-255".into()
            }
            "IntOrString" => "expected a port: a number 1-65535 or a port name".into(),
            "PortSpec" => "expected a port: a number, a \"min:max\" range or a port name".into(),
            _ => "expected a value of another type".into(),
        };
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        // serde: "unknown variant `X`, expected `A` or `B`" / "..., expected one of `A`, `B`, `C`"
        let (value, listed) = rest.split_once(", expected ").unwrap_or((rest, ""));
        let allowed = match allowed_values(field) {
            Some(a) => a.to_string(),
            None => listed.trim_start_matches("one of ").replace('`', "").replace(" or ", ", "),
        };
        return format!("unknown value {value}, expected one of {allowed}");
    }
    if field == "ipVersion" && msg.contains("expected u8") {
        return format!("{}expected 4 or 6", &msg[..msg.find("expected").unwrap_or(0)]);
    }
    let mut m = msg.to_string();
    if let Some(i) = m.find("expected ") {
        let (head, exp) = m.split_at(i + "expected ".len());
        let exp = exp.trim();
        let words: String = if let Some(t) = exp.strip_prefix("struct ").or_else(|| exp.strip_prefix("enum ")) {
            type_words(t).into()
        } else if exp == "variant identifier" {
            match allowed_values(field) {
                Some(a) => format!("one of {a}"),
                None => "a name".into(),
            }
        } else {
            match exp {
                "u8" => "an integer 0-255".into(),
                "u16" => "an integer 0-65535".into(),
                "u32" | "u64" | "i32" | "i64" | "usize" => "an integer".into(),
                "f32" | "f64" => "a number".into(),
                "a sequence" => "a list".into(),
                "a map" => "an object".into(),
                other => other.into(),
            }
        };
        m = format!("{head}{words}");
    }
    m.replace("invalid type: sequence", "invalid type: list").replace("invalid type: map", "invalid type: object")
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

/// The most bytes read from one input (file or stdin). A larger input is refused, not truncated.
pub const MAX_INPUT_BYTES: u64 = 64 * 1024 * 1024;

/// The deepest directory nesting read below a `-f` directory.
pub const MAX_DIR_DEPTH: usize = 64;

/// Expand the paths: `-` is stdin, a directory contributes its `*.yaml|*.yml|*.json` files (sorted,
/// recursively), a file is read as it is.
pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<Document>, Vec<ManifestError>> {
    let (docs, errors) = load_paths_partial(paths);
    if errors.is_empty() { Ok(docs) } else { Err(errors) }
}

/// Like [`load_paths`], but returns what did parse alongside every error, so a caller can validate the parsed
/// documents too and report all problems in one round. Never apply a partial result.
///
/// Only regular files are read (a FIFO, socket or device, also behind a symlink, is refused: reading one can
/// block forever or never end), each at most [`MAX_INPUT_BYTES`]; a directory that contains itself through a
/// symlink is reported, not walked forever.
pub fn load_paths_partial<P: AsRef<Path>>(paths: &[P]) -> (Vec<Document>, Vec<ManifestError>) {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        let p = p.as_ref();
        let mut files = Vec::new();
        if p == Path::new("-") {
            match read_limited(std::io::stdin().lock(), "-") {
                Ok(text) => {
                    let (d, e) = parse_documents_partial("-", &text);
                    docs.extend(d);
                    errors.extend(e);
                }
                Err(e) => errors.push(e),
            }
            continue;
        }
        let name = p.display().to_string();
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => {
                let mut walk =
                    DirWalk { ancestors: Vec::new(), visited: Default::default(), files: &mut files, errors: &mut errors };
                walk.collect(p, &m);
            }
            Ok(_) => files.push(p.to_path_buf()),
            Err(e) => {
                errors.push(ManifestError::new(&name, None, "", format!("cannot read: {e}")));
                continue;
            }
        }
        for f in files {
            let name = f.display().to_string();
            match read_file(&f, &name) {
                Ok(text) => {
                    let (d, e) = parse_documents_partial(&name, &text);
                    docs.extend(d);
                    errors.extend(e);
                }
                Err(e) => errors.push(e),
            }
        }
    }
    (docs, errors)
}

/// What a file is, in words, when it is not a regular file.
fn file_type_words(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Read one regular file, refusing anything else and anything over [`MAX_INPUT_BYTES`].
fn read_file(path: &Path, name: &str) -> Result<String, ManifestError> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let refuse = |t: std::fs::FileType| {
        ManifestError::new(name, None, "", format!("is {}; only regular files are read (use - for stdin)", file_type_words(t)))
    };
    let m = std::fs::metadata(path).map_err(|e| ManifestError::new(name, None, "", format!("cannot read: {e}")))?;
    if !m.file_type().is_file() {
        return Err(refuse(m.file_type()));
    }
    if m.len() > MAX_INPUT_BYTES {
        return Err(too_large(name));
    }
    // Non-blocking open: should the path be swapped for a FIFO after the check, opening it does not wait for a
    // writer; the opened file is checked again below.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| ManifestError::new(name, None, "", format!("cannot read: {e}")))?;
    let fm = f.metadata().map_err(|e| ManifestError::new(name, None, "", format!("cannot read: {e}")))?;
    if !fm.file_type().is_file() {
        return Err(refuse(fm.file_type()));
    }
    if (fm.dev(), fm.ino()) != (m.dev(), m.ino()) {
        return Err(ManifestError::new(name, None, "", "changed while being read"));
    }
    read_limited(f, name)
}

fn too_large(name: &str) -> ManifestError {
    ManifestError::new(name, None, "", format!("is larger than {} MiB; refusing to read it", MAX_INPUT_BYTES >> 20))
}

/// Read at most [`MAX_INPUT_BYTES`] as UTF-8 text; more is an error.
fn read_limited(r: impl Read, name: &str) -> Result<String, ManifestError> {
    let mut buf = Vec::new();
    r.take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ManifestError::new(name, None, "", format!("cannot read: {e}")))?;
    if buf.len() as u64 > MAX_INPUT_BYTES {
        return Err(too_large(name));
    }
    String::from_utf8(buf).map_err(|e| {
        ManifestError::new(name, None, "", format!("is not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to()))
    })
}

/// A recursive directory walk that follows symlinks but never enters a directory twice: (device, inode) of
/// the directories on the current path detect loops (an error), of every directory seen, repeats (skipped).
struct DirWalk<'a> {
    ancestors: Vec<((u64, u64), PathBuf)>,
    visited: std::collections::BTreeSet<(u64, u64)>,
    files: &'a mut Vec<PathBuf>,
    errors: &'a mut Vec<ManifestError>,
}

impl DirWalk<'_> {
    fn collect(&mut self, dir: &Path, meta: &std::fs::Metadata) {
        use std::os::unix::fs::MetadataExt;
        let name = dir.display().to_string();
        let id = (meta.dev(), meta.ino());
        if let Some((_, first)) = self.ancestors.iter().find(|(a, _)| *a == id) {
            let msg = format!("directory loop: this is {} again (through a symlink); not read twice", first.display());
            self.errors.push(ManifestError::new(&name, None, "", msg));
            return;
        }
        if !self.visited.insert(id) {
            return; // reached twice through symlinks: its files are already in
        }
        if self.ancestors.len() >= MAX_DIR_DEPTH {
            let msg = format!("directories nested deeper than {MAX_DIR_DEPTH}");
            self.errors.push(ManifestError::new(&name, None, "", msg));
            return;
        }
        let entries = std::fs::read_dir(dir).and_then(|rd| rd.map(|e| e.map(|e| e.path())).collect::<Result<Vec<_>, _>>());
        let mut entries = match entries {
            Ok(e) => e,
            Err(e) => {
                self.errors.push(ManifestError::new(&name, None, "", format!("cannot read directory: {e}")));
                return;
            }
        };
        entries.sort();
        self.ancestors.push((id, dir.to_path_buf()));
        for e in entries {
            match std::fs::metadata(&e) {
                Ok(m) if m.is_dir() => self.collect(&e, &m),
                // Every manifest-named entry goes to the reader, which refuses what is not a regular file.
                Ok(_) if is_manifest(&e) => self.files.push(e),
                Ok(_) => {}
                // A dangling symlink named like a manifest is an error; anything else is not ours.
                Err(err) if is_manifest(&e) => {
                    self.errors.push(ManifestError::new(&e.display().to_string(), None, "", format!("cannot read: {err}")));
                }
                Err(_) => {}
            }
        }
        self.ancestors.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_stream_stops_at_the_byte_budget() {
        // Stdin goes through the same reader: `porin validate -f - < /dev/zero` ends with an error.
        let e = read_limited(std::io::repeat(b' '), "-").unwrap_err();
        assert_eq!(e.to_string(), "-: is larger than 64 MiB; refusing to read it");
        let ok = read_limited(std::io::repeat(b' ').take(MAX_INPUT_BYTES), "-").unwrap();
        assert_eq!(ok.len() as u64, MAX_INPUT_BYTES);
    }

    #[test]
    fn paths_of_dropped_list_items_map_back() {
        // [a, X, b, Y, c]: X dropped at 1, then Y (now at 2) dropped; c is at 2 afterwards, 4 originally.
        let shifts = vec![("spec.types".to_string(), 1), ("spec.types".to_string(), 2)];
        assert_eq!(remap_path("spec.types[2]", &shifts), "spec.types[4]");
        assert_eq!(remap_path("spec.types[0]", &shifts), "spec.types[0]");
        assert_eq!(remap_path("spec.types[1]", &shifts), "spec.types[2]");
        assert_eq!(remap_path("spec.ingress[3]", &shifts), "spec.ingress[3]");
    }
}
