//! Validation with field paths. [`validate_set`] checks every document and the set as a whole (duplicate names,
//! references to tiers); it returns every problem found so a user fixes them all in one round.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use porin_selector::Selector;

use crate::k8s::{IntOrString, K8sNetworkPolicySpec, K8sPeer, K8sPort};
use crate::load::{Document, ManifestError, join_path};
use crate::porin::{Action, EntityRule, PolicySpec, PortSpec, Rule, StagedAction};
use crate::{Kind, Protocol, Resource};

/// Alias kept for readers who look for a validation error type.
pub type ValidationError = ManifestError;

/// The name of the tier every policy without a tier (and every Kubernetes NetworkPolicy) belongs to.
pub const DEFAULT_TIER: &str = "default";

struct Ctx<'a> {
    doc: &'a Document,
    errors: Vec<ManifestError>,
}

impl Ctx<'_> {
    fn err(&mut self, path: &str, msg: impl Into<String>) {
        self.errors.push(ManifestError::new(
            &self.doc.source,
            Some(self.doc.doc),
            join_path(&self.doc.prefix, path),
            msg,
        ));
    }
}

/// Validate each document and the set. `known_tiers` are tiers that exist outside the set (e.g. in the store);
/// `default` always exists.
pub fn validate_set(docs: &[Document], known_tiers: &BTreeSet<String>) -> Result<(), Vec<ManifestError>> {
    let mut errors = Vec::new();
    let mut tiers: BTreeSet<String> = known_tiers.clone();
    tiers.insert(DEFAULT_TIER.to_string());
    for d in docs {
        if let Resource::Tier(t) = &d.resource {
            tiers.insert(t.metadata.name.clone());
        }
    }
    let mut seen: BTreeMap<(Kind, Option<String>, String), &Document> = BTreeMap::new();
    for d in docs {
        let mut c = Ctx { doc: d, errors: Vec::new() };
        validate_document(&mut c, Some(&tiers));
        errors.extend(c.errors);
        let key = (d.resource.kind(), d.resource.namespace().map(str::to_string), d.resource.name().to_string());
        if let Some(first) = seen.get(&key) {
            errors.push(ManifestError::new(
                &d.source,
                Some(d.doc),
                join_path(&d.prefix, "metadata.name"),
                format!("duplicate {} {:?}: also defined at {}", key.0, d.resource.qualified_name(), first.location()),
            ));
        } else {
            seen.insert(key, d);
        }
    }
    errors.extend(claim_conflicts(docs));
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// Two workloads claiming one address, one node interface bound twice, two WorkloadEndpoints for one pod.
fn claim_conflicts(docs: &[Document]) -> Vec<ManifestError> {
    let mut idx = crate::endpoint::ClaimIndex::default();
    let mut errors = Vec::new();
    for d in docs {
        let Some(c) = crate::endpoint::claims(&d.resource) else { continue };
        for x in idx.add(&c) {
            errors.push(ManifestError::new(&d.source, Some(d.doc), join_path(&d.prefix, &x.path), x.message));
        }
    }
    errors
}

/// Validate one document on its own (no set-level checks besides the tier list given).
pub fn validate_document_alone(d: &Document, tiers: &BTreeSet<String>) -> Vec<ManifestError> {
    let mut c = Ctx { doc: d, errors: Vec::new() };
    validate_document(&mut c, Some(tiers));
    c.errors
}

/// Validate one document without checking that its tier exists (the loader's check of a document that only
/// partly decoded).
pub(crate) fn validate_document_untiered(d: &Document) -> Vec<ManifestError> {
    let mut c = Ctx { doc: d, errors: Vec::new() };
    validate_document(&mut c, None);
    c.errors
}

fn validate_document(c: &mut Ctx<'_>, tiers: Option<&BTreeSet<String>>) {
    let r = &c.doc.resource;
    let meta = r.metadata().clone();
    if meta.name.is_empty() {
        c.err("metadata.name", "missing");
    } else if let Err(m) = check_dns_name(&meta.name, 253) {
        c.err("metadata.name", format!("{:?} {m}", meta.name));
    }
    if let Some(ns) = &meta.namespace
        && let Err(m) = check_dns_label(ns) {
            c.err("metadata.namespace", format!("{ns:?} {m}"));
        }
    for (k, v) in &meta.labels {
        if let Err(m) = check_label_key(k) {
            c.err(&format!("metadata.labels.{k}"), format!("key {m}"));
        }
        if let Err(m) = check_label_value(v) {
            c.err(&format!("metadata.labels.{k}"), format!("value {v:?} {m}"));
        }
    }
    match r.clone() {
        Resource::Namespace(_) | Resource::ServiceAccount(_) => {}
        Resource::Pod(p) => {
            let mut names = BTreeSet::new();
            for (i, ctr) in p.spec.containers.iter().enumerate() {
                for (j, port) in ctr.ports.iter().enumerate() {
                    let path = format!("spec.containers[{i}].ports[{j}]");
                    if !(1..=65535).contains(&port.container_port) {
                        c.err(&format!("{path}.containerPort"), format!("{} is not a port (1-65535)", port.container_port));
                    }
                    if let Some(n) = &port.name {
                        if let Err(m) = check_port_name(n) {
                            c.err(&format!("{path}.name"), format!("{n:?} {m}"));
                        } else if !names.insert(n.clone()) {
                            c.err(&format!("{path}.name"), format!("port name {n:?} is used twice in this pod"));
                        }
                    }
                }
            }
            if let Some(ip) = &p.status.pod_ip
                && ip.parse::<std::net::IpAddr>().is_err() {
                    c.err("status.podIP", format!("{ip:?} is not an IP address"));
                }
            for (i, ip) in p.status.pod_ips.iter().enumerate() {
                if ip.ip.parse::<std::net::IpAddr>().is_err() {
                    c.err(&format!("status.podIPs[{i}].ip"), format!("{:?} is not an IP address", ip.ip));
                }
            }
        }
        Resource::K8sNetworkPolicy(o) => validate_k8s_spec(c, "spec", &o.spec),
        Resource::StagedKubernetesNetworkPolicy(o) => {
            match o.spec.staged_action {
                None | Some(StagedAction::Set) => validate_k8s_spec(c, "spec", &o.spec.as_k8s()),
                Some(StagedAction::Delete) => {
                    if o.spec.as_k8s() != K8sNetworkPolicySpec::default() {
                        c.err("spec", "stagedAction Delete takes no other spec fields");
                    }
                }
                Some(a) => c.err("spec.stagedAction", format!("{a:?} is not supported (Set or Delete)")),
            }
        }
        Resource::Tier(o) => {
            if let Some(order) = o.spec.order
                && !order.is_finite() {
                    c.err("spec.order", "must be a finite number");
                }
            if o.metadata.name == DEFAULT_TIER {
                if o.spec.order.is_some_and(|x| x != 1_000_000.0) {
                    c.err("spec.order", "the default tier's order is fixed at 1000000");
                }
                if o.spec.default_action.is_some_and(|a| a != crate::porin::TierDefaultAction::Deny) {
                    c.err("spec.defaultAction", "the default tier's defaultAction is fixed at Deny");
                }
            }
        }
        Resource::NetworkPolicy(o) => validate_policy(c, &o.spec, false, false, tiers),
        Resource::GlobalNetworkPolicy(o) => validate_policy(c, &o.spec, true, false, tiers),
        Resource::StagedNetworkPolicy(o) => validate_policy(c, &o.spec, false, true, tiers),
        Resource::StagedGlobalNetworkPolicy(o) => validate_policy(c, &o.spec, true, true, tiers),
        Resource::NetworkSet(o) | Resource::GlobalNetworkSet(o) => {
            if o.spec.allowed_egress_domains.is_some() {
                c.err("spec.allowedEgressDomains", "domain-based network sets are not supported by Porin yet");
            }
            for (i, n) in o.spec.nets.iter().enumerate() {
                if let Err(m) = parse_cidr(n) {
                    c.err(&format!("spec.nets[{i}]"), m);
                }
            }
        }
        Resource::ClusterSettings(o) => {
            if o.metadata.name != "default" {
                c.err("metadata.name", "ClusterSettings is a singleton named \"default\"");
            }
        }
        Resource::WorkloadEndpoint(o) => validate_wep(c, &o.spec),
        Resource::ConnectivityTest(o) => crate::conntest::check(&o.spec).into_iter().for_each(|(p, m)| c.err(&p, m)),
        Resource::ReachabilityGuard(o) => crate::guard::check(&o.spec).into_iter().for_each(|(p, m)| c.err(&p, m)),
        Resource::GlobalReport(o) => crate::report::check(&o.spec).into_iter().for_each(|(p, m)| c.err(&p, m)),
        Resource::GlobalThreatFeed(o) => crate::threatfeed::check(&o.spec).into_iter().for_each(|(p, m)| c.err(&p, m)),
        Resource::Quarantine(_) => {}
        Resource::Honeypod(o) => crate::respond::check_honeypod(&o.spec).into_iter().for_each(|(p, m)| c.err(&p, m)),
        Resource::PacketCapture(o) => crate::capture::check(&o.spec).into_iter().for_each(|(p, m)| c.err(&p, m)),
        Resource::RecommendationScope(o) => {
            crate::recscope::check(&o.metadata.name, &o.spec).into_iter().for_each(|(p, m)| c.err(&p, m))
        }
    }
}

fn validate_wep(c: &mut Ctx<'_>, s: &crate::porin::WorkloadEndpointSpec) {
    for (path, v) in [("spec.node", &s.node), ("spec.pod", &s.pod)] {
        if v.is_empty() {
            c.err(path, "missing");
        } else if let Err(m) = check_dns_name(v, 253) {
            c.err(path, format!("{v:?} {m}"));
        }
    }
    if let Err(m) = check_ifname(&s.interface_name) {
        c.err("spec.interfaceName", m);
    }
    if s.ip_networks.is_empty() {
        c.err("spec.ipNetworks", "missing: a WorkloadEndpoint needs the pod's address (a /32 or /128)");
    }
    let (mut v4, mut v6) = (None, None);
    for (i, n) in s.ip_networks.iter().enumerate() {
        let path = format!("spec.ipNetworks[{i}]");
        let Ok(net) = n.parse::<IpNet>() else {
            c.err(&path, format!("{n:?} is not a CIDR (write the pod's address as a.b.c.d/32 or x::y/128)"));
            continue;
        };
        if net.prefix_len() != net.max_prefix_len() {
            c.err(&path, format!("{n:?} is not a single address: only /32 and /128 are supported"));
            continue;
        }
        let a = net.addr();
        if a.is_unspecified() || a.is_multicast() || a.is_loopback() || a == std::net::IpAddr::V4(std::net::Ipv4Addr::BROADCAST) {
            c.err(&path, format!("{a} cannot be a workload's address (unspecified, loopback, multicast or broadcast)"));
            continue;
        }
        let slot = if a.is_ipv4() { &mut v4 } else { &mut v6 };
        match slot {
            Some(first) if *first != a => {
                c.err(&path, format!("a second address of one family ({first} and {a}); at most one IPv4 and one IPv6"))
            }
            _ => *slot = Some(a),
        }
    }
    if let Some(m) = &s.mac {
        let parts: Vec<&str> = m.split(':').collect();
        if parts.len() != 6 || !parts.iter().all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit())) {
            c.err("spec.mac", format!("{m:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"));
        }
    }
    for (i, p) in s.ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        if let Err(m) = check_port_name(&p.name) {
            c.err(&format!("{path}.name"), format!("{:?} {m}", p.name));
        }
        if !(1..=65535).contains(&p.port) {
            c.err(&format!("{path}.port"), format!("{} is not a port (1-65535)", p.port));
        }
        if let Some(pr) = &p.protocol
            && pr.number().is_none()
        {
            c.err(&format!("{path}.protocol"), format!("{pr:?} is not a protocol"));
        }
    }
    for (path, set) in [
        ("spec.ipNATs", s.ip_nats.is_some()),
        ("spec.allowSpoofedSourcePrefixes", s.allow_spoofed_source_prefixes.is_some()),
        ("spec.qosControls", s.qos_controls.is_some()),
    ] {
        if set {
            c.err(path, "is not supported by Porin yet");
        }
    }
}

/// A Linux interface name: 1-15 bytes, no '/', ':' or whitespace, not `.` or `..`. A name, never a path:
/// the agent looks it up in its own network namespace only.
pub fn check_ifname(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("missing: the pod's host-side interface".into());
    }
    if s.len() > 15 || s == "." || s == ".." || s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{s:?} is not an interface name (1-15 characters, no '/', ':' or spaces; interfaces are looked up in the \
             node's own network namespace, never by path)"
        ));
    }
    Ok(())
}

fn validate_k8s_spec(c: &mut Ctx<'_>, base: &str, s: &K8sNetworkPolicySpec) {
    if let Err(e) = s.pod_selector.to_selector() {
        label_selector_err(c, &format!("{base}.podSelector"), &e);
    }
    if let Some(t) = &s.policy_types {
        let mut seen = BTreeSet::new();
        for (i, ty) in t.iter().enumerate() {
            if !seen.insert(*ty) {
                c.err(&format!("{base}.policyTypes[{i}]"), format!("{ty:?} is listed twice"));
            }
        }
    }
    for (i, r) in s.ingress.iter().flatten().enumerate() {
        for (j, p) in r.from.iter().flatten().enumerate() {
            validate_k8s_peer(c, &format!("{base}.ingress[{i}].from[{j}]"), p);
        }
        for (j, p) in r.ports.iter().flatten().enumerate() {
            validate_k8s_port(c, &format!("{base}.ingress[{i}].ports[{j}]"), p);
        }
    }
    for (i, r) in s.egress.iter().flatten().enumerate() {
        for (j, p) in r.to.iter().flatten().enumerate() {
            validate_k8s_peer(c, &format!("{base}.egress[{i}].to[{j}]"), p);
        }
        for (j, p) in r.ports.iter().flatten().enumerate() {
            validate_k8s_port(c, &format!("{base}.egress[{i}].ports[{j}]"), p);
        }
    }
}

/// A label selector's error, its field (`matchExpressions[0].operator: ...`) moved into the path.
fn label_selector_err(c: &mut Ctx<'_>, path: &str, e: &porin_selector::SelectorError) {
    let text = e.to_string();
    match text.split_once(": ") {
        Some((field, msg)) if field.starts_with("matchLabels") || field.starts_with("matchExpressions") => {
            c.err(&format!("{path}.{field}"), msg)
        }
        _ => c.err(path, text),
    }
}

fn validate_k8s_peer(c: &mut Ctx<'_>, path: &str, p: &K8sPeer) {
    if p.ip_block.is_some() && (p.pod_selector.is_some() || p.namespace_selector.is_some()) {
        c.err(path, "ipBlock cannot be combined with podSelector or namespaceSelector");
    }
    if p.ip_block.is_none() && p.pod_selector.is_none() && p.namespace_selector.is_none() {
        c.err(path, "a peer needs podSelector, namespaceSelector or ipBlock");
    }
    if let Some(s) = &p.pod_selector
        && let Err(e) = s.to_selector() {
            label_selector_err(c, &format!("{path}.podSelector"), &e);
        }
    if let Some(s) = &p.namespace_selector
        && let Err(e) = s.to_selector() {
            label_selector_err(c, &format!("{path}.namespaceSelector"), &e);
        }
    if let Some(b) = &p.ip_block {
        match parse_cidr(&b.cidr) {
            Err(m) => c.err(&format!("{path}.ipBlock.cidr"), m),
            Ok(cidr) => {
                for (k, e) in b.except.iter().enumerate() {
                    match parse_cidr(e) {
                        Err(m) => c.err(&format!("{path}.ipBlock.except[{k}]"), m),
                        Ok(ex) => {
                            if !cidr.contains(&ex) || ex.prefix_len() <= cidr.prefix_len() {
                                c.err(
                                    &format!("{path}.ipBlock.except[{k}]"),
                                    format!("{e} is not strictly inside cidr {}", b.cidr),
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

fn validate_k8s_port(c: &mut Ctx<'_>, path: &str, p: &K8sPort) {
    match &p.port {
        None => {
            if p.end_port.is_some() {
                c.err(&format!("{path}.endPort"), "requires port");
            }
        }
        Some(IntOrString::Int(n)) => {
            if !(1..=65535).contains(n) {
                c.err(&format!("{path}.port"), format!("{n} is not a port (1-65535)"));
            }
            if let Some(e) = p.end_port {
                if !(1..=65535).contains(&e) {
                    c.err(&format!("{path}.endPort"), format!("{e} is not a port (1-65535)"));
                } else if e < *n {
                    c.err(&format!("{path}.endPort"), format!("{e} is below port {n}"));
                }
            }
        }
        Some(IntOrString::String(s)) => {
            if let Err(m) = check_port_name(s) {
                c.err(&format!("{path}.port"), format!("{s:?} {m}"));
            }
            if p.end_port.is_some() {
                c.err(&format!("{path}.endPort"), "cannot be used with a named port");
            }
        }
    }
}

fn validate_policy(c: &mut Ctx<'_>, s: &PolicySpec, global: bool, staged: bool, tiers: Option<&BTreeSet<String>>) {
    let tier = s.tier.clone().unwrap_or_else(|| DEFAULT_TIER.to_string());
    if tiers.is_some_and(|t| !t.contains(&tier)) {
        c.err("spec.tier", format!("tier {tier:?} does not exist (define it with a Tier object)"));
    }
    if let Some(o) = s.order
        && !o.is_finite() {
            c.err("spec.order", "must be a finite number");
        }
    if staged {
        match s.staged_action {
            // Learn: a recommendation the agent keeps refining (evaluated like Set); Ignore: a dismissed one
            // (not evaluated). Both as Calico's recommendation engine uses them.
            None | Some(StagedAction::Set | StagedAction::Learn | StagedAction::Ignore) => {}
            Some(StagedAction::Delete) => {
                let stripped = PolicySpec { tier: None, staged_action: None, ..s.clone() };
                if stripped != PolicySpec::default() {
                    c.err("spec", "stagedAction Delete takes no spec fields other than tier");
                }
                return;
            }
        }
    } else if s.staged_action.is_some() {
        c.err("spec.stagedAction", "only staged kinds take stagedAction");
    }
    check_selector(c, "spec.selector", s.selector.as_deref(), false);
    if global {
        check_selector(c, "spec.namespaceSelector", s.namespace_selector.as_deref(), false);
    } else if s.namespace_selector.is_some() {
        c.err("spec.namespaceSelector", "only GlobalNetworkPolicy takes namespaceSelector");
    }
    check_selector(c, "spec.serviceAccountSelector", s.service_account_selector.as_deref(), false);
    if let Some(t) = &s.types {
        let mut seen = BTreeSet::new();
        for (i, ty) in t.iter().enumerate() {
            if !seen.insert(*ty) {
                c.err(&format!("spec.types[{i}]"), format!("{ty:?} is listed twice"));
            }
        }
    }
    for (flag, v) in [("doNotTrack", s.do_not_track), ("preDNAT", s.pre_dnat), ("applyOnForward", s.apply_on_forward)]
    {
        if v == Some(true) {
            c.err(&format!("spec.{flag}"), "host-endpoint policy is not supported by Porin yet");
        }
    }
    for (i, r) in s.ingress.iter().enumerate() {
        validate_rule(c, &format!("spec.ingress[{i}]"), r);
    }
    for (i, r) in s.egress.iter().enumerate() {
        validate_rule(c, &format!("spec.egress[{i}]"), r);
    }
    if s.ingress.len() > 1024 || s.egress.len() > 1024 {
        c.err("spec", "at most 1024 rules per direction");
    }
}

fn check_selector(c: &mut Ctx<'_>, path: &str, s: Option<&str>, allow_global: bool) {
    let Some(s) = s else { return };
    if s.len() > 1024 {
        c.err(path, "selector longer than 1024 characters");
        return;
    }
    match Selector::parse(s) {
        Err(e) => c.err(path, format!("invalid selector {s:?}: {e}")),
        Ok(sel) => {
            if !allow_global && sel.uses_global() {
                c.err(path, "global() is only allowed in a rule's namespaceSelector");
            }
        }
    }
}

fn validate_rule(c: &mut Ctx<'_>, path: &str, r: &Rule) {
    if let Some(v) = r.ip_version
        && v != 4 && v != 6 {
            c.err(&format!("{path}.ipVersion"), format!("{v} is not 4 or 6"));
        }
    let proto = r.protocol.as_ref().map(|p| (p, p.number()));
    if let Some((p, None)) = &proto {
        c.err(&format!("{path}.protocol"), format!("{} is not a protocol (TCP, UDP, SCTP, ICMP, ICMPv6, UDPLite or 1-255)", protocol_text(p)));
    }
    if let Some(p) = &r.not_protocol
        && p.number().is_none() {
            c.err(&format!("{path}.notProtocol"), format!("{} is not a protocol (TCP, UDP, SCTP, ICMP, ICMPv6, UDPLite or 1-255)", protocol_text(p)));
        }
    let proto_num = proto.and_then(|(_, n)| n);
    for (field, icmp) in [("icmp", &r.icmp), ("notICMP", &r.not_icmp)] {
        if let Some(m) = icmp {
            if !matches!(proto_num, Some(1) | Some(58)) {
                c.err(&format!("{path}.{field}"), "requires protocol ICMP or ICMPv6");
            }
            if m.code.is_some() && m.icmp_type.is_none() {
                c.err(&format!("{path}.{field}.code"), "requires type");
            }
            if let Some(t) = m.icmp_type
                && !(0..=254).contains(&t) {
                    c.err(&format!("{path}.{field}.type"), format!("{t} is not 0-254"));
                }
            if let Some(code) = m.code
                && !(0..=255).contains(&code) {
                    c.err(&format!("{path}.{field}.code"), format!("{code} is not 0-255"));
                }
            match (proto_num, r.ip_version) {
                (Some(1), Some(6)) => c.err(&format!("{path}.ipVersion"), "ICMP needs ipVersion 4"),
                (Some(58), Some(4)) => c.err(&format!("{path}.ipVersion"), "ICMPv6 needs ipVersion 6"),
                _ => {}
            }
        }
    }
    if r.http.is_some() {
        c.err(&format!("{path}.http"), "HTTP (L7) rules are not supported by Porin yet");
    }
    let mut families = BTreeSet::new();
    for (side, e) in [("source", &r.source), ("destination", &r.destination)] {
        validate_entity(c, &format!("{path}.{side}"), e, (proto_num, r.protocol.is_some()), &mut families);
    }
    // The engine and the dataplane match destination ports only; a source-port match would be ignored, which
    // would widen an Allow and narrow a Deny. Reject it until it is implemented.
    for (field, ports) in [("ports", &r.source.ports), ("notPorts", &r.source.not_ports)] {
        if !ports.is_empty() {
            c.err(&format!("{path}.source.{field}"), "source ports are not supported by Porin yet");
        }
    }
    if families.len() > 1 {
        c.err(path, "IPv4 and IPv6 nets cannot be mixed in one rule");
    }
    if let Some(v) = r.ip_version {
        let want = if v == 4 { 4 } else { 6 };
        if families.iter().any(|f| *f != want) {
            c.err(path, format!("nets do not match ipVersion {v}"));
        }
    }
    if r.action == Action::Log && r.metadata.is_none() {
        // Log is fine without metadata; nothing to check.
    }
}

fn validate_entity(
    c: &mut Ctx<'_>,
    path: &str,
    e: &EntityRule,
    (proto, proto_given): (Option<u8>, bool),
    families: &mut BTreeSet<u8>,
) {
    for (field, nets) in [("nets", &e.nets), ("notNets", &e.not_nets)] {
        for (i, n) in nets.iter().enumerate() {
            match parse_cidr(n) {
                Err(m) => c.err(&format!("{path}.{field}[{i}]"), m),
                Ok(net) => {
                    families.insert(if matches!(net, IpNet::V4(_)) { 4 } else { 6 });
                }
            }
        }
    }
    check_selector(c, &format!("{path}.selector"), e.selector.as_deref(), false);
    check_selector(c, &format!("{path}.notSelector"), e.not_selector.as_deref(), false);
    check_selector(c, &format!("{path}.namespaceSelector"), e.namespace_selector.as_deref(), true);
    // Calico (validator.go, validateEntityRule): global() must be the whole namespaceSelector.
    if let Some(s) = e.namespace_selector.as_deref()
        && let Ok(sel) = Selector::parse(s)
        && sel.uses_global()
        && sel.expr() != &porin_selector::Expr::Global
    {
        c.err(&format!("{path}.namespaceSelector"), "global() cannot be combined with other expressions");
    }
    if let Some(sa) = &e.service_accounts {
        check_selector(c, &format!("{path}.serviceAccounts.selector"), sa.selector.as_deref(), false);
        for (i, n) in sa.names.iter().enumerate() {
            if let Err(m) = check_dns_name(n, 253) {
                c.err(&format!("{path}.serviceAccounts.names[{i}]"), format!("{n:?} {m}"));
            }
        }
    }
    if e.services.is_some() {
        c.err(&format!("{path}.services"), "Service matches are not supported by Porin yet");
    }
    if e.domains.is_some() {
        c.err(&format!("{path}.domains"), "domain (FQDN) matches are not supported by Porin yet");
    }
    // Calico (libcalico-go validator.go, validateRule): without a protocol only named ports are allowed (a named
    // port takes the protocol of the container port it names); with a protocol, it must carry ports.
    for (field, ports) in [("ports", &e.ports), ("notPorts", &e.not_ports)] {
        if ports.len() > 50 {
            c.err(&format!("{path}.{field}"), "at most 50 entries");
        }
        let mut all_named = true;
        for (i, p) in ports.iter().enumerate() {
            match parse_port_spec(p) {
                Err(m) => c.err(&format!("{path}.{field}[{i}]"), m),
                Ok(PortMatch::Named(_)) => {}
                Ok(PortMatch::Range(..)) => all_named = false,
            }
        }
        if ports.is_empty() {
            continue;
        }
        match (proto, proto_given) {
            (_, false) if !all_named => c.err(
                &format!("{path}.{field}"),
                "numeric ports and port ranges require protocol TCP, UDP or SCTP (named ports alone need none)",
            ),
            (Some(6) | Some(17) | Some(132), _) | (_, false) => {}
            _ => c.err(&format!("{path}.{field}"), "ports require protocol TCP, UDP or SCTP"),
        }
    }
}

/// A protocol as written: a number, or a quoted name.
fn protocol_text(p: &crate::porin::ProtocolSpec) -> String {
    match p {
        crate::porin::ProtocolSpec::Number(n) => n.to_string(),
        crate::porin::ProtocolSpec::Name(s) => format!("{s:?}"),
    }
}

/// A port entry, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortMatch {
    Range(u16, u16),
    Named(String),
}

/// Parse a Calico port entry: a number, `"lo:hi"`, or a named port.
pub fn parse_port_spec(p: &PortSpec) -> Result<PortMatch, String> {
    match p {
        // Calico (validator.go, validatePort): port numbers are 1-65535.
        PortSpec::Number(n) => {
            let n = u16::try_from(*n).ok().filter(|n| *n >= 1).ok_or_else(|| format!("{n} is not a port (1-65535)"))?;
            Ok(PortMatch::Range(n, n))
        }
        PortSpec::Text(s) => {
            if let Some((a, b)) = s.split_once(':') {
                let port = |x: &str| x.trim().parse::<u16>().ok().filter(|n| *n >= 1);
                let lo = port(a).ok_or_else(|| format!("{s:?}: {a:?} is not a port (1-65535)"))?;
                let hi = port(b).ok_or_else(|| format!("{s:?}: {b:?} is not a port (1-65535)"))?;
                if hi < lo {
                    return Err(format!("{s:?}: range end {hi} is below its start {lo}"));
                }
                Ok(PortMatch::Range(lo, hi))
            } else if let Ok(n) = s.parse::<i64>() {
                parse_port_spec(&PortSpec::Number(n))
            } else {
                check_port_name(s).map_err(|m| format!("{s:?} {m}"))?;
                Ok(PortMatch::Named(s.clone()))
            }
        }
    }
}

/// Parse a CIDR; a bare address is a host route (/32 or /128). The network is normalised (host bits cleared).
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    if let Ok(a) = s.parse::<std::net::IpAddr>() {
        return Ok(IpNet::from(a));
    }
    Err(format!("{s:?} is not a CIDR"))
}

fn check_dns_label(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 63 {
        return Err("must be 1-63 characters".into());
    }
    let ok = s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok { Ok(()) } else { Err("must be lowercase letters, digits and '-', starting and ending alphanumeric".into()) }
}

fn check_dns_name(s: &str, max: usize) -> Result<(), String> {
    if s.is_empty() || s.len() > max {
        return Err(format!("must be 1-{max} characters"));
    }
    for part in s.split('.') {
        check_dns_label(part).map_err(|_| {
            "must be lowercase letters, digits, '-' and '.', each part starting and ending alphanumeric".to_string()
        })?;
    }
    Ok(())
}

fn check_label_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix {
        check_dns_name(p, 253).map_err(|m| format!("prefix {p:?} {m}"))?;
    }
    check_label_value(name).and_then(|_| if name.is_empty() { Err("name part is empty".into()) } else { Ok(()) })
}

fn check_label_value(v: &str) -> Result<(), String> {
    if v.len() > 63 {
        return Err("is longer than 63 characters".into());
    }
    if v.is_empty() {
        return Ok(());
    }
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let ok = v.chars().all(|c| alnum(c) || c == '-' || c == '_' || c == '.')
        && v.starts_with(alnum)
        && v.ends_with(alnum);
    if ok { Ok(()) } else { Err("must be alphanumerics, '-', '_' or '.', starting and ending alphanumeric".into()) }
}

/// Kubernetes IANA_SVC_NAME: 1-15 lowercase alphanumerics or '-', at least one letter, no leading, trailing or
/// double '-'.
pub fn check_port_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 15
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.chars().any(|c| c.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--");
    if ok { Ok(()) } else { Err("is not a port name (1-15 lowercase letters, digits and '-', with a letter)".into()) }
}

/// The protocol of a Kubernetes port entry (default TCP).
pub fn k8s_port_protocol(p: &K8sPort) -> Protocol {
    p.protocol.unwrap_or(Protocol::Tcp)
}
