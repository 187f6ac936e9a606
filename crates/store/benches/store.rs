//! Store benchmarks: watch latency (one write until every one of N watchers has the event) and
//! put throughput, for the embedded store (real fsync, in a temp dir) and for etcd (a local
//! single-member etcd started like the tests' one).
//!
//! `cargo bench -p porin-store` prints a table. The etcd half needs `etcd` on PATH (skipped with
//! a note otherwise, or when `PORIN_SKIP_ETCD=1`). Goal: a change seen by every watcher < 10 ms.

#[path = "../tests/common/etcd.rs"]
mod etcd;

use std::time::{Duration, Instant};

use futures::StreamExt;
use porin_store::{AnyStore, EmbeddedOptions, EmbeddedStore, EtcdStore, Op, Store};

const LATENCY_WRITES: usize = 200;
const SEQ_PUTS: usize = 500;
const CONCURRENT_WRITERS: usize = 16;
const PUTS_PER_WRITER: usize = 50;

fn main() {
    // `cargo test --benches` runs this binary without `--bench`: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let embedded = AnyStore::Embedded(EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap());
        run("embedded", &embedded).await;
        drop(embedded);

        let etcd_found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("etcd").is_file()));
        if etcd::skip_requested() || !etcd_found {
            println!("etcd: skipped (etcd not on PATH or PORIN_SKIP_ETCD=1)");
            return;
        }
        let server = etcd::EtcdServer::start().expect("etcd");
        let store = AnyStore::Etcd(EtcdStore::connect(server.config()).await.unwrap());
        run("etcd", &store).await;
    });
}

async fn run(name: &str, store: &AnyStore) {
    println!("== {name} ==");
    for watchers in [1, 4, 16] {
        let (all, ack) = watch_latency(store, watchers).await;
        println!(
            "watch latency, {watchers:>2} watcher(s): write→all notified p50 {} p99 {} max {} | put ack p50 {}",
            ms(pct(&all, 50)),
            ms(pct(&all, 99)),
            ms(*all.last().unwrap()),
            ms(pct(&ack, 50)),
        );
    }
    let t = Instant::now();
    for i in 0..SEQ_PUTS {
        store.put(&format!("bench/seq/{i}"), vec![7; 256], None).await.unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    println!("put throughput, 1 writer: {:.0} puts/s ({SEQ_PUTS} puts of 256 B)", SEQ_PUTS as f64 / secs);

    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..CONCURRENT_WRITERS {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..PUTS_PER_WRITER {
                s.put(&format!("bench/conc/{w}/{i}"), vec![7; 256], None).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = CONCURRENT_WRITERS * PUTS_PER_WRITER;
    println!(
        "put throughput, {CONCURRENT_WRITERS} writers: {:.0} puts/s ({n} puts of 256 B)",
        n as f64 / t.elapsed().as_secs_f64()
    );

    let ops: Vec<Op> = (0..100).map(|i| Op::put(format!("bench/apply/{i}"), vec![7; 1024])).collect();
    let t = Instant::now();
    store.txn(vec![], ops).await.unwrap();
    println!("one 100-document transaction (1 KiB each): {}", ms(t.elapsed()));
}

/// Per write: time from calling `put` until all `watchers` have the event, and the put's own
/// latency. Sorted.
async fn watch_latency(store: &AnyStore, watchers: usize) -> (Vec<Duration>, Vec<Duration>) {
    let prefix = format!("bench/lat{watchers}/");
    let from = store.revision().await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let mut handles = Vec::new();
    for _ in 0..watchers {
        let mut w = store.watch(&prefix, from).await.unwrap();
        let tx = tx.clone();
        handles.push(tokio::spawn(async move {
            while let Some(Ok(ev)) = w.next().await {
                if tx.send((ev.revision(), Instant::now())).is_err() {
                    break;
                }
            }
        }));
    }
    let mut all = Vec::with_capacity(LATENCY_WRITES);
    let mut ack = Vec::with_capacity(LATENCY_WRITES);
    for i in 0..LATENCY_WRITES {
        let t0 = Instant::now();
        let rev = store.put(&format!("{prefix}{}", i % 10), vec![1; 256], None).await.unwrap();
        ack.push(t0.elapsed());
        let mut last = t0;
        for _ in 0..watchers {
            let (r, at) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
            assert_eq!(r, rev);
            last = last.max(at);
        }
        all.push(last - t0);
    }
    for h in handles {
        h.abort();
    }
    all.sort();
    ack.sort();
    (all, ack)
}

fn pct(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
