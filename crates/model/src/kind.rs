//! The table of kinds: API group/version, plural, singular and short names, scope. Defined once; the loader,
//! the API server and the CLI all read it.

/// Every kind Porin stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Namespace,
    Pod,
    /// A core/v1 ServiceAccount: its labels are what service-account selectors match.
    ServiceAccount,
    /// `networking.k8s.io/v1` NetworkPolicy.
    K8sNetworkPolicy,
    Tier,
    /// `porin.io/v1` (or `projectcalico.org/v3`) NetworkPolicy.
    NetworkPolicy,
    GlobalNetworkPolicy,
    StagedNetworkPolicy,
    StagedGlobalNetworkPolicy,
    StagedKubernetesNetworkPolicy,
    NetworkSet,
    GlobalNetworkSet,
    ClusterSettings,
    /// The binding workload ↔ host-side interface ↔ addresses (Calico's v3 WorkloadEndpoint); system-owned.
    WorkloadEndpoint,
    /// Connectivity assertions (`porin test`); never changes enforcement.
    ConnectivityTest,
    /// An invariant writes may not break (checked by the API and `porin validate`); never changes enforcement.
    ReachabilityGuard,
    /// A compliance report definition (`porin report`); never changes enforcement.
    GlobalReport,
    /// A threat feed the agent syncs into a GlobalNetworkSet `threatfeed.<name>`.
    GlobalThreatFeed,
    /// An isolated workload (`porin quarantine`); system-owned, named after the pod.
    Quarantine,
    /// A decoy workload that reports whoever contacts it.
    Honeypod,
    /// Packets of selected workloads to pcap files (`porin capture`); never changes enforcement.
    PacketCapture,
    /// Continuous policy recommendations (singleton `default`); never changes enforcement.
    RecommendationScope,
}

/// Static facts about a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    /// `kind:` as written in manifests.
    pub kind: &'static str,
    /// API group ("" for the core group).
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short: &'static [&'static str],
    pub namespaced: bool,
}

/// The API group of Porin's own kinds.
pub const PORIN_GROUP: &str = "porin.io";
/// Calico's group; its v3 manifests load as Porin kinds.
pub const CALICO_GROUP: &str = "projectcalico.org";

impl Kind {
    pub const ALL: [Kind; 22] = [
        Kind::Namespace,
        Kind::Pod,
        Kind::ServiceAccount,
        Kind::K8sNetworkPolicy,
        Kind::Tier,
        Kind::NetworkPolicy,
        Kind::GlobalNetworkPolicy,
        Kind::StagedNetworkPolicy,
        Kind::StagedGlobalNetworkPolicy,
        Kind::StagedKubernetesNetworkPolicy,
        Kind::NetworkSet,
        Kind::GlobalNetworkSet,
        Kind::ClusterSettings,
        Kind::WorkloadEndpoint,
        Kind::ConnectivityTest,
        Kind::ReachabilityGuard,
        Kind::GlobalReport,
        Kind::GlobalThreatFeed,
        Kind::Quarantine,
        Kind::Honeypod,
        Kind::PacketCapture,
        Kind::RecommendationScope,
    ];

    pub fn info(self) -> KindInfo {
        let p = |kind, plural, singular, short, namespaced| KindInfo {
            kind,
            group: PORIN_GROUP,
            version: "v1",
            plural,
            singular,
            short,
            namespaced,
        };
        match self {
            Kind::Namespace => KindInfo {
                kind: "Namespace",
                group: "",
                version: "v1",
                plural: "namespaces",
                singular: "namespace",
                short: &["ns"],
                namespaced: false,
            },
            Kind::Pod => KindInfo {
                kind: "Pod",
                group: "",
                version: "v1",
                plural: "pods",
                singular: "pod",
                short: &["po"],
                namespaced: true,
            },
            Kind::ServiceAccount => KindInfo {
                kind: "ServiceAccount",
                group: "",
                version: "v1",
                plural: "serviceaccounts",
                singular: "serviceaccount",
                short: &["sa"],
                namespaced: true,
            },
            Kind::K8sNetworkPolicy => KindInfo {
                kind: "NetworkPolicy",
                group: "networking.k8s.io",
                version: "v1",
                plural: "networkpolicies",
                singular: "networkpolicy",
                short: &["netpol", "knp"],
                namespaced: true,
            },
            Kind::Tier => p("Tier", "tiers", "tier", &[], false),
            Kind::NetworkPolicy => p("NetworkPolicy", "networkpolicies", "networkpolicy", &["pnp", "cnp"], true),
            Kind::GlobalNetworkPolicy => {
                p("GlobalNetworkPolicy", "globalnetworkpolicies", "globalnetworkpolicy", &["gnp"], false)
            }
            Kind::StagedNetworkPolicy => {
                p("StagedNetworkPolicy", "stagednetworkpolicies", "stagednetworkpolicy", &["snp"], true)
            }
            Kind::StagedGlobalNetworkPolicy => p(
                "StagedGlobalNetworkPolicy",
                "stagedglobalnetworkpolicies",
                "stagedglobalnetworkpolicy",
                &["sgnp"],
                false,
            ),
            Kind::StagedKubernetesNetworkPolicy => p(
                "StagedKubernetesNetworkPolicy",
                "stagedkubernetesnetworkpolicies",
                "stagedkubernetesnetworkpolicy",
                &["sknp"],
                true,
            ),
            Kind::NetworkSet => p("NetworkSet", "networksets", "networkset", &["netset"], true),
            Kind::GlobalNetworkSet => {
                p("GlobalNetworkSet", "globalnetworksets", "globalnetworkset", &["gns", "gnetset"], false)
            }
            Kind::ClusterSettings => p("ClusterSettings", "clustersettings", "clustersettings", &["settings"], false),
            Kind::WorkloadEndpoint => p("WorkloadEndpoint", "workloadendpoints", "workloadendpoint", &["wep"], true),
            Kind::ConnectivityTest => {
                p("ConnectivityTest", "connectivitytests", "connectivitytest", &["ctest"], false)
            }
            Kind::ReachabilityGuard => {
                p("ReachabilityGuard", "reachabilityguards", "reachabilityguard", &["guard"], false)
            }
            Kind::GlobalReport => p("GlobalReport", "globalreports", "globalreport", &["greport"], false),
            Kind::GlobalThreatFeed => p("GlobalThreatFeed", "globalthreatfeeds", "globalthreatfeed", &["gtf"], false),
            Kind::Quarantine => p("Quarantine", "quarantines", "quarantine", &["qt"], true),
            Kind::Honeypod => p("Honeypod", "honeypods", "honeypod", &["hp"], true),
            Kind::PacketCapture => p("PacketCapture", "packetcaptures", "packetcapture", &["pcap"], true),
            Kind::RecommendationScope => {
                p("RecommendationScope", "recommendationscopes", "recommendationscope", &["recscope"], false)
            }
        }
    }

    /// The canonical apiVersion written for this kind.
    pub fn api_version(self) -> String {
        let i = self.info();
        if i.group.is_empty() { i.version.to_string() } else { format!("{}/{}", i.group, i.version) }
    }

    /// Resolve `apiVersion` + `kind` as written in a manifest. `projectcalico.org/v3` maps to Porin's kinds.
    pub fn from_manifest(api_version: &str, kind: &str) -> Option<Kind> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let porin_like = (group == PORIN_GROUP && version == "v1") || (group == CALICO_GROUP && version == "v3");
        if porin_like {
            return Kind::ALL.into_iter().filter(|k| k.info().group == PORIN_GROUP).find(|k| k.info().kind == kind);
        }
        Kind::ALL
            .into_iter()
            .filter(|k| k.info().group == group && k.info().version == version)
            .find(|k| k.info().kind == kind)
    }

    /// Resolve a name typed on the command line: plural, singular, short name or kind, case-insensitive.
    /// `networkpolicy` names the Kubernetes kind (as kubectl users expect); Porin's own is `pnp`
    /// or `networkpolicies.porin.io`.
    pub fn from_cli(name: &str) -> Option<Kind> {
        let n = name.to_ascii_lowercase();
        if let Some((base, group)) = n.split_once('.') {
            return Kind::ALL.into_iter().find(|k| {
                let i = k.info();
                i.group == group && (i.plural == base || i.singular == base || i.kind.eq_ignore_ascii_case(base))
            });
        }
        Kind::ALL.into_iter().find(|k| {
            let i = k.info();
            i.plural == n || i.singular == n || i.short.contains(&n.as_str()) || i.kind.eq_ignore_ascii_case(&n)
        })
    }

    /// Resolve from a REST path segment: group, version, plural.
    pub fn from_rest(group: &str, version: &str, plural: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| {
            let i = k.info();
            i.plural == plural
                && ((i.group == group && i.version == version)
                    || (i.group == PORIN_GROUP && group == CALICO_GROUP && version == "v3"))
        })
    }

    pub fn is_policy(self) -> bool {
        matches!(
            self,
            Kind::K8sNetworkPolicy
                | Kind::NetworkPolicy
                | Kind::GlobalNetworkPolicy
                | Kind::StagedNetworkPolicy
                | Kind::StagedGlobalNetworkPolicy
                | Kind::StagedKubernetesNetworkPolicy
        )
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.info().kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calico_v3_maps_to_porin_kinds_and_k8s_stays_k8s() {
        assert_eq!(Kind::from_manifest("projectcalico.org/v3", "NetworkPolicy"), Some(Kind::NetworkPolicy));
        assert_eq!(Kind::from_manifest("porin.io/v1", "NetworkPolicy"), Some(Kind::NetworkPolicy));
        assert_eq!(Kind::from_manifest("networking.k8s.io/v1", "NetworkPolicy"), Some(Kind::K8sNetworkPolicy));
        assert_eq!(Kind::from_manifest("v1", "Pod"), Some(Kind::Pod));
        assert_eq!(Kind::from_manifest("v1", "NetworkPolicy"), None);
        assert_eq!(Kind::from_manifest("porin.io/v2", "Tier"), None);
    }

    #[test]
    fn cli_names_resolve() {
        assert_eq!(Kind::from_cli("netpol"), Some(Kind::K8sNetworkPolicy));
        assert_eq!(Kind::from_cli("gnp"), Some(Kind::GlobalNetworkPolicy));
        assert_eq!(Kind::from_cli("Tiers"), Some(Kind::Tier));
        assert_eq!(Kind::from_cli("networkpolicies.porin.io"), Some(Kind::NetworkPolicy));
        assert_eq!(Kind::from_cli("pnp"), Some(Kind::NetworkPolicy));
        assert_eq!(Kind::from_cli("bogus"), None);
        assert_eq!(Kind::from_cli("wep"), Some(Kind::WorkloadEndpoint));
        assert_eq!(Kind::from_manifest("projectcalico.org/v3", "WorkloadEndpoint"), Some(Kind::WorkloadEndpoint));
    }

    #[test]
    fn names_are_unique_per_group() {
        for a in Kind::ALL {
            for b in Kind::ALL {
                if a != b {
                    let (x, y) = (a.info(), b.info());
                    assert!(!(x.group == y.group && x.plural == y.plural), "{a:?} and {b:?} share a plural");
                    for s in x.short {
                        assert!(!y.short.contains(s), "{a:?} and {b:?} share short name {s}");
                    }
                }
            }
        }
    }
}
