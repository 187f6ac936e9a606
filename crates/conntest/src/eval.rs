//! Cases evaluated against the model (and, in a lab, on real packets), guards against the model.

use std::fmt::Write as _;

use porin_client::printers;
use porin_model::conntest::{Expect, TestCase};
use porin_model::load::join_path;
use porin_model::{Document, ManifestError, Resource};
use porin_policy::{Cluster, Packet, Peer};
use serde_json::{Value, json};

use crate::Error;
use crate::plan::{Plan, same};

/// One pair whose verdict differs from the expectation.
pub struct PairFailure {
    pub from: String,
    pub to: String,
    pub actual: Expect,
    pub actual_pending: Expect,
    pub trace_text: String,
    pub trace_json: Value,
}

/// One case's result: the pairs checked and those whose verdict differs from the expectation.
pub struct CaseResult {
    pub test: String,
    pub index: usize,
    pub case: TestCase,
    pub packet: String,
    pub pairs: usize,
    pub failures: Vec<PairFailure>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
    pub fn label(&self) -> String {
        match &self.case.name {
            Some(n) => n.clone(),
            None => format!("cases[{}]", self.index),
        }
    }
    pub fn expected(&self) -> String {
        match self.case.expect_pending {
            Some(p) => format!("{}, pending {p}", self.case.expect),
            None => self.case.expect.to_string(),
        }
    }
    pub fn actual(&self) -> String {
        match self.failures.first() {
            None => self.expected(),
            Some(f) => {
                let mut s = match self.case.expect_pending {
                    Some(_) => format!("{}, pending {}", f.actual, f.actual_pending),
                    None => f.actual.to_string(),
                };
                if self.pairs > 1 {
                    s.push_str(&format!(" ({} of {} pairs)", self.failures.len(), self.pairs));
                }
                s
            }
        }
    }
}

/// One ReachabilityGuard checked against the model.
pub struct GuardResult<'d> {
    pub name: String,
    pub doc: &'d Document,
    pub violation: Option<porin_policy::guard::Violation>,
}

impl GuardResult<'_> {
    pub fn spec(&self) -> Option<&porin_model::guard::ReachabilityGuardSpec> {
        match &self.doc.resource {
            Resource::ReachabilityGuard(o) => Some(&o.spec),
            _ => None,
        }
    }
    pub fn expect(&self) -> String {
        self.spec().and_then(|s| s.expect).map(|e| e.to_string()).unwrap_or_default()
    }
    pub fn side(p: &porin_model::guard::GuardPeer) -> String {
        match (&p.cidr, &p.namespace_selector, &p.selector) {
            (Some(c), _, _) => c.clone(),
            (None, ns, sel) => format!(
                "{{namespace: {}, selector: {}}}",
                ns.as_deref().unwrap_or("all()"),
                sel.as_deref().unwrap_or("all()")
            ),
        }
    }
    pub fn packet(&self) -> String {
        let Some(s) = self.spec() else { return String::new() };
        let proto = s.protocol.clone().unwrap_or_else(|| "TCP".into());
        if s.ports.is_empty() {
            format!("{proto}/any")
        } else {
            format!("{proto}/{}", s.ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(","))
        }
    }
    pub fn actual(&self) -> String {
        match &self.violation {
            None => self.expect(),
            Some(v) => format!(
                "{} ({} -> {} {}/{})",
                if v.expect == Expect::Deny { "Allow" } else { "Deny" },
                v.from,
                v.to,
                v.protocol,
                v.port
            ),
        }
    }
}

/// Real packets can only be sent between lab pods, on TCP, UDP and SCTP.
pub(crate) fn check_probeable(lab: &porin_lab::Lab, tests: &[Document], plans: &[Plan<'_>]) -> Result<(), Vec<ManifestError>> {
    let mut errors = Vec::new();
    for p in plans {
        let d = tests.iter().find(|d| d.resource.name() == p.test).expect("a plan comes from a test");
        let err = |field: &str, msg: String| {
            ManifestError::new(
                &d.source,
                Some(d.doc),
                join_path(&d.prefix, &format!("spec.cases[{}].{field}", p.index)),
                msg,
            )
        };
        if lab_proto(p.case.protocol_number().expect("validated")).is_none() {
            errors.push(err("protocol", "--lab sends TCP, UDP or SCTP only".into()));
        }
        for (field, peers) in [("from", &p.sources), ("to", &p.destinations)] {
            for peer in peers.iter() {
                match peer {
                    Peer::Endpoint(e) if lab.pods().iter().any(|x| x.key == e.id()) => {}
                    Peer::Endpoint(e) => {
                        errors.push(err(field, format!("pod {} is not in lab {}", e.id(), lab.name())))
                    }
                    Peer::Ip(ip) => {
                        errors
                            .push(err(field, format!("{ip} is not a pod: --lab sends real packets between pods only")));
                        break;
                    }
                }
            }
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

fn lab_proto(n: u8) -> Option<porin_lab::Proto> {
    match n {
        6 => Some(porin_lab::Proto::Tcp),
        17 => Some(porin_lab::Proto::Udp),
        132 => Some(porin_lab::Proto::Sctp),
        _ => None,
    }
}

pub(crate) fn evaluate(c: &Cluster, p: &Plan<'_>, probe: Option<(&porin_lab::Lab, std::time::Duration)>) -> Result<CaseResult, Error> {
    let protocol = p.case.protocol_number().expect("validated");
    let port = p.case.port.map(|x| u16::try_from(x).expect("validated"));
    let packet_of = |s: &Peer<'_>, d: &Peer<'_>| {
        let v6 = match (s, d) {
            (Peer::Ip(ip), _) | (_, Peer::Ip(ip)) => ip.is_ipv6(),
            (Peer::Endpoint(s), Peer::Endpoint(d)) => {
                s.ip_of_family(false).is_none() || d.ip_of_family(false).is_none()
            }
        };
        Packet { protocol, port, icmp: None, v6 }
    };
    let mut pairs = 0;
    let mut failures = Vec::new();
    for s in &p.sources {
        for d in &p.destinations {
            if same(s, d) {
                continue;
            }
            pairs += 1;
            let pkt = packet_of(s, d);
            let v = c.verdict(*s, *d, &pkt);
            let observed = match probe {
                None => None,
                Some((lab, timeout)) => {
                    let proto = lab_proto(protocol).expect("checked");
                    let port = port.expect("checked: TCP, UDP and SCTP carry a port");
                    Some(
                        lab.probe_one(&s.describe(), &d.describe(), port, proto, timeout)
                            .map_err(|source| Error::Probe { from: s.describe(), to: d.describe(), source })?,
                    )
                }
            };
            // With real packets, what the packets did is the actual verdict; the model's trace explains it.
            let actual = observed.unwrap_or(v.enforced.allowed);
            let ok = actual == p.case.expect.allowed()
                && p.case.expect_pending.is_none_or(|e| v.pending.allowed == e.allowed());
            if !ok {
                let mut trace_text = printers::trace_table(s, d, &pkt, &v);
                let mut trace_json = printers::trace_json(s, d, &pkt, &v);
                if let Some(o) = observed {
                    let _ = writeln!(trace_text, "OBSERVED (real packets): {}", if o { "ALLOWED" } else { "DENIED" });
                    trace_json["observed"] = json!(o);
                }
                failures.push(PairFailure {
                    from: s.describe(),
                    to: d.describe(),
                    actual: Expect::of(actual),
                    actual_pending: Expect::of(v.pending.allowed),
                    trace_text,
                    trace_json,
                });
            }
        }
    }
    let packet = printers::packet_label(&Packet { protocol, port, icmp: None, v6: false });
    Ok(CaseResult { test: p.test.clone(), index: p.index, case: p.case.clone(), packet, pairs, failures })
}

