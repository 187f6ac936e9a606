//! Process-level durability tests for the embedded store. The parent re-executes this test
//! binary as a child (selected by an environment variable) and:
//!
//! * SIGKILLs a child that is writing as fast as it can, then checks that every write the child
//!   reported as acknowledged is in the reopened store, that transactions are all-or-nothing,
//!   and that the store opens cleanly (three rounds on the same directory);
//! * runs a child under a file-size limit (as if the disk filled up) and checks it gets a
//!   `Full` error naming the file, acknowledges nothing it could not commit, and leaves a store
//!   that reopens cleanly;
//! * checks that a second process cannot open a data directory that is in use.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use porin_store::{Condition, EmbeddedOptions, EmbeddedStore, Op, Store, StoreError, TxnResult};

const ROLE_ENV: &str = "PORIN_STORE_TEST_ROLE";
const DIR_ENV: &str = "PORIN_STORE_TEST_DIR";

/// Entry point of the child processes; a no-op in a normal test run.
#[test]
fn child_process() {
    let (Ok(role), Ok(dir)) = (std::env::var(ROLE_ENV), std::env::var(DIR_ENV)) else { return };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        match role.as_str() {
            "writer" => writer_child(Path::new(&dir)).await,
            "fill" => fill_child(Path::new(&dir)).await,
            "open" => match EmbeddedStore::open(&dir, EmbeddedOptions::default()) {
                Ok(_) => say("OPENED".into()),
                Err(e) => say(format!("ERR {e:?} | {e}")),
            },
            other => panic!("unknown role {other}"),
        }
    });
}

/// Child output marker: libtest prints `test child_process ... ` on the same line as the first
/// output, so the parent looks for this marker rather than the start of a line.
const MARK: &str = "@@ ";

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{MARK}{line}").unwrap();
    out.flush().unwrap();
}

/// Four tasks write atomic pairs `a/<round>/<t>/<i>` + `b/<round>/<t>/<i>` forever and print
/// `ACK <key suffix> <revision>` after each acknowledged commit.
async fn writer_child(dir: &Path) {
    let round = std::env::var("PORIN_STORE_TEST_ROUND").unwrap();
    let s = EmbeddedStore::open(dir, EmbeddedOptions::default()).unwrap();
    say("READY".into());
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (s, round) = (s.clone(), round.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let id = format!("{round}/{t}/{i}");
                let value = format!("value-{id}-").repeat(1 + i % 20).into_bytes();
                let res = s
                    .txn(
                        vec![Condition::absent(format!("a/{id}"))],
                        vec![Op::put(format!("a/{id}"), value.clone()), Op::put(format!("b/{id}"), value)],
                    )
                    .await
                    .unwrap();
                let TxnResult::Committed { revision } = res else { panic!("{res:?}") };
                say(format!("ACK {id} {revision}"));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn spawn_child(role: &str, dir: &Path, extra_env: &[(&str, String)], prefix: &[&str]) -> Child {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.args(["child_process", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role)
        .env(DIR_ENV, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn child test process")
}

/// Forwards the child's marked stdout lines (without the marker) over a channel.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let Some(at) = line.find(MARK) else { continue };
            if tx.send(line[at + MARK.len()..].to_owned()).is_err() {
                break;
            }
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    for (round, kill_after) in [(0, 25usize), (1, 97), (2, 160)] {
        let mut child = spawn_child("writer", dir.path(), &[("PORIN_STORE_TEST_ROUND", round.to_string())], &[]);
        let rx = lines(&mut child);
        let mut this_round = 0;
        while this_round < kill_after {
            let line = rx.recv_timeout(Duration::from_secs(30)).expect("child keeps acknowledging writes");
            if let Some(rest) = line.strip_prefix("ACK ") {
                let (id, rev) = rest.split_once(' ').unwrap();
                acked.insert(id.to_owned(), rev.parse().unwrap());
                this_round += 1;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Anything the child printed before it died was acknowledged too.
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
            if let Some(rest) = line.strip_prefix("ACK ") {
                let (id, rev) = rest.split_once(' ').unwrap();
                acked.insert(id.to_owned(), rev.parse().unwrap());
            }
        }

        let s = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).expect("reopens cleanly after kill -9");
        for (id, rev) in &acked {
            let a = s.get(&format!("a/{id}")).await.unwrap().unwrap_or_else(|| panic!("acknowledged a/{id} lost"));
            let b = s.get(&format!("b/{id}")).await.unwrap().unwrap_or_else(|| panic!("acknowledged b/{id} lost"));
            assert_eq!((a.mod_revision, b.mod_revision), (*rev, *rev), "{id}");
            assert_eq!(a.value, b.value);
        }
        // Transactions are atomic: every pair is complete, acknowledged or not.
        let (a_items, rev) = s.list("a/").await.unwrap();
        let (b_items, _) = s.list("b/").await.unwrap();
        let a_ids: BTreeSet<_> = a_items.iter().map(|kv| (kv.key[2..].to_owned(), kv.mod_revision)).collect();
        let b_ids: BTreeSet<_> = b_items.iter().map(|kv| (kv.key[2..].to_owned(), kv.mod_revision)).collect();
        assert_eq!(a_ids, b_ids, "no half-applied transaction");
        assert!(a_ids.len() >= acked.len());
        eprintln!("round {round}: {} pairs acknowledged, {} committed, revision {rev}", acked.len(), a_ids.len());
        assert_eq!(rev, a_ids.iter().map(|(_, r)| *r).max().unwrap(), "the revision counter matches the data");
        // The changelog is consistent with the data.
        let mut w = s.watch("a/", 0).await.unwrap();
        let evs = common_take(&mut w, a_ids.len()).await;
        assert_eq!(evs.len(), a_ids.len());
        drop(w);
        drop(s);
    }
}

async fn common_take(w: &mut porin_store::WatchStream, n: usize) -> Vec<porin_store::WatchEvent> {
    use futures::StreamExt;
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(20), w.next()).await {
            Ok(Some(Ok(ev))) => out.push(ev),
            other => panic!("changelog replay failed after {} events: {other:?}", out.len()),
        }
    }
    out
}

/// Four concurrent writers put 64 KiB values until the store refuses (so failures hit group
/// commits); each prints `ACK <key>` per acknowledged write and `FULL <key> <error>` or
/// `OTHER <key> <error>` for its first failure, then stops.
async fn fill_child(dir: &Path) {
    let s = EmbeddedStore::open(dir, EmbeddedOptions::default()).unwrap();
    let mut tasks = Vec::new();
    for t in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10_000 {
                let key = format!("fill/{t}/{i}");
                match s.put(&key, vec![i as u8; 64 * 1024], None).await {
                    Ok(_) => say(format!("ACK {key}")),
                    Err(e @ StoreError::Full { .. }) => return say(format!("FULL {key} {e}")),
                    Err(e) => return say(format!("OTHER {key} {e:?}")),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    say("DONE".into());
}

fn prlimit_available() -> bool {
    Command::new("prlimit").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_is_a_clear_error_and_acknowledges_nothing_uncommitted() {
    assert!(prlimit_available(), "this test needs prlimit (util-linux)");
    let dir = tempfile::tempdir().unwrap();
    let file = {
        let s = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
        s.put("before", b"x".to_vec(), None).await.unwrap();
        s.path().to_owned()
    };
    let limit = std::fs::metadata(&file).unwrap().len() + 4 * 1024 * 1024;
    // RLIMIT_FSIZE makes writes past `limit` fail with EFBIG, like a full disk; SIGXFSZ is
    // ignored (the disposition survives exec) so the process sees the error instead of dying.
    let script = format!("trap '' XFSZ; exec prlimit --fsize={limit} \"$@\"");
    let mut child = spawn_child("fill", dir.path(), &[], &["sh", "-c", &script, "sh"]);
    let rx = lines(&mut child);
    let mut acked = Vec::new();
    let mut errors = Vec::new();
    loop {
        let line = rx.recv_timeout(Duration::from_secs(60)).expect("fill child reports");
        if let Some(k) = line.strip_prefix("ACK ") {
            acked.push(k.to_owned());
        } else if line.starts_with("FULL ") || line.starts_with("OTHER ") {
            errors.push(line);
        } else if line == "DONE" {
            break;
        }
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(errors.len(), 4, "every writer hit the limit: {errors:?}");
    let full = errors.iter().find(|e| e.starts_with("FULL ")).expect("a Full error");
    assert!(full.contains(&file.display().to_string()), "the error names the file: {full}");
    for e in &errors {
        // After a failed commit redb refuses writes until reopened ("previous I/O error"); the store
        // reports the original cause to those later writers too.
        assert!(e.starts_with("FULL ") && e.contains(&file.display().to_string()), "unexpected error: {e}");
    }
    assert!(acked.len() >= 4, "some writes fit under the limit: {}", acked.len());
    eprintln!("{} writes acknowledged under the limit; then {errors:?}", acked.len());

    let s = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).expect("reopens cleanly");
    assert!(s.get("before").await.unwrap().is_some());
    for k in &acked {
        assert!(s.get(k).await.unwrap().is_some(), "acknowledged {k} lost");
    }
    for e in &errors {
        let failed_key = e.split(' ').nth(1).unwrap();
        assert_eq!(s.get(failed_key).await.unwrap(), None, "the refused write {failed_key} was not committed");
    }
    s.put("after", b"y".to_vec(), None).await.expect("writable again without the limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_cannot_open_a_store_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let s = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
    let mut child = spawn_child("open", dir.path(), &[], &[]);
    let rx = lines(&mut child);
    let line = verdict(&rx);
    child.wait().unwrap();
    assert!(line.starts_with("ERR Locked"), "{line}");
    assert!(line.contains(&s.path().display().to_string()), "names the file: {line}");
    drop(s);
    let mut child = spawn_child("open", dir.path(), &[], &[]);
    let rx = lines(&mut child);
    assert_eq!(verdict(&rx), "OPENED");
    child.wait().unwrap();
}

/// The "open" child's answer.
fn verdict(rx: &mpsc::Receiver<String>) -> String {
    loop {
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("open child answers");
        if line.starts_with("ERR ") || line == "OPENED" {
            return line;
        }
    }
}
