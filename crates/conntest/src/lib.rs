//! # porin-conntest: connectivity assertions as code
//!
//! Owns: the evaluation of `ConnectivityTest` cases against a policy model ([`porin_policy::Cluster`]), and in
//! a kernel lab also on real packets; the offline check of `ReachabilityGuard`s ([`guards`]); the reports
//! (table, JSON, JUnit XML). Never: loading files, talking to an agent or printing (the CLI gives it documents
//! and a model and prints what it returns), and never a verdict of its own: every verdict is the engine's
//! (`Cluster::verdict`) or the kernel's (a probe).
//!
//! A case whose peer stands for several endpoints or addresses (a selector, a CIDR, a network set) holds only
//! when it holds for every one of them. A CIDR is checked exactly: verdicts for addresses can only change at
//! the boundaries of the CIDRs that policies and network sets mention and at pod addresses, so one address per
//! interval between those boundaries stands for the whole interval. With a lab, what the packets did is the
//! actual verdict and the model's trace explains it.

mod eval;
pub mod guards;
mod plan;
mod report;

use std::time::Duration;

use porin_model::{Document, ManifestError};
use porin_policy::Cluster;
use serde_json::Value;

pub use eval::{CaseResult, GuardResult, PairFailure};
pub use report::xml_escape;

/// Why no result could be computed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cases cannot be evaluated as written: each error names file, document and field path.
    #[error("{} input error(s)", .0.len())]
    Input(Vec<ManifestError>),
    /// A probe in the lab failed to run (not: was dropped).
    #[error("probing {from} -> {to}")]
    Probe { from: String, to: String, #[source] source: porin_lab::LabError },
}

/// Every case and guard with its result.
pub struct Outcome<'d> {
    pub results: Vec<CaseResult>,
    pub guards: Vec<GuardResult<'d>>,
}

impl Outcome<'_> {
    /// Does every case and guard hold?
    pub fn passed(&self) -> bool {
        self.results.iter().all(|r| r.passed()) && self.guards.iter().all(|g| g.violation.is_none())
    }
    /// The table for people.
    pub fn table(&self) -> String {
        report::table(&self.results, &self.guards)
    }
    /// One object with every case and its verdicts.
    pub fn json(&self) -> Value {
        report::to_json(&self.results, &self.guards)
    }
    /// JUnit XML for CI systems.
    pub fn junit(&self) -> String {
        report::junit(&self.results, &self.guards)
    }
}

/// Evaluate the `tests` (ConnectivityTest documents) against `cluster`, built from `model` (whose
/// ReachabilityGuards are checked too). With `lab`, every pod-to-pod pair is also sent for real, with this
/// per-probe timeout; a case then passes only when the packets agree.
pub fn run<'d>(
    cluster: &Cluster,
    tests: &[Document],
    model: &'d [Document],
    lab: Option<(&porin_lab::Lab, Duration)>,
) -> Result<Outcome<'d>, Error> {
    // Guards are checked against the model (as the API checks them on every write), also in a lab.
    let guards: Vec<GuardResult<'_>> = guards::check(cluster, model)
        .into_iter()
        .map(|(d, violation)| GuardResult { name: d.resource.name().to_string(), doc: d, violation })
        .collect();
    let plans = plan::plan(cluster, tests).map_err(Error::Input)?;
    if let Some((l, _)) = lab {
        eval::check_probeable(l, tests, &plans).map_err(Error::Input)?;
    }
    let results = plans.iter().map(|p| eval::evaluate(cluster, p, lab)).collect::<Result<_, _>>()?;
    Ok(Outcome { results, guards })
}
