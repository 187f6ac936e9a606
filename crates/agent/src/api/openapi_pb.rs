//! The OpenAPI v2 document in the protobuf form kubectl downloads (`Accept:
//! application/com.github.proto-openapi.spec.v2@v1.0+protobuf`): gnostic's `openapi.v2.Document`. Only what
//! [`super::kube::openapi_v2`] produces is encoded (info, definitions, schemas with type, format, description,
//! required, items, properties, additionalProperties, `$ref` and vendor extensions); field numbers are
//! gnostic's `OpenAPIv2.proto`.

use serde_json::Value;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field (wire type 2): strings, bytes, embedded messages.
fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    varint(out, (u64::from(field) << 3) | 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn string(out: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        bytes(out, field, s.as_bytes());
    }
}

/// `NamedAny { name = 1; Any value = 2 { yaml = 2 } }`: JSON is YAML.
fn named_any(name: &str, v: &Value) -> Vec<u8> {
    let mut any = Vec::new();
    string(&mut any, 2, &v.to_string());
    let mut out = Vec::new();
    string(&mut out, 1, name);
    bytes(&mut out, 2, &any);
    out
}

/// `openapi.v2.Schema`.
pub fn schema(s: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(m) = s.as_object() else { return out };
    if let Some(r) = m.get("$ref").and_then(Value::as_str) {
        string(&mut out, 1, r);
    }
    if let Some(f) = m.get("format").and_then(Value::as_str) {
        string(&mut out, 2, f);
    }
    if let Some(d) = m.get("description").and_then(Value::as_str) {
        string(&mut out, 4, d);
    }
    for r in m.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        bytes(&mut out, 19, r.as_bytes());
    }
    if let Some(a) = m.get("additionalProperties").filter(|a| a.is_object()) {
        // AdditionalPropertiesItem { Schema schema = 1 }
        let mut item = Vec::new();
        bytes(&mut item, 1, &schema(a));
        bytes(&mut out, 21, &item);
    }
    if let Some(t) = m.get("type").and_then(Value::as_str) {
        // TypeItem { repeated string value = 1 }
        let mut item = Vec::new();
        string(&mut item, 1, t);
        bytes(&mut out, 22, &item);
    }
    if let Some(i) = m.get("items") {
        // ItemsItem { repeated Schema schema = 1 }
        let mut item = Vec::new();
        bytes(&mut item, 1, &schema(i));
        bytes(&mut out, 23, &item);
    }
    if let Some(p) = m.get("properties").and_then(Value::as_object) {
        // Properties { repeated NamedSchema additional_properties = 1 }
        let mut props = Vec::new();
        for (name, s) in p {
            let mut named = Vec::new();
            string(&mut named, 1, name);
            bytes(&mut named, 2, &schema(s));
            bytes(&mut props, 1, &named);
        }
        bytes(&mut out, 25, &props);
    }
    for (k, v) in m.iter().filter(|(k, _)| k.starts_with("x-")) {
        bytes(&mut out, 31, &named_any(k, v));
    }
    out
}

/// `PathItem { get = 2; put = 3; post = 4; delete = 5; patch = 8 }`.
fn path_item(item: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    for (method, field) in [("get", 2), ("put", 3), ("post", 4), ("delete", 5), ("patch", 8)] {
        if let Some(op) = item.get(method) {
            bytes(&mut out, field, &operation(op));
        }
    }
    out
}

/// `Operation { operation_id = 5; repeated ParametersItem parameters = 8; repeated NamedAny vendor_extension = 13 }`
/// with query parameters only: `ParametersItem { Parameter parameter = 1 { NonBodyParameter non_body_parameter = 2
/// { QueryParameterSubSchema query_parameter_sub_schema = 3 { in = 2; name = 4; type = 6 } } } }`.
fn operation(op: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(id) = op["operationId"].as_str() {
        string(&mut out, 5, id);
    }
    for p in op["parameters"].as_array().into_iter().flatten() {
        let mut query = Vec::new();
        string(&mut query, 2, p["in"].as_str().unwrap_or("query"));
        string(&mut query, 4, p["name"].as_str().unwrap_or(""));
        string(&mut query, 6, p["type"].as_str().unwrap_or("string"));
        let mut non_body = Vec::new();
        bytes(&mut non_body, 3, &query);
        let mut parameter = Vec::new();
        bytes(&mut parameter, 2, &non_body);
        let mut item = Vec::new();
        bytes(&mut item, 1, &parameter);
        bytes(&mut out, 8, &item);
    }
    for (k, v) in op.as_object().into_iter().flatten().filter(|(k, _)| k.starts_with("x-")) {
        bytes(&mut out, 13, &named_any(k, v));
    }
    out
}

/// `openapi.v2.Document` with swagger, info, paths and definitions.
pub fn document(doc: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    string(&mut out, 1, doc["swagger"].as_str().unwrap_or("2.0"));
    let mut info = Vec::new();
    string(&mut info, 1, doc["info"]["title"].as_str().unwrap_or(""));
    string(&mut info, 2, doc["info"]["version"].as_str().unwrap_or(""));
    bytes(&mut out, 2, &info);
    // Paths { repeated NamedPathItem path = 2 }
    let mut paths = Vec::new();
    for (name, item) in doc["paths"].as_object().into_iter().flatten() {
        let mut named = Vec::new();
        string(&mut named, 1, name);
        bytes(&mut named, 2, &path_item(item));
        bytes(&mut paths, 2, &named);
    }
    bytes(&mut out, 8, &paths);
    let mut defs = Vec::new();
    for (name, s) in doc["definitions"].as_object().into_iter().flatten() {
        let mut named = Vec::new();
        string(&mut named, 1, name);
        bytes(&mut named, 2, &schema(s));
        bytes(&mut defs, 1, &named);
    }
    bytes(&mut out, 9, &defs);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_known_bytes() {
        // Schema { type: ["string"] } = field 22 (0xb2 0x01), len 8, TypeItem { value: "string" } = 0x0a 6 "string".
        let b = schema(&json!({"type": "string"}));
        assert_eq!(b, [0xb2, 0x01, 8, 0x0a, 6, b's', b't', b'r', b'i', b'n', b'g']);
        let long = "x".repeat(200);
        let b = schema(&json!({"description": long}));
        // field 4, wire type 2 = 0x22; length 200 = varint 0xc8 0x01.
        assert_eq!(&b[..3], &[0x22, 0xc8, 0x01]);
        assert_eq!(b.len(), 3 + 200);
    }
}
