//! OpenAPI schemas and printer columns of every kind, kept in one place: the API server serves them
//! (`/openapi/v2`, `/openapi/v3`, server-side Table output for kubectl) and `porin crds` writes them into
//! CustomResourceDefinitions. The schemas follow the serde types of this crate field for field (the test below
//! loads a manifest that uses every field); they are structural (CRD rules): int-or-string fields carry
//! `x-kubernetes-int-or-string`, fields Porin accepts and rejects or ignores as a whole carry
//! `x-kubernetes-preserve-unknown-fields`.

use serde_json::{Map, Value, json};

use crate::Kind;

/// A column of a kind's table (besides NAME, first, and AGE, last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Header as kubectl prints it (upper-cased).
    pub name: &'static str,
    /// JSON pointer into the object (`/spec/tier`).
    pub pointer: &'static str,
    /// OpenAPI type of the cell: string, integer or number.
    pub ty: &'static str,
    /// 0: always shown; 1: with `-o wide`.
    pub priority: u8,
    pub description: &'static str,
    /// The value shown when the field is absent (`TIER` of a policy without one is `default`).
    pub default: Option<&'static str>,
}

const fn col(name: &'static str, pointer: &'static str, ty: &'static str, description: &'static str) -> Column {
    Column { name, pointer, ty, priority: 0, description, default: None }
}

/// The kind-specific columns, in order: the same as `porin get` prints.
pub fn columns(kind: Kind) -> Vec<Column> {
    let tier = Column { default: Some("default"), ..col("Tier", "/spec/tier", "string", "The tier of the policy.") };
    let order = col("Order", "/spec/order", "number", "Order within the tier (lower first).");
    let mut c = match kind {
        Kind::Pod => vec![col("IP", "/status/podIP", "string", "The pod's IP address."), col("Node", "/spec/nodeName", "string", "The node the pod runs on.")],
        Kind::Tier => vec![
            order,
            col("Default-Action", "/spec/defaultAction", "string", "What happens when no rule of a selecting policy matched."),
        ],
        Kind::NetworkPolicy | Kind::GlobalNetworkPolicy | Kind::StagedNetworkPolicy | Kind::StagedGlobalNetworkPolicy => {
            vec![tier, order]
        }
        Kind::ReachabilityGuard => vec![col("Expect", "/spec/expect", "string", "Allow or Deny: what no write may change.")],
        Kind::GlobalReport => vec![
            col("Type", "/spec/reportType", "string", "The report type."),
            col("Schedule", "/spec/schedule", "string", "When the report runs (cron)."),
        ],
        Kind::WorkloadEndpoint => vec![
            col("Pod", "/spec/pod", "string", "The pod this endpoint binds."),
            col("Node", "/spec/node", "string", "The node whose agent enforces it."),
            col("Interface", "/spec/interfaceName", "string", "The host-side interface."),
            col("Networks", "/spec/ipNetworks", "string", "The pod's addresses."),
        ],
        _ => vec![],
    };
    let wide = match kind {
        Kind::K8sNetworkPolicy | Kind::StagedKubernetesNetworkPolicy => {
            Some(col("Pod-Selector", "/spec/podSelector", "string", "The pods the policy selects."))
        }
        Kind::NetworkPolicy | Kind::GlobalNetworkPolicy | Kind::StagedNetworkPolicy | Kind::StagedGlobalNetworkPolicy => {
            Some(col("Selector", "/spec/selector", "string", "The endpoints the policy selects."))
        }
        _ => None,
    };
    c.extend(wide.map(|w| Column { priority: 1, ..w }));
    c
}

/// A JSON path (`.spec.tier`) of a column, as CRDs' `additionalPrinterColumns` write it.
pub fn json_path(pointer: &str) -> String {
    pointer.replace('/', ".")
}

// ---- schema builders ----

fn with_desc(mut v: Value, d: &str) -> Value {
    if !d.is_empty() {
        v["description"] = Value::String(d.to_string());
    }
    v
}
fn string(d: &str) -> Value {
    with_desc(json!({"type": "string"}), d)
}
fn integer(d: &str) -> Value {
    with_desc(json!({"type": "integer", "format": "int64"}), d)
}
fn number(d: &str) -> Value {
    with_desc(json!({"type": "number"}), d)
}
fn boolean(d: &str) -> Value {
    with_desc(json!({"type": "boolean"}), d)
}
fn one_of(d: &str, values: &[&str]) -> Value {
    with_desc(json!({"type": "string", "enum": values}), d)
}
fn int_or_string(d: &str) -> Value {
    with_desc(json!({"x-kubernetes-int-or-string": true}), d)
}
fn array(items: Value, d: &str) -> Value {
    with_desc(json!({"type": "array", "items": items}), d)
}
fn strings(d: &str) -> Value {
    array(json!({"type": "string"}), d)
}
fn string_map(d: &str) -> Value {
    with_desc(json!({"type": "object", "additionalProperties": {"type": "string"}}), d)
}
/// Anything: a field Porin takes as a whole (and rejects or ignores, as its description says).
fn any(d: &str) -> Value {
    with_desc(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}), d)
}
fn object(d: &str, props: &[(&str, Value)]) -> Value {
    let p: Map<String, Value> = props.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    with_desc(json!({"type": "object", "properties": p}), d)
}
fn required(mut v: Value, fields: &[&str]) -> Value {
    v["required"] = json!(fields);
    v
}

fn label_selector(d: &str) -> Value {
    object(
        d,
        &[
            ("matchLabels", string_map("Labels that must all be present with these values.")),
            (
                "matchExpressions",
                array(
                    required(
                        object(
                            "",
                            &[
                                ("key", string("The label key.")),
                                ("operator", one_of("How the key relates to the values.", &["In", "NotIn", "Exists", "DoesNotExist"])),
                                ("values", strings("Values for In and NotIn; empty for Exists and DoesNotExist.")),
                            ],
                        ),
                        &["key", "operator"],
                    ),
                    "Requirements that must all hold.",
                ),
            ),
        ],
    )
}

fn entity_rule(d: &str) -> Value {
    object(
        d,
        &[
            ("nets", strings("CIDRs the peer's address must be in.")),
            ("notNets", strings("CIDRs the peer's address must not be in.")),
            ("selector", string("Selector (Calico syntax) over the peer endpoint's labels.")),
            ("notSelector", string("Selector the peer endpoint must not match.")),
            ("namespaceSelector", string("Selector over the peer's namespace labels.")),
            (
                "serviceAccounts",
                object(
                    "Match the peer's service account.",
                    &[("names", strings("Service account names.")), ("selector", string("Selector over service account labels."))],
                ),
            ),
            ("services", any("Kubernetes Service match: not implemented, rejected by validation.")),
            ("domains", any("Domain (FQDN) match: not implemented, rejected by validation.")),
            ("ports", array(int_or_string(""), "Ports: a number, a \"lo:hi\" range or a named port.")),
            ("notPorts", array(int_or_string(""), "Ports that must not match.")),
        ],
    )
}

fn icmp(d: &str) -> Value {
    object(d, &[("type", integer("ICMP type.")), ("code", integer("ICMP code (needs type)."))])
}

fn rule() -> Value {
    required(
        object(
            "One ordered rule; all criteria are ANDed.",
            &[
                ("action", one_of("What a matching packet gets.", &["Allow", "Deny", "Pass", "Log"])),
                ("ipVersion", integer("4 or 6.")),
                ("protocol", int_or_string("Protocol by name (TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite) or number.")),
                ("notProtocol", int_or_string("Protocol that must not match.")),
                ("icmp", icmp("ICMP type and code to match.")),
                ("notICMP", icmp("ICMP type and code that must not match.")),
                ("source", entity_rule("Where the packet comes from.")),
                ("destination", entity_rule("Where the packet goes.")),
                ("http", any("L7 HTTP match: not implemented, rejected by validation.")),
                ("metadata", object("Rule metadata.", &[("annotations", string_map("Annotations of the rule."))])),
            ],
        ),
        &["action"],
    )
}

fn policy_spec(staged: bool, global: bool) -> Value {
    let mut props = vec![
        ("tier", string("The tier the policy belongs to (default: default).")),
        ("order", number("Order within the tier; lower first, missing last.")),
        ("selector", string("Selector (Calico syntax) over the endpoints the policy applies to.")),
        ("serviceAccountSelector", string("Selector over the service accounts of the endpoints it applies to.")),
        ("types", array(one_of("", &["Ingress", "Egress"]), "Directions the policy applies to (default: from the rules present).")),
        ("ingress", array(rule(), "Ordered ingress rules.")),
        ("egress", array(rule(), "Ordered egress rules.")),
        ("performanceHints", strings("Accepted for Calico compatibility; never changes enforcement.")),
        ("doNotTrack", boolean("Host-endpoint flag: true is rejected (no host endpoints).")),
        ("preDNAT", boolean("Host-endpoint flag: true is rejected (no host endpoints).")),
        ("applyOnForward", boolean("Host-endpoint flag: true is rejected (no host endpoints).")),
    ];
    if global {
        props.insert(3, ("namespaceSelector", string("Selector over the labels of the endpoints' namespaces.")));
    }
    if staged {
        props.push(("stagedAction", one_of("Set: stage this policy; Delete: stage deleting it.", &["Set", "Delete", "Learn", "Ignore"])));
    }
    object("", &props)
}

fn k8s_port() -> Value {
    object(
        "",
        &[
            ("protocol", one_of("TCP (default), UDP or SCTP.", &["TCP", "UDP", "SCTP"])),
            ("port", int_or_string("A port number or a named container port; missing: every port.")),
            ("endPort", integer("The last port of a range starting at port.")),
        ],
    )
}

fn k8s_peer() -> Value {
    object(
        "",
        &[
            ("podSelector", label_selector("Pods (in the policy's namespace unless namespaceSelector is set).")),
            ("namespaceSelector", label_selector("Namespaces.")),
            (
                "ipBlock",
                required(
                    object("", &[("cidr", string("A CIDR.")), ("except", strings("CIDRs inside cidr to leave out."))]),
                    &["cidr"],
                ),
            ),
        ],
    )
}

fn k8s_spec(staged: bool) -> Value {
    let mut props = vec![
        ("podSelector", label_selector("The pods the policy applies to; empty: every pod of the namespace.")),
        ("policyTypes", array(one_of("", &["Ingress", "Egress"]), "Directions the policy applies to.")),
        (
            "ingress",
            array(
                object("", &[("from", array(k8s_peer(), "Sources; empty: every source.")), ("ports", array(k8s_port(), "Ports; empty: every port."))]),
                "Allowed ingress.",
            ),
        ),
        (
            "egress",
            array(
                object("", &[("to", array(k8s_peer(), "Destinations; empty: every one.")), ("ports", array(k8s_port(), "Ports; empty: every port."))]),
                "Allowed egress.",
            ),
        ),
    ];
    if staged {
        props.insert(0, ("stagedAction", one_of("Set or Delete.", &["Set", "Delete", "Learn", "Ignore"])));
    }
    object("", &props)
}

fn wep_spec() -> Value {
    object(
        "",
        &[
            ("node", string("The node whose agent enforces this endpoint.")),
            ("pod", string("The pod's name, in the WorkloadEndpoint's namespace.")),
            ("interfaceName", string("The host-side interface (veth) in the node's network namespace.")),
            ("ipNetworks", strings("The pod's addresses, one host prefix each.")),
            ("containerID", string("Accepted, not used.")),
            ("endpoint", string("Accepted, not used.")),
            ("orchestrator", string("Accepted, not used.")),
            ("workload", string("Accepted, not used.")),
            ("mac", string("Accepted, not used.")),
            (
                "ports",
                array(
                    object(
                        "",
                        &[
                            ("name", string("")),
                            ("protocol", int_or_string("")),
                            ("port", integer("")),
                            ("hostPort", integer("")),
                            ("hostIP", string("")),
                        ],
                    ),
                    "Named ports; accepted, not used.",
                ),
            ),
            ("serviceAccountName", string("Accepted, not used.")),
            ("profiles", strings("Accepted, not used.")),
            ("ipv4Gateway", string("Accepted, not used.")),
            ("ipv6Gateway", string("Accepted, not used.")),
            ("ipNATs", any("Not implemented; rejected by validation.")),
            ("allowSpoofedSourcePrefixes", any("Not implemented; rejected by validation.")),
            ("qosControls", any("Not implemented; rejected by validation.")),
        ],
    )
}

fn conntest_peer(d: &str) -> Value {
    // A string (NS/POD, IP, CIDR) or an object: not expressible structurally, so taken as is and checked by
    // Porin's validation.
    with_desc(json!({"x-kubernetes-preserve-unknown-fields": true}), d)
}

/// The `spec` schema of a kind (None: the kind has no spec Porin reads, e.g. Namespace).
pub fn spec_schema(kind: Kind) -> Option<Value> {
    Some(match kind {
        Kind::Namespace | Kind::Pod | Kind::ServiceAccount => return None,
        Kind::K8sNetworkPolicy => k8s_spec(false),
        Kind::StagedKubernetesNetworkPolicy => k8s_spec(true),
        Kind::Tier => object(
            "",
            &[
                ("order", number("Lower tiers are evaluated first; missing: last.")),
                ("defaultAction", one_of("When a selecting policy of the tier matched no rule (default Deny).", &["Deny", "Pass"])),
            ],
        ),
        Kind::NetworkPolicy => policy_spec(false, false),
        Kind::GlobalNetworkPolicy => policy_spec(false, true),
        Kind::StagedNetworkPolicy => policy_spec(true, false),
        Kind::StagedGlobalNetworkPolicy => policy_spec(true, true),
        Kind::NetworkSet | Kind::GlobalNetworkSet => object(
            "",
            &[
                ("nets", strings("CIDRs of the set.")),
                ("allowedEgressDomains", any("Not implemented; rejected by validation.")),
            ],
        ),
        Kind::ClusterSettings => object(
            "",
            &[("defaultEndpointAction", one_of("Deny: zero-trust mode (a workload no policy selects is denied).", &["Allow", "Deny"]))],
        ),
        Kind::WorkloadEndpoint => wep_spec(),
        Kind::ConnectivityTest => object(
            "",
            &[(
                "cases",
                array(
                    required(
                        object(
                            "",
                            &[
                                ("name", string("")),
                                ("from", conntest_peer("NS/POD, an IP or CIDR, {namespace, selector}, {networkSet} or {globalNetworkSet}.")),
                                ("to", conntest_peer("As from.")),
                                ("port", integer("Destination port (TCP, UDP, SCTP).")),
                                ("protocol", string("TCP (default), UDP, SCTP, ICMP, ICMPv6.")),
                                ("expect", one_of("The expected enforced verdict.", &["Allow", "Deny"])),
                                ("expectPending", one_of("The expected verdict with staged policies applied.", &["Allow", "Deny"])),
                            ],
                        ),
                        &["from", "to", "expect"],
                    ),
                    "The assertions.",
                ),
            )],
        ),
        Kind::ReachabilityGuard => {
            let peer = |d: &str| {
                object(
                    d,
                    &[
                        ("selector", string("Pods by label selector.")),
                        ("namespaceSelector", string("Their namespaces by label selector.")),
                        ("cidr", string("Or a CIDR.")),
                    ],
                )
            };
            object(
                "",
                &[
                    ("from", peer("The sources.")),
                    ("to", peer("The destinations.")),
                    ("ports", array(json!({"type": "integer", "format": "int64"}), "Destination ports.")),
                    ("protocol", string("TCP (default), UDP or SCTP.")),
                    ("expect", one_of("Allow: every pair must stay reachable; Deny: none may become reachable.", &["Allow", "Deny"])),
                ],
            )
        }
        Kind::GlobalReport => {
            let names = |d: &str| object(d, &[("names", strings("")), ("selector", string(""))]);
            object(
                "",
                &[
                    ("reportType", string("inventory, network-access or policy-audit.")),
                    (
                        "endpoints",
                        object(
                            "Which endpoints the report covers.",
                            &[
                                ("selector", string("Endpoints by label selector.")),
                                ("namespaces", names("Namespaces by name or selector.")),
                                ("serviceAccounts", names("Service accounts by name or selector.")),
                            ],
                        ),
                    ),
                    ("schedule", string("Cron schedule.")),
                    ("jobNodeSelector", string_map("Accepted for Calico compatibility.")),
                    ("suspend", boolean("Suspend scheduled runs.")),
                ],
            )
        }
        #[allow(unreachable_patterns)]
        _ => any("The object's spec."),
    })
}

/// `metadata` as Porin reads and keeps it.
pub fn object_meta() -> Value {
    object(
        "Standard object metadata.",
        &[
            ("name", string("The object's name, unique in its namespace (or cluster-wide).")),
            ("generateName", string("Not supported: objects need a name.")),
            ("namespace", string("The namespace (namespaced kinds).")),
            ("labels", string_map("Labels: what selectors match.")),
            ("annotations", string_map("Annotations (kept as written).")),
            ("resourceVersion", string("The store revision of the object's last change (optimistic concurrency).")),
            ("uid", string("Accepted, ignored.")),
            ("creationTimestamp", string("Set by the server at creation.")),
            ("generation", integer("Accepted, ignored.")),
            ("deletionTimestamp", string("Accepted, ignored.")),
            ("finalizers", strings("Accepted, ignored.")),
            ("ownerReferences", array(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}), "Accepted, ignored.")),
            ("managedFields", array(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}), "Accepted, ignored.")),
        ],
    )
}

/// What a kind is, for `kubectl explain`'s DESCRIPTION.
pub fn description(kind: Kind) -> &'static str {
    match kind {
        Kind::Namespace => "A namespace; its labels are what namespace selectors match.",
        Kind::Pod => "A workload; Porin reads its labels, namespace, service account and addresses.",
        Kind::ServiceAccount => "A pod's identity; its labels are what service-account selectors match.",
        Kind::K8sNetworkPolicy => "Kubernetes NetworkPolicy, enforced exactly as upstream specifies (tier default, after Porin's ordered policies).",
        Kind::Tier => "An ordered group of policies: a platform tier above app teams' policies.",
        Kind::NetworkPolicy => "A namespaced, ordered policy with Allow/Deny/Pass/Log rules, in a tier.",
        Kind::GlobalNetworkPolicy => "A cluster-wide, ordered policy with Allow/Deny/Pass/Log rules, in a tier.",
        Kind::StagedNetworkPolicy => "A NetworkPolicy that reports what it would do, without enforcing it.",
        Kind::StagedGlobalNetworkPolicy => "A GlobalNetworkPolicy that reports what it would do, without enforcing it.",
        Kind::StagedKubernetesNetworkPolicy => "A Kubernetes NetworkPolicy that reports what it would do, without enforcing it.",
        Kind::NetworkSet => "A labelled set of CIDRs in a namespace, selectable as a rule peer.",
        Kind::GlobalNetworkSet => "A labelled, cluster-wide set of CIDRs, selectable as a rule peer.",
        Kind::ClusterSettings => "Cluster-wide settings (defaultEndpointAction: Deny is zero-trust mode).",
        Kind::WorkloadEndpoint => "The binding of a pod to its host-side interface and addresses; written by the CNI plugin.",
        Kind::ConnectivityTest => "Connectivity assertions (porin test); never changes enforcement.",
        Kind::ReachabilityGuard => "An invariant that no write may break; never changes enforcement.",
        Kind::GlobalReport => "A compliance report definition (porin report); never changes enforcement.",
        #[allow(unreachable_patterns)]
        _ => "A Porin resource.",
    }
}

/// The whole object's schema (OpenAPI v3 / CRD structural form).
pub fn object_schema(kind: Kind) -> Value {
    let mut props = vec![
        ("apiVersion", string("The versioned schema of this representation of an object.")),
        ("kind", string("The kind of the object.")),
        ("metadata", object_meta()),
    ];
    match kind {
        // Porin reads a few fields of core kinds and keeps the rest as written.
        Kind::Pod => {
            props.push(("spec", any("The pod's spec (Porin reads nodeName, serviceAccountName, containers' ports).")));
            props.push(("status", any("The pod's status (Porin reads podIP and podIPs).")));
        }
        Kind::Namespace => {
            props.push(("spec", any("Accepted, ignored.")));
            props.push(("status", any("Accepted, ignored.")));
        }
        // Only metadata matters: its labels are what service-account selectors match.
        Kind::ServiceAccount => {
            props.push(("secrets", array(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}), "Accepted, ignored.")));
            props.push(("imagePullSecrets", array(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}), "Accepted, ignored.")));
            props.push(("automountServiceAccountToken", boolean("Accepted, ignored.")));
        }
        _ => {
            if let Some(s) = spec_schema(kind) {
                props.push(("spec", with_desc(s, "The desired state.")));
            }
        }
    }
    object(description(kind), &props)
}

/// The OpenAPI definition name of a kind (`io.porin.v1.GlobalNetworkPolicy`), as Kubernetes names them:
/// the group reversed.
pub fn definition_name(kind: Kind) -> String {
    let i = kind.info();
    let group = match i.group {
        "" => "io.k8s.api.core".to_string(),
        g => match g.strip_suffix(".k8s.io") {
            Some(short) => format!("io.k8s.api.{short}"),
            None => g.split('.').rev().collect::<Vec<_>>().join("."),
        },
    };
    format!("{group}.{}.{}", i.version, i.kind)
}

/// The CustomResourceDefinition (`apiextensions.k8s.io/v1`) of a porin.io kind: its schema (structural;
/// `metadata` left to the API server, as CRDs require) and its printer columns (those of `porin get`, then AGE).
/// None for kinds of other groups.
pub fn crd(kind: Kind) -> Option<Value> {
    let i = kind.info();
    if i.group != crate::kind::PORIN_GROUP {
        return None;
    }
    let mut schema = object_schema(kind);
    schema["properties"]["metadata"] = json!({"type": "object"});
    let mut cols: Vec<Value> = columns(kind)
        .into_iter()
        .map(|c| json!({"name": c.name, "type": c.ty, "jsonPath": json_path(c.pointer), "description": c.description, "priority": c.priority}))
        .collect();
    cols.push(json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}));
    let mut names = json!({"kind": i.kind, "listKind": format!("{}List", i.kind), "plural": i.plural, "singular": i.singular, "categories": ["porin"]});
    if !i.short.is_empty() {
        names["shortNames"] = json!(i.short);
    }
    Some(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{}.{}", i.plural, i.group)},
        "spec": {
            "group": i.group,
            "names": names,
            "scope": if i.namespaced { "Namespaced" } else { "Cluster" },
            "versions": [{
                "name": i.version,
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": schema},
                "additionalPrinterColumns": cols,
            }],
        },
    }))
}

#[cfg(test)]
mod tests {
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
}
