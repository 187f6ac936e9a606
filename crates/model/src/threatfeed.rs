//! `GlobalThreatFeed` (`porin.io/v1`, Calico's `projectcalico.org/v3` shape; cluster-scoped): a list of
//! addresses (a C2 blocklist such as FEODO) that the agent keeps in a GlobalNetworkSet `threatfeed.<name>`, so a
//! policy in a security tier can deny it. This module holds the spec, its checks and the feed parser; fetching
//! and syncing belong to the agent.
//!
//! ```yaml
//! apiVersion: porin.io/v1
//! kind: GlobalThreatFeed
//! metadata: {name: feodo}
//! spec:
//!   content: IPSet
//!   globalNetworkSet: {labels: {threat-feed: feodo}}
//!   pull:
//!     period: 24h                       # at least 5m
//!     http:
//!       url: https://feodotracker.abuse.ch/downloads/ipblocklist.txt   # or file:///path
//!       format: {newlineDelimited: {}}  # or {csv: {fieldNum: 0}} / {csv: {fieldName: ip, header: true}}
//!                                       # or {json: {path: "$.data[*].ip"}}
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobalThreatFeedSpec {
    /// `IPSet` (default); `DomainNameSet` is Calico's DNS variant, not supported here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// `Enabled` (default) or `Disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `Builtin` or `Custom`; informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_network_set: Option<FeedNetworkSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<Pull>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FeedNetworkSet {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pull {
    /// How often to fetch: a duration like `24h` (default) or `30m`; at least `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    pub http: PullHttp,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PullHttp {
    /// `http://`, `https://` or `file://`.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<FeedFormat>,
    /// Request headers (`name`, `value`); Calico's `valueFrom` secrets are not supported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// Exactly one of the three formats.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FeedFormat {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newline_delimited: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<JsonFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv: Option<CsvFormat>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JsonFormat {
    /// A path to the addresses: `$.data[*].ip`, `{.data[*].ip}` or `data[*].ip`; `[*]` walks an array.
    pub path: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CsvFormat {
    /// The column holding the address, from 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_num: Option<usize>,
    /// The header name of the column holding the address (needs `header: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_name: Option<String>,
    /// The first non-comment line is a header.
    #[serde(default)]
    pub header: bool,
    /// One character (default `,`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column_delimiter: Option<String>,
    /// Lines starting with it are skipped (default `#`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment_delimiter: Option<String>,
}

/// The smallest period a feed may be pulled at, in seconds.
pub const MIN_PERIOD_SECS: u64 = 300;
/// Most entries a feed may hold (a bigger one is refused, never truncated).
pub const MAX_ENTRIES: usize = 1_000_000;

/// `24h`, `30m`, `90s`, `1h30m` in seconds.
pub fn parse_period(s: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
    }
    num.is_empty().then_some(total).filter(|t| *t > 0)
}

/// Field problems: (path, message).
pub fn check(s: &GlobalThreatFeedSpec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match s.content.as_deref() {
        None | Some("IPSet") => {}
        Some("DomainNameSet") => out.push(("spec.content".into(), "DomainNameSet feeds are not supported (IPSet only)".into())),
        Some(v) => out.push(("spec.content".into(), format!("{v:?}: expected IPSet"))),
    }
    if let Some(m) = s.mode.as_deref()
        && m != "Enabled"
        && m != "Disabled"
    {
        out.push(("spec.mode".into(), format!("{m:?}: expected Enabled or Disabled")));
    }
    if s.description.as_ref().is_some_and(|d| d.chars().count() > 256) {
        out.push(("spec.description".into(), "longer than 256 characters".into()));
    }
    if let Some(p) = &s.pull {
        if let Some(per) = &p.period {
            match parse_period(per) {
                None => out.push(("spec.pull.period".into(), format!("{per:?}: expected a duration like 24h or 30m"))),
                Some(t) if t < MIN_PERIOD_SECS => out.push(("spec.pull.period".into(), format!("{per:?}: at least 5m"))),
                Some(_) => {}
            }
        }
        let url = &p.http.url;
        if !(url.starts_with("http://") || url.starts_with("https://") || url.starts_with("file:///")) {
            out.push(("spec.pull.http.url".into(), format!("{url:?}: expected http://, https:// or file:///")));
        }
        if let Some(f) = &p.http.format {
            let n = usize::from(f.newline_delimited.is_some()) + usize::from(f.json.is_some()) + usize::from(f.csv.is_some());
            if n != 1 {
                out.push(("spec.pull.http.format".into(), "exactly one of newlineDelimited, json, csv".into()));
            }
            if let Some(c) = &f.csv {
                match (c.field_num, &c.field_name) {
                    (Some(_), Some(_)) | (None, None) => {
                        out.push(("spec.pull.http.format.csv".into(), "exactly one of fieldNum, fieldName".into()))
                    }
                    (None, Some(_)) if !c.header => {
                        out.push(("spec.pull.http.format.csv.fieldName".into(), "needs header: true".into()))
                    }
                    _ => {}
                }
                for (k, v) in [("columnDelimiter", &c.column_delimiter), ("commentDelimiter", &c.comment_delimiter)] {
                    if v.as_ref().is_some_and(|d| d.chars().count() != 1) {
                        out.push((format!("spec.pull.http.format.csv.{k}"), "one character".into()));
                    }
                }
            }
            if let Some(j) = &f.json
                && json_path(&j.path).is_none()
            {
                out.push(("spec.pull.http.format.json.path".into(), format!("{:?}: expected a path like $.data[*].ip", j.path)));
            }
        }
    }
    // No pull: a push-only feed (`porin threatfeed push`), whose set still carries globalNetworkSet.labels.
    out
}

/// What a feed's text yielded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Every address or network, deduplicated and sorted.
    pub nets: Vec<IpNet>,
    /// Entries that are not addresses: (line, text), the first few.
    pub rejected: Vec<(usize, String)>,
    /// How many entries were not addresses.
    pub rejected_count: usize,
}

/// The feed could not be used at all (the last good set stays).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    #[error("the feed holds no address ({rejected} entries were not addresses)")]
    Empty { rejected: usize },
    #[error("the feed holds more than {MAX_ENTRIES} entries")]
    TooLarge,
    #[error("not JSON: {0}")]
    Json(String),
    #[error("CSV header has no column {0:?}")]
    NoColumn(String),
    #[error("CSV line {line}: no field {field}")]
    ShortLine { line: usize, field: usize },
}

fn parse_entry(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>().ok().map(|n| n.trunc()).or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// `$.a.b[*].c` / `{.a.b[*].c}` / `a.b[*].c` as steps (`None` for `[*]`).
fn json_path(p: &str) -> Option<Vec<Option<String>>> {
    let p = p.trim();
    let p = p.strip_prefix('{').and_then(|x| x.strip_suffix('}')).unwrap_or(p);
    let p = p.strip_prefix('$').unwrap_or(p);
    let p = p.strip_prefix('.').unwrap_or(p);
    let mut steps = Vec::new();
    for part in p.split('.').filter(|s| !s.is_empty()) {
        let (name, rest) = match part.find('[') {
            Some(i) => part.split_at(i),
            None => (part, ""),
        };
        if !name.is_empty() {
            if !name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-') {
                return None;
            }
            steps.push(Some(name.to_string()));
        }
        let mut r = rest;
        while !r.is_empty() {
            r = r.strip_prefix("[*]")?;
            steps.push(None);
        }
    }
    Some(steps)
}

fn walk<'a>(v: &'a Value, steps: &[Option<String>], out: &mut Vec<&'a Value>) {
    match steps.split_first() {
        None => out.push(v),
        Some((None, rest)) => {
            for x in v.as_array().into_iter().flatten() {
                walk(x, rest, out);
            }
        }
        Some((Some(k), rest)) => {
            if let Some(x) = v.get(k) {
                walk(x, rest, out);
            }
        }
    }
}

/// Parses a feed's text in its format (default: newline-delimited with `#` comments).
pub fn parse_feed(text: &str, format: Option<&FeedFormat>) -> Result<Parsed, FeedError> {
    let mut entries: Vec<(usize, String)> = Vec::new();
    match format {
        Some(FeedFormat { json: Some(j), .. }) => {
            let v: Value = serde_json::from_str(text).map_err(|e| FeedError::Json(e.to_string()))?;
            let steps = json_path(&j.path).ok_or_else(|| FeedError::Json(format!("bad path {:?}", j.path)))?;
            let mut found = Vec::new();
            walk(&v, &steps, &mut found);
            entries.extend(found.into_iter().enumerate().map(|(i, x)| (i + 1, x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string()))));
        }
        Some(FeedFormat { csv: Some(c), .. }) => {
            let delim = c.column_delimiter.as_deref().and_then(|d| d.chars().next()).unwrap_or(',');
            let comment = c.comment_delimiter.as_deref().unwrap_or("#");
            let mut field = c.field_num;
            let mut header_pending = c.header;
            for (i, line) in text.lines().enumerate() {
                let l = line.trim();
                if l.is_empty() || l.starts_with(comment) {
                    continue;
                }
                let cols: Vec<&str> = l.split(delim).map(|x| x.trim().trim_matches('"')).collect();
                if header_pending {
                    header_pending = false;
                    if let Some(name) = &c.field_name {
                        field = Some(cols.iter().position(|h| h == name).ok_or_else(|| FeedError::NoColumn(name.clone()))?);
                    }
                    continue;
                }
                let f = field.unwrap_or(0);
                let v = cols.get(f).ok_or(FeedError::ShortLine { line: i + 1, field: f })?;
                entries.push((i + 1, v.to_string()));
            }
        }
        _ => {
            for (i, line) in text.lines().enumerate() {
                let l = line.split('#').next().unwrap_or("").trim();
                if !l.is_empty() {
                    entries.push((i + 1, l.to_string()));
                }
            }
        }
    }
    if entries.len() > MAX_ENTRIES {
        return Err(FeedError::TooLarge);
    }
    let mut p = Parsed::default();
    for (line, e) in entries {
        match parse_entry(&e) {
            Some(n) => p.nets.push(n),
            None => {
                p.rejected_count += 1;
                if p.rejected.len() < 5 {
                    p.rejected.push((line, e));
                }
            }
        }
    }
    p.nets.sort();
    p.nets.dedup();
    if p.nets.is_empty() {
        return Err(FeedError::Empty { rejected: p.rejected_count });
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(p: &Parsed) -> Vec<String> {
        p.nets.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn newline_csv_and_json() {
        let t = "# Feodo\n198.51.100.7\n203.0.113.0/24 # range\n\n198.51.100.7\nnot-an-ip\n2001:db8::1\n";
        let p = parse_feed(t, None).unwrap();
        assert_eq!(nets(&p), ["198.51.100.7/32", "203.0.113.0/24", "2001:db8::1/128"]);
        assert_eq!((p.rejected_count, p.rejected[0].0), (1, 6));

        let csv = FeedFormat { csv: Some(CsvFormat { field_name: Some("dst_ip".into()), header: true, ..Default::default() }), ..Default::default() };
        let t = "# generated\nfirst_seen,dst_ip,port\n2024-01-01,198.51.100.9,443\n2024-01-02,\"192.0.2.1\",8080\n";
        assert_eq!(nets(&parse_feed(t, Some(&csv)).unwrap()), ["192.0.2.1/32", "198.51.100.9/32"]);
        let csv1 = FeedFormat { csv: Some(CsvFormat { field_num: Some(1), column_delimiter: Some(";".into()), ..Default::default() }), ..Default::default() };
        assert_eq!(nets(&parse_feed("a;10.1.2.3\nb;10.9.0.0/16\n", Some(&csv1)).unwrap()), ["10.1.2.3/32", "10.9.0.0/16"]);
        assert_eq!(parse_feed("a\n", Some(&csv1)), Err(FeedError::ShortLine { line: 1, field: 1 }));

        let json = FeedFormat { json: Some(JsonFormat { path: "$.data[*].ip".into() }), ..Default::default() };
        let t = r#"{"data": [{"ip": "198.51.100.1"}, {"ip": "198.51.100.2/31"}, {"other": 1}]}"#;
        assert_eq!(nets(&parse_feed(t, Some(&json)).unwrap()), ["198.51.100.1/32", "198.51.100.2/31"]);
        let json2 = FeedFormat { json: Some(JsonFormat { path: "{[*]}".into() }), ..Default::default() };
        assert_eq!(nets(&parse_feed(r#"["192.0.2.7"]"#, Some(&json2)).unwrap()), ["192.0.2.7/32"]);
    }

    #[test]
    fn never_empty_silently() {
        assert_eq!(parse_feed("# nothing\n\n", None), Err(FeedError::Empty { rejected: 0 }));
        assert_eq!(parse_feed("<html>error</html>\n", None), Err(FeedError::Empty { rejected: 1 }));
        assert!(matches!(parse_feed("{", Some(&FeedFormat { json: Some(JsonFormat { path: "$".into() }), ..Default::default() })), Err(FeedError::Json(_))));
    }

    #[test]
    fn spec_checks() {
        let mut s = GlobalThreatFeedSpec {
            pull: Some(Pull { period: Some("1m".into()), http: PullHttp { url: "ftp://x".into(), ..Default::default() } }),
            content: Some("DomainNameSet".into()),
            ..Default::default()
        };
        let paths: Vec<String> = check(&s).into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["spec.content", "spec.pull.period", "spec.pull.http.url"]);
        s.content = None;
        s.pull = Some(Pull { period: Some("24h".into()), http: PullHttp { url: "file:///tmp/f".into(), ..Default::default() } });
        assert!(check(&s).is_empty());
        assert_eq!(parse_period("1h30m"), Some(5400));
        assert_eq!(parse_period("5"), None);
    }
}
