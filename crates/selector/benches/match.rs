//! Matching throughput. `cargo bench -p porin-selector`
//!
//! The policy engine matches every pod against every policy selector, so the
//! number that matters is the cost of one `matches` call on a typical
//! selector against a typical label map.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use porin_selector::Selector;

fn pod_labels(i: usize) -> BTreeMap<String, String> {
    let apps = ["web", "api", "db", "cache", "worker"];
    let tiers = ["frontend", "backend", "data"];
    let mut m = BTreeMap::new();
    m.insert("app".to_owned(), apps[i % apps.len()].to_owned());
    m.insert("tier".to_owned(), tiers[i % tiers.len()].to_owned());
    m.insert(
        "env".to_owned(),
        if i.is_multiple_of(2) { "prod" } else { "dev" }.to_owned(),
    );
    m.insert(
        "pod-template-hash".to_owned(),
        format!("{:08x}", i * 2_654_435_761),
    );
    m.insert(
        "app.kubernetes.io/name".to_owned(),
        format!("svc-{}", i % 50),
    );
    m.insert("team".to_owned(), format!("team-{}", i % 7));
    if i.is_multiple_of(10) {
        m.insert("quarantine".to_owned(), "true".to_owned());
    }
    m
}

const TYPICAL: &str = r#"app == "web" && tier in {"frontend", "backend"} && !has(quarantine)"#;

fn bench(c: &mut Criterion) {
    let sel = Selector::parse(TYPICAL).unwrap();
    let pods: Vec<_> = (0..1000).map(pod_labels).collect();

    let mut g = c.benchmark_group("match");
    g.throughput(Throughput::Elements(pods.len() as u64));
    g.bench_function("typical_3_term/compiled", |b| {
        b.iter(|| pods.iter().filter(|p| sel.matches(black_box(*p))).count())
    });
    g.bench_function("typical_3_term/reference_tree", |b| {
        b.iter(|| {
            pods.iter()
                .filter(|p| sel.expr().matches(black_box(*p)))
                .count()
        })
    });
    g.finish();

    // 1k pods x 100 varied selectors: a slice of the 10k x 1k policy matrix.
    let sels: Vec<Selector> = (0..100)
        .map(|i| {
            let s = match i % 4 {
                0 => format!(r#"app == "web" && team == "team-{}""#, i % 7),
                1 => format!(
                    r#"app.kubernetes.io/name in {{"svc-{}", "svc-{}"}} && env != "dev""#,
                    i % 50,
                    (i + 1) % 50
                ),
                2 => TYPICAL.to_owned(),
                _ => format!(
                    r#"(tier == "data" || has(quarantine)) && team not in {{"team-{}"}}"#,
                    i % 7
                ),
            };
            Selector::parse(&s).unwrap()
        })
        .collect();
    let mut g = c.benchmark_group("matrix");
    g.throughput(Throughput::Elements((pods.len() * sels.len()) as u64));
    g.sample_size(20);
    g.bench_function("1k_pods_x_100_selectors", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for s in &sels {
                for p in &pods {
                    n += usize::from(s.matches(black_box(p)));
                }
            }
            n
        })
    });
    g.finish();

    c.bench_function("parse/typical_3_term", |b| {
        b.iter(|| Selector::parse(black_box(TYPICAL)).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
