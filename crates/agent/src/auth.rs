//! Authentication and authorization for the API.
//!
//! A caller is identified by a bearer token (looked up by its SHA-256 in the store under `tokens/<hash>`; the
//! token itself is never stored) or, on the Unix socket without a token, by its peer credentials: uid 0 is
//! admin, anyone else is anonymous and refused. A token carries a [`Role`]:
//!
//! * `admin`: everything, including creating tokens;
//! * `read-only`: every read, no write;
//! * `scoped`: reads, and writes of namespaced kinds in its namespaces; policies (Kubernetes ones count as
//!   tier `default`) only in its tiers. Never a cluster-scoped kind (GlobalNetworkPolicy and its staged form,
//!   GlobalNetworkSet, Tier, ClusterSettings, Namespace), and never a label change that alters what a policy
//!   outside its scope selects ([`crate::scope`]).
//!   Never WorkloadEndpoints, Pod `status` or `porin.io/*` annotations (system-owned; see [`Identity::binding_rule`]
//!   and `api::binding`).
//! * `cni`: reads, and the bindings only: WorkloadEndpoints, and the `status` of existing Pods. Nothing else.

use porin_model::{Kind, Resource};
use serde::{Deserialize, Serialize};

use crate::sha256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "kebab-case")]
pub enum Role {
    Admin,
    ReadOnly,
    Scoped { namespaces: Vec<String>, tiers: Vec<String> },
    /// The CNI path: writes WorkloadEndpoints (and Pod status), nothing else.
    Cni,
}

/// A stored token record (`tokens/<sha256 hex>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    pub name: String,
    #[serde(flatten)]
    pub role: Role,
    pub created: String,
    /// Epoch seconds after which the token is refused (None: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `token:<name>` or `uid:<n>`.
    pub user: String,
    pub role: Role,
    /// The token's id ([`token_id`]) when the caller used one.
    pub token_id: Option<String>,
}

/// A fresh random token: `porin_` + 43 base64url characters (256 bits).
pub fn new_token() -> std::io::Result<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut s = String::from("porin_");
    let mut acc = 0u32;
    let mut bits = 0;
    for x in b {
        acc = (acc << 8) | u32::from(x);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            s.push(A[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        s.push(A[((acc << (6 - bits)) & 63) as usize] as char);
    }
    Ok(s)
}

pub fn token_key(token: &str) -> String {
    format!("{}{}", crate::registry::keys::TOKENS, sha256::hex_digest(token.as_bytes()))
}

/// A token's public id: the first 12 hex digits of its SHA-256 (from its store key). Names who used which
/// token in the audit trail and `porin token list` without revealing anything that authenticates.
pub fn token_id(key: &str) -> String {
    key.strip_prefix(crate::registry::keys::TOKENS).unwrap_or(key).chars().take(12).collect()
}

/// The tier a policy object belongs to (`default` when unset); None for kinds without tiers.
pub fn tier_of(r: &Resource) -> Option<String> {
    let tier = match r {
        Resource::NetworkPolicy(o)
        | Resource::GlobalNetworkPolicy(o)
        | Resource::StagedNetworkPolicy(o)
        | Resource::StagedGlobalNetworkPolicy(o) => o.spec.tier.clone(),
        Resource::K8sNetworkPolicy(_) | Resource::StagedKubernetesNetworkPolicy(_) => None,
        _ => return None,
    };
    Some(tier.unwrap_or_else(|| porin_model::validate::DEFAULT_TIER.to_string()))
}

impl Identity {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// May this caller create, change or delete `r` (check both the old and the new object)?
    /// Err carries the reason for the 403 message.
    ///
    /// A scoped token writes only namespaced kinds, only in its namespaces, and policies only in its tiers
    /// (Kubernetes NetworkPolicies and StagedKubernetesNetworkPolicies sit in tier `default`). Cluster-scoped
    /// kinds (GlobalNetworkPolicy, StagedGlobalNetworkPolicy, GlobalNetworkSet, Tier, ClusterSettings,
    /// Namespace, and any kind added later) can change what happens in every namespace, whatever their tier:
    /// admin only. What labels a scoped token may set is checked separately ([`crate::scope`]).
    pub fn can_write(&self, r: &Resource) -> Result<(), String> {
        if let Some(verdict) = self.binding_rule(r) {
            return verdict;
        }
        match &self.role {
            Role::Admin | Role::Cni => Ok(()),
            Role::ReadOnly => Err(format!("{} has a read-only token", self.user)),
            Role::Scoped { namespaces, tiers } => scoped_can_write(&self.user, namespaces, tiers, r),
        }
    }
}

fn scoped_can_write(user: &str, namespaces: &[String], tiers: &[String], r: &Resource) -> Result<(), String> {
    let kind = r.kind();
    let what = format!("{} {:?}", kind, r.qualified_name());
    if !kind.info().namespaced {
        return Err(format!(
            "{user} (scoped) may not write {what}: a cluster-scoped object can affect every namespace (admin only)"
        ));
    }
    let ns = r.namespace().unwrap_or("default");
    if !namespaces.iter().any(|n| n == ns) {
        return Err(format!("{user} (scoped) may not write in namespace {ns:?}: {what}"));
    }
    if let Some(t) = tier_of(r)
        && !tiers.contains(&t)
    {
        let k8s = if matches!(kind, Kind::K8sNetworkPolicy | Kind::StagedKubernetesNetworkPolicy) {
            " (Kubernetes NetworkPolicies sit in tier \"default\")"
        } else {
            ""
        };
        return Err(format!("{user} (scoped) may not write tier {t:?}{k8s}: {what}"));
    }
    Ok(())
}

impl Identity {
    /// The rules for system-owned bindings, decided before the general ones (None: not a binding
    /// question). WorkloadEndpoints are written by admin and `cni` only; a `cni` token writes nothing but
    /// WorkloadEndpoints and Pods (where `api::binding` lets it change only an existing Pod's `status`).
    pub fn binding_rule(&self, r: &Resource) -> Option<Result<(), String>> {
        let what = || format!("{} {:?}", r.kind(), r.qualified_name());
        match (&self.role, r.kind()) {
            (Role::Admin, _) => None,
            (Role::Cni, Kind::WorkloadEndpoint | Kind::Pod) => Some(Ok(())),
            (Role::Cni, _) => Some(Err(format!("{} (cni) may write only WorkloadEndpoints and Pod status, not {}", self.user, what()))),
            (Role::ReadOnly, _) => None,
            (Role::Scoped { .. }, Kind::WorkloadEndpoint) => Some(Err(format!(
                "{} (scoped) may not write {}: WorkloadEndpoints are system-owned (admin or a cni token)",
                self.user,
                what()
            ))),
            (Role::Scoped { .. }, _) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(y: &str) -> Resource {
        porin_model::parse_documents("t", y).unwrap().remove(0).resource
    }

    #[test]
    fn scoped_tokens_stay_in_their_lane() {
        let id = Identity {
            user: "token:team-a".into(),
            role: Role::Scoped { namespaces: vec!["team-a".into()], tiers: vec!["app".into()] },
            token_id: None,
        };
        let ok = parse("apiVersion: porin.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: team-a}\nspec: {tier: app}\n");
        assert!(id.can_write(&ok).is_ok());
        let platform = parse("apiVersion: porin.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: team-a}\nspec: {tier: platform}\n");
        assert!(id.can_write(&platform).unwrap_err().contains("platform"));
        let other_ns = parse("apiVersion: porin.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: team-b}\nspec: {tier: app}\n");
        assert!(id.can_write(&other_ns).is_err());
        let tier = parse("apiVersion: porin.io/v1\nkind: Tier\nmetadata: {name: app}\nspec: {order: 10}\n");
        assert!(id.can_write(&tier).is_err());
        let gnp = parse("apiVersion: porin.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec: {tier: platform}\n");
        assert!(id.can_write(&gnp).is_err());
        // Whatever their tier, cluster-scoped objects are out of reach.
        let gnp_app = parse("apiVersion: porin.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec: {tier: app}\n");
        assert!(id.can_write(&gnp_app).unwrap_err().contains("cluster-scoped"));
        let sgnp = parse("apiVersion: porin.io/v1\nkind: StagedGlobalNetworkPolicy\nmetadata: {name: g}\nspec: {tier: app}\n");
        assert!(id.can_write(&sgnp).is_err());
        let gns = parse("apiVersion: porin.io/v1\nkind: GlobalNetworkSet\nmetadata: {name: s}\nspec: {nets: [10.0.0.0/8]}\n");
        assert!(id.can_write(&gns).is_err());
        let ns = parse("apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n");
        assert!(id.can_write(&ns).is_err());
        // Kubernetes policies (and their staged form) are tier default: not this token's.
        let knp = parse("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: k, namespace: team-a}\nspec: {podSelector: {}}\n");
        assert!(id.can_write(&knp).unwrap_err().contains("default"));
        let sknp = parse("apiVersion: porin.io/v1\nkind: StagedKubernetesNetworkPolicy\nmetadata: {name: k, namespace: team-a}\nspec: {podSelector: {}}\n");
        assert!(id.can_write(&sknp).is_err());
        let snp = parse("apiVersion: porin.io/v1\nkind: StagedNetworkPolicy\nmetadata: {name: x, namespace: team-a}\nspec: {tier: platform}\n");
        assert!(id.can_write(&snp).is_err());
        let with_default = Identity {
            user: "token:team-a".into(),
            role: Role::Scoped { namespaces: vec!["team-a".into()], tiers: vec!["default".into()] },
            token_id: None,
        };
        assert!(with_default.can_write(&knp).is_ok());
        let ro = Identity { user: "token:ro".into(), role: Role::ReadOnly, token_id: None };
        assert!(ro.can_write(&ok).is_err());
    }

    #[test]
    fn bindings_are_for_admin_and_cni_only() {
        let wep = parse(
            "apiVersion: porin.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: a, namespace: team-a}\n\
             spec: {node: n0, pod: a, interfaceName: v0, ipNetworks: [10.0.0.1/32]}\n",
        );
        let scoped = Identity { user: "token:team-a".into(), role: Role::Scoped { namespaces: vec!["team-a".into()], tiers: vec![] }, token_id: None };
        assert!(scoped.can_write(&wep).unwrap_err().contains("system-owned"));
        let ro = Identity { user: "token:ro".into(), role: Role::ReadOnly, token_id: None };
        assert!(ro.can_write(&wep).is_err());
        let cni = Identity { user: "token:cni".into(), role: Role::Cni, token_id: None };
        assert!(cni.can_write(&wep).is_ok());
        let np = parse("apiVersion: porin.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: team-a}\nspec: {}\n");
        assert!(cni.can_write(&np).unwrap_err().contains("(cni)"));
        let admin = Identity { user: "uid:0".into(), role: Role::Admin, token_id: None };
        assert!(admin.can_write(&wep).is_ok());
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 6 + 43);
        assert!(!token_key(&a).contains(&a));
    }
}
