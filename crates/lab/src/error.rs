//! The lab's error type. Every variant names what failed: the command line, the namespace, the file.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab specification is invalid; `field` is a path such as `pods[3].ipv4`.
    #[error("invalid lab spec: {field}: {reason}")]
    Spec { field: String, reason: String },

    /// An external command (usually `ip`) ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command { command: String, status: String, stderr: String },

    /// An external command could not be started at all.
    #[error("cannot run `{command}`: {source}")]
    Spawn { command: String, #[source] source: io::Error },

    /// A system call on behalf of a network namespace failed (open, setns, socket, bind, sysctl).
    #[error("netns {netns}: {op}: {source}")]
    Netns { netns: String, op: String, #[source] source: io::Error },

    /// Reading or writing the state file failed.
    #[error("state file {}: {source}", path.display())]
    StateIo { path: PathBuf, #[source] source: io::Error },

    /// The state file exists but is not valid JSON for this version.
    #[error("state file {}: {source}", path.display())]
    StateJson { path: PathBuf, #[source] source: serde_json::Error },

    /// No state file for this lab.
    #[error("lab {lab:?} does not exist (no state file {})", path.display())]
    NotFound { lab: String, path: PathBuf },

    /// A lab of this name is up and its owner processes are alive.
    #[error("lab {lab:?} is already up (live owner pids {pids:?}); run down first")]
    AlreadyUp { lab: String, pids: Vec<i32> },

    /// A pod key (`namespace/name`) or external host name that is not in the lab.
    #[error("lab {lab:?} has no pod or host {pod:?}")]
    UnknownPod { lab: String, pod: String },

    /// The pod servers failed to start or to report readiness.
    #[error("pod servers for lab {lab:?}: {reason}")]
    Servers { lab: String, reason: String },

    /// Bad arguments to the pod-server entry point.
    #[error("lab-serve arguments: {0}")]
    ServeArgs(String),

    /// The lab has no control plane (agents) where one is needed.
    #[error("lab {lab} is not up")]
    NotUp { lab: String },

    /// A request to the control plane that cannot be done as asked (a flag, the lab's current state).
    #[error("{0}")]
    Usage(String),

    /// The manifests do not load: every error, with file, document and field path, one per line.
    #[error("{0}")]
    Manifests(String),

    /// An agent or etcd did not become ready, or did not enforce a revision, in time.
    #[error("{0}")]
    NotReady(String),

    /// A call to an agent's API failed (the error of the [`crate::cluster::AgentApi`] implementation).
    #[error(transparent)]
    Api(Box<dyn std::error::Error + Send + Sync>),

    /// A file or process operation of the control plane.
    #[error("{what}")]
    Io { what: String, #[source] source: io::Error },

    /// Another lab error, with what was being done.
    #[error("{what}")]
    Context { what: String, #[source] source: Box<LabError> },
}

impl LabError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> LabError {
        let what = what.into();
        move |source| LabError::Io { what, source }
    }

    pub(crate) fn netns(netns: &str, op: impl Into<String>, source: io::Error) -> Self {
        LabError::Netns { netns: netns.to_string(), op: op.into(), source }
    }

    pub(crate) fn spec(field: impl Into<String>, reason: impl Into<String>) -> Self {
        LabError::Spec { field: field.into(), reason: reason.into() }
    }
}

/// Result alias for the lab.
pub type Result<T, E = LabError> = std::result::Result<T, E>;
