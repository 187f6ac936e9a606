//! The agent: one engine task owns the resource cache (a [`Reflector`] over `resources/`), keeps the policy
//! model up to date from each batch of changes ([`Model`]: only the changed objects are decoded and
//! converted; equal to [`porin_policy::Cluster::build`] of every object), and publishes two things over
//! `tokio::sync::watch`:
//!
//! * [`Snapshot`]: the cache, its revision and connectivity — the API serves reads from it while the datastore
//!   is unreachable;
//! * [`PolicySnapshot`]: the "policy revision" — the dataplane's input. **Seam for the dataplane:** implement
//!   [`PolicyConsumer`] and hand it to [`run_consumer`]; it is called with every new policy revision, in order,
//!   latest-wins (a slow consumer skips intermediate revisions, never sees them out of order).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;
use porin_policy::Cluster;
use porin_store::{AnyStore, KeyValue, Reflector, ReflectorOptions, SyncEvent};
use tokio::sync::watch;

use crate::registry::keys;
pub use crate::registry::Undecodable;
#[cfg(test)]
use crate::registry::decode_all;

/// What the API reads: the reflected cache and the current policy summary.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub revision: u64,
    pub synced: bool,
    pub connected: bool,
    /// Epoch seconds when the datastore was lost (None while connected).
    pub disconnected_since: Option<i64>,
    pub last_error: Option<String>,
    pub items: Arc<BTreeMap<String, KeyValue>>,
    pub policy: Arc<PolicySummary>,
}

#[derive(Debug, Clone, Default)]
pub struct PolicySummary {
    pub revision: u64,
    pub endpoints: usize,
    pub policies: usize,
    /// Epoch seconds of the last recompute.
    pub built_at: Option<u64>,
    pub build_millis: f64,
    pub error: Option<String>,
    /// Stored objects that do not decode (their endpoints are locked down: see [`Lockdown`]).
    pub undecodable: Vec<Undecodable>,
}

/// Endpoints that must deny everything because a stored object that may apply to them does not decode: had
/// it been an isolating policy, leaving it out would fail open. A namespaced object locks down its
/// namespace; a cluster-scoped one (or a key whose kind or namespace is unknown) every endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lockdown {
    pub all: bool,
    pub namespaces: std::collections::BTreeSet<String>,
}

impl Lockdown {
    pub fn from_undecodable(u: &[Undecodable]) -> Lockdown {
        let mut l = Lockdown::default();
        for x in u {
            match &x.namespace {
                Some(ns) => {
                    l.namespaces.insert(ns.clone());
                }
                None => l.all = true,
            }
        }
        l
    }
    pub fn is_empty(&self) -> bool {
        !self.all && self.namespaces.is_empty()
    }
    /// Does the lockdown cover endpoint `namespace/name`?
    pub fn covers(&self, endpoint: &str) -> bool {
        self.all || endpoint.split_once('/').is_some_and(|(ns, _)| self.namespaces.contains(ns))
    }
}

/// One computed policy model, as of store revision `revision`.
#[derive(Debug, Clone, Default)]
pub struct PolicySnapshot {
    pub revision: u64,
    pub cluster: Arc<Cluster>,
    /// Every WorkloadEndpoint: what binds pods to interfaces (the dataplane keeps its node's).
    pub bindings: Arc<Vec<crate::reconciler::Binding>>,
    /// When the agent saw the change this revision carries (programming latency starts here).
    pub changed_at: Option<Instant>,
    /// When this model was ready (see [`crate::latency`]).
    pub built_at: Option<Instant>,
    /// Endpoints the dataplane must make deny everything (stored objects that do not decode).
    pub lockdown: Arc<Lockdown>,
}

/// The dataplane seam: receives every policy revision the engine publishes.
pub trait PolicyConsumer: Send + 'static {
    fn apply(&mut self, snapshot: &PolicySnapshot);
}

/// Logs each revision; the default until the dataplane plugs in.
pub struct LogConsumer;

impl PolicyConsumer for LogConsumer {
    fn apply(&mut self, s: &PolicySnapshot) {
        tracing::info!(revision = s.revision, endpoints = s.cluster.endpoints.len(), policies = s.cluster.policies.len(), "policy revision");
    }
}

/// Feed `consumer` every new policy revision until the sender goes away.
pub async fn run_consumer(mut rx: watch::Receiver<Arc<PolicySnapshot>>, mut consumer: impl PolicyConsumer) {
    while rx.changed().await.is_ok() {
        let s = rx.borrow_and_update().clone();
        consumer.apply(&s);
    }
}


/// What the engine keeps of one stored object: its part of the policy model, converted once per revision of
/// its value (the decoded resource itself is dropped).
#[derive(Debug, Clone)]
enum Kept {
    Part(porin_policy::ir::ModelPart),
    /// A WorkloadEndpoint: what it binds.
    Binding(crate::reconciler::Binding),
    /// Decodes, but the model refuses it (the whole revision is refused, the previous policy kept).
    Refused { netset: bool, error: porin_policy::EngineError },
    Undecodable(Undecodable),
}

/// The policy model, kept up to date incrementally: each stored object is decoded and converted when its
/// value changes (by key and `mod_revision`) and only then; a batch of changes touches only its keys. The
/// model of a revision is assembled from the kept parts in key order, so it equals [`Cluster::build`] of
/// every stored object decoded afresh (tested below against random batches).
#[derive(Debug, Default)]
pub struct Model {
    by_key: BTreeMap<String, (u64, Kept)>,
    /// The endpoint side (namespaces, service accounts, endpoints) of the last model assembled, while no part
    /// it depends on has changed since: the next model shares it instead of assembling it again.
    endpoint_side: Option<Cluster>,
}

/// Does a change of this kept part change the endpoint side of the model (see [`Cluster::assemble_reusing`])?
fn on_endpoint_side(k: &Kept) -> bool {
    use porin_policy::ir::ModelPart as P;
    match k {
        Kept::Part(P::Namespace { .. } | P::ServiceAccount { .. } | P::Endpoint(_) | P::Quarantine { .. } | P::Honeypod { .. }) => true,
        Kept::Part(_) | Kept::Binding(_) | Kept::Undecodable(_) => false,
        // A refused object fails the whole model; it never reaches an assembly.
        Kept::Refused { .. } => false,
    }
}

impl Model {
    /// Apply one changed key: its new value, or None when it was deleted.
    pub fn apply(&mut self, key: &str, value: Option<&KeyValue>) {
        let Some(kv) = value else {
            if self.by_key.remove(key).is_some_and(|(_, old)| on_endpoint_side(&old)) {
                self.endpoint_side = None;
            }
            return;
        };
        if self.by_key.get(key).is_some_and(|(rev, _)| *rev == kv.mod_revision) {
            return;
        }
        let kept = match crate::registry::decode_kv(kv) {
            Err(u) => Kept::Undecodable(u),
            Ok(r @ porin_model::Resource::WorkloadEndpoint(_)) => {
                Kept::Binding(crate::reconciler::bindings([&r]).pop().expect("one WorkloadEndpoint"))
            }
            Ok(r) => match porin_policy::ir::ModelPart::of(&r) {
                Ok(p) => Kept::Part(p),
                Err(error) => Kept::Refused {
                    netset: matches!(r, porin_model::Resource::NetworkSet(_) | porin_model::Resource::GlobalNetworkSet(_)),
                    error,
                },
            },
        };
        if on_endpoint_side(&kept) {
            self.endpoint_side = None;
        }
        if let Some((_, old)) = self.by_key.insert(kv.key.clone(), (kv.mod_revision, kept))
            && on_endpoint_side(&old)
        {
            self.endpoint_side = None;
        }
    }

    /// Make the model equal to `items` (after a listing): every key is looked at.
    pub fn sync(&mut self, items: &BTreeMap<String, KeyValue>) {
        self.endpoint_side = None;
        self.by_key.retain(|k, _| items.contains_key(k));
        for (k, kv) in items {
            self.apply(k, Some(kv));
        }
    }

    /// Stored objects that do not decode, in key order.
    pub fn undecodable(&self) -> Vec<Undecodable> {
        self.by_key.values().filter_map(|(_, k)| if let Kept::Undecodable(u) = k { Some(u.clone()) } else { None }).collect()
    }

    /// Every WorkloadEndpoint's binding, in key order.
    pub fn bindings(&self) -> Vec<crate::reconciler::Binding> {
        self.by_key.values().filter_map(|(_, k)| if let Kept::Binding(b) = k { Some(b.clone()) } else { None }).collect()
    }

    /// The model of the current objects: [`Cluster::build`] of them, from the kept parts.
    pub fn cluster(&mut self) -> Result<Cluster, porin_policy::EngineError> {
        // The error Cluster::build reports first: a network set's, then any other in key order.
        let refused = |want_netset: bool| {
            self.by_key.values().find_map(|(_, k)| match k {
                Kept::Refused { netset, error } if *netset == want_netset => Some(error.clone()),
                _ => None,
            })
        };
        if let Some(e) = refused(true).or_else(|| refused(false)) {
            return Err(e);
        }
        let c = Cluster::assemble_reusing(
            self.by_key.values().filter_map(|(_, k)| if let Kept::Part(p) = k { Some(p) } else { None }),
            self.endpoint_side.as_ref(),
        )?;
        self.endpoint_side = Some(Cluster {
            namespaces: c.namespaces.clone(),
            service_accounts: c.service_accounts.clone(),
            endpoints: c.endpoints.clone(),
            ..Cluster::default()
        });
        Ok(c)
    }
}

/// The engine task. `build` = false runs only the cache (for `porin serve`).
pub async fn run_engine(
    store: AnyStore,
    build: bool,
    snap_tx: watch::Sender<Arc<Snapshot>>,
    policy_tx: watch::Sender<Arc<PolicySnapshot>>,
) {
    let mut refl = Reflector::new(store, keys::RESOURCES, ReflectorOptions::default());
    let mut snap = Snapshot::default();
    let mut summary = PolicySummary::default();
    let mut model = Model::default();
    loop {
        let first = refl.next().await;
        let changed_at = Instant::now();
        let mut dirty = false;
        // Keys this batch changed; a listing (InSync) makes the model look at every key.
        let mut changed: Vec<String> = Vec::new();
        let mut full = false;
        let mut handle = |ev: SyncEvent, snap: &mut Snapshot| match ev {
            SyncEvent::Put { kv, .. } => {
                dirty = true;
                changed.push(kv.key);
            }
            SyncEvent::Delete { key, .. } => {
                dirty = true;
                changed.push(key);
            }
            SyncEvent::InSync { .. } => {
                snap.connected = true;
                snap.disconnected_since = None;
                snap.last_error = None;
                dirty = true;
                full = true;
            }
            // The watch is back: writes are accepted again, changes made meanwhile follow as events (or, if
            // that history is compacted, as a relist that synthesises the deletes).
            SyncEvent::Reconnected { .. } => {
                snap.connected = true;
                snap.disconnected_since = None;
                snap.last_error = None;
            }
            SyncEvent::Disconnected { error, .. } => {
                snap.connected = false;
                snap.disconnected_since.get_or_insert_with(crate::timefmt::now_secs);
                snap.last_error = Some(crate::error_chain(&error));
            }
        };
        handle(first, &mut snap);
        // Drain everything already available, so one transaction is one recompute.
        while let Some(ev) = refl.next().now_or_never() {
            handle(ev, &mut snap);
        }
        // Only the agent builds the model (`porin serve` runs the cache alone).
        if build && full {
            model.sync(refl.items());
        } else if build {
            for k in &changed {
                model.apply(k, refl.items().get(k));
            }
        }
        snap.revision = refl.revision();
        snap.synced = refl.is_synced();
        // The policy revision first: the copy of the stored objects the API's snapshot takes below is not on
        // the dataplane's path.
        if dirty && build && snap.synced {
            let t0 = Instant::now();
            let undecodable = model.undecodable();
            for u in &undecodable {
                tracing::error!(key = %u.key, error = %u.error, namespace = ?u.namespace, "stored object does not decode: its endpoints are locked down");
            }
            match model.cluster() {
                Ok(cluster) => {
                    summary = PolicySummary {
                        revision: snap.revision,
                        endpoints: cluster.endpoints.len(),
                        policies: cluster.policies.len(),
                        built_at: Some(crate::timefmt::now_secs() as u64),
                        build_millis: t0.elapsed().as_secs_f64() * 1e3,
                        error: None,
                        undecodable: undecodable.clone(),
                    };
                    policy_tx.send_replace(Arc::new(PolicySnapshot {
                        revision: snap.revision,
                        cluster: Arc::new(cluster),
                        bindings: Arc::new(model.bindings()),
                        changed_at: Some(changed_at),
                        built_at: Some(Instant::now()),
                        lockdown: Arc::new(Lockdown::from_undecodable(&undecodable)),
                    }));
                }
                Err(e) => {
                    tracing::warn!(error = %e, revision = snap.revision, "policy recompute failed; keeping the previous policy");
                    summary.error = Some(e.to_string());
                    summary.undecodable = undecodable;
                }
            }
        }
        if dirty {
            snap.items = Arc::new(refl.items().clone());
        }
        snap.policy = Arc::new(summary.clone());
        snap_tx.send_replace(Arc::new(snap.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str) -> (String, KeyValue) {
        (key.to_string(), KeyValue { key: key.into(), value: value.as_bytes().to_vec(), create_revision: 1, mod_revision: 1 })
    }

    #[test]
    fn undecodable_objects_lock_down_their_scope() {
        let items: BTreeMap<String, KeyValue> = [
            kv("resources/porin.io/networkpolicies/shop/iso", "{\"apiVersion\": \"porin.io/v1\", \"kind\": \"NetworkPolicy\", \"metadata\": {\"name\": \"iso\", \"namespace\": \"shop\"}, \"spec\": {\"tier\": 7}}"),
            kv("resources/core/pods/shop/ok", "{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {\"name\": \"ok\", \"namespace\": \"shop\"}}"),
        ]
        .into_iter()
        .collect();
        let (ok, bad) = decode_all(&items);
        assert_eq!(ok.len(), 1);
        assert_eq!(bad.len(), 1);
        assert!(bad[0].error.contains("tier"), "{bad:?}");
        let l = Lockdown::from_undecodable(&bad);
        assert!(l.covers("shop/ok") && !l.covers("ops/db") && !l.all);
        // Cluster-scoped, or a key of an unknown kind: every endpoint.
        let mut items = items;
        items.extend([kv("resources/porin.io/globalnetworkpolicies/_/g", "not json")]);
        let (_, bad) = decode_all(&items);
        assert!(Lockdown::from_undecodable(&bad).covers("ops/db"));
        let items: BTreeMap<String, KeyValue> = [kv("resources/example.com/gadgets/shop/g", "{}")].into_iter().collect();
        let (_, bad) = decode_all(&items);
        assert!(Lockdown::from_undecodable(&bad).all, "{bad:?}");
    }

    /// The model as Cluster::build of every stored object decoded afresh sees it.
    fn from_scratch(items: &BTreeMap<String, KeyValue>) -> (Result<Cluster, porin_policy::EngineError>, Vec<crate::reconciler::Binding>, Vec<Undecodable>) {
        let (ok, bad) = decode_all(items);
        (Cluster::build(ok.iter()), crate::reconciler::bindings(ok.iter()), bad)
    }

    fn same_model(a: &Result<Cluster, porin_policy::EngineError>, b: &Result<Cluster, porin_policy::EngineError>) -> bool {
        match (a, b) {
            (Ok(a), Ok(b)) => {
                a.namespaces == b.namespaces
                    && a.endpoints == b.endpoints
                    && a.net_sets == b.net_sets
                    && a.default_allow == b.default_allow
                    && a.policies == b.policies
                    && a.tiers == b.tiers
                    && a.pending_policies == b.pending_policies
                    && a.pending_tiers == b.pending_tiers
                    && a.has_staged == b.has_staged
            }
            (Err(a), Err(b)) => a == b,
            _ => false,
        }
    }

    /// One random stored object under one of a few keys per kind (so puts replace and deletes hit).
    fn random_object(r: &mut impl FnMut(u64) -> u64) -> (String, String) {
        let app = ["x", "y", "z"][r(3) as usize];
        let ns = ["a", "b"][r(2) as usize];
        let i = r(4);
        match r(11) {
            0 | 1 => (
                format!("resources/core/pods/{ns}/p{i}"),
                format!(
                    "{{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {{\"name\": \"p{i}\", \"namespace\": \"{ns}\", \"labels\": {{\"app\": \"{app}\"}}}}, \
                     \"spec\": {{\"containers\": [{{\"name\": \"c\", \"ports\": [{{\"name\": \"web\", \"containerPort\": {}}}]}}]}}, \
                     \"status\": {{\"podIP\": \"10.0.{}.{i}\"}}}}",
                    8000 + r(3),
                    r(2)
                ),
            ),
            2 => (
                format!("resources/core/namespaces/_/{ns}"),
                format!("{{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {{\"name\": \"{ns}\", \"labels\": {{\"env\": \"{app}\"}}}}}}"),
            ),
            3 | 4 => {
                let tier = ["default", "t1"][r(2) as usize];
                (
                    format!("resources/porin.io/networkpolicies/{ns}/np{i}"),
                    format!(
                        "{{\"apiVersion\": \"porin.io/v1\", \"kind\": \"NetworkPolicy\", \"metadata\": {{\"name\": \"np{i}\", \"namespace\": \"{ns}\"}}, \
                         \"spec\": {{\"tier\": \"{tier}\", \"order\": {}, \"selector\": \"app == '{app}'\", \"types\": [\"Ingress\"], \
                         \"ingress\": [{{\"action\": \"Allow\", \"protocol\": \"TCP\", \"source\": {{\"selector\": \"app == 'y'\"}}, \"destination\": {{\"ports\": [{}]}}}}]}}}}",
                        r(3) * 10,
                        80 + r(3)
                    ),
                )
            }
            5 => (
                format!("resources/networking.k8s.io/networkpolicies/{ns}/k{i}"),
                format!(
                    "{{\"apiVersion\": \"networking.k8s.io/v1\", \"kind\": \"NetworkPolicy\", \"metadata\": {{\"name\": \"k{i}\", \"namespace\": \"{ns}\"}}, \
                     \"spec\": {{\"podSelector\": {{\"matchLabels\": {{\"app\": \"{app}\"}}}}, \"policyTypes\": [\"Ingress\"], \
                     \"ingress\": [{{\"from\": [{{\"ipBlock\": {{\"cidr\": \"10.0.{}.0/24\"}}}}]}}]}}}}",
                    r(2)
                ),
            ),
            6 => (
                "resources/porin.io/tiers/_/t1".to_string(),
                format!("{{\"apiVersion\": \"porin.io/v1\", \"kind\": \"Tier\", \"metadata\": {{\"name\": \"t1\"}}, \"spec\": {{\"order\": {}}}}}", r(3) * 100),
            ),
            7 => {
                let action = ["Set", "Delete"][r(2) as usize];
                (
                    format!("resources/porin.io/stagednetworkpolicies/{ns}/np{i}"),
                    format!(
                        "{{\"apiVersion\": \"porin.io/v1\", \"kind\": \"StagedNetworkPolicy\", \"metadata\": {{\"name\": \"np{i}\", \"namespace\": \"{ns}\"}}, \
                         \"spec\": {{\"stagedAction\": \"{action}\", \"selector\": \"app == '{app}'\"}}}}"
                    ),
                )
            }
            8 => (
                format!("resources/porin.io/globalnetworksets/_/s{}", r(2)),
                format!(
                    "{{\"apiVersion\": \"porin.io/v1\", \"kind\": \"GlobalNetworkSet\", \"metadata\": {{\"name\": \"s\", \"labels\": {{\"app\": \"{app}\"}}}}, \
                     \"spec\": {{\"nets\": [\"{}\"]}}}}",
                    ["10.9.0.0/16", "10.8.1.0/24", "not-a-net"][r(3) as usize]
                ),
            ),
            9 => (
                format!("resources/porin.io/workloadendpoints/{ns}/w{i}"),
                format!(
                    "{{\"apiVersion\": \"porin.io/v1\", \"kind\": \"WorkloadEndpoint\", \"metadata\": {{\"name\": \"w{i}\", \"namespace\": \"{ns}\"}}, \
                     \"spec\": {{\"node\": \"n{}\", \"pod\": \"p{i}\", \"interfaceName\": \"porin{i}\", \"ipNetworks\": [\"10.0.0.{i}/32\"]}}}}",
                    r(2)
                ),
            ),
            _ => (format!("resources/core/pods/{ns}/p{i}"), "not json".to_string()),
        }
    }

    /// Incremental == from scratch: random batches of puts (new, replaced, undecodable, refused by the model)
    /// and deletes, applied key by key as the engine does, give the model, bindings and undecodable list that
    /// decoding and building every stored object afresh gives. A listing (sync) in between changes nothing.
    #[test]
    fn the_incremental_model_equals_a_build_from_scratch() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut r = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut items: BTreeMap<String, KeyValue> = BTreeMap::new();
        let mut model = Model::default();
        let mut rev = 1;
        let (mut errors, mut oks, mut reused) = (0, 0, 0);
        for batch in 0..400 {
            let mut changed = Vec::new();
            for _ in 0..=r(4) {
                rev += 1;
                if r(4) == 0 && !items.is_empty() {
                    let k = items.keys().nth(r(items.len() as u64) as usize).expect("a key").clone();
                    items.remove(&k);
                    changed.push(k);
                } else {
                    let (k, v) = random_object(&mut r);
                    items.insert(k.clone(), KeyValue { key: k.clone(), value: v.into_bytes(), create_revision: 1, mod_revision: rev });
                    changed.push(k);
                }
            }
            if batch % 50 == 49 {
                model.sync(&items);
            } else {
                for k in &changed {
                    model.apply(k, items.get(k));
                }
            }
            let (want, bindings, bad) = from_scratch(&items);
            // Batches that changed no pod, namespace, service account, quarantine or decoy share the endpoint
            // side of the previous model instead of assembling it.
            reused += usize::from(model.endpoint_side.is_some());
            let got = model.cluster();
            assert!(same_model(&got, &want), "batch {batch}: incremental {got:?}\nfrom scratch {want:?}");
            assert_eq!(model.bindings(), bindings, "batch {batch}");
            assert_eq!(model.undecodable(), bad, "batch {batch}");
            if want.is_ok() { oks += 1 } else { errors += 1 }
        }
        // Both outcomes were exercised.
        assert!(oks > 50 && errors > 10, "ok {oks}, refused {errors}");
        assert!(reused > 50, "the endpoint side was shared {reused} times");
    }
}

