//! Converting stored Kubernetes and Calico policies, their rules and entity matches into the IR.

use super::*;

pub(super) fn invalid(r: &Resource, what: impl std::fmt::Display) -> EngineError {
    EngineError::Invalid(format!("{} {}: {what}", r.kind(), r.qualified_name()))
}

pub(super) fn sel(r: &Resource, s: Option<&str>) -> Result<Option<Selector>, EngineError> {
    s.map(|s| Selector::parse(s).map_err(|e| invalid(r, e))).transpose()
}

pub(super) fn k8s_policy(r: &Resource, spec: &K8sNetworkPolicySpec, staged: bool) -> Result<IrPolicy, EngineError> {
    let ns = r.namespace().unwrap_or("default").to_string();
    let (ingress_type, egress_type) = spec.effective_types();
    let peer = |p: &porin_model::k8s::K8sPeer| -> Result<K8sPeer, EngineError> {
        if let Some(b) = &p.ip_block {
            let cidr = parse_cidr(&b.cidr).map_err(|m| invalid(r, m))?;
            let except = b.except.iter().map(|e| parse_cidr(e).map_err(|m| invalid(r, m))).collect::<Result<_, _>>()?;
            return Ok(K8sPeer::IpBlock { cidr, except });
        }
        let pods = match &p.pod_selector {
            Some(s) => s.to_selector().map_err(|e| invalid(r, e))?,
            None => Selector::all(),
        };
        let namespaces = p.namespace_selector.as_ref().map(|s| s.to_selector().map_err(|e| invalid(r, e))).transpose()?;
        Ok(K8sPeer::Pods { pods, namespaces })
    };
    let ports = |ps: &Option<Vec<porin_model::k8s::K8sPort>>| -> Vec<K8sPortIr> {
        ps.iter()
            .flatten()
            .map(|p| K8sPortIr {
                protocol: p.protocol.unwrap_or(Protocol::Tcp),
                port: match &p.port {
                    None => None,
                    Some(IntOrString::Int(n)) => {
                        let lo = u16::try_from(*n).unwrap_or(0);
                        let hi = p.end_port.and_then(|e| u16::try_from(e).ok()).unwrap_or(lo);
                        Some(PortMatch::Range(lo, hi))
                    }
                    Some(IntOrString::String(s)) => Some(PortMatch::Named(s.clone())),
                },
            })
            .collect()
    };
    let mut ingress = Vec::new();
    for rule in spec.ingress.iter().flatten() {
        let peers = rule.from.iter().flatten().map(peer).collect::<Result<_, _>>()?;
        ingress.push(IrRule { action: Action::Allow, matcher: RuleMatch::K8s { peers, ports: ports(&rule.ports) } });
    }
    let mut egress = Vec::new();
    for rule in spec.egress.iter().flatten() {
        let peers = rule.to.iter().flatten().map(peer).collect::<Result<_, _>>()?;
        egress.push(IrRule { action: Action::Allow, matcher: RuleMatch::K8s { peers, ports: ports(&rule.ports) } });
    }
    Ok(IrPolicy {
        id: PolicyId { kind: PolicyKind::K8s, namespace: Some(ns.clone()), name: r.name().to_string(), staged },
        tier: DEFAULT_TIER.into(),
        order: Some(K8S_POLICY_ORDER),
        namespace: Some(ns),
        selector: spec.pod_selector.to_selector().map_err(|e| invalid(r, e))?,
        namespace_selector: None,
        sa_selector: None,
        ingress_type,
        egress_type,
        ingress: if ingress_type { ingress } else { vec![] }.into(),
        egress: if egress_type { egress } else { vec![] }.into(),
    })
}

pub(super) fn calico_policy(r: &Resource, spec: &PolicySpec, kind: PolicyKind, staged: bool) -> Result<IrPolicy, EngineError> {
    let ns = if kind == PolicyKind::Global { None } else { Some(r.namespace().unwrap_or("default").to_string()) };
    let (ingress_type, egress_type) = spec.effective_types();
    let rules = |rs: &[porin_model::porin::Rule]| -> Result<Vec<IrRule>, EngineError> {
        rs.iter().map(|rule| calico_rule(r, rule, ns.as_deref())).collect()
    };
    Ok(IrPolicy {
        id: PolicyId { kind, namespace: ns.clone(), name: r.name().to_string(), staged },
        tier: spec.tier.clone().unwrap_or_else(|| DEFAULT_TIER.into()),
        order: spec.order,
        namespace: ns.clone(),
        selector: sel(r, spec.selector.as_deref())?.unwrap_or_else(Selector::all),
        namespace_selector: sel(r, spec.namespace_selector.as_deref())?,
        sa_selector: sel(r, spec.service_account_selector.as_deref())?,
        ingress_type,
        egress_type,
        ingress: if ingress_type { rules(&spec.ingress)? } else { vec![] }.into(),
        egress: if egress_type { rules(&spec.egress)? } else { vec![] }.into(),
    })
}

pub(super) fn calico_rule(r: &Resource, rule: &porin_model::porin::Rule, ns: Option<&str>) -> Result<IrRule, EngineError> {
    let icmp = |m: &Option<porin_model::porin::IcmpMatch>| {
        m.map(|m| (m.icmp_type.and_then(|t| u8::try_from(t).ok()), m.code.and_then(|c| u8::try_from(c).ok())))
    };
    Ok(IrRule {
        action: rule.action,
        matcher: RuleMatch::Calico {
            ip_version: rule.ip_version,
            protocol: rule.protocol.as_ref().and_then(|p| p.number()),
            not_protocol: rule.not_protocol.as_ref().and_then(|p| p.number()),
            icmp: icmp(&rule.icmp),
            not_icmp: icmp(&rule.not_icmp),
            source: entity(r, &rule.source, ns)?,
            destination: entity(r, &rule.destination, ns)?,
        },
    })
}

pub(super) fn entity(r: &Resource, e: &EntityRule, ns: Option<&str>) -> Result<Entity, EngineError> {
    let nets = |v: &[String]| v.iter().map(|n| parse_cidr(n).map_err(|m| invalid(r, m))).collect::<Result<Vec<_>, _>>();
    let ports = |v: &[porin_model::porin::PortSpec]| {
        v.iter().map(|p| parse_port_spec(p).map_err(|m| invalid(r, m))).collect::<Result<Vec<_>, _>>()
    };
    // Calico treats an empty selector string as "not given" (libcalico-go updateprocessors/rules.go compares
    // each with ""), and `serviceAccounts` without names or selector as no service-account match
    // (parseServiceAccounts returns ""): none of them then scopes the rule or excludes anything.
    fn given(s: &Option<String>) -> Option<&str> {
        s.as_deref().filter(|s| !s.is_empty())
    }
    let selector = sel(r, given(&e.selector))?;
    let not_selector = sel(r, given(&e.not_selector))?;
    let ns_sel = sel(r, given(&e.namespace_selector))?;
    let (sa_names, sa_selector) = match &e.service_accounts {
        Some(sa) => (sa.names.clone(), sel(r, given(&sa.selector))?),
        None => (vec![], None),
    };
    let has_sa = !sa_names.is_empty() || sa_selector.is_some();
    // A serviceAccounts match is part of the positive selector in Calico, so it is scoped like one: to the
    // policy's namespace in a NetworkPolicy, to the selected namespaces with a namespaceSelector.
    let scope = if selector.is_none() && not_selector.is_none() && ns_sel.is_none() && !has_sa {
        None
    } else {
        Some(match ns_sel {
            Some(s) if s.expr() == &porin_selector::Expr::Global => NsScope::Global,
            Some(s) => NsScope::Selected(s),
            None => match ns {
                Some(ns) => NsScope::Same(ns.to_string()),
                None => NsScope::Any,
            },
        })
    };
    Ok(Entity {
        nets: nets(&e.nets)?,
        not_nets: nets(&e.not_nets)?,
        selector,
        not_selector,
        scope,
        sa_names,
        sa_selector,
        ports: ports(&e.ports)?,
        not_ports: ports(&e.not_ports)?,
    })
}
