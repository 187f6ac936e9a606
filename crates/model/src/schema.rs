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
    /// OpenAPI type of the cell: string, integer, number or boolean.
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
        Kind::GlobalThreatFeed => vec![
            col("Mode", "/spec/mode", "string", "Enabled or Disabled (default Enabled)."),
            col("URL", "/spec/pull/http/url", "string", "Where the feed is pulled from."),
            col("Entries", "/status/entries", "integer", "Addresses and networks in the feed's set."),
            col("Last-Sync", "/status/lastSuccessfulSync", "string", "When the feed last synced successfully."),
            col("OK", "/status/lastAttemptOk", "boolean", "Whether the last sync attempt succeeded."),
        ],
        Kind::Quarantine => vec![
            col("Actor", "/spec/actor", "string", "Who quarantined the pod."),
            col("Since", "/spec/since", "string", "When the pod was quarantined."),
            col("Reason", "/spec/reason", "string", "Why the pod was quarantined."),
        ],
        Kind::Honeypod => vec![col("Description", "/spec/description", "string", "What the decoy poses as.")],
        Kind::PacketCapture => vec![
            col("Selector", "/spec/selector", "string", "The captured workloads of the namespace."),
            col("Start", "/spec/startTime", "string", "When capturing starts (absent: at once)."),
            col("End", "/spec/endTime", "string", "When capturing stops (absent: when deleted)."),
        ],
        Kind::RecommendationScope => vec![
            col("Status", "/spec/namespaceSpec/recStatus", "string", "Enabled or Disabled (default Disabled)."),
            col("Interval", "/spec/interval", "string", "How often recommendations are refreshed."),
        ],
        Kind::Namespace
        | Kind::ServiceAccount
        | Kind::K8sNetworkPolicy
        | Kind::StagedKubernetesNetworkPolicy
        | Kind::NetworkSet
        | Kind::GlobalNetworkSet
        | Kind::ClusterSettings
        | Kind::ConnectivityTest => vec![],
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

fn threat_feed_spec() -> Value {
    let csv = object(
        "Comma-separated values: one column holds the addresses (exactly one of fieldNum, fieldName).",
        &[
            ("fieldNum", integer("The column holding the address, from 0.")),
            ("fieldName", string("The header name of the column holding the address (needs header: true).")),
            ("header", boolean("The first non-comment line is a header.")),
            ("columnDelimiter", string("One character (default ,).")),
            ("commentDelimiter", string("Lines starting with it are skipped (default #).")),
        ],
    );
    let format = object(
        "How the feed's text lists addresses: exactly one of newlineDelimited, json, csv (default newlineDelimited).",
        &[
            ("newlineDelimited", object("One address or network per line, # comments: set it to {}.", &[])),
            (
                "json",
                required(object("A JSON document.", &[("path", string("The path to the addresses: $.data[*].ip; [*] walks an array."))]), &["path"]),
            ),
            ("csv", csv),
        ],
    );
    let header = required(object("", &[("name", string("The header's name.")), ("value", string("The header's value."))]), &["name", "value"]);
    let http = required(
        object(
            "Where and how to fetch the feed.",
            &[
                ("url", string("http://, https:// or file:/// URL of the feed.")),
                ("format", format),
                ("headers", array(header, "Request headers; Calico's valueFrom secrets are not supported.")),
            ],
        ),
        &["url"],
    );
    object(
        "",
        &[
            ("content", one_of("IPSet (default); DomainNameSet is not supported, rejected by validation.", &["IPSet", "DomainNameSet"])),
            ("mode", one_of("Enabled (default): the feed is synced; Disabled: it is not.", &["Enabled", "Disabled"])),
            ("description", string("What the feed is (at most 256 characters).")),
            ("feedType", string("Builtin or Custom; informational.")),
            (
                "globalNetworkSet",
                object(
                    "The GlobalNetworkSet threatfeed.<name> the feed is synced into.",
                    &[("labels", string_map("Labels of the set: what policies select it by."))],
                ),
            ),
            (
                "pull",
                required(
                    object(
                        "Fetch the feed periodically; absent: a push-only feed (porin threatfeed push).",
                        &[("period", string("How often to fetch: a duration like 24h (default) or 30m; at least 5m.")), ("http", http)],
                    ),
                    &["http"],
                ),
            ),
        ],
    )
}

/// A GlobalThreatFeed's `status`, as the API adds it (written by the agent that syncs the feed).
fn threat_feed_status() -> Value {
    object(
        "The feed's sync status, set by the agent; read-only.",
        &[
            ("lastSuccessfulSync", string("RFC 3339 time of the last successful sync.")),
            ("lastAttempt", integer("Unix seconds of the last attempt (pull or push).")),
            ("lastAttemptOk", boolean("Whether the last attempt succeeded.")),
            ("entries", integer("Addresses and networks in the set.")),
            ("rejectedEntries", integer("Lines of the last good feed that were not addresses.")),
            ("source", string("pull <url> or push by <user> (the last good sync).")),
            ("syncedBy", string("The agent that did the last attempt.")),
            ("feedRevision", integer("The feed object's revision at the last attempt.")),
            (
                "errorConditions",
                array(
                    object(
                        "",
                        &[
                            ("type", string("PullFailed, ParseFailed or SyncFailed.")),
                            ("message", string("What went wrong.")),
                            ("time", string("RFC 3339 time of the failure.")),
                        ],
                    ),
                    "The last failures, newest last.",
                ),
            ),
        ],
    )
}

fn packet_capture_spec() -> Value {
    object(
        "",
        &[
            ("selector", string("Selector (Calico syntax) over the namespace's pods to capture (default: all()).")),
            (
                "filters",
                array(
                    object(
                        "Protocol and ports, ANDed.",
                        &[
                            ("protocol", int_or_string("Protocol by name (TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite) or number.")),
                            ("ports", array(int_or_string(""), "Ports (a number or \"lo:hi\"), source or destination; need TCP, UDP or SCTP.")),
                        ],
                    ),
                    "Which packets to keep; filters are ORed; none: every packet.",
                ),
            ),
            ("startTime", string("RFC 3339 time to start at; absent or in the past: now.")),
            ("endTime", string("RFC 3339 time to stop at; absent: until the capture is deleted.")),
            ("snapLen", integer("Bytes kept of each packet, 1-16384 (default 16384).")),
            ("maxSizeBytes", integer("A file past this size is rotated, 1024 to 1 GiB (default 10 MiB).")),
            ("maxFiles", integer("Files kept per endpoint, oldest deleted first, 1-1000 (default 2).")),
        ],
    )
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
        Kind::GlobalThreatFeed => threat_feed_spec(),
        Kind::Quarantine => object(
            "",
            &[
                ("reason", string("Why the pod is quarantined.")),
                ("actor", string("Who quarantined it (set by porin quarantine).")),
                ("since", string("RFC 3339 time of the quarantine.")),
            ],
        ),
        Kind::Honeypod => object(
            "",
            &[
                ("labels", string_map("Labels of the decoy pod (the porin.io/ labels Porin sets are refused).")),
                (
                    "ports",
                    array(
                        required(
                            object(
                                "",
                                &[
                                    ("port", integer("The port the decoy answers on, 1-65535.")),
                                    ("protocol", one_of("TCP (default), UDP or SCTP.", &["TCP", "UDP", "SCTP"])),
                                ],
                            ),
                            &["port"],
                        ),
                        "Ports the decoy answers on; at least one.",
                    ),
                ),
                ("description", string("What the decoy poses as.")),
            ],
        ),
        Kind::PacketCapture => packet_capture_spec(),
        Kind::RecommendationScope => object(
            "",
            &[
                ("interval", string("How often recommendations are refreshed: a duration like 2m30s (default 2m30s).")),
                ("initialLookback", string("How far back a namespace's first recommendation reads flows (default 24h).")),
                ("stabilizationPeriod", string("Unchanged this long, a recommendation is Stable (default 10m).")),
                (
                    "namespaceSpec",
                    object(
                        "Which namespaces get recommendations, and where.",
                        &[
                            ("recStatus", one_of("Enabled: recommend; Disabled (default): do not.", &["Enabled", "Disabled"])),
                            ("selector", string("Selector over namespace labels (default: all but kube-*, calico-*, tigera-*).")),
                            ("tierName", string("The recommendations' tier (default namespace-isolation).")),
                        ],
                    ),
                ),
            ],
        ),
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
        Kind::GlobalThreatFeed => "A threat feed (blocklist) the agent syncs into a GlobalNetworkSet threatfeed.<name>.",
        Kind::Quarantine => "An isolated pod (porin quarantine), named after it; system-owned, written by porin quarantine/release.",
        Kind::Honeypod => "A decoy workload that reports whoever contacts it.",
        Kind::PacketCapture => "Capture the packets of selected workloads to pcap files (porin capture); never changes enforcement.",
        Kind::RecommendationScope => "Continuous policy recommendations (the singleton default); never changes enforcement.",
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
    // Status the API adds to objects as it returns them (read-only; never stored with the object).
    match kind {
        Kind::GlobalThreatFeed => props.push(("status", threat_feed_status())),
        Kind::PacketCapture => props.push((
            "status",
            object(
                "The capture's status, set by the agents; read-only.",
                &[(
                    "files",
                    array(
                        object(
                            "",
                            &[
                                ("node", string("The node.")),
                                ("directory", string("Where the node keeps the capture's files.")),
                                ("fileNames", strings("The pcap files, oldest first per endpoint.")),
                                (
                                    "state",
                                    one_of("Where the capture is on this node.", &["Scheduled", "Capturing", "WaitingForTraffic", "Finished", "Error"]),
                                ),
                                ("packets", integer("Packets written to the files.")),
                                ("lost", integer("Matching packets lost (kernel ring full, or not written).")),
                                ("error", string("Why the capture failed on this node.")),
                            ],
                        ),
                        "Every node's part of the capture, one entry per node that runs a selected workload.",
                    ),
                )],
            ),
        )),
        _ => {}
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
mod tests;
