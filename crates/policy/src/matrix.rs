//! Reachability matrices over all pods, fast.
//!
//! Pods that no policy can tell apart (same namespace, labels, service account, named ports, and the same
//! membership in every CIDR any rule or network set mentions) form a class. The tier walk runs once per
//! (source class, destination class) with the applicable-policy lists computed once per class; the result is
//! expanded to a pod-by-pod bit matrix. The reference evaluator is the oracle: tests compare every cell.

use std::collections::HashMap;

use ipnet::IpNet;
use porin_model::Protocol;
use serde::Serialize;

use crate::eval::{Direction, Packet, Peer, Variant};
use crate::ir::{Cluster, all_cidrs};

/// A square bit matrix: `allowed(i, j)` says pod i may open a connection to pod j.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matrix {
    pub protocol: Protocol,
    pub port: u16,
    /// `namespace/name`, in the cluster's endpoint order (sorted).
    pub pods: Vec<String>,
    words_per_row: usize,
    bits: Vec<u64>,
}

impl Matrix {
    fn new(protocol: Protocol, port: u16, pods: Vec<String>) -> Matrix {
        let n = pods.len();
        let words_per_row = n.div_ceil(64);
        Matrix { protocol, port, pods, words_per_row, bits: vec![0; words_per_row * n] }
    }
    pub fn allowed(&self, from: usize, to: usize) -> bool {
        self.bits[from * self.words_per_row + to / 64] >> (to % 64) & 1 == 1
    }
    fn set(&mut self, from: usize, to: usize) {
        self.bits[from * self.words_per_row + to / 64] |= 1 << (to % 64);
    }
    /// Every allowed ordered pair of distinct pods, in pod order.
    pub fn allowed_pairs(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for i in 0..self.pods.len() {
            for j in 0..self.pods.len() {
                if i != j && self.allowed(i, j) {
                    out.push((self.pods[i].clone(), self.pods[j].clone()));
                }
            }
        }
        out
    }
    pub fn count_allowed(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }
    /// The JSON shape other tools read: `{"port","protocol","pods","allowed":[[from,to],...]}`.
    pub fn to_json(&self) -> MatrixJson {
        MatrixJson {
            port: self.port,
            protocol: self.protocol.name().to_string(),
            pods: self.pods.clone(),
            allowed: self.allowed_pairs().into_iter().map(|(a, b)| [a, b]).collect(),
        }
    }
}

/// Serialised form of one matrix (documented in docs/matrix-json.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct MatrixJson {
    pub port: u16,
    pub protocol: String,
    pub pods: Vec<String>,
    pub allowed: Vec<[String; 2]>,
}

/// Class key: everything about a pod that any policy can observe.
#[derive(PartialEq, Eq, Hash)]
struct ClassKey<'a> {
    namespace: &'a str,
    labels: &'a std::collections::BTreeMap<String, String>,
    sa: &'a str,
    named_ports: &'a [(String, Protocol, u16)],
    nets: Vec<u64>,
    has_ip: bool,
}

/// Partition the endpoints into classes for a given address family.
fn classes(c: &Cluster, v6: bool) -> (Vec<usize>, Vec<usize>) {
    let cidrs: Vec<IpNet> = all_cidrs(c).into_iter().filter(|n| matches!(n, IpNet::V6(_)) == v6).collect();
    let mut index: HashMap<ClassKey<'_>, usize> = HashMap::new();
    let mut class_of = Vec::with_capacity(c.endpoints.len());
    let mut reps = Vec::new();
    for (i, e) in c.endpoints.iter().enumerate() {
        let ip = e.ip_of_family(v6);
        let mut nets = vec![0u64; cidrs.len().div_ceil(64)];
        if let Some(ip) = ip {
            for (k, n) in cidrs.iter().enumerate() {
                if n.contains(&ip) {
                    nets[k / 64] |= 1 << (k % 64);
                }
            }
        }
        let key = ClassKey {
            namespace: &e.namespace,
            labels: &e.labels,
            sa: &e.service_account,
            named_ports: &e.named_ports,
            nets,
            has_ip: ip.is_some(),
        };
        let next = reps.len();
        let k = *index.entry(key).or_insert(next);
        if k == next {
            reps.push(i);
        }
        class_of.push(k);
    }
    (class_of, reps)
}

impl Cluster {
    /// The reachability matrix for one protocol and port, for the enforced or pending policy set.
    pub fn matrix(&self, v: Variant, protocol: Protocol, port: u16) -> Matrix {
        self.matrix_family(v, protocol, port, false)
    }

    pub fn matrix_family(&self, v: Variant, protocol: Protocol, port: u16, v6: bool) -> Matrix {
        let pods: Vec<String> = self.endpoints.iter().map(|e| e.id()).collect();
        let mut m = Matrix::new(protocol, port, pods);
        let (class_of, reps) = classes(self, v6);
        let nc = reps.len();
        let pkt = Packet { protocol: protocol.number(), port: Some(port), icmp: None, v6 };
        let egress: Vec<_> = reps.iter().map(|&r| self.applicable(v, &self.endpoints[r], Direction::Egress)).collect();
        let ingress: Vec<_> = reps.iter().map(|&r| self.applicable(v, &self.endpoints[r], Direction::Ingress)).collect();
        // Class-level verdicts, then one pod-row bitset per source class.
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); nc];
        for (i, &k) in class_of.iter().enumerate() {
            members[k].push(i);
        }
        let words = m.words_per_row;
        let mut row = vec![0u64; words];
        for cs in 0..nc {
            row.iter_mut().for_each(|w| *w = 0);
            let src = &self.endpoints[reps[cs]];
            for cd in 0..nc {
                let dst = &self.endpoints[reps[cd]];
                let eg = self.walk(v, &egress[cs], src, Direction::Egress, Peer::Endpoint(dst), &pkt, false);
                if !eg.allowed {
                    continue;
                }
                let ing = self.walk(v, &ingress[cd], dst, Direction::Ingress, Peer::Endpoint(src), &pkt, false);
                if ing.allowed {
                    for &j in &members[cd] {
                        row[j / 64] |= 1 << (j % 64);
                    }
                }
            }
            for &i in &members[cs] {
                let base = i * words;
                m.bits[base..base + words].copy_from_slice(&row);
                // A pod is never listed as reaching itself.
                m.bits[base + i / 64] &= !(1 << (i % 64));
            }
        }
        m
    }

    /// The reference matrix: the plain evaluator on every pair. Slow; the oracle for tests.
    pub fn matrix_reference(&self, v: Variant, protocol: Protocol, port: u16) -> Matrix {
        let pods: Vec<String> = self.endpoints.iter().map(|e| e.id()).collect();
        let mut m = Matrix::new(protocol, port, pods);
        let pkt = Packet::l4(protocol, port);
        for (i, a) in self.endpoints.iter().enumerate() {
            for (j, b) in self.endpoints.iter().enumerate() {
                if i != j && self.evaluate(v, Peer::Endpoint(a), Peer::Endpoint(b), &pkt).allowed {
                    m.set(i, j);
                }
            }
        }
        m
    }

    /// Every (protocol, port) declared by any pod's containers, sorted.
    pub fn declared_ports(&self) -> Vec<(Protocol, u16)> {
        let mut v: Vec<(Protocol, u16)> = self.endpoints.iter().flat_map(|e| e.ports.iter().copied()).collect();
        v.sort_by_key(|(p, port)| (*port, *p));
        v.dedup();
        v
    }
}
