//! # porin-client: the API client and the printers, shared by the CLI, its tests and the bench
//!
//! Owns: the HTTP/1.1 client of the agent's API (Unix socket, HTTPS, plain HTTP on loopback; one connection per
//! request), the client's config file with its named contexts, and the renderings of engine results and stored
//! objects (tables, grids, `-o` formats), and the logic of the commands below their flags (get, observe, the offline
//! evaluation, preview, report, capture, tokens, the demo). Golden files pin the renderings
//! (crates/porin/tests/golden).
//!
//! Never: agent state or agent logic (that is `porin-agent`, reached only over HTTP), flag parsing of
//! subcommands (`porin`), or printing to stdout by itself: functions return data or strings, or write to the
//! `&mut dyn Write` the caller gives (streams: `get --watch`, `observe --follow`, the demo); errors
//! are [`Error`] (typed, with the failing file, server or value named), never strings.

/// `Error::Invalid` with a formatted message (as `anyhow!` reads).
macro_rules! invalid {
    ($($t:tt)*) => { $crate::Error::Invalid(format!($($t)*)) };
}

/// Return `Error::Invalid` with a formatted message.
macro_rules! bail {
    ($($t:tt)*) => { return Err(invalid!($($t)*)) };
}

pub mod alerts;
pub mod apply;
pub mod capture;
pub mod client;
pub mod config;
pub mod demo;
pub mod get;
pub mod getfmt;
pub mod kubeconfig;
pub mod labapi;
pub mod labfmt;
pub mod live;
pub mod observe;
pub mod offline;
pub mod preview;
pub mod printers;
pub mod promote;
pub mod report;
pub mod review;
pub mod status;
pub mod targets;
pub mod tokens;

pub use client::{Client, ClientArgs, ServerError, block_on, collection_path, enc, type_name};

/// What the client's functions fail with. Every message names what failed; a caller adds its own context.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A non-2xx answer of the server, rendered kubectl-style (`Error from server (Reason): message`).
    #[error(transparent)]
    Server(#[from] ServerError),
    /// A value the caller gave (a flag, a name, the config file's content) that cannot be used, or an answer that
    /// does not decode; the message says which and why.
    #[error("{0}")]
    Invalid(String),
    /// A file, socket or runtime operation; `what` says which and where.
    #[error("{what}")]
    Io { what: String, #[source] source: std::io::Error },
    /// The client's TLS configuration (the CA bundle).
    #[error(transparent)]
    Tls(#[from] porin_agent::tls::TlsError),
    /// The HTTP exchange failed.
    #[error(transparent)]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error(transparent)]
    Request(#[from] hyper::http::Error),
    /// The policy model could not be built from the objects.
    #[error(transparent)]
    Engine(#[from] porin_policy::EngineError),
    /// A kernel lab operation (opening, probing, waiting for enforcement).
    #[error(transparent)]
    Lab(#[from] porin_lab::LabError),
    /// A report could not be computed.
    #[error(transparent)]
    Report(Box<porin_report::ReportError>),
    /// A stored GlobalReport's type or scope cannot be used.
    #[error(transparent)]
    ReportRun(Box<porin_agent::reports::ReportRunError>),
    /// Another error of this crate, with what was being done.
    #[error("{what}")]
    Context { what: String, #[source] source: Box<Error> },
}

/// Result alias of the client.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// For `map_err`: an I/O error with what was being done.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }

    /// For `map_err`: writing to the caller's output failed.
    pub(crate) fn write(source: std::io::Error) -> Error {
        Error::Io { what: "writing the output".into(), source }
    }

    /// For `map_err`: this crate's error with what was being done.
    pub(crate) fn context(what: impl Into<String>) -> impl FnOnce(Error) -> Error {
        let what = what.into();
        move |source| Error::Context { what, source: Box::new(source) }
    }
}

/// A value as pretty JSON with a newline at the end, as the commands print it.
pub fn pretty_json(v: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string_pretty(v).map(|s| s + "\n").map_err(|e| invalid!("encoding JSON: {e}"))
}

/// The policy model of `docs`; the error says the model could not be built.
pub fn cluster(docs: &[porin_model::Document]) -> Result<porin_policy::Cluster> {
    porin_policy::Cluster::build(docs.iter().map(|d| &d.resource))
        .map_err(|e| Error::Context { what: "building the policy model".into(), source: Box::new(e.into()) })
}
