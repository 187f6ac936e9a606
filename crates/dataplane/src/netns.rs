//! Running code inside a network namespace.
//!
//! `setns(CLONE_NEWNET)` changes the namespace of the calling THREAD. We never
//! do that on a caller's thread (it may be a tokio worker that other tasks run
//! on later): the closure runs on a fresh OS thread that enters the namespace
//! and exits afterwards.

use std::fs::File;
use std::path::Path;

use nix::sched::{CloneFlags, setns};

use crate::error::{Error, Result};

/// Runs `f` on a dedicated thread inside the network namespace at `netns`
/// (e.g. `/var/run/netns/NAME` or `/proc/PID/ns/net`). With `None`, `f` still
/// runs on a dedicated thread, in the process's current namespace.
pub fn in_netns<T: Send>(netns: Option<&Path>, f: impl FnOnce() -> T + Send) -> Result<T> {
    let file = match netns {
        Some(p) => Some(File::open(p).map_err(|source| Error::Netns { path: p.to_path_buf(), source })?),
        None => None,
    };
    std::thread::scope(|s| {
        s.spawn(move || {
            if let Some(fd) = &file {
                setns(fd, CloneFlags::CLONE_NEWNET).map_err(|e| Error::Netns {
                    path: netns.map(Path::to_path_buf).unwrap_or_default(),
                    source: e.into(),
                })?;
            }
            Ok(f())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}
