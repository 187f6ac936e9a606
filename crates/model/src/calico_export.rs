//! Porin objects as Calico v3 manifests (`porin get … -o yaml --api-version projectcalico.org/v3`), for teams
//! moving from Porin to Calico or running both.
//!
//! Porin's tiered kinds have Calico's v3 shape, so the export changes only what Calico checks differently:
//! - `apiVersion` becomes `projectcalico.org/v3`;
//! - server-set metadata (`resourceVersion`, `uid`, `creationTimestamp`, `generation`, `managedFields`) is
//!   dropped, so the manifest can be applied to another cluster;
//! - a policy in a tier other than `default` is named `TIER.NAME`: Calico before the tier-name relaxation
//!   (libcalico-go's `ValidateTieredPolicyName`, which later releases keep only as a no-op) refuses other
//!   names in such a tier, and later releases accept the prefixed name too. The original name is kept in
//!   the annotation `porin.io/name`.
//!
//! Kubernetes kinds (Namespace, Pod, ServiceAccount, networking.k8s.io NetworkPolicy) keep their own apiVersion. Porin's
//! own kinds with no Calico counterpart (ClusterSettings, ConnectivityTest, …) are refused by name.

use serde_json::{Map, Value};

use crate::kind::{CALICO_GROUP, Kind};

/// The annotation that keeps a policy's Porin name when the export renames it.
pub const NAME_ANNOTATION: &str = "porin.io/name";

/// An object that has no Calico v3 form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {name:?} has no projectcalico.org/v3 form (it is Porin's own kind)")]
pub struct NoCalicoForm {
    pub kind: Kind,
    pub name: String,
}

/// Whether Calico v3 has this kind (under the same `kind:` name).
pub fn has_calico_form(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Tier
            | Kind::NetworkPolicy
            | Kind::GlobalNetworkPolicy
            | Kind::StagedNetworkPolicy
            | Kind::StagedGlobalNetworkPolicy
            | Kind::StagedKubernetesNetworkPolicy
            | Kind::NetworkSet
            | Kind::GlobalNetworkSet
            | Kind::WorkloadEndpoint
            | Kind::GlobalReport
            | Kind::GlobalThreatFeed
            | Kind::PacketCapture
    )
}

fn is_kubernetes(kind: Kind) -> bool {
    matches!(kind, Kind::Namespace | Kind::Pod | Kind::ServiceAccount | Kind::K8sNetworkPolicy)
}

/// The name Calico requires for a policy `name` in `tier`.
pub fn calico_policy_name(name: &str, tier: Option<&str>) -> String {
    match tier.filter(|t| !t.is_empty() && *t != "default") {
        Some(t) if !name.starts_with(&format!("{t}.")) => format!("{t}.{name}"),
        _ => name.to_string(),
    }
}

fn clean_metadata(obj: &mut Map<String, Value>) {
    if let Some(Value::Object(m)) = obj.get_mut("metadata") {
        for k in ["resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "selfLink"] {
            m.remove(k);
        }
    }
}

/// One object as served by the API (`apiVersion`, `kind`, `metadata`, `spec`), in its Calico v3 form.
pub fn to_calico_v3(kind: Kind, object: &Value) -> Result<Value, NoCalicoForm> {
    let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let mut obj = object.as_object().cloned().unwrap_or_default();
    clean_metadata(&mut obj);
    if is_kubernetes(kind) {
        return Ok(Value::Object(obj));
    }
    if !has_calico_form(kind) {
        return Err(NoCalicoForm { kind, name });
    }
    obj.insert("apiVersion".into(), Value::String(format!("{CALICO_GROUP}/v3")));
    if matches!(
        kind,
        Kind::NetworkPolicy | Kind::GlobalNetworkPolicy | Kind::StagedNetworkPolicy | Kind::StagedGlobalNetworkPolicy
    ) {
        let tier = object["spec"]["tier"].as_str();
        let new = calico_policy_name(&name, tier);
        if new != name
            && let Some(Value::Object(m)) = obj.get_mut("metadata")
        {
            m.insert("name".into(), Value::String(new));
            let ann = m.entry("annotations").or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(a) = ann {
                a.insert(NAME_ANNOTATION.into(), Value::String(name));
            }
        }
    }
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tiered_names_get_the_tier_prefix_once() {
        assert_eq!(calico_policy_name("pci-isolation", Some("platform")), "platform.pci-isolation");
        assert_eq!(calico_policy_name("platform.pci-isolation", Some("platform")), "platform.pci-isolation");
        assert_eq!(calico_policy_name("web", Some("default")), "web");
        assert_eq!(calico_policy_name("web", None), "web");
        // A name that starts like another tier still gets this tier's prefix.
        assert_eq!(calico_policy_name("security.x", Some("platform")), "platform.security.x");
    }

    #[test]
    fn exports_policy_and_refuses_porin_kinds() {
        let p = json!({
            "apiVersion": "porin.io/v1", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "pci-isolation", "resourceVersion": "12", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"tier": "platform", "order": 10, "selector": "pci == 'true'"}
        });
        let c = to_calico_v3(Kind::GlobalNetworkPolicy, &p).unwrap();
        assert_eq!(c["apiVersion"], "projectcalico.org/v3");
        assert_eq!(c["metadata"]["name"], "platform.pci-isolation");
        assert_eq!(c["metadata"]["annotations"][NAME_ANNOTATION], "pci-isolation");
        assert!(c["metadata"].get("resourceVersion").is_none() && c["metadata"].get("creationTimestamp").is_none());
        assert_eq!(c["spec"], p["spec"]);
        let np = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "x", "namespace": "a"}, "spec": {}});
        assert_eq!(to_calico_v3(Kind::K8sNetworkPolicy, &np).unwrap()["apiVersion"], "networking.k8s.io/v1");
        let t = json!({"apiVersion": "porin.io/v1", "kind": "ConnectivityTest", "metadata": {"name": "t"}, "spec": {}});
        let e = to_calico_v3(Kind::ConnectivityTest, &t).unwrap_err();
        assert!(e.to_string().contains("ConnectivityTest \"t\" has no projectcalico.org/v3 form"), "{e}");
    }
}
