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
}

impl LabError {
    pub(crate) fn netns(netns: &str, op: impl Into<String>, source: io::Error) -> Self {
        LabError::Netns { netns: netns.to_string(), op: op.into(), source }
    }

    pub(crate) fn spec(field: impl Into<String>, reason: impl Into<String>) -> Self {
        LabError::Spec { field: field.into(), reason: reason.into() }
    }
}

/// Result alias for the lab.
pub type Result<T, E = LabError> = std::result::Result<T, E>;
