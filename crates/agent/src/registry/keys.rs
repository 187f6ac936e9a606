//! Where resources live in the store: `resources/<group|core>/<plural>/<namespace|_>/<name>` → the object's JSON
//! (without `metadata.resourceVersion`, which is the key's mod revision). With etcd the store root `/porin/` is
//! prepended, so the etcd key is `/porin/resources/...`. Tokens live under `tokens/`, audit records under `audit/`.

use porin_model::Kind;

pub const RESOURCES: &str = "resources/";
pub const TOKENS: &str = "tokens/";
pub const AUDIT: &str = "audit/";
/// `token-names/<name>` → the id of the token that holds the name (names are unique).
pub const TOKEN_NAMES: &str = "token-names/";

fn group_segment(kind: Kind) -> &'static str {
    let g = kind.info().group;
    if g.is_empty() { "core" } else { g }
}

/// Every object of `kind`.
pub fn kind_prefix(kind: Kind) -> String {
    format!("{RESOURCES}{}/{}/", group_segment(kind), kind.info().plural)
}

/// Every object of `kind` in `ns` (for a cluster-scoped kind, every object).
pub fn scope_prefix(kind: Kind, ns: Option<&str>) -> String {
    match (kind.info().namespaced, ns) {
        (true, Some(ns)) => format!("{}{ns}/", kind_prefix(kind)),
        (true, None) => kind_prefix(kind),
        (false, _) => format!("{}_/", kind_prefix(kind)),
    }
}

/// The key of one object.
pub fn object_key(kind: Kind, ns: Option<&str>, name: &str) -> String {
    let ns = if kind.info().namespaced { ns.unwrap_or("default") } else { "_" };
    format!("{}{ns}/{name}", kind_prefix(kind))
}

/// The kind, namespace and name a resource key names.
pub fn parse_key(key: &str) -> Option<(Kind, Option<String>, String)> {
    let rest = key.strip_prefix(RESOURCES)?;
    let mut parts = rest.splitn(4, '/');
    let (group, plural, ns, name) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let group = if group == "core" { "" } else { group };
    let kind = Kind::ALL.into_iter().find(|k| k.info().group == group && k.info().plural == plural)?;
    let ns = if kind.info().namespaced { Some(ns.to_string()) } else { None };
    Some((kind, ns, name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for kind in Kind::ALL {
            let k = object_key(kind, Some("team-a"), "x");
            let (k2, ns, name) = parse_key(&k).unwrap();
            assert_eq!(k2, kind);
            assert_eq!(name, "x");
            assert_eq!(ns.is_some(), kind.info().namespaced);
            assert!(k.starts_with(&scope_prefix(kind, Some("team-a"))));
        }
        assert_eq!(object_key(Kind::Pod, Some("a"), "p"), "resources/core/pods/a/p");
        assert_eq!(object_key(Kind::Tier, None, "platform"), "resources/porin.io/tiers/_/platform");
        assert!(parse_key("tokens/abc").is_none());
    }
}
