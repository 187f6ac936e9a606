//! Labels as a privilege: what a scoped token may not change about a Pod, a ServiceAccount or a NetworkSet.
//!
//! A policy outside a token's scope — global, in another namespace, or in a tier the token does not hold —
//! reads the labels (and service account) of pods and the labels of network sets in the token's namespaces:
//! as the policy's own selection, as a rule peer, or as a `notSelector` exception. If the token could change
//! those, it could lift the platform tier's isolation (`porin label pod payment pci-`) or make its pods (or a
//! network set's CIDRs) look like a peer another tenant trusts. So, for a scoped token:
//!
//! * **Pods.** The set of (out-of-scope policy, relation) pairs that match the pod must stay what it was: an
//!   update may change only labels no such policy reads; a new pod must be seen exactly as a pod without
//!   labels (in the same namespace, service account `default`) would be; a pod such a policy selects, or sees
//!   differently from a label-less pod, cannot be deleted (the dataplane would stop enforcing on its
//!   interface). Its `spec.nodeName` cannot change either (moving a pod off a node unprograms it there).
//! * **ServiceAccounts.** Their labels are what service-account selectors see (with `projectcalico.org/name`):
//!   a create, relabel or delete must not change whether any out-of-scope `serviceAccountSelector` or rule
//!   `serviceAccounts.selector` whose namespaces include the account's matches it (checked on the account
//!   alone, whichever pods use it: stricter than needed, never looser). A pod is seen with the stored labels
//!   of its account.
//! * **NetworkSets.** A set any out-of-scope rule peer matches cannot be created, deleted, relabelled or have
//!   its `nets` changed: its CIDRs would join (or leave) a peer another tenant's policy names.
//!
//! The relation of a policy to an object is computed with the compiled selectors, over a model built from the
//! stored policies, namespaces and tiers at request time ([`guard_cluster`]); the 403 names the policy and the
//! relation. Policies the token could have written itself (namespaced, in its namespaces, in its tiers) are
//! free: they cannot affect another tenant's endpoints.

use std::collections::{BTreeMap, BTreeSet};

use porin_model::{Kind, Resource};
use porin_policy::Cluster;
use porin_policy::ir::{Endpoint, Entity, IrPolicy, K8sPeer, NsScope, RuleMatch};

/// Why a scoped change is refused (the 403 message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// A scoped token's namespaces and tiers.
pub struct Scope<'a> {
    pub user: &'a str,
    pub namespaces: &'a [String],
    pub tiers: &'a [String],
}

/// The kinds whose labels out-of-scope policies read and a scoped token can write (Namespaces and
/// GlobalNetworkSets are admin-only altogether).
pub fn guarded(kind: Kind) -> bool {
    matches!(kind, Kind::Pod | Kind::ServiceAccount | Kind::NetworkSet)
}

/// The policy-relevant kinds: what [`guard_cluster`] needs from the store.
pub const MODEL_KINDS: [Kind; 9] = [
    Kind::Namespace,
    Kind::ServiceAccount,
    Kind::Tier,
    Kind::K8sNetworkPolicy,
    Kind::NetworkPolicy,
    Kind::GlobalNetworkPolicy,
    Kind::StagedNetworkPolicy,
    Kind::StagedGlobalNetworkPolicy,
    Kind::StagedKubernetesNetworkPolicy,
];

/// The policy model the guard checks against: policies, tiers, namespaces and service accounts (no pods: only
/// the object being written is matched).
pub fn guard_cluster(resources: &[Resource]) -> Result<Cluster, porin_policy::EngineError> {
    Cluster::build(resources.iter().filter(|r| MODEL_KINDS.contains(&r.kind())))
}

impl Scope<'_> {
    /// Could the token have written `p` itself?
    fn owns(&self, p: &IrPolicy) -> bool {
        p.namespace.as_ref().is_some_and(|ns| self.namespaces.contains(ns)) && self.tiers.contains(&p.tier)
    }

    /// Refuse the change `old` → `new` (either absent for a create or delete) of a Pod, ServiceAccount or
    /// NetworkSet when it changes how a policy outside the scope sees the object. Err is the 403 message.
    pub fn check(&self, c: &Cluster, old: Option<&Resource>, new: Option<&Resource>) -> Result<(), Refused> {
        let Some(any) = new.or(old) else { return Ok(()) };
        if !guarded(any.kind()) {
            return Ok(());
        }
        let what = format!("{} {:?}", any.kind(), any.qualified_name());
        let refuse = |rel: &Relation, gained: bool, how: &str| {
            Err(Refused(format!(
                "{} (scoped) may not {how} {what}: policy {} in tier {:?} (outside the token's scope) {} it ({}); \
                 labels that policies outside a token's scope read are reserved to an admin",
                self.user,
                rel.policy,
                rel.tier,
                if gained { "would newly match" } else { "would no longer match" },
                rel.how,
            )))
        };
        match any {
            Resource::Pod(_) => {
                if let (Some(Resource::Pod(o)), Some(Resource::Pod(n))) = (old, new)
                    && o.spec.node_name != n.spec.node_name
                {
                    return Err(Refused(format!(
                        "{} (scoped) may not change spec.nodeName of {what}: placement decides which agent enforces \
                         its policy",
                        self.user
                    )));
                }
                let base = || view(c, self, &Subject::of(c, &baseline_pod(any)));
                let before = match old {
                    Some(r) => view(c, self, &Subject::of(c, r)),
                    None => base(),
                };
                let after = match new {
                    Some(r) => view(c, self, &Subject::of(c, r)),
                    None => {
                        // A delete: the interface would lose its enforcement, and its identity would go.
                        if let Some(rel) = before.iter().find(|r| r.how == SELECTS) {
                            return refuse(rel, false, "delete");
                        }
                        base()
                    }
                };
                let verb = if old.is_none() { "create" } else if new.is_none() { "delete" } else { "change" };
                if let Some(rel) = after.difference(&before).next() {
                    return refuse(rel, true, verb);
                }
                if let Some(rel) = before.difference(&after).next() {
                    return refuse(rel, false, verb);
                }
                Ok(())
            }
            Resource::ServiceAccount(_) => {
                // Absent, an account still has its name label: that is what a create starts from and a delete
                // returns to.
                let ns = any.namespace().unwrap_or("default").to_string();
                let none = BTreeMap::new();
                let subject = |r: Option<&Resource>| Subject::ServiceAccount {
                    namespace: ns.clone(),
                    labels: porin_policy::ir::sa_labels(any.name(), r.map_or(&none, |r| &r.metadata().labels)),
                };
                let before = view(c, self, &subject(old));
                let after = view(c, self, &subject(new));
                let verb = if old.is_none() { "create" } else if new.is_none() { "delete" } else { "change" };
                if let Some(rel) = after.difference(&before).next() {
                    return refuse(rel, true, verb);
                }
                if let Some(rel) = before.difference(&after).next() {
                    return refuse(rel, false, verb);
                }
                Ok(())
            }
            Resource::NetworkSet(_) => {
                let before = old.map(|r| view(c, self, &Subject::of(c, r))).unwrap_or_default();
                let after = new.map(|r| view(c, self, &Subject::of(c, r))).unwrap_or_default();
                let verb = if old.is_none() { "create" } else if new.is_none() { "delete" } else { "change" };
                if let Some(rel) = after.difference(&before).next() {
                    return refuse(rel, true, verb);
                }
                if let Some(rel) = before.difference(&after).next() {
                    return refuse(rel, false, verb);
                }
                // Seen the same way before and after: its CIDRs must not move under a peer that names it.
                if let (Some(Resource::NetworkSet(o)), Some(Resource::NetworkSet(n)), Some(rel)) = (old, new, before.first())
                    && o.spec.nets != n.spec.nets
                {
                    return Err(Refused(format!(
                        "{} (scoped) may not change spec.nets of {what}: policy {} in tier {:?} (outside the token's \
                         scope) matches it ({}); its CIDRs are reserved to an admin",
                        self.user, rel.policy, rel.tier, rel.how
                    )));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// How an out-of-scope policy sees an object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Relation {
    policy: String,
    tier: String,
    /// `selects it`, `ingress rule 0 source selector`, `egress rule 1 peer 0`, ...
    how: String,
}

const SELECTS: &str = "its selector selects it";

enum Subject {
    Endpoint(Endpoint),
    NetSet { namespace: String, labels: BTreeMap<String, String> },
    /// A service account of `namespace`, with the labels service-account selectors would see.
    ServiceAccount { namespace: String, labels: BTreeMap<String, String> },
    Other,
}

impl Subject {
    /// A pod is seen with the labels of its service account in `c` (the stored ServiceAccounts).
    fn of(c: &Cluster, r: &Resource) -> Subject {
        match r {
            Resource::Pod(_) => match Cluster::build(std::iter::once(r)) {
                Ok(mut one) if one.endpoints.len() == 1 => {
                    let mut ep = one.endpoints.remove(0);
                    ep.sa_labels = c.service_account_labels(&ep.namespace, &ep.service_account);
                    Subject::Endpoint(ep)
                }
                _ => Subject::Other,
            },
            Resource::NetworkSet(s) => Subject::NetSet {
                namespace: r.namespace().unwrap_or("default").to_string(),
                labels: s.metadata.labels.clone(),
            },
            _ => Subject::Other,
        }
    }
}

/// A pod in the same namespace with no labels and the default service account: what any tenant may create.
fn baseline_pod(r: &Resource) -> Resource {
    let v = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": r.name(), "namespace": r.namespace().unwrap_or("default")}});
    porin_model::load::to_resource(Kind::Pod, v).unwrap_or_else(|_| unreachable!("a bare pod always decodes"))
}

fn ns_in_scope(c: &Cluster, scope: &NsScope, ns: &str) -> bool {
    match scope {
        NsScope::Same(own) => ns == own,
        NsScope::Selected(s) => c.namespace_matches(s, ns),
        NsScope::Any => true,
        NsScope::Global => false,
    }
}

/// Which parts of a Calico entity rule match the subject through its labels (or service account).
fn entity_hits(c: &Cluster, e: &Entity, s: &Subject, out: &mut Vec<&'static str>) {
    let Some(scope) = &e.scope else { return };
    match s {
        Subject::Endpoint(ep) => {
            if !ns_in_scope(c, scope, &ep.namespace) {
                return;
            }
            if e.selector.as_ref().is_some_and(|x| x.matches(&ep.labels)) {
                out.push("selector");
            }
            if e.not_selector.as_ref().is_some_and(|x| x.matches(&ep.labels)) {
                out.push("notSelector");
            }
            if e.sa_names.contains(&ep.service_account) {
                out.push("serviceAccounts.names");
            }
            if e.sa_selector.as_ref().is_some_and(|x| x.matches(&ep.sa_labels)) {
                out.push("serviceAccounts.selector");
            }
        }
        Subject::NetSet { namespace, labels } => {
            let in_scope = match scope {
                NsScope::Same(ns) => ns == namespace,
                NsScope::Selected(sel) => c.namespace_matches(sel, namespace),
                NsScope::Any => true,
                NsScope::Global => false,
            };
            // Network sets have no service account: an entity that names one never matches a set.
            if !in_scope || !e.sa_names.is_empty() || e.sa_selector.is_some() {
                return;
            }
            match &e.selector {
                Some(x) if x.matches(labels) => out.push("selector"),
                None if e.not_selector.is_none() => out.push("namespaceSelector"),
                _ => {}
            }
            if e.not_selector.as_ref().is_some_and(|x| x.matches(labels)) {
                out.push("notSelector");
            }
        }
        Subject::ServiceAccount { namespace, labels } => {
            if ns_in_scope(c, scope, namespace) && e.sa_selector.as_ref().is_some_and(|x| x.matches(labels)) {
                out.push("serviceAccounts.selector");
            }
        }
        Subject::Other => {}
    }
}

/// Every (out-of-scope policy, relation) that matches the subject: enforced policies and staged ones.
fn view(c: &Cluster, scope: &Scope<'_>, s: &Subject) -> BTreeSet<Relation> {
    let mut out = BTreeSet::new();
    let policies = c.policies.iter().chain(c.pending_policies.iter().filter(|p| p.id.staged));
    for p in policies.filter(|p| !scope.owns(p)) {
        let mut add = |how: String| {
            out.insert(Relation { policy: p.id.to_string(), tier: p.tier.clone(), how });
        };
        if let Subject::Endpoint(ep) = s
            && c.policy_selects(p, ep)
        {
            add(SELECTS.to_string());
        }
        // A policy's serviceAccountSelector, for any pod of the account its namespace could hold.
        if let Subject::ServiceAccount { namespace, labels } = s
            && p.namespace.as_ref().is_none_or(|ns| ns == namespace)
            && p.sa_selector.as_ref().is_some_and(|x| x.matches(labels))
        {
            add("its serviceAccountSelector selects it".to_string());
        }
        for (dir, rules) in [("ingress", &p.ingress), ("egress", &p.egress)] {
            for (i, rule) in rules.iter().enumerate() {
                match &rule.matcher {
                    RuleMatch::K8s { peers, .. } => {
                        let Subject::Endpoint(ep) = s else { continue };
                        for (j, peer) in peers.iter().enumerate() {
                            let K8sPeer::Pods { pods, namespaces } = peer else { continue };
                            let ns_ok = match namespaces {
                                None => p.namespace.as_ref() == Some(&ep.namespace),
                                Some(sel) => c.namespace_matches(sel, &ep.namespace),
                            };
                            if ns_ok && pods.matches(&ep.labels) {
                                add(format!("{dir} rule {i} peer {j}"));
                            }
                        }
                    }
                    RuleMatch::Calico { source, destination, .. } => {
                        for (side, e) in [("source", source), ("destination", destination)] {
                            let mut hits = Vec::new();
                            entity_hits(c, e, s, &mut hits);
                            for h in hits {
                                add(format!("{dir} rule {i} {side} {h}"));
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: &str = r#"
apiVersion: porin.io/v1
kind: Tier
metadata: {name: platform}
spec: {order: 100}
---
apiVersion: porin.io/v1
kind: Tier
metadata: {name: app}
spec: {order: 500}
---
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: pci-isolation}
spec:
  tier: platform
  selector: pci == 'true'
  ingress: [{action: Allow, source: {selector: role == 'checkout'}}, {action: Deny}]
---
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: ops-trusts-backup, namespace: ops}
spec:
  tier: app
  selector: all()
  ingress: [{action: Allow, source: {selector: role == 'backup', namespaceSelector: all()}}]
---
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: mine, namespace: shop}
spec:
  tier: app
  selector: all()
  ingress: [{action: Allow, source: {selector: anything == 'goes'}}]
"#;

    fn docs(y: &str) -> Vec<Resource> {
        porin_model::parse_documents("t", y).unwrap().into_iter().map(|d| d.resource).collect()
    }

    fn pod(labels: &str) -> Resource {
        docs(&format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: shop, labels: {{{labels}}}}}\n")).remove(0)
    }

    fn netset(labels: &str, nets: &str) -> Resource {
        docs(&format!(
            "apiVersion: porin.io/v1\nkind: NetworkSet\nmetadata: {{name: s, namespace: shop, labels: {{{labels}}}}}\nspec: {{nets: [{nets}]}}\n"
        ))
        .remove(0)
    }

    #[test]
    fn labels_that_outside_policies_read_are_reserved() {
        let c = guard_cluster(&docs(MODEL)).unwrap();
        let (ns, tiers) = (vec!["shop".to_string()], vec!["app".to_string()]);
        let s = Scope { user: "token:shop", namespaces: &ns, tiers: &tiers };
        // Lifting the platform's isolation: refused, naming the policy.
        let e = s.check(&c, Some(&pod("pci: 'true', app: pay")), Some(&pod("app: pay"))).unwrap_err().0;
        assert!(e.contains("pci-isolation") && e.contains("platform") && e.contains("no longer"), "{e}");
        // Labels no outside policy reads are free, and so are labels only the token's own policies read.
        assert!(s.check(&c, Some(&pod("pci: 'true', app: pay")), Some(&pod("pci: 'true', app: pay2"))).is_ok());
        assert!(s.check(&c, Some(&pod("app: x")), Some(&pod("app: x, anything: goes"))).is_ok());
        // Becoming a peer another tenant (or the platform) trusts: refused, on create and on update.
        let e = s.check(&c, None, Some(&pod("role: backup"))).unwrap_err().0;
        assert!(e.contains("ops/ops-trusts-backup") && e.contains("newly"), "{e}");
        assert!(s.check(&c, Some(&pod("app: x")), Some(&pod("role: checkout"))).unwrap_err().0.contains("pci-isolation"));
        assert!(s.check(&c, None, Some(&pod("app: x"))).is_ok());
        // Deleting a pod an outside policy selects unprograms it: refused; an ordinary pod may go.
        assert!(s.check(&c, Some(&pod("pci: 'true'")), None).unwrap_err().0.contains("delete"));
        assert!(s.check(&c, Some(&pod("app: x")), None).is_ok());
        // Network sets: a set an outside peer matches is frozen (labels and nets); others are free.
        let e = s.check(&c, None, Some(&netset("role: backup", "10.0.0.0/8"))).unwrap_err().0;
        assert!(e.contains("ops-trusts-backup"), "{e}");
        assert!(s.check(&c, None, Some(&netset("role: web", "10.0.0.0/8"))).is_ok());
        // (A token that also holds tier platform still may not touch what another namespace's policy reads.)
        let all_tiers = vec!["app".to_string(), "platform".to_string(), "default".to_string()];
        let s2 = Scope { user: "token:shop", namespaces: &ns, tiers: &all_tiers };
        assert!(s2.check(&c, None, Some(&pod("role: backup"))).is_err());
        assert!(s2.check(&c, Some(&pod("pci: 'true'")), Some(&pod("app: pay"))).is_err(), "global policies are never the token's");
    }

    fn service_account(name: &str, labels: &str) -> Resource {
        docs(&format!("apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {name}, namespace: shop, labels: {{{labels}}}}}\n")).remove(0)
    }

    #[test]
    fn service_account_labels_that_outside_policies_read_are_reserved() {
        let model = format!(
            "{MODEL}---\napiVersion: porin.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {{name: backend-closed}}\nspec:\n  \
             tier: platform\n  selector: all()\n  serviceAccountSelector: role == 'backend'\n  ingress: [{{action: Deny}}]\n\
             ---\napiVersion: porin.io/v1\nkind: NetworkPolicy\nmetadata: {{name: ops-trusts-frontends, namespace: ops}}\n\
             spec:\n  tier: app\n  selector: all()\n  ingress: [{{action: Allow, source: {{namespaceSelector: all(), \
             serviceAccounts: {{selector: role == 'frontend'}}}}}}]\n\
             ---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: api, namespace: shop, labels: {{role: backend}}}}\n"
        );
        let c = guard_cluster(&docs(&model)).unwrap();
        let (ns, tiers) = (vec!["shop".to_string()], vec!["app".to_string()]);
        let s = Scope { user: "token:shop", namespaces: &ns, tiers: &tiers };
        let api = service_account("api", "role: backend");
        // Escaping the platform's selection by relabelling or deleting the account: refused.
        let e = s.check(&c, Some(&api), Some(&service_account("api", "role: web"))).unwrap_err().0;
        assert!(e.contains("backend-closed") && e.contains("no longer") && e.contains("serviceAccountSelector"), "{e}");
        assert!(s.check(&c, Some(&api), None).unwrap_err().0.contains("delete"));
        // Becoming an account another namespace's policy trusts: refused, on create and on update.
        let e = s.check(&c, None, Some(&service_account("web", "role: frontend"))).unwrap_err().0;
        assert!(e.contains("ops/ops-trusts-frontends") && e.contains("newly") && e.contains("serviceAccounts.selector"), "{e}");
        assert!(s.check(&c, Some(&service_account("web", "")), Some(&service_account("web", "role: frontend"))).is_err());
        // Labels nobody outside reads are free.
        assert!(s.check(&c, None, Some(&service_account("web", "team: a"))).is_ok());
        assert!(s.check(&c, Some(&api), Some(&service_account("api", "role: backend, team: a"))).is_ok());
        assert!(s.check(&c, Some(&service_account("web", "team: a")), None).is_ok());
        // A pod is seen with its account's stored labels: a new pod of `api` is selected where a bare pod is not.
        let api_pod = docs("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop}\nspec: {serviceAccountName: api}\n").remove(0);
        let e = s.check(&c, None, Some(&api_pod)).unwrap_err().0;
        assert!(e.contains("backend-closed") && e.contains("newly"), "{e}");
        assert!(s.check(&c, Some(&api_pod), None).unwrap_err().0.contains("delete"));
        let other_pod = docs("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop}\nspec: {serviceAccountName: nobody}\n").remove(0);
        assert!(s.check(&c, None, Some(&other_pod)).is_ok());
    }

    #[test]
    fn a_network_set_a_peer_names_keeps_its_nets() {
        let model = format!(
            "{MODEL}---\napiVersion: porin.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {{name: block}}\nspec:\n  tier: platform\n  selector: all()\n  ingress: [{{action: Deny, source: {{selector: blocked == 'yes'}}}}]\n"
        );
        let c = guard_cluster(&docs(&model)).unwrap();
        let (ns, tiers) = (vec!["shop".to_string()], vec!["app".to_string()]);
        let s = Scope { user: "token:shop", namespaces: &ns, tiers: &tiers };
        let old = netset("blocked: 'yes'", "192.0.2.0/24");
        let e = s.check(&c, Some(&old), Some(&netset("blocked: 'yes'", "198.51.100.0/24"))).unwrap_err().0;
        assert!(e.contains("spec.nets") && e.contains("block"), "{e}");
        assert!(s.check(&c, Some(&old), None).unwrap_err().0.contains("block"));
        assert!(s.check(&c, Some(&old), Some(&netset("blocked: 'no'", "192.0.2.0/24"))).is_err());
        assert!(s.check(&c, Some(&old), Some(&netset("blocked: 'yes', x: y", "192.0.2.0/24"))).is_ok());
    }
}
