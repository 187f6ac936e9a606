//! Synthetic policy sets: `n` distinct allow rules on the server, the tested pair allowed by the LAST one.
//!
//! Rule `j < n-1` allows TCP from host `10.250.(h/256).(h%256)/32` (h = j / 100) to port `20000 + j % 100`;
//! none matches the client. The last rule allows TCP from `app == 'client'` to the bench ports. Rules are
//! grouped 100 per Calico `NetworkPolicy` with increasing `order`, so the tested pair's allow is the last rule
//! of the last policy in evaluation order; anything else to the server falls to the default tier's deny.
//! The same rules render as an iptables chain (one rule per allow, in order) and an nftables set of
//! `ip saddr . tcp dport` elements.

use std::net::Ipv4Addr;

use anyhow::{Context, Result, anyhow};
use porin_policy::Cluster;
use serde_json::{Value, json};

/// Ports the client is allowed to use on the server (iperf3, RR, CRR, B4 probe).
pub const ALLOWED_PORTS: [u16; 4] = [5201, 7001, 7002, 7004];
/// A port the server listens on that no rule allows (the deny check).
pub const DENIED_PORT: u16 = 7003;
/// Namespace of every synthetic object.
pub const NS: &str = "bench";
const RULES_PER_POLICY: usize = 100;
const PORTS_PER_HOST: usize = 100;

/// One filler allow rule: (source host, destination port).
pub fn filler_rule(j: usize) -> (Ipv4Addr, u16) {
    let h = j / PORTS_PER_HOST;
    (Ipv4Addr::new(10, 250, (h / 256) as u8, (h % 256) as u8), 20000 + (j % PORTS_PER_HOST) as u16)
}

/// Inputs of one synthetic cluster.
#[derive(Clone, Debug)]
pub struct Synth {
    /// Total allow rules on the server (>= 1).
    pub rules: usize,
    pub client_ip: Ipv4Addr,
    pub server_ip: Ipv4Addr,
    /// Extra pods (no netns) with their own small policy: `bench/filler-<i>`, `10.245.x.y`.
    pub fillers: usize,
    /// Include the client's allow (the last rule). Without it the client is denied (B4 revoke state).
    pub client_allowed: bool,
}

fn pod(name: &str, labels: Value, ip: Ipv4Addr) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "bench"}]},
        "status": {"podIP": ip.to_string()}
    })
}

/// Filler pod `i`'s address.
pub fn filler_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 245, (i / 250) as u8, (i % 250 + 1) as u8)
}

impl Synth {
    /// The manifests as one JSON array (what `porin apply -f` would read).
    pub fn documents(&self) -> Value {
        let mut docs = vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
            pod("client", json!({"app": "client"}), self.client_ip),
            pod("server", json!({"app": "server"}), self.server_ip),
        ];
        for i in 0..self.fillers {
            docs.push(pod(&format!("filler-{i}"), json!({"app": format!("filler-{}", i % 10), "role": "filler"}), filler_ip(i)));
        }
        if self.fillers > 0 {
            // Every filler accepts TCP 8080 from its app group: a few entries per endpoint.
            docs.push(json!({
                "apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
                "metadata": {"name": "fillers", "namespace": NS},
                "spec": {"selector": "role == 'filler'", "order": 10,
                         "ingress": [{"action": "Allow", "protocol": "TCP",
                                      "source": {"selector": "role == 'filler'"},
                                      "destination": {"ports": [8080]}}]}
            }));
        }
        let total = self.rules.max(1);
        let npol = total.div_ceil(RULES_PER_POLICY);
        for p in 0..npol {
            let mut ingress = Vec::new();
            for j in p * RULES_PER_POLICY..((p + 1) * RULES_PER_POLICY).min(total) {
                if j + 1 == total {
                    if self.client_allowed {
                        ingress.push(json!({"action": "Allow", "protocol": "TCP",
                            "source": {"selector": "app == 'client'"},
                            "destination": {"ports": ALLOWED_PORTS}}));
                    }
                } else {
                    let (h, port) = filler_rule(j);
                    ingress.push(json!({"action": "Allow", "protocol": "TCP",
                        "source": {"nets": [format!("{h}/32")]}, "destination": {"ports": [port]}}));
                }
            }
            docs.push(json!({
                "apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
                "metadata": {"name": format!("rules-{p:04}"), "namespace": NS},
                "spec": {"selector": "app == 'server'", "order": 100 + p, "types": ["Ingress"], "ingress": ingress}
            }));
        }
        Value::Array(docs)
    }

    /// Parse the manifests (model) and build the engine's cluster (policy).
    pub fn cluster(&self) -> Result<Cluster> {
        let text = serde_json::to_string(&self.documents())?;
        let docs = porin_model::parse_documents("synthetic", &text)
            .map_err(|e| anyhow!("synthetic manifests: {}", e.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")))?;
        Cluster::build(docs.iter().map(|d| &d.resource)).context("building the synthetic cluster")
    }

    /// The same allow list as `iptables-restore` input: a per-endpoint chain reached from FORWARD for packets
    /// to the server's host veth, one rule per allow (the client's last), then DROP. `stateful`: an
    /// ESTABLISHED,RELATED accept comes first in FORWARD (as real CNIs do), so only new flows walk the chain.
    pub fn iptables_restore(&self, server_ifname: &str, stateful: bool) -> String {
        let mut s = String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:PORIN-BENCH - [0:0]\n");
        if stateful {
            s.push_str("-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n");
        }
        s.push_str(&format!("-A FORWARD -o {server_ifname} -j PORIN-BENCH\n"));
        let total = self.rules.max(1);
        for j in 0..total - 1 {
            let (h, port) = filler_rule(j);
            s.push_str(&format!("-A PORIN-BENCH -s {h}/32 -p tcp -m tcp --dport {port} -j ACCEPT\n"));
        }
        if self.client_allowed {
            let ports: Vec<String> = ALLOWED_PORTS.iter().map(|p| p.to_string()).collect();
            s.push_str(&format!(
                "-A PORIN-BENCH -s {}/32 -p tcp -m multiport --dports {} -j ACCEPT\n",
                self.client_ip,
                ports.join(",")
            ));
        }
        s.push_str("-A PORIN-BENCH -j DROP\nCOMMIT\n");
        s
    }

    /// The same allow list as an nftables table (`nft -f`): one concatenated set lookup.
    pub fn nft_ruleset(&self, server_ifname: &str) -> String {
        let total = self.rules.max(1);
        let mut elems: Vec<String> = (0..total - 1).map(|j| {
            let (h, port) = filler_rule(j);
            format!("{h} . {port}")
        }).collect();
        if self.client_allowed {
            elems.extend(ALLOWED_PORTS.iter().map(|p| format!("{} . {p}", self.client_ip)));
        }
        format!(
            "table inet porinbench {{\n  set allowed {{\n    type ipv4_addr . inet_service\n    elements = {{ {} }}\n  }}\n  chain porinfwd {{\n    type filter hook forward priority 0; policy accept;\n    ct state established,related accept\n    oifname \"{server_ifname}\" ip saddr . tcp dport @allowed accept\n    oifname \"{server_ifname}\" drop\n  }}\n}}\n",
            elems.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(rules: usize) -> Synth {
        Synth {
            rules,
            client_ip: Ipv4Addr::new(10, 244, 0, 2),
            server_ip: Ipv4Addr::new(10, 244, 0, 3),
            fillers: 3,
            client_allowed: true,
        }
    }

    #[test]
    fn rule_counts_match_in_every_rendering() {
        for n in [1, 10, 250] {
            let x = s(n);
            let rules = x.iptables_restore("porinp1", true).lines().filter(|l| l.starts_with("-A PORIN-BENCH -s")).count();
            assert_eq!(rules, n);
            let c = x.cluster().unwrap();
            let server_rules: usize = c.policies.iter().filter(|p| p.id.name.starts_with("rules-")).map(|p| p.ingress.len()).sum();
            assert_eq!(server_rules, n);
        }
        let fillers: std::collections::BTreeSet<_> = (0..10_000).map(filler_rule).collect();
        assert_eq!(fillers.len(), 10_000, "filler rules are distinct");
    }
}
