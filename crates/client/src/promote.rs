//! What a promotion would write (`porin promote --dry-run`), as a YAML stream.

use crate::Result;
use serde_json::Value;

/// `apiVersion Kind [namespace/]name` of an object.
pub fn object_name(o: &Value) -> String {
    let ns = o["metadata"]["namespace"].as_str().map(|n| format!("{n}/")).unwrap_or_default();
    format!(
        "{} {} {ns}{}",
        o["apiVersion"].as_str().unwrap_or(""),
        o["kind"].as_str().unwrap_or(""),
        o["metadata"]["name"].as_str().unwrap_or("")
    )
}

/// The objects a promotion would write, as a YAML stream; deletions as comments naming the object.
pub fn dry_run_text(result: &Value) -> Result<String> {
    let mut out = String::new();
    for it in result["items"].as_array().into_iter().flatten() {
        let o = &it["object"];
        out.push_str("---\n");
        out.push_str(&format!("# from {} (deleted)\n", object_name(&it["staged"])));
        if it["action"] == "delete" {
            out.push_str(&format!("# delete {}\n", object_name(o)));
        } else {
            out.push_str(&serde_saphyr::to_string(o).map_err(|e| invalid!("{e}"))?);
        }
    }
    Ok(out)
}
