//! The etcd v3 backend (tested against etcd 3.4).
//!
//! Every key is stored under [`EtcdConfig::root`] (default `/porin/`), so Porin can share an etcd
//! cluster. Revisions are etcd's own: `mod_revision` compares map to etcd transaction compares,
//! and watches start at `after + 1`.
//!
//! Connections are lazy and reconnect by themselves: [`EtcdStore::connect`] succeeds while etcd
//! is down, and every request made while it is unreachable fails within
//! [`EtcdConfig::request_timeout`] with [`StoreError::Unavailable`] (writes are never queued).
//! Watches do not reconnect silently; their stream ends with `Unavailable` and the caller watches
//! again from the last revision it saw — [`Reflector`](crate::Reflector) does this with backoff.
//!
//! etcd refuses transactions with more than `--max-txn-ops` operations (default 128); set
//! [`EtcdConfig::max_txn_ops`] to the server's value so oversized transactions fail up front.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, CompactionOptions, ConnectOptions, DeleteOptions, EventType,
    GetOptions, KvClient, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchClient, WatchOptions,
};
use futures::stream;

use crate::error::{Result, StoreError, UnavailableCause};
use crate::store::Store;
use crate::types::{
    Condition, ConditionFailure, Deleted, KeyValue, Op, TxnResult, WatchEvent, WatchStream,
    validate_key, validate_txn,
};

/// Largest gRPC message accepted from etcd (what etcd's Go client allows: 2 GiB - 1).
const MAX_RECV_BYTES: usize = i32::MAX as usize;

/// Keys per page when listing, so large prefixes stay under gRPC's message size limit.
const LIST_PAGE: i64 = 500;

// gRPC status codes (the numbers are fixed by the gRPC spec).
const GRPC_CANCELLED: i32 = 1;
const GRPC_UNKNOWN: i32 = 2;
const GRPC_DEADLINE_EXCEEDED: i32 = 4;
const GRPC_UNAVAILABLE: i32 = 14;

/// How to reach etcd.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// Client URLs, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Prefix prepended to every key (default `/porin/`); may be empty.
    pub root: String,
    /// Deadline for each request (a watch only for its creation). Default 5 s.
    pub request_timeout: Duration,
    /// Deadline for establishing a connection. Default 2 s.
    pub connect_timeout: Duration,
    /// The server's `--max-txn-ops` (etcd's default is 128). Larger transactions fail with
    /// [`StoreError::TooManyOps`] before being sent.
    pub max_txn_ops: usize,
    /// TLS to etcd (`https://` endpoints): the CA that signed etcd's certificate and, for etcd's
    /// `--client-cert-auth`, this client's certificate and key. None: plain HTTP.
    pub tls: Option<EtcdTls>,
}

/// PEM material for TLS to etcd.
#[derive(Clone)]
pub struct EtcdTls {
    /// CA certificate(s) that etcd's server certificate must chain to.
    pub ca: Vec<u8>,
    /// Client certificate and key (both or neither).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key never reaches a log.
        f.debug_struct("EtcdTls").field("client_identity", &self.identity.is_some()).finish_non_exhaustive()
    }
}

impl EtcdConfig {
    /// Defaults for the given endpoints.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            root: "/porin/".to_owned(),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            max_txn_ops: 128,
            tls: None,
        }
    }

    /// Sets [`tls`](Self::tls).
    pub fn with_tls(mut self, tls: EtcdTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets [`root`](Self::root).
    pub fn with_root(mut self, root: impl Into<String>) -> Self {
        self.root = root.into();
        self
    }

    /// Sets [`max_txn_ops`](Self::max_txn_ops).
    pub fn with_max_txn_ops(mut self, max: usize) -> Self {
        self.max_txn_ops = max;
        self
    }

    /// Sets [`request_timeout`](Self::request_timeout).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
}

/// The etcd backend. Cheap to clone (clones share one connection).
#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
}

struct Inner {
    kv: KvClient,
    watch: WatchClient,
    cfg: EtcdConfig,
    /// The endpoints, comma-separated, for error messages.
    endpoints: String,
}


impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.inner.endpoints)
            .field("root", &self.inner.cfg.root)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Creates a client. Does not wait for etcd to be reachable.
    pub async fn connect(cfg: EtcdConfig) -> Result<Self> {
        let endpoints = cfg.endpoints.join(",");
        let opts = ConnectOptions::new()
            .with_connect_timeout(cfg.connect_timeout)
            .with_timeout(cfg.request_timeout)
            // HTTP/2 pings detect a dead peer under a long-lived watch. Not while idle: etcd
            // answers pings without an open stream with GOAWAY (too_many_pings).
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_require_leader(true);
        let opts = match &cfg.tls {
            None => opts,
            Some(t) => {
                let mut tls = etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(&t.ca));
                if let Some((cert, key)) = &t.identity {
                    tls = tls.identity(etcd_client::Identity::from_pem(cert, key));
                }
                opts.with_tls(tls)
            }
        };
        let client = Client::connect(&cfg.endpoints, Some(opts))
            .await
            .map_err(|e| classify(&endpoints, e))?;
        // tonic's default 4 MiB receive limit is far below etcd's send limit: a watcher catching
        // up gets up to 1000 revisions in one response, and would fail on it forever.
        let kv = client.kv_client().max_decoding_message_size(MAX_RECV_BYTES);
        let watch = client.watch_client().max_decoding_message_size(MAX_RECV_BYTES);
        Ok(Self { inner: Arc::new(Inner { kv, watch, cfg, endpoints }) })
    }

    /// The configuration.
    pub fn config(&self) -> &EtcdConfig {
        &self.inner.cfg
    }

    /// Compacts etcd's history before `revision` (for the whole cluster, not just Porin's keys)
    /// and waits until it is applied. Compacting an already compacted revision is not an error.
    pub async fn compact(&self, revision: u64) -> Result<()> {
        let mut c = self.inner.kv.clone();
        let opts = CompactionOptions::new().with_physical();
        match self.call(c.compact(rev_i64(revision), Some(opts))).await {
            Ok(_) => Ok(()),
            Err(StoreError::Etcd { source: etcd_client::Error::GRpcStatus(s) })
                if s.message().contains("required revision has been compacted") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{}", self.inner.cfg.root, key)
    }

    /// Runs one request with the configured deadline, mapping errors.
    async fn call<T>(
        &self,
        fut: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.inner.cfg.request_timeout, fut).await {
            Ok(r) => r.map_err(|e| classify(&self.inner.endpoints, e)),
            Err(_) => Err(StoreError::Unavailable {
                endpoints: self.inner.endpoints.clone(),
                source: UnavailableCause::Timeout(self.inner.cfg.request_timeout),
            }),
        }
    }

    fn convert(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        Ok(KeyValue {
            key: self.strip(kv.key())?,
            value: kv.value().to_vec(),
            create_revision: rev_u64(kv.create_revision()),
            mod_revision: rev_u64(kv.mod_revision()),
        })
    }

    fn strip(&self, key: &[u8]) -> Result<String> {
        let invalid = |reason| StoreError::InvalidKey { key: String::from_utf8_lossy(key).into_owned(), reason };
        let rest = key.strip_prefix(self.inner.cfg.root.as_bytes()).ok_or_else(|| invalid("outside the store root"))?;
        String::from_utf8(rest.to_vec()).map_err(|_| invalid("not UTF-8"))
    }

    /// A transaction: `compares` then `ops`, else a keys-only read of every compared key (so a
    /// failure can say which condition did not hold, as of the same revision).
    async fn run_txn(&self, conditions: &[Condition], ops: Vec<TxnOp>) -> Result<TxnResponse> {
        let compares: Vec<Compare> = conditions
            .iter()
            .map(|c| Compare::mod_revision(self.full_key(&c.key), CompareOp::Equal, rev_i64(c.mod_revision)))
            .collect();
        let reads: Vec<TxnOp> = conditions
            .iter()
            .map(|c| TxnOp::get(self.full_key(&c.key), Some(GetOptions::new().with_keys_only())))
            .collect();
        let txn = Txn::new().when(compares).and_then(ops).or_else(reads);
        let mut c = self.inner.kv.clone();
        self.call(c.txn(txn)).await
    }

    fn failures(&self, conditions: &[Condition], resp: &TxnResponse) -> Result<Vec<ConditionFailure>> {
        let mut out = Vec::new();
        for (c, r) in conditions.iter().zip(resp.op_responses()) {
            let actual = match r {
                TxnOpResponse::Get(g) => g.kvs().first().map_or(0, |kv| rev_u64(kv.mod_revision())),
                _ => 0,
            };
            if actual != c.mod_revision {
                out.push(ConditionFailure { key: c.key.clone(), expected: c.mod_revision, actual });
            }
        }
        Ok(out)
    }

    async fn list_once(&self, prefix: &str) -> Result<(Vec<KeyValue>, u64)> {
        let full = self.full_key(prefix).into_bytes();
        let (mut start, end) = if full.is_empty() { (vec![0], vec![0]) } else { (full.clone(), prefix_end(&full)) };
        let mut revision = 0;
        let mut out = Vec::new();
        loop {
            let mut opts = GetOptions::new().with_range(end.clone()).with_limit(LIST_PAGE);
            if revision > 0 {
                opts = opts.with_revision(rev_i64(revision));
            }
            let mut c = self.inner.kv.clone();
            let resp = self.call(c.get(start.clone(), Some(opts))).await?;
            if revision == 0 {
                revision = header_revision(resp.header());
            }
            for kv in resp.kvs() {
                out.push(self.convert(kv)?);
            }
            match (resp.more(), resp.kvs().last()) {
                (true, Some(last)) => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => return Ok((out, revision)),
            }
        }
    }
}

fn conflict(failures: Vec<ConditionFailure>, key: &str, expected: u64) -> StoreError {
    match failures.into_iter().next() {
        Some(f) => StoreError::Conflict { key: f.key, expected: f.expected, actual: f.actual },
        // Cannot happen (the compare failed, so the read differs); report what we know.
        None => StoreError::Conflict { key: key.to_owned(), expected, actual: expected },
    }
}

fn is_compacted_read(e: &StoreError) -> bool {
    matches!(e, StoreError::Etcd { source: etcd_client::Error::GRpcStatus(s) }
        if s.message().contains("required revision has been compacted"))
}

/// Sorts client errors into "unreachable" and "rejected".
fn classify(endpoints: &str, e: etcd_client::Error) -> StoreError {
    use etcd_client::Error as E;
    let unavailable = match &e {
        E::TransportError(_) | E::IoError(_) => true,
        E::GRpcStatus(s) => matches!(
            s.code() as i32,
            GRPC_UNAVAILABLE | GRPC_DEADLINE_EXCEEDED | GRPC_CANCELLED | GRPC_UNKNOWN
        ),
        _ => false,
    };
    if unavailable {
        StoreError::Unavailable { endpoints: endpoints.to_owned(), source: UnavailableCause::Connection(e) }
    } else {
        StoreError::Etcd { source: e }
    }
}

/// The smallest key greater than every key starting with `prefix` (`[0]` = no upper bound).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn header_revision(h: Option<&etcd_client::ResponseHeader>) -> u64 {
    h.map_or(0, |h| rev_u64(h.revision()))
}

fn rev_u64(r: i64) -> u64 {
    u64::try_from(r).unwrap_or(0)
}

fn rev_i64(r: u64) -> i64 {
    i64::try_from(r).unwrap_or(i64::MAX)
}

impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        validate_key(key)?;
        let mut c = self.inner.kv.clone();
        let resp = self.call(c.get(self.full_key(key), None)).await?;
        resp.kvs().first().map(|kv| self.convert(kv)).transpose()
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, u64)> {
        // A multi-page listing reads every page at the first page's revision; if etcd compacts
        // that revision mid-way, start over.
        let mut attempts = 0;
        loop {
            match self.list_once(prefix).await {
                Err(e) if is_compacted_read(&e) && attempts < 3 => attempts += 1,
                other => return other,
            }
        }
    }

    async fn put(&self, key: &str, value: Vec<u8>, expected: Option<u64>) -> Result<u64> {
        validate_key(key)?;
        let full = self.full_key(key);
        let Some(expected) = expected else {
            let mut c = self.inner.kv.clone();
            let resp = self.call(c.put(full, value, None)).await?;
            return Ok(header_revision(resp.header()));
        };
        let cond = [Condition::mod_revision(key, expected)];
        let resp = self.run_txn(&cond, vec![TxnOp::put(full, value, None)]).await?;
        if resp.succeeded() {
            Ok(header_revision(resp.header()))
        } else {
            Err(conflict(self.failures(&cond, &resp)?, key, expected))
        }
    }

    async fn delete(&self, key: &str, expected: Option<u64>) -> Result<Deleted> {
        validate_key(key)?;
        let full = self.full_key(key);
        let with_prev = Some(DeleteOptions::new().with_prev_key());
        let (revision, prev) = match expected {
            None => {
                let mut c = self.inner.kv.clone();
                let resp = self.call(c.delete(full, with_prev)).await?;
                (header_revision(resp.header()), resp.prev_kvs().first().map(|kv| self.convert(kv)).transpose()?)
            }
            Some(expected) => {
                let cond = [Condition::mod_revision(key, expected)];
                let resp = self.run_txn(&cond, vec![TxnOp::delete(full, with_prev)]).await?;
                if !resp.succeeded() {
                    return Err(conflict(self.failures(&cond, &resp)?, key, expected));
                }
                let prev = match resp.op_responses().first() {
                    Some(TxnOpResponse::Delete(d)) => d.prev_kvs().first().map(|kv| self.convert(kv)).transpose()?,
                    _ => None,
                };
                (header_revision(resp.header()), prev)
            }
        };
        match prev {
            Some(prev) => Ok(Deleted { revision, prev }),
            None => Err(StoreError::NotFound { key: key.to_owned() }),
        }
    }

    async fn txn(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<TxnResult> {
        validate_txn(&conditions, &ops, self.inner.cfg.max_txn_ops)?;
        let count = ops.len().max(conditions.len());
        let ops: Vec<TxnOp> = ops
            .into_iter()
            .map(|op| match op {
                Op::Put { key, value } => TxnOp::put(self.full_key(&key), value, None),
                Op::Delete { key } => TxnOp::delete(self.full_key(&key), None),
            })
            .collect();
        let resp = match self.run_txn(&conditions, ops).await {
            Err(StoreError::Etcd { source: etcd_client::Error::GRpcStatus(s) })
                if s.message().contains("too many operations in txn request") =>
            {
                return Err(StoreError::TooManyOps { ops: count, max: None });
            }
            r => r?,
        };
        if resp.succeeded() {
            Ok(TxnResult::Committed { revision: header_revision(resp.header()) })
        } else {
            Ok(TxnResult::Failed { failures: self.failures(&conditions, &resp)? })
        }
    }

    async fn watch(&self, prefix: &str, after: u64) -> Result<WatchStream> {
        let opts = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_start_revision(rev_i64(after.saturating_add(1)));
        let mut c = self.inner.watch.clone();
        let ws = self.call(c.watch(self.full_key(prefix), Some(opts))).await?;
        let mut state = EtcdWatch { store: self.clone(), ws, pending: VecDeque::new(), last: after, done: false };
        // Wait until etcd has registered the watch, so changes made after `watch` returns are
        // seen even by a caller that asked for "after the current revision".
        match self.call(state.ws.message()).await? {
            None => {
                return Err(StoreError::Unavailable {
                    endpoints: self.inner.endpoints.clone(),
                    source: UnavailableCause::StreamClosed,
                });
            }
            Some(resp) => {
                state.absorb(&resp)?;
            }
        }
        Ok(WatchStream::new(Box::pin(stream::unfold(state, EtcdWatch::next))))
    }

    async fn revision(&self) -> Result<u64> {
        let mut c = self.inner.kv.clone();
        let key = self.full_key("");
        let key = if key.is_empty() { vec![0] } else { key.into_bytes() };
        let resp = self.call(c.get(key, Some(GetOptions::new().with_count_only()))).await?;
        Ok(header_revision(resp.header()))
    }
}

struct EtcdWatch {
    store: EtcdStore,
    /// Holds the request half too: dropping it would end the watch.
    ws: etcd_client::WatchStream,
    pending: VecDeque<WatchEvent>,
    /// Revision of the last change received (or the `after` the watch started from).
    last: u64,
    done: bool,
}

impl EtcdWatch {
    /// Queues the events of one response, or returns the error that ends the watch.
    fn absorb(&mut self, resp: &etcd_client::WatchResponse) -> Result<()> {
        if resp.compact_revision() > 0 {
            return Err(StoreError::Compacted { requested: self.last, compact_revision: rev_u64(resp.compact_revision()) });
        }
        if resp.canceled() {
            return Err(StoreError::WatchCanceled { reason: resp.cancel_reason().to_owned() });
        }
        // Convert the whole response before queueing any of it, so an error never leaves half a
        // revision delivered.
        let mut events = Vec::with_capacity(resp.events().len());
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let prev = ev.prev_kv().map(|p| self.store.convert(p)).transpose()?;
            let event = match ev.event_type() {
                EventType::Put => WatchEvent::Put { kv: self.store.convert(kv)?, prev },
                EventType::Delete => WatchEvent::Delete {
                    key: self.store.strip(kv.key())?,
                    revision: rev_u64(kv.mod_revision()),
                    prev,
                },
            };
            events.push(event);
        }
        if let Some(last) = events.last() {
            self.last = self.last.max(last.revision());
        }
        self.pending.extend(events);
        Ok(())
    }

    async fn next(mut self) -> Option<(Result<WatchEvent>, Self)> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some((Ok(ev), self));
            }
            if self.done {
                return None;
            }
            let err = match self.ws.message().await {
                Ok(Some(resp)) => match self.absorb(&resp) {
                    Ok(()) => continue,
                    Err(e) => e,
                },
                Ok(None) => StoreError::Unavailable {
                    endpoints: self.store.inner.endpoints.clone(),
                    source: UnavailableCause::StreamClosed,
                },
                Err(e) => classify(&self.store.inner.endpoints, e),
            };
            self.done = true;
            return Some((Err(err), self));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end(b"/porin/a"), b"/porin/b");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }
}
