//! Per-rule hit counters that outlive the agent: `<data-dir>/rule-hits.json`.
//!
//! `porin review unused --since 30d` asks which rules decided nothing over a window that is usually longer
//! than the flow store keeps records (24 h by default), so the answer cannot be derived from the store. The
//! flow pipeline folds every flushed record's trace entries (`tier|policy|rule|action`, per direction, enforced
//! and staged) into one counter each — first and last hit, connections, packets, bytes — and writes the table
//! to disk (temporary file, fsync, rename) at most every [`SAVE_EVERY`] when it changed. A crash loses at most
//! that much; a file that does not parse is kept aside (`.corrupt`) and counting starts over, with `since`
//! saying from when the counters reach.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use porin_flow::FlowRecord;
use serde::{Deserialize, Serialize};

/// The longest a changed table waits before it is written.
pub const SAVE_EVERY: Duration = Duration::from_millis(500);

/// One trace entry's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleHit {
    /// `ingress` or `egress`: which side's policy decided (the record's direction).
    pub direction: String,
    /// The trace entry, `tier|policy|rule|action`.
    pub entry: String,
    /// From the pending (staged) trace.
    pub staged: bool,
    /// Unix nanoseconds of the first and last record that carried it.
    pub first_hit: u64,
    pub last_hit: u64,
    pub connections: u64,
    pub packets: u64,
    pub bytes: u64,
}

/// The on-disk table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleHitTable {
    /// Unix nanoseconds from which the counters reach (the table's creation).
    pub since: u64,
    pub hits: Vec<RuleHit>,
}

/// Why the table could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing the rule hit counters {}", path.display())]
pub struct SaveError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// The live counters and where they are kept.
#[derive(Debug)]
pub struct RuleHits {
    path: Option<PathBuf>,
    since: u64,
    hits: BTreeMap<(bool, String, String), RuleHit>,
    dirty: bool,
    last_save: Option<Instant>,
}

impl RuleHits {
    /// In memory only (tests, an agent without a data directory).
    pub fn in_memory(now: u64) -> RuleHits {
        RuleHits { path: None, since: now, hits: BTreeMap::new(), dirty: false, last_save: None }
    }

    /// The table at `path`, or a new one from `now` when there is none (or it does not parse: it is moved
    /// to `<path>.corrupt` and reported).
    pub fn load(path: &Path, now: u64) -> RuleHits {
        let mut t = RuleHits { path: Some(path.to_path_buf()), ..RuleHits::in_memory(now) };
        match std::fs::read(path) {
            Ok(bytes) => match serde_json::from_slice::<RuleHitTable>(&bytes) {
                Ok(table) => {
                    t.since = table.since;
                    for h in table.hits {
                        t.hits.insert((h.staged, h.direction.clone(), h.entry.clone()), h);
                    }
                }
                Err(e) => {
                    let aside = path.with_extension("json.corrupt");
                    tracing::warn!(error = %e, file = %path.display(), aside = %aside.display(), "rule hit counters do not parse: counting starts over");
                    let _ = std::fs::rename(path, &aside);
                    t.dirty = true;
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => t.dirty = true,
            Err(e) => tracing::warn!(error = %e, file = %path.display(), "reading the rule hit counters failed: counting starts over"),
        }
        t
    }

    /// Folds flushed records in.
    pub fn observe(&mut self, recs: &[FlowRecord]) {
        for r in recs {
            let dir = r.direction.as_str();
            for (staged, trace) in [(false, &r.enforced_trace), (true, &r.pending_trace)] {
                for e in trace {
                    let h = self.hits.entry((staged, dir.to_string(), e.clone())).or_insert_with(|| RuleHit {
                        direction: dir.to_string(),
                        entry: e.clone(),
                        staged,
                        first_hit: r.start_time,
                        ..Default::default()
                    });
                    h.first_hit = h.first_hit.min(r.start_time);
                    h.last_hit = h.last_hit.max(r.end_time);
                    h.connections += r.flows_started;
                    h.packets += r.packets_src_to_dst + r.packets_dst_to_src;
                    h.bytes += r.bytes_src_to_dst + r.bytes_dst_to_src;
                    self.dirty = true;
                }
            }
        }
    }

    /// Writes the table when it changed and [`SAVE_EVERY`] has passed since the last write (or `force`).
    pub fn save_if_due(&mut self, force: bool) -> Result<bool, SaveError> {
        let Some(path) = self.path.clone() else { return Ok(false) };
        if !self.dirty || (!force && self.last_save.is_some_and(|t| t.elapsed() < SAVE_EVERY)) {
            return Ok(false);
        }
        let bytes = serde_json::to_vec(&self.table()).unwrap_or_default();
        let tmp = path.with_extension("json.tmp");
        let err = |source| SaveError { path: path.clone(), source };
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(err)?;
        self.dirty = false;
        self.last_save = Some(Instant::now());
        Ok(true)
    }

    /// A copy of the counters.
    pub fn table(&self) -> RuleHitTable {
        RuleHitTable { since: self.since, hits: self.hits.values().cloned().collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(trace: &[&str], pending: &[&str], start: u64, end: u64) -> FlowRecord {
        let v = serde_json::json!({
            "start_time": porin_flow::time::format_rfc3339(start), "end_time": porin_flow::time::format_rfc3339(end), "node": "n", "verdict": "allowed", "direction": "ingress",
            "reporter": "dst", "ip_family": "v4", "protocol": "tcp",
            "src": {"kind": "pod", "namespace": "a", "pod": "x"}, "dst": {"kind": "pod", "namespace": "b", "pod": "y", "port": 80},
            "packets_src_to_dst": 3, "bytes_src_to_dst": 300, "packets_dst_to_src": 2, "bytes_dst_to_src": 200,
            "flows_started": 1, "flows_completed": 1, "flows_open": 0, "open": false, "aggregation": "five_tuple",
            "enforced_trace": trace, "pending_trace": pending,
        });
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn counts_survive_a_reload_and_a_corrupt_file_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rule-hits.json");
        let mut t = RuleHits::load(&path, 5);
        t.observe(&[rec(&["app|b/web|0|allow"], &[], 10, 20), rec(&["app|b/web|0|allow"], &["app|b/staged:x|-1|deny"], 8, 30)]);
        assert!(t.save_if_due(false).unwrap());
        assert!(!t.save_if_due(true).unwrap(), "nothing changed: nothing written");

        let again = RuleHits::load(&path, 99).table();
        assert_eq!(again.since, 5, "the counters reach back to the first start, not the restart");
        let web = again.hits.iter().find(|h| h.entry == "app|b/web|0|allow" && !h.staged).unwrap();
        assert_eq!((web.first_hit, web.last_hit, web.connections, web.packets, web.bytes), (8, 30, 2, 10, 1000));
        assert!(again.hits.iter().any(|h| h.staged && h.entry == "app|b/staged:x|-1|deny" && h.direction == "ingress"));

        std::fs::write(&path, b"{not json").unwrap();
        let fresh = RuleHits::load(&path, 77).table();
        assert_eq!((fresh.since, fresh.hits.len()), (77, 0));
        assert!(dir.path().join("rule-hits.json.corrupt").exists(), "the unreadable file is kept aside");
    }
}
