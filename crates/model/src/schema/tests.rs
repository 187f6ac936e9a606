use super::*;

/// Every property the schema names for a kind's spec exists in the serde type: a manifest setting each
/// (with a value of the schema's type) loads, and a field the schema does not name is rejected by the loader
/// for kinds whose schema is closed.
fn sample(schema: &Value) -> Value {
    if schema.get("x-kubernetes-int-or-string").is_some() {
        return json!(80);
    }
    match schema["type"].as_str() {
        Some("object") => match schema["properties"].as_object() {
            Some(p) => Value::Object(p.iter().map(|(k, v)| (k.clone(), sample(v))).collect()),
            None => json!({}),
        },
        Some("array") => json!([sample(&schema["items"])]),
        Some("string") => match schema["enum"].as_array() {
            Some(e) => e[0].clone(),
            None => json!("x"),
        },
        Some("integer") => json!(1),
        Some("number") => json!(1.5),
        Some("boolean") => json!(false),
        _ => json!({}),
    }
}

#[test]
fn every_schema_field_is_a_field_of_the_model() {
    for kind in Kind::ALL {
        let Some(spec) = spec_schema(kind) else { continue };
        let mut obj = json!({"apiVersion": kind.api_version(), "kind": kind.info().kind, "metadata": {"name": "x"}});
        if kind.info().namespaced {
            obj["metadata"]["namespace"] = json!("ns");
        }
        obj["spec"] = sample(&spec);
        // Parsing (serde) must accept every field; validation may reject values (they are samples).
        let r = crate::load::to_resource(kind, obj.clone());
        assert!(r.is_ok(), "{kind:?}: the schema names a field the model does not know: {:?}\n{obj:#}", r.err());
    }
}

/// No kind falls back to an open spec: every spec is described field by field (the kinds without one are
/// Namespace, Pod and ServiceAccount, whose specs Porin does not read or that have none).
#[test]
fn every_spec_is_closed() {
    for kind in Kind::ALL {
        let Some(spec) = spec_schema(kind) else {
            assert!(matches!(kind, Kind::Namespace | Kind::Pod | Kind::ServiceAccount), "{kind:?} has no spec schema");
            continue;
        };
        assert!(spec.get("x-kubernetes-preserve-unknown-fields").is_none(), "{kind:?}: open spec");
        assert!(!spec["properties"].as_object().is_none_or(Map::is_empty), "{kind:?}: a spec without fields");
        assert!(!description(kind).is_empty(), "{kind:?}");
    }
}

/// Every property of `schema` has a description (what `kubectl explain` prints).
fn described(schema: &Value, at: &str) {
    for (k, v) in schema["properties"].as_object().into_iter().flatten() {
        assert!(v["description"].as_str().is_some_and(|d| !d.is_empty()), "{at}.{k}: no description");
        described(v, &format!("{at}.{k}"));
    }
    if let Some(i) = schema.get("items") {
        described(i, &format!("{at}[]"));
    }
}

/// Every key of `v` (a serialized model value) is a property of `schema`: the schema names every field.
fn names_every_field(schema: &Value, v: &Value, at: &str) {
    if schema.get("x-kubernetes-preserve-unknown-fields").is_some() || schema.get("x-kubernetes-int-or-string").is_some() {
        return;
    }
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = &schema["properties"][k];
                assert!(!p.is_null() || schema["additionalProperties"].is_object(), "{at}.{k}: a model field the schema does not name");
                let sub = if p.is_null() { &schema["additionalProperties"] } else { p };
                names_every_field(sub, x, &format!("{at}.{k}"));
            }
        }
        Value::Array(a) => a.iter().for_each(|x| names_every_field(&schema["items"], x, &format!("{at}[]"))),
        _ => {}
    }
}

/// The newer kinds, the other way round: a spec with every field set (struct literals without `..`, so a
/// field added to the model does not compile here until it is set) serializes to keys the schema names,
/// and every field is described.
#[test]
fn schemas_name_every_field_of_the_newer_kinds() {
    use crate::porin::{PortSpec, ProtocolSpec};
    use crate::{capture, recscope, respond, threatfeed};
    let labels = std::collections::BTreeMap::from([("k".to_string(), "v".to_string())]);
    let feed = threatfeed::GlobalThreatFeedSpec {
        content: Some("IPSet".into()),
        mode: Some("Enabled".into()),
        description: Some("d".into()),
        feed_type: Some("Custom".into()),
        global_network_set: Some(threatfeed::FeedNetworkSet { labels: labels.clone() }),
        pull: Some(threatfeed::Pull {
            period: Some("24h".into()),
            http: threatfeed::PullHttp {
                url: "https://example.com/feed".into(),
                format: Some(threatfeed::FeedFormat {
                    newline_delimited: Some(json!({})),
                    json: Some(threatfeed::JsonFormat { path: "$.ip".into() }),
                    csv: Some(threatfeed::CsvFormat {
                        field_num: Some(0),
                        field_name: Some("ip".into()),
                        header: true,
                        column_delimiter: Some(",".into()),
                        comment_delimiter: Some("#".into()),
                    }),
                }),
                headers: vec![threatfeed::Header { name: "n".into(), value: "v".into() }],
            },
        }),
    };
    let quarantine = respond::QuarantineSpec { reason: Some("r".into()), actor: Some("a".into()), since: Some("t".into()) };
    let honeypod = respond::HoneypodSpec {
        labels: labels.clone(),
        ports: vec![respond::HoneypodPort { port: 22, protocol: Some(crate::Protocol::Tcp) }],
        description: Some("d".into()),
    };
    let capture = capture::PacketCaptureSpec {
        selector: Some("all()".into()),
        filters: vec![capture::CaptureFilter { protocol: Some(ProtocolSpec::Name("UDP".into())), ports: vec![PortSpec::Number(53)] }],
        start_time: Some("2026-12-03T16:00:00Z".into()),
        end_time: Some("2026-12-03T17:00:00Z".into()),
        snap_len: Some(100),
        max_size_bytes: Some(2048),
        max_files: Some(3),
    };
    let scope = recscope::RecommendationScopeSpec {
        interval: Some("1m".into()),
        initial_lookback: Some("1h".into()),
        stabilization_period: Some("5m".into()),
        namespace_spec: Some(recscope::NamespaceSpec {
            rec_status: Some("Enabled".into()),
            selector: Some("all()".into()),
            tier_name: Some("t".into()),
        }),
    };
    let specs = [
        (Kind::GlobalThreatFeed, serde_json::to_value(feed).unwrap()),
        (Kind::Quarantine, serde_json::to_value(quarantine).unwrap()),
        (Kind::Honeypod, serde_json::to_value(honeypod).unwrap()),
        (Kind::PacketCapture, serde_json::to_value(capture).unwrap()),
        (Kind::RecommendationScope, serde_json::to_value(scope).unwrap()),
    ];
    for (kind, v) in specs {
        let schema = spec_schema(kind).unwrap();
        names_every_field(&schema, &v, &format!("{kind:?}.spec"));
        described(&object_schema(kind), &format!("{kind:?}"));
    }
    // Values the schema's enums allow are the ones the model's checks accept.
    let enums = |kind: Kind, path: &[&str]| -> Vec<String> {
        let mut at = spec_schema(kind).unwrap();
        for p in path {
            at = at["properties"][p].clone();
        }
        at["enum"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
    };
    for m in enums(Kind::GlobalThreatFeed, &["mode"]) {
        let s = threatfeed::GlobalThreatFeedSpec { mode: Some(m.clone()), ..Default::default() };
        assert!(threatfeed::check(&s).is_empty(), "mode {m}");
    }
    assert!(!threatfeed::check(&threatfeed::GlobalThreatFeedSpec { mode: Some("On".into()), ..Default::default() }).is_empty());
    for r in enums(Kind::RecommendationScope, &["namespaceSpec", "recStatus"]) {
        let ns = recscope::NamespaceSpec { rec_status: Some(r.clone()), ..Default::default() };
        let s = recscope::RecommendationScopeSpec { namespace_spec: Some(ns), ..Default::default() };
        assert!(recscope::check(recscope::SINGLETON, &s).is_empty(), "recStatus {r}");
    }
}

#[test]
fn columns_point_into_the_schema() {
    for kind in Kind::ALL {
        let s = object_schema(kind);
        for c in columns(kind) {
            let mut at = &s;
            for seg in c.pointer.trim_start_matches('/').split('/') {
                if at.get("x-kubernetes-preserve-unknown-fields").is_some() {
                    break;
                }
                at = &at["properties"][seg];
                assert!(!at.is_null(), "{kind:?} column {} points at {} outside the schema", c.name, c.pointer);
            }
        }
    }
}

/// CRD schemas must be structural: every node has a type (or int-or-string / preserve-unknown-fields),
/// `metadata` has no properties, and no `uniqueItems`.
fn structural(s: &Value, at: &str) {
    let ok = s.get("type").is_some()
        || s.get("x-kubernetes-int-or-string").is_some()
        || s.get("x-kubernetes-preserve-unknown-fields").is_some();
    assert!(ok, "{at}: no type");
    assert!(s.get("uniqueItems").is_none(), "{at}: uniqueItems");
    for (k, v) in s["properties"].as_object().into_iter().flatten() {
        structural(v, &format!("{at}.{k}"));
    }
    if let Some(i) = s.get("items") {
        structural(i, &format!("{at}[]"));
    }
}

#[test]
fn crds_are_structural_and_only_for_porin_kinds() {
    let mut n = 0;
    for kind in Kind::ALL {
        let Some(c) = crd(kind) else {
            assert_ne!(kind.info().group, crate::kind::PORIN_GROUP);
            continue;
        };
        n += 1;
        let v = &c["spec"]["versions"][0];
        let s = &v["schema"]["openAPIV3Schema"];
        structural(s, kind.info().kind);
        assert_eq!(s["properties"]["metadata"], json!({"type": "object"}));
        assert_eq!(v["additionalPrinterColumns"].as_array().unwrap().last().unwrap()["name"], "Age");
    }
    assert_eq!(n, Kind::ALL.iter().filter(|k| k.info().group == crate::kind::PORIN_GROUP).count());
}

#[test]
fn definition_names_follow_kubernetes() {
    assert_eq!(definition_name(Kind::GlobalNetworkPolicy), "io.porin.v1.GlobalNetworkPolicy");
    assert_eq!(definition_name(Kind::K8sNetworkPolicy), "io.k8s.api.networking.v1.NetworkPolicy");
    assert_eq!(json_path("/spec/tier"), ".spec.tier");
}
