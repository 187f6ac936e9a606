//! `porin test`: connectivity assertions as code. Reads `ConnectivityTest` documents, has every case evaluated
//! ([`porin_conntest`]) against the policy model (manifests given with `-f`, the live agent's objects with
//! `--live`, or a kernel lab's agent and real packets with `--lab`), and prints a table, JSON or JUnit XML.
//! Exit 0 when every case passes, 1 when any fails, 2 on input errors.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use porin_model::load::join_path;
use porin_model::{Document, ManifestError, Resource, load_paths_partial, validate_set};
use porin_policy::Cluster;

use super::offline::Output;
use crate::client::{Client, ClientArgs};

#[derive(Args, Debug)]
pub struct TestArgs {
    /// ConnectivityTest documents and (without --live) the cluster's manifests, mixed freely. Repeatable.
    #[arg(short = 'f', long = "filename", num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Evaluate against the live agent's objects (read through the API) instead of manifests. Without -f, the
    /// ConnectivityTests stored in the agent are run.
    #[arg(long)]
    pub live: bool,
    /// Check the cases on real packets in this kernel lab (`porin lab up`): the model comes from the lab's
    /// agent, and every pod-to-pod pair is also sent for real; a case passes only when the packets agree.
    #[arg(long, value_name = "NAME", conflicts_with = "live")]
    pub lab: Option<String>,
    /// Directory of lab state (with --lab).
    #[arg(long, env = super::lab::STATE_DIR_ENV, default_value = porin_lab::DEFAULT_STATE_DIR)]
    pub lab_state_dir: PathBuf,
    /// Per-probe timeout in milliseconds (with --lab).
    #[arg(long, default_value_t = 500)]
    pub probe_timeout_ms: u64,
    /// Also write the results as JUnit XML to FILE (for CI systems).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Output format: table (default) or json (one object with every case and its verdicts).
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Input problems: printed with file, document and field path; exit code 2.
struct InputErrors(Vec<ManifestError>);

const INPUT_ERROR: u8 = 2;

pub fn test(a: TestArgs) -> Result<ExitCode> {
    match run(&a) {
        Ok(code) => Ok(code),
        Err(Failure::Input(InputErrors(mut errors))) => {
            errors.sort_by(|a, b| (&a.input, a.doc, &a.path).cmp(&(&b.input, b.doc, &b.path)));
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!("{} input error(s); no case was evaluated", errors.len());
            Ok(ExitCode::from(INPUT_ERROR))
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(INPUT_ERROR))
        }
    }
}

enum Failure {
    Input(InputErrors),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::Other(e)
    }
}

fn input(e: Vec<ManifestError>) -> Failure {
    Failure::Input(InputErrors(e))
}

fn run(a: &TestArgs) -> Result<ExitCode, Failure> {
    let remote = a.live || a.lab.is_some();
    if a.files.is_empty() && !remote {
        return Err(anyhow::anyhow!("give -f PATH (tests and manifests), --live or --lab NAME").into());
    }
    let (docs, mut errors) = if a.files.is_empty() { (vec![], vec![]) } else { load_paths_partial(&a.files) };
    if let Err(e) = validate_set(&docs, &Default::default()) {
        errors.extend(e);
    }
    if !errors.is_empty() {
        return Err(input(errors));
    }
    let (mut tests, mut model): (Vec<Document>, Vec<Document>) =
        docs.into_iter().partition(|d| matches!(d.resource, Resource::ConnectivityTest(_)));
    let lab = match &a.lab {
        None => None,
        Some(name) => {
            // As `porin lab` opens its labs.
            let opts = porin_lab::LabOptions {
                state_dir: std::path::absolute(&a.lab_state_dir).context("--lab-state-dir")?,
                servers: porin_lab::ServerMode::current_exe(&["lab-serve"]).map_err(anyhow::Error::from)?,
                ready_timeout: std::time::Duration::from_secs(15),
            };
            Some(porin_lab::Lab::open(name, &opts).with_context(|| format!("opening lab {name} (is it up?)"))?)
        }
    };
    if remote {
        if !model.is_empty() {
            let errors = model
                .iter()
                .map(|d| {
                    ManifestError::new(
                        &d.source,
                        Some(d.doc),
                        join_path(&d.prefix, "kind"),
                        format!(
                            "{} {:?}: with --live the cluster comes from the agent; pass only ConnectivityTests",
                            d.resource.kind(),
                            d.resource.qualified_name()
                        ),
                    )
                })
                .collect();
            return Err(input(errors));
        }
        let client = match &a.lab {
            Some(name) => {
                let meta = porin_lab::cluster::control(&porin_lab::LabOptions::with_state_dir(&a.lab_state_dir), name)
                    .map_err(anyhow::Error::from)?
                    .ok_or_else(|| anyhow::anyhow!("lab {name} is not up"))?;
                Client::new(&ClientArgs::socket(meta.server.display().to_string()))
            }
            None => Client::new(&a.client),
        };
        let live = super::live::fetch_live(&client).map_err(anyhow::Error::from)?;
        for d in live {
            if matches!(d.resource, Resource::ConnectivityTest(_)) {
                if a.files.is_empty() {
                    tests.push(d);
                }
            } else {
                model.push(d);
            }
        }
    }
    let has_guards = model.iter().any(|d| matches!(d.resource, Resource::ReachabilityGuard(_)));
    if tests.is_empty() && !has_guards {
        return Err(anyhow::anyhow!("no ConnectivityTest or ReachabilityGuard found in the inputs").into());
    }
    let cluster = Cluster::build(model.iter().map(|d| &d.resource)).context("building the policy model")?;
    let probe = lab.as_ref().map(|l| (l, std::time::Duration::from_millis(a.probe_timeout_ms)));
    let outcome = match porin_conntest::run(&cluster, &tests, &model, probe) {
        Ok(o) => o,
        Err(porin_conntest::Error::Input(errors)) => return Err(input(errors)),
        Err(e) => return Err(anyhow::Error::from(e).into()),
    };
    if let Some(path) = &a.junit {
        std::fs::write(path, outcome.junit()).with_context(|| format!("writing {}", path.display()))?;
    }
    match a.output {
        Output::Table => print!("{}", outcome.table()),
        Output::Json => println!("{}", serde_json::to_string_pretty(&outcome.json()).expect("json")),
    }
    Ok(if outcome.passed() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
