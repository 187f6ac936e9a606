//! The control plane when its datastore fails: etcd down (read-only from the cache, writes refused with 503,
//! reconnect with backoff, resync without missing a delete) and the embedded store's disk full (refused with
//! 507, nothing acknowledged that was not committed, reads keep working).

#[path = "control_plane/common.rs"]
mod common;

use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn status(a: &Agent) -> Value {
    serde_json::from_str(&a.ok(&["status", "-o", "json"])).unwrap()
}

/// Poll `cond` on the agent's status until it holds (or fail after `secs`, showing the last status).
fn wait_status(a: &Agent, secs: u64, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        let v = status(a);
        if cond(&v) {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(secs), "{what}: not within {secs}s: {v:#}\n{}", a.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A TCP forwarder to a local port that can be cut (every connection closed, new ones refused) and restored:
/// a network partition between one agent and etcd while etcd itself stays up.
struct Proxy {
    port: u16,
    state: Arc<Mutex<(bool, Vec<TcpStream>)>>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new((true, Vec::new())));
        let st = state.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { continue };
                let mut g = st.lock().unwrap();
                if !g.0 {
                    continue; // dropped: the agent sees its connection reset
                }
                let Ok(u) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                g.1.push(c.try_clone().unwrap());
                g.1.push(u.try_clone().unwrap());
                for (mut from, mut to) in [(c.try_clone().unwrap(), u.try_clone().unwrap()), (u, c)] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = from.shutdown(Shutdown::Both);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, state }
    }

    fn cut(&self) {
        let mut g = self.state.lock().unwrap();
        g.0 = false;
        for s in g.1.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.state.lock().unwrap().0 = true;
    }
}

fn names(a: &Agent, kind: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(&a.ok(&["get", kind, "-n", "team-a", "-o", "json"])).unwrap();
    let mut n: Vec<String> = v["items"].as_array().unwrap().iter().map(|o| o["metadata"]["name"].as_str().unwrap().to_string()).collect();
    n.sort();
    n
}

#[test]
fn etcd_outage_is_read_only_then_resyncs_without_missing_a_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut etcd) = Etcd::start(tmp.path()) else { return };
    let proxy = Proxy::start(etcd.client_port);
    let via = format!("http://127.0.0.1:{}", proxy.port);
    let (d1, d2) = (tmp.path().join("n1"), tmp.path().join("n2"));
    std::fs::create_dir_all(&d1).unwrap();
    std::fs::create_dir_all(&d2).unwrap();
    // a1 reaches etcd through the proxy; a2 directly (it plays "the rest of the cluster").
    let a1 = Agent::start(&d1, &["--datastore", "etcd", "--etcd-endpoints", &via, "--dataplane", "none"]);
    let a2 = Agent::start(&d2, &["--datastore", "etcd", "--etcd-endpoints", &etcd.url, "--dataplane", "none"]);
    a1.ok(&["apply", "-f", &a1.write("base.yaml", BASE)]);
    a1.ok(&["apply", "-f", &a1.write("keep.yaml", &app_policy("keep", "team-a", "app"))]);
    let pods = a1.ok(&["get", "pods", "-n", "team-a", "-o", "json"]);
    let pnp = a1.ok(&["get", "pnp", "-n", "team-a", "-o", "json"]);
    wait_status(&a1, 10, "a1 computes the policy", |v| v["endpoints"] == 2 && v["policyRevision"] == v["storeRevision"]);

    // 1. etcd dies: reads come from the last known state, writes are refused with a 503 that names etcd.
    etcd.kill();
    let v = wait_status(&a1, 15, "a1 notices that etcd is gone", |v| v["connected"] == false);
    assert!(v["health"].as_str().unwrap().contains("datastore unreachable"), "{v:#}");
    assert_eq!(a1.ok(&["get", "pods", "-n", "team-a", "-o", "json"]), pods);
    assert_eq!(a1.ok(&["get", "pnp", "-n", "team-a", "-o", "json"]), pnp);
    assert!(a1.ok(&["get", "netpol", "web-in", "-n", "team-a", "-o", "yaml"]).contains("name: web-in"));
    let f = a1.write("new.yaml", &app_policy("during-outage", "team-a", "app"));
    let (code, out, err) = a1.porin(&["apply", "-f", &f]);
    assert!(code != 0 && out.is_empty(), "{out}");
    assert!(err.contains("ServiceUnavailable") && err.contains(&format!("etcd at {via}")) && err.contains("nothing was written"), "{err}");
    let (code, _, err) = a1.porin(&["delete", "pnp", "keep", "-n", "team-a"]);
    assert!(code != 0 && err.contains("ServiceUnavailable") && err.contains("etcd"), "{err}");
    let (code, _, err) = a1.porin(&["label", "pod", "web", "-n", "team-a", "x=1"]);
    assert!(code != 0 && err.contains("ServiceUnavailable"), "{err}");
    // What the cache does not hold is an error, not an empty answer.
    let (code, out, err) = a1.porin(&["audit"]);
    assert!(code != 0 && err.contains("ServiceUnavailable") && err.contains("audit trail"), "{out}{err}");
    let table = a1.ok(&["status"]);
    assert!(table.contains(&format!("Datastore        etcd at {via}: DISCONNECTED since")), "{table}");
    assert!(table.contains("Last error") && table.contains("unavailable"), "{table}");

    // 2. etcd comes back on the same data dir and port, but a1 cannot reach it yet. Meanwhile the cluster deletes
    //    a pod, adds a policy, and compacts the history a1 would need to replay.
    proxy.cut();
    etcd.restart();
    wait_status(&a2, 20, "a2 reconnects", |v| v["connected"] == true);
    let t0 = Instant::now();
    loop {
        // a2's first write may still race its reconnection.
        let (code, _, err) = a2.porin(&["delete", "pod", "db", "-n", "team-a"]);
        if code == 0 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "{err}");
        std::thread::sleep(Duration::from_millis(200));
    }
    a2.ok(&["apply", "-f", &a2.write("added.yaml", &app_policy("added-while-away", "team-a", "app"))]);
    let rev = wait_status(&a2, 10, "a2 caught up", |v| v["cacheRevision"] == v["storeRevision"])["storeRevision"].as_u64().unwrap();
    etcd.ctl(&["compact", &rev.to_string()]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(status(&a1)["connected"], false);
    assert!(names(&a1, "pods").contains(&"db".to_string()), "a1 cannot have seen the delete yet");

    // 3. a1 reaches etcd again: reconnects with backoff, finds its revision compacted, relists, and synthesises
    //    the delete it missed. Its cache (what the policy engine uses), not just a live read, must show it.
    proxy.restore();
    let v = wait_status(&a1, 20, "a1 resyncs", |v| {
        v["connected"] == true && v["cacheRevision"].as_u64() >= Some(rev) && v["policyRevision"].as_u64() >= Some(rev)
    });
    assert_eq!(v["endpoints"], 1, "the deleted pod is gone from the policy model: {v:#}");
    assert_eq!(v["objects"], status(&a2)["objects"], "both caches hold the same objects");
    assert_eq!(v["health"], "ok");
    assert!(a1.log().contains("datastore watch interrupted"), "{}", a1.log());
    assert_eq!(a1.ok(&["apply", "-f", &f]), "networkpolicy.porin.io/during-outage created\n");

    // 4. A partition without compaction: the missed delete is replayed from the watch revision.
    proxy.cut();
    wait_status(&a1, 15, "a1 partitioned", |v| v["connected"] == false);
    // Served from a1's cache: the pod deleted in step 2 stays deleted there.
    assert_eq!(names(&a1, "pods"), ["web"]);
    a2.ok(&["delete", "pnp", "keep", "-n", "team-a"]);
    let rev = status(&a2)["storeRevision"].as_u64().unwrap();
    proxy.restore();
    wait_status(&a1, 20, "a1 replays", |v| v["connected"] == true && v["cacheRevision"].as_u64() >= Some(rev));
    assert!(!names(&a1, "pnp").contains(&"keep".to_string()));

    // 5. An outage during which nothing changes: a1 still leaves read-only mode when etcd is back.
    proxy.cut();
    wait_status(&a1, 15, "a1 partitioned again", |v| v["connected"] == false);
    proxy.restore();
    wait_status(&a1, 20, "a1 reconnects with nothing to replay", |v| v["connected"] == true);
    a1.ok(&["label", "pod", "web", "-n", "team-a", "after=outage"]);
    a1.ok(&["audit"]);
}

/// A tmpfs mounted for one test, unmounted (lazily, so a busy mount never sticks) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "porin-test-tmpfs"]).arg(dir).output().unwrap();
        assert!(out.status.success(), "mounting a tmpfs needs root: {}", String::from_utf8_lossy(&out.stderr));
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fill the filesystem holding `dir` (a file of zeros until ENOSPC); returns the filler's path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let one = [0u8; 1];
    while f.write_all(&one).is_ok() {}
    let _ = f.sync_all();
    p
}

#[test]
fn a_full_store_refuses_writes_clearly_and_keeps_serving_reads() {
    let tmp = tempfile::tempdir().unwrap();
    // Only the store directory is on the small filesystem (flows and the rest stay on the normal disk).
    let store_dir = tmp.path().join("data/store");
    let mnt = Tmpfs::mount(&store_dir, "4m");
    let mut a = Agent::start(tmp.path(), &["--dataplane", "none"]);
    a.ok(&["apply", "-f", &a.write("base.yaml", BASE)]);
    // Leave a little room, so some writes are acknowledged before the disk is full.
    let reserve = store_dir.join("reserve");
    std::fs::write(&reserve, vec![0u8; 1024 * 1024]).unwrap();
    let filler = fill(&store_dir);
    std::fs::remove_file(&reserve).unwrap();

    // Write until the store refuses; every answer is either "created" (committed) or a clear 507.
    let big = "x".repeat(8 * 1024);
    let mut acked = Vec::new();
    let mut refused = Vec::new();
    for i in 0..400 {
        let name = format!("p{i}");
        let doc = app_policy(&name, "team-a", "app").replace("metadata: {", &format!("metadata: {{annotations: {{pad: {big}}}, "));
        let (code, out, err) = a.porin(&["apply", "-f", &a.write("p.yaml", &doc)]);
        if code == 0 {
            assert_eq!(out, format!("networkpolicy.porin.io/{name} created\n"));
            acked.push(name);
        } else {
            refused.push((name, err));
            if refused.len() == 3 {
                break;
            }
        }
    }
    assert!(!refused.is_empty(), "the store never filled up ({} writes)", acked.len());
    let (_, err) = &refused[0];
    assert!(err.contains("InsufficientStorage") && err.contains(store_dir.to_str().unwrap()) && err.contains("No space left"), "{err}");
    // Later writes get the same cause (redb refuses writes after a failed commit until it is reopened).
    for (_, err) in &refused[1..] {
        assert!(err.contains("InsufficientStorage") && err.contains(store_dir.to_str().unwrap()) && err.contains("No space left"), "{err}");
    }
    eprintln!("{} writes acknowledged, then: {}", acked.len(), refused[0].1.trim());

    // Reads keep working, and show exactly what was acknowledged.
    let have = names(&a, "pnp");
    for n in &acked {
        assert!(have.contains(n), "acknowledged {n} is not served");
    }
    for (n, _) in &refused {
        assert!(!have.contains(n), "refused {n} is served");
    }
    assert!(a.ok(&["get", "pods", "-n", "team-a"]).contains("web"));
    let st = status(&a);
    assert!(st["synced"] == true, "{st:#}");

    // Space comes back; after a restart (kill -9) every acknowledged write is there, no refused one is, and the
    // store takes writes again.
    std::fs::remove_file(&filler).unwrap();
    a.crash_and_restart();
    let have = names(&a, "pnp");
    for n in &acked {
        assert!(have.contains(n), "acknowledged {n} lost");
    }
    for (n, _) in &refused {
        assert!(!have.contains(n), "refused {n} was committed after all");
    }
    a.ok(&["apply", "-f", &a.write("after.yaml", &app_policy("after", "team-a", "app"))]);
    drop(a);
    drop(mnt);
}

/// A stored object that does not decode is never dropped silently: the agent reports it (key and error) and
/// locks down what it may apply to — its namespace, or every endpoint for a cluster-scoped kind — until it is
/// fixed or deleted.
#[test]
fn an_undecodable_stored_object_locks_down_its_scope_until_fixed() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(etcd) = Etcd::start(tmp.path()) else { return };
    let a = Agent::start(tmp.path(), &["--datastore", "etcd", "--etcd-endpoints", &etcd.url, "--dataplane", "none"]);
    a.ok(&["apply", "-f", &a.write("base.yaml", BASE)]);
    wait_status(&a, 10, "healthy", |v| v["health"] == "ok" && v["endpoints"] == 2);

    // A namespaced policy whose stored JSON no longer fits its kind (as a bad migration or a stray writer
    // would leave it): team-a locks down, named in status and health.
    let key = "/porin/resources/porin.io/networkpolicies/team-a/platform-guard";
    etcd.ctl(&["put", key, r#"{"apiVersion":"porin.io/v1","kind":"NetworkPolicy","metadata":{"name":"platform-guard","namespace":"team-a"},"spec":{"tier":7}}"#]);
    let v = wait_status(&a, 10, "degraded by the bad object", |v| v["undecodable"].as_array().is_some_and(|u| !u.is_empty()));
    let h = v["health"].as_str().unwrap();
    assert!(h.starts_with("degraded") && h.contains("networkpolicies/team-a/platform-guard") && h.contains("namespace team-a"), "{h}");
    assert_eq!(v["undecodable"][0]["namespace"], "team-a", "{v:#}");
    assert!(v["undecodable"][0]["error"].as_str().unwrap().contains("tier"), "{v:#}");
    let table = a.ok(&["status"]);
    assert!(table.contains("Undecodable") && table.contains("platform-guard") && table.contains("namespace team-a locked down"), "{table}");
    // A scoped token may not overwrite what it cannot read.
    let scoped = a.ok(&["token", "create", "team-a", "--role", "scoped", "--namespace", "team-a", "--tier", "platform"]).trim().to_string();
    let fixed = "apiVersion: porin.io/v1\nkind: NetworkPolicy\nmetadata: {name: platform-guard, namespace: team-a}\nspec: {tier: platform, order: 10, selector: all(), ingress: [{action: Pass}]}\n";
    let (code, _, err) = a.porin_as(Some(&scoped), &["apply", "-f", &a.write("fixed.yaml", fixed)]);
    assert!(code != 0 && err.contains("Forbidden") && err.contains("does not decode"), "{err}");
    // An admin's fix clears it.
    a.ok(&["apply", "-f", &a.write("fixed.yaml", fixed)]);
    wait_status(&a, 10, "healthy again after the fix", |v| v["health"] == "ok" && v["undecodable"].as_array().is_some_and(|u| u.is_empty()));

    // Cluster-scoped garbage: every endpoint; deleting it clears it.
    etcd.ctl(&["put", "/porin/resources/porin.io/globalnetworkpolicies/_/g", "\u{1}not json"]);
    let v = wait_status(&a, 10, "degraded by the bad global object", |v| v["undecodable"].as_array().is_some_and(|u| !u.is_empty()));
    assert!(v["undecodable"][0]["namespace"].is_null() && v["health"].as_str().unwrap().contains("every endpoint denies"), "{v:#}");
    a.ok(&["delete", "gnp", "g"]);
    wait_status(&a, 10, "healthy again after the delete", |v| v["health"] == "ok");
}
