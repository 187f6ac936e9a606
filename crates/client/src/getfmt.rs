//! `porin get -o ...`: the output formats beyond tables (`name`, `jsonpath=`, `custom-columns=`), a tiny
//! JSONPath subset, kubectl's AGE and human-sized byte counts.

use std::fmt;

use serde_json::Value;

/// `-o FORMAT`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GetOutput {
    #[default]
    Table,
    Wide,
    Yaml,
    Json,
    /// `kind/name`, one a line.
    Name,
    /// `jsonpath=TEMPLATE`.
    JsonPath(Template),
    /// `custom-columns=HEADER:PATH,...`.
    CustomColumns(Vec<(String, Path)>),
}

/// Why an `-o` value is not understood.
#[derive(Debug)]
pub enum FormatError {
    Unknown(String),
    JsonPath { template: String, problem: String },
    Columns { spec: String, problem: String },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::Unknown(s) => write!(
                f,
                "unknown output format {s:?} (table, wide, yaml, json, name, jsonpath=TEMPLATE, custom-columns=HEADER:PATH,...)"
            ),
            FormatError::JsonPath { template, problem } => write!(f, "jsonpath {template:?}: {problem}"),
            FormatError::Columns { spec, problem } => write!(f, "custom-columns {spec:?}: {problem}"),
        }
    }
}
impl std::error::Error for FormatError {}

/// For clap's `value_parser`.
pub fn parse_output(s: &str) -> Result<GetOutput, FormatError> {
    Ok(match s {
        "table" => GetOutput::Table,
        "wide" => GetOutput::Wide,
        "yaml" => GetOutput::Yaml,
        "json" => GetOutput::Json,
        "name" => GetOutput::Name,
        _ => {
            if let Some(t) = s.strip_prefix("jsonpath=") {
                GetOutput::JsonPath(Template::parse(t)?)
            } else if let Some(spec) = s.strip_prefix("custom-columns=") {
                GetOutput::CustomColumns(parse_columns(spec)?)
            } else {
                return Err(FormatError::Unknown(s.to_string()));
            }
        }
    })
}

/// One step of a path: `.field`, `[N]`, `[*]`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    Index(usize),
    All,
}

/// `.metadata.name`, `.items[*].metadata.labels.app`, `.spec.ports[0]` (a leading `$` is allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path(Vec<Step>);

impl Path {
    fn parse(s: &str) -> Result<Path, String> {
        let s = s.trim();
        let s = s.strip_prefix('$').unwrap_or(s);
        if s.is_empty() {
            return Ok(Path(Vec::new()));
        }
        if !s.starts_with('.') && !s.starts_with('[') {
            return Err(format!("{s:?}: a path starts with '.' (like .metadata.name)"));
        }
        let mut steps = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                let field = &r[..end];
                if field.is_empty() {
                    return Err(format!("{s:?}: empty field name"));
                }
                steps.push(Step::Field(field.to_string()));
                rest = &r[end..];
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').ok_or_else(|| format!("{s:?}: '[' without ']'"))?;
                let inner = r[..end].trim();
                steps.push(match inner {
                    "*" => Step::All,
                    n => {
                        Step::Index(n.parse().map_err(|_| format!("{s:?}: [{n}] is not [*] or a non-negative index"))?)
                    }
                });
                rest = &r[end + 1..];
            } else {
                return Err(format!("{s:?}: unexpected {rest:?}"));
            }
        }
        Ok(Path(steps))
    }

    /// Every value the path reaches (none when a field is missing: kubectl's default of allowing missing keys).
    pub fn eval<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        let mut cur = vec![root];
        for step in &self.0 {
            cur = cur
                .into_iter()
                .flat_map(|v| -> Vec<&Value> {
                    match (step, v) {
                        (Step::Field(f), Value::Object(m)) => m.get(f).into_iter().collect(),
                        (Step::Index(i), Value::Array(a)) => a.get(*i).into_iter().collect(),
                        (Step::All, Value::Array(a)) => a.iter().collect(),
                        (Step::All, Value::Object(m)) => m.values().collect(),
                        _ => Vec::new(),
                    }
                })
                .collect();
        }
        cur
    }
}

/// A value as kubectl prints it inside a template: strings bare, everything else as compact JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Path(Path),
}

/// A jsonpath template: literal text and `{PATH}` or `{"literal\n"}` pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Piece>);

impl Template {
    pub fn parse(t: &str) -> Result<Template, FormatError> {
        let err = |problem: String| FormatError::JsonPath { template: t.to_string(), problem };
        let mut pieces = Vec::new();
        let mut rest = t;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let end = rest.find('}').ok_or_else(|| err("'{' without '}'".into()))?;
                    let inner = rest[1..end].trim();
                    if let Some(q) = inner.strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
                        pieces.push(Piece::Literal(q.replace("\\n", "\n").replace("\\t", "\t")));
                    } else if inner.starts_with("range")
                        || inner == "end"
                        || inner.contains('?')
                        || inner.contains("..")
                    {
                        return Err(err(format!(
                            "{{{inner}}}: only plain paths like {{.metadata.name}} and {{.items[*].metadata.name}} are supported"
                        )));
                    } else {
                        pieces.push(Piece::Path(Path::parse(inner).map_err(err)?));
                    }
                    rest = &rest[end + 1..];
                }
                Some(i) => {
                    pieces.push(Piece::Literal(rest[..i].to_string()));
                    rest = &rest[i..];
                }
                None => {
                    pieces.push(Piece::Literal(rest.to_string()));
                    rest = "";
                }
            }
        }
        if pieces.is_empty() {
            return Err(err("empty template".into()));
        }
        Ok(Template(pieces))
    }

    /// The template applied to `root`; several values of one path are joined by a space, as kubectl does.
    pub fn render(&self, root: &Value) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Literal(s) => out.push_str(s),
                Piece::Path(path) => out.push_str(&path.eval(root).into_iter().map(text).collect::<Vec<_>>().join(" ")),
            }
        }
        out
    }
}

fn parse_columns(spec: &str) -> Result<Vec<(String, Path)>, FormatError> {
    let err = |problem: String| FormatError::Columns { spec: spec.to_string(), problem };
    let mut cols = Vec::new();
    for part in spec.split(',') {
        let (header, path) = part.split_once(':').ok_or_else(|| err(format!("{part:?}: expected HEADER:PATH")))?;
        if header.is_empty() {
            return Err(err(format!("{part:?}: empty header")));
        }
        let path = path.trim();
        let path = path.strip_prefix('{').and_then(|p| p.strip_suffix('}')).unwrap_or(path);
        cols.push((header.to_string(), Path::parse(path).map_err(err)?));
    }
    Ok(cols)
}

/// `custom-columns` rows (header first): several values join with `,`; none is `<none>`.
pub fn custom_rows(cols: &[(String, Path)], items: &[Value]) -> Vec<Vec<String>> {
    let mut rows = vec![cols.iter().map(|(h, _)| h.clone()).collect::<Vec<_>>()];
    for it in items {
        rows.push(
            cols.iter()
                .map(|(_, p)| {
                    let vals = p.eval(it);
                    if vals.is_empty() || vals.iter().all(|v| v.is_null()) {
                        "<none>".to_string()
                    } else {
                        vals.into_iter().map(text).collect::<Vec<_>>().join(",")
                    }
                })
                .collect(),
        );
    }
    rows
}

/// kubectl's AGE: `45s`, `3m20s`, `17m`, `5h10m`, `30h`, `3d4h`, `120d`, `2y10d`.
pub fn human_age(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 { format!("{m}m") } else { format!("{m}m{}s", s % 60) }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 { format!("{h}h") } else { format!("{h}h{}m", m % 60) }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 { format!("{d}d") } else { format!("{d}d{}h", h % 24) }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else if d < 365 * 8 {
        let y = d / 365;
        if d % 365 == 0 { format!("{y}y") } else { format!("{y}y{}d", d % 365) }
    } else {
        format!("{}y", d / 365)
    }
}

/// A byte count in binary units with one decimal: `512 B`, `94.8 KiB`, `1.0 GiB`. (bytesize's own display, used
/// for parsing elsewhere, prints 1 MiB - 1 B as `1024.0 KiB`; this one rounds before choosing the unit.)
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        let mut v = self.0 as f64 / 1024.0;
        let mut unit = 0;
        // Round first so 1023.96 KiB reads `1.0 MiB`, not `1024.0 KiB`.
        while (v * 10.0).round() / 10.0 >= 1024.0 && unit + 1 < UNITS.len() {
            v /= 1024.0;
            unit += 1;
        }
        write!(f, "{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bytes_read_like_people_write_them() {
        assert_eq!(Bytes(0).to_string(), "0 B");
        assert_eq!(Bytes(1023).to_string(), "1023 B");
        assert_eq!(Bytes(1024).to_string(), "1.0 KiB");
        assert_eq!(Bytes(94783).to_string(), "92.6 KiB");
        assert_eq!(Bytes(97_075).to_string(), "94.8 KiB");
        assert_eq!(Bytes(1_073_741_824).to_string(), "1.0 GiB");
        assert_eq!(Bytes(1024 * 1024 - 1).to_string(), "1.0 MiB");
        assert_eq!(Bytes(u64::MAX).to_string(), "16.0 EiB");
    }

    #[test]
    fn ages_follow_kubectl() {
        for (s, want) in [
            (-5, "<invalid>"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (200, "3m20s"),
            (1020, "17m"),
            (5 * 3600 + 600, "5h10m"),
            (30 * 3600, "30h"),
            (3 * 86400 + 4 * 3600, "3d4h"),
            (120 * 86400, "120d"),
            (2 * 365 * 86400 + 10 * 86400, "2y10d"),
            (9 * 365 * 86400, "9y"),
        ] {
            assert_eq!(human_age(s), want, "{s}");
        }
    }

    #[test]
    fn jsonpath_subset() {
        let list = json!({"items": [
            {"metadata": {"name": "web", "labels": {"app": "w"}}, "spec": {"ports": [80, 443]}},
            {"metadata": {"name": "db"}},
        ]});
        let t = |s: &str| Template::parse(s).unwrap().render(&list);
        assert_eq!(t("{.items[*].metadata.name}"), "web db");
        assert_eq!(t("{.items[0].spec.ports}"), "[80,443]");
        assert_eq!(t("{.items[0].spec.ports[1]}{\"\\n\"}"), "443\n");
        assert_eq!(t("n={.items[1].metadata.name};"), "n=db;");
        assert_eq!(t("{.items[*].metadata.labels.app}"), "w");
        assert_eq!(t("{.nope.deeper}"), "");
        assert_eq!(Template::parse("{.metadata.name}").unwrap().render(&list["items"][0]), "web");
        for bad in ["{.metadata", "{range .items[*]}{end}", "{metadata.name}", "{.items[x]}", "{.a..b}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn output_formats_parse() {
        assert_eq!(parse_output("name").unwrap(), GetOutput::Name);
        assert!(matches!(parse_output("jsonpath={.metadata.name}").unwrap(), GetOutput::JsonPath(_)));
        let GetOutput::CustomColumns(c) =
            parse_output("custom-columns=NAME:.metadata.name,APP:{.metadata.labels.app}").unwrap()
        else {
            panic!()
        };
        let rows = custom_rows(
            &c,
            &[json!({"metadata": {"name": "web", "labels": {"app": "w"}}}), json!({"metadata": {"name": "db"}})],
        );
        assert_eq!(rows, vec![vec!["NAME", "APP"], vec!["web", "w"], vec!["db", "<none>"]]);
        let e = parse_output("custom-columns=NAME").unwrap_err().to_string();
        assert!(e.contains("HEADER:PATH"), "{e}");
        let e = parse_output("yml").unwrap_err().to_string();
        assert!(e.contains("unknown output format \"yml\""), "{e}");
    }
}
