//! Which kinds `--datastore kubernetes` reads from the Kubernetes API (and the API refuses to write), and where
//! they go in the store.

use porin_model::Kind;

use super::keys;

/// Kinds that belong to the Kubernetes API server with `--datastore kubernetes`: Namespaces, Pods,
/// ServiceAccounts, networking.k8s.io NetworkPolicies and the porin.io kinds (as CRDs), except
/// WorkloadEndpoints, which the node's CNI plugin writes to its own agent (they are node-local and kept in the
/// local store).
pub fn kube_owned(kind: Kind) -> bool {
    kind != Kind::WorkloadEndpoint
}

/// The kinds the datasource follows, with their store prefixes. Every Pod is followed, not only this node's:
/// policies select peers on other nodes by their labels and addresses. Enforcement stays node-local: the
/// agent programs the WorkloadEndpoints whose `spec.node` is its node.
pub fn kube_resources() -> Vec<porin_kube::Resource> {
    Kind::ALL
        .into_iter()
        .filter(|k| kube_owned(*k))
        .map(|k| {
            let i = k.info();
            porin_kube::Resource {
                group: i.group.to_string(),
                version: i.version.to_string(),
                kind: i.kind.to_string(),
                plural: i.plural.to_string(),
                namespaced: i.namespaced,
                key_prefix: keys::kind_prefix(k),
            }
        })
        .collect()
}
