//! A stable, bounded-time fuzz run of the manifest loader: the committed corpus (`fuzz/seeds/manifest_load`),
//! then seeded random mutations of it (bytes, YAML tokens, and values of the decoded tree), each through the
//! same check as the cargo-fuzz target `manifest_load`. Deterministic: a failure prints the seed file and the
//! iteration, and reruns identically.

#[path = "common/manifest_check.rs"]
mod manifest_check;

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Mutations per corpus file; with ~25 files this stays within a few seconds in a debug build.
const ROUNDS: u64 = 120;

/// xorshift64*: small, seeded, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

const TOKENS: &[&str] = &[
    ":", "-", " ", "\n", "\n  ", "\n- ", "{", "}", "[", "]", ",", "'", "\"", "null", "~", "&a ", "*a", "!!str ",
    "!!binary ", "---\n", "...\n", "#", "|", ">", "? ", "70000", "-1", "0", "1e400", "0x10", ".nan", "Ingres",
    "Egress", "global()", "all()", "!", "&&", "||", "in {'a'}", "matchLabels:", "except:", "ports:", "http",
    "kind: List\nitems:\n", "apiVersion: v1\n", "\u{feff}", "\t", "é", "<<: *a\n",
];

fn mutate_bytes(rng: &mut Rng, seed: &str) -> String {
    let mut s: Vec<u8> = seed.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(s.len() + 1);
        match rng.below(6) {
            0 => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                s.splice(at..at, t.iter().copied());
            }
            1 if at < s.len() => {
                let end = (at + 1 + rng.below(16)).min(s.len());
                s.drain(at..end);
            }
            2 if at < s.len() => s[at] = b" :-{}[]'\"\n#0a"[rng.below(13)],
            3 => s.truncate(at),
            4 => {
                // Duplicate a line somewhere else.
                let text = String::from_utf8_lossy(&s).into_owned();
                let lines: Vec<&str> = text.lines().collect();
                if !lines.is_empty() {
                    let l = lines[rng.below(lines.len())].to_string();
                    let mut out: Vec<String> = lines.iter().map(|x| x.to_string()).collect();
                    out.insert(rng.below(out.len() + 1), l);
                    s = out.join("\n").into_bytes();
                }
            }
            _ => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                s.splice(at..at, t.iter().copied());
            }
        }
    }
    String::from_utf8_lossy(&s).into_owned()
}

fn random_value(rng: &mut Rng) -> Value {
    match rng.below(9) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => Value::from(rng.next() as i64 % 100_000),
        3 => Value::from(-1.5),
        4 => Value::from(TOKENS[rng.below(TOKENS.len())]),
        5 => Value::Array(vec![Value::Null, Value::from("x")]),
        6 => Value::Array(vec![]),
        7 => serde_json::json!({"matchLabels": null, "app": "x"}),
        _ => serde_json::json!({}),
    }
}

/// Replace, delete or wrap one node of the tree.
fn mutate_value(rng: &mut Rng, v: &mut Value, depth: usize) {
    let children = match v {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    };
    if children == 0 || depth > 8 || rng.below(4) == 0 {
        *v = random_value(rng);
        return;
    }
    let k = rng.below(children);
    match v {
        Value::Object(m) => {
            let key = m.keys().nth(k).cloned().expect("k < len");
            if rng.below(6) == 0 {
                m.remove(&key);
            } else {
                mutate_value(rng, m.get_mut(&key).expect("present"), depth + 1);
            }
        }
        Value::Array(a) => {
            if rng.below(6) == 0 {
                let x = a[k].clone();
                a.push(x);
            } else {
                mutate_value(rng, &mut a[k], depth + 1);
            }
        }
        _ => {}
    }
}

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/manifest_load");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn run(what: &str, text: &str) {
    let result = std::panic::catch_unwind(|| manifest_check::check_text(text));
    assert!(result.is_ok(), "{what} failed the check; input:\n{text}");
}

#[test]
fn manifest_corpus_and_seeded_mutations_pass_the_check() {
    let files = corpus();
    // Guard against the corpus moving or emptying, which would make this pass vacuously; keep valid and
    // invalid inputs in it.
    assert!(files.len() >= 15, "only {} corpus files", files.len());
    let mut valid = 0;
    for (i, f) in files.iter().enumerate() {
        let bytes = std::fs::read(f).unwrap();
        let whole = std::panic::catch_unwind(|| manifest_check::check_manifest(&bytes));
        assert!(whole.is_ok(), "{} failed the check", f.display());
        let seed = String::from_utf8(bytes).unwrap();
        if porin_model::parse_documents("s.yaml", &seed).is_ok_and(|d| porin_model::validate_set(&d, &Default::default()).is_ok()) {
            valid += 1;
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1));
        let tree: Vec<Value> = porin_model::parse_documents_partial("s.yaml", &seed)
            .0
            .iter()
            .map(|d| d.resource.to_json())
            .collect();
        for round in 0..ROUNDS {
            let what = format!("{} mutation {round}", f.display());
            if round % 2 == 0 || tree.is_empty() {
                run(&what, &mutate_bytes(&mut rng, &seed));
            } else {
                let mut docs = tree.clone();
                let k = rng.below(docs.len());
                for _ in 0..1 + rng.below(3) {
                    mutate_value(&mut rng, &mut docs[k], 0);
                }
                // Half as a JSON stream, half as YAML flow documents.
                let text = if round % 4 == 1 {
                    docs.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
                } else {
                    docs.iter().map(Value::to_string).collect::<Vec<_>>().join("\n---\n")
                };
                run(&what, &text);
            }
        }
    }
    assert!(valid >= 5 && valid < files.len(), "{valid} of {} corpus files are valid", files.len());
}
