//! `porin`: the one binary. Each subcommand lives in its own module under `cmd/`; this file only parses
//! arguments and dispatches.
//!
//! Owns: flags, dispatch and what goes to stdout/stderr. Never: agent state or agent logic (that is `porin-agent`;
//! `porin agent` parses its flags into `AgentConfig` and calls `Agent::run`), nor reusable logic: the HTTP client
//! and the printers are `porin-client`, the lab's supervision is `porin-lab`, the ConnectivityTest evaluation is
//! `porin-conntest`.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[cfg(test)]
mod cli_help;
mod cmd;

use porin_client::{client, config, getfmt, printers};

/// Porin: zero-trust network security for Kubernetes-style workloads.
#[derive(Parser, Debug)]
#[command(name = "porin", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check manifests: every error, with file, document and field path.
    Validate(cmd::offline::ValidateArgs),
    /// Explain the verdict for one connection: which tier, policy and rule decided.
    Trace(cmd::offline::TraceArgs),
    /// The reachability matrix over all pods, per port and protocol.
    Matrix(cmd::offline::MatrixArgs),
    /// Which (from, to, port) pairs a policy change opens and closes.
    Diff(cmd::offline::DiffArgs),
    /// Run the node agent: API server, datastore cache, policy engine.
    Agent(cmd::agent::AgentArgs),
    /// Run the API server only (control-plane process, no policy engine).
    Serve(cmd::agent::AgentArgs),
    /// Create or update objects from manifests; all documents commit atomically or none do.
    Apply(cmd::apply::ApplyArgs),
    /// List or show objects.
    Get(cmd::get::GetArgs),
    /// Delete objects by name or by manifest.
    Delete(cmd::delete::DeleteArgs),
    /// Set or remove labels on an object.
    Label(cmd::label::LabelArgs),
    /// Who changed what, when.
    Audit(cmd::audit::AuditArgs),
    /// Manage API tokens.
    Token(cmd::token::TokenArgs),
    /// Named contexts (server, CA, token) in the client's config file, like kubeconfig contexts.
    Config(cmd::config::ConfigArgs),
    /// Compliance reports for auditors: inventory, network-access, policy-audit (JSON, CSV, HTML).
    Report(cmd::report::ReportArgs),
    /// Packet capture files of a PacketCapture: status, copy from every node, clean.
    Capture(cmd::capture::CaptureArgs),
    /// The kinds the API serves: names, short names, API version, scope (like `kubectl api-resources`).
    ApiResources(cmd::resources::ApiResourcesArgs),
    /// Agent health: store, revisions, endpoint and policy counts, dataplane, flow pipeline.
    Status(cmd::status::StatusArgs),
    /// Flow records with their policy verdicts (like `hubble observe`): filter, follow, print.
    Observe(Box<cmd::observe::ObserveArgs>),
    /// A cluster out of network namespaces on this machine, enforced by real agents.
    Lab(cmd::lab::LabArgs),
    /// The shop example in a kernel lab: open, then zero-trust, observed on real packets.
    Demo(cmd::demo::DemoArgs),
    /// Print the client version and, when the API is reachable, what the server reports.
    Version(cmd::version::VersionArgs),
    /// Print a shell completion script: `source <(porin completion bash)`.
    Completion(cmd::version::CompletionArgs),
    /// Check connectivity assertions (ConnectivityTest) against manifests or the live agent; exit 1 on failure.
    Test(cmd::test::TestArgs),
    /// Make staged policies enforced (and delete the staged objects) in one transaction.
    Promote(cmd::promote::PromoteArgs),
    /// Recommend one StagedNetworkPolicy per namespace from the traffic the agent observed.
    Recommend(cmd::recommend::RecommendArgs),
    /// Review the policies: `review unused --since 30d` lists policies and rules with no hit in the window.
    Review(cmd::review::ReviewArgs),
    /// Replay recorded flows with and without a change; exit 3 when observed traffic would be denied.
    Preview(cmd::preview::PreviewArgs),
    /// Isolate a workload now: deny everything but DNS and monitoring, cut its connections (NAMESPACE/POD).
    Quarantine(cmd::respond::QuarantineArgs),
    /// Undo `porin quarantine` (admin only).
    Release(cmd::respond::ReleaseArgs),
    /// Deny addresses cluster-wide in both directions and cut their connections; `porin block list` shows them.
    Block(cmd::respond::BlockArgs),
    /// Remove addresses from the block list.
    Unblock(cmd::respond::BlockArgs),
    /// Security alerts (threat-feed hits, honeypod contacts, quarantine and block actions): list or follow.
    Alerts(cmd::alerts::AlertsArgs),
    /// Threat feeds: push a list of addresses into a GlobalThreatFeed's network set.
    Threatfeed(cmd::threatfeed::ThreatFeedArgs),
    /// Install the CNI plugin: conflist, porin-cni binary and a cni token (the DaemonSet's init step).
    InstallCni(cmd::install_cni::InstallCniArgs),
    /// Write a kubeconfig (server, the agent's CA, a token) so that kubectl manages Porin's objects.
    Kubeconfig(cmd::kubeconfig::KubeconfigArgs),
    /// Print the CustomResourceDefinitions of the porin.io kinds (for --datastore kubernetes).
    Crds(cmd::crds::CrdsArgs),
    /// The pod-server process of a lab (internal).
    #[command(hide = true)]
    LabServe {
        /// Arguments passed on by `porin lab` (internal).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    // Through ArgMatches: `observe` needs the order of its filter flags (for `--not`).
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if !matches!(cli.command, Command::Agent(_) | Command::Serve(_) | Command::LabServe { .. } | Command::Demo(_)) {
        restore_default_sigpipe();
    }
    let result = match cli.command {
        Command::Validate(a) => cmd::offline::validate(a),
        Command::Trace(a) => cmd::offline::trace(a),
        Command::Matrix(a) => cmd::offline::matrix(a),
        Command::Diff(a) => cmd::offline::diff(a),
        Command::Agent(a) => cmd::agent::agent(a),
        Command::Serve(a) => cmd::agent::serve(a),
        Command::Apply(a) => cmd::apply::apply(a),
        Command::Get(a) => cmd::get::get(a),
        Command::Delete(a) => cmd::delete::delete(a),
        Command::Label(a) => cmd::label::label(a),
        Command::Audit(a) => cmd::audit::audit(a),
        Command::Token(a) => cmd::token::token(a),
        Command::Config(a) => cmd::config::config(a),
        Command::ApiResources(a) => cmd::resources::api_resources(a),
        Command::Report(a) => cmd::report::report(a),
        Command::Capture(a) => cmd::capture::capture(a),
        Command::Status(a) => cmd::status::status(a),
        Command::Observe(a) => cmd::observe::observe(*a, matches.subcommand_matches("observe").expect("observe matches")),
        Command::Lab(a) => cmd::lab::lab(a),
        Command::Demo(a) => cmd::demo::demo(a),
        Command::Version(a) => cmd::version::version(a),
        Command::Completion(a) => cmd::version::completion(a, &mut Cli::command()),
        Command::LabServe { args } => cmd::lab::serve(args),
        Command::Test(a) => cmd::test::test(a),
        Command::Quarantine(a) => cmd::respond::quarantine(a),
        Command::Release(a) => cmd::respond::release(a),
        Command::Block(a) => cmd::respond::block(a),
        Command::Unblock(a) => cmd::respond::unblock(a),
        Command::Promote(a) => cmd::promote::promote(a),
        Command::Recommend(a) => cmd::recommend::recommend(a),
        Command::Preview(a) => cmd::preview::preview(a),
        Command::Review(a) => cmd::review::review(a),
        Command::InstallCni(a) => cmd::install_cni::install_cni(a),
        Command::Kubeconfig(a) => cmd::kubeconfig::kubeconfig(a),
        Command::Crds(a) => cmd::crds::crds(a),
        Command::Threatfeed(a) => cmd::threatfeed::threatfeed(a),
        Command::Alerts(a) => cmd::alerts::alerts(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", error_line(&e));
            ExitCode::from(1)
        }
    }
}

/// The one line a failed command prints on stderr, as kubectl does: an answer of the server reads
/// `Error from server (Reason): message` (once, no further prefix); anything that went wrong on this side reads
/// `error: ...`.
pub fn error_line(e: &anyhow::Error) -> String {
    // The top-level message decides: a ServerError, or an error that already carries the kubectl prefix.
    if e.to_string().starts_with("Error from server (") { format!("{e:#}") } else { format!("error: {e:#}") }
}

/// Short-lived commands print to a pipe (`porin status | head`): like other command-line tools they should end
/// quietly when the reader goes away, not panic in `println!`. Rust ignores SIGPIPE by default, which the
/// long-running agent, API server and lab processes keep (their sockets report EPIPE as an error instead).
fn restore_default_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: called once at start-up from the main thread before any other thread exists; SIG_DFL installs no
    // Rust code as a handler, so no async-signal-safety requirement arises.
    if let Err(e) = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) } {
        eprintln!("warning: cannot restore SIGPIPE: {e}");
    }
}
