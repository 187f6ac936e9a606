//! The alert log across agent restarts: every alert is appended as one JSON line to `<data-dir>/alerts.jsonl` by a
//! task following the log (raising never waits for the disk); at start the newest [`super::AlertLog::capacity`]
//! lines are read back, numbering continues after the highest id, and the file is compacted to what the log holds
//! once it has grown to twice that. Unreadable lines (a torn last write) are skipped and counted in the log.
//! Restored alerts are not delivered to webhooks again.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;

use super::{Alert, AlertLog};

/// The file under the data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("alerts.jsonl")
}

/// Reads the alerts kept in `path` back into `log`. Returns (restored, skipped lines).
pub fn restore(log: &AlertLog, path: &Path) -> (usize, usize) {
    let Ok(text) = std::fs::read_to_string(path) else { return (0, 0) };
    let mut alerts = Vec::new();
    let mut skipped = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Alert>(line) {
            Ok(a) => alerts.push(a),
            Err(_) => skipped += 1,
        }
    }
    let n = log.restore(alerts);
    if skipped > 0 {
        tracing::warn!(path = %path.display(), skipped, "unreadable lines in the alert file were skipped");
    }
    (n, skipped)
}

fn rewrite(path: &Path, alerts: &[Arc<Alert>]) -> std::io::Result<()> {
    let tmp = path.with_extension("jsonl.tmp");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    for a in alerts {
        serde_json::to_writer(&mut f, &**a)?;
        f.write_all(b"\n")?;
    }
    f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Starts the writer task (subscribed at once: every alert raised after this call is written).
pub fn spawn_writer(log: Arc<AlertLog>, path: PathBuf) -> tokio::task::JoinHandle<()> {
    let mut rx = log.subscribe();
    tokio::spawn(async move {
        let mut lines = log.list_after(0).len();
        loop {
            let batch: Vec<Arc<Alert>> = match rx.recv().await {
                Ok(a) => {
                    let mut b = vec![a];
                    while let Ok(a) = rx.try_recv() {
                        b.push(a);
                    }
                    b
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(n, "the alert file writer fell behind; rewriting the file from the log");
                    lines = 2 * log.capacity();
                    Vec::new()
                }
                Err(RecvError::Closed) => return,
            };
            let file = path.clone();
            let n = batch.len();
            let compact = lines + n >= 2 * log.capacity();
            let snapshot = if compact { Some(log.list_after(0)) } else { None };
            let res = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                if let Some(all) = snapshot {
                    return rewrite(&file, &all);
                }
                let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&file)?;
                let mut buf = Vec::new();
                for a in &batch {
                    serde_json::to_writer(&mut buf, &**a)?;
                    buf.push(b'\n');
                }
                f.write_all(&buf)
            })
            .await;
            match res {
                Ok(Ok(())) if compact => lines = log.list_after(0).len(),
                Ok(Ok(())) => lines += n,
                Ok(Err(e)) => tracing::warn!(path = %path.display(), error = %e, "writing the alert file failed"),
                Err(e) => tracing::warn!(error = %e, "the alert file writer panicked"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertKind;

    #[tokio::test]
    async fn alerts_survive_a_restart_and_numbering_continues() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        let log = Arc::new(AlertLog::new("n0", 3));
        let w = spawn_writer(log.clone(), p.clone());
        for i in 0..7 {
            log.raise(Alert::new(AlertKind::Block, format!("10.0.0.{i}/32"), "blocked"));
        }
        let t0 = std::time::Instant::now();
        while std::fs::read_to_string(&p).unwrap_or_default().lines().filter(|l| l.contains("10.0.0.6/32")).count() == 0 {
            assert!(t0.elapsed() < std::time::Duration::from_secs(5), "alerts never written");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        w.abort();
        let lines = std::fs::read_to_string(&p).unwrap().lines().count();
        assert!(lines <= 6, "compacted at twice the capacity: {lines} lines");
        std::fs::OpenOptions::new().append(true).open(&p).unwrap().write_all(b"{\"id\":99,\"tor").unwrap();
        let again = AlertLog::new("n0", 3);
        let (n, skipped) = restore(&again, &p);
        assert_eq!((n, skipped), (3, 1));
        let kept: Vec<u64> = again.list_after(0).iter().map(|a| a.id).collect();
        assert_eq!(kept, vec![5, 6, 7]);
        assert_eq!(again.raise(Alert::new(AlertKind::Honeypod, "ns/d", "contacted")).id, 8);
        assert_eq!(again.raised(AlertKind::Block), 0, "restored alerts are not raised again");
    }
}
