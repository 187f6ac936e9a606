//! [`Agent::run`]: open the store, make sure an admin token exists, start the engine task, the node
//! reconciler and the flow service, and serve the API on the Unix socket (and optionally TCP). The
//! configuration is [`AgentConfig`]; `porin agent` and `porin serve` only parse their flags into it.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A start-up line: see [`set_announce_as_log`].
macro_rules! announce {
    ($($t:tt)*) => { announce_line(format!($($t)*)) };
}

use clap::{Args, ValueEnum};
use porin_store::{AnyStore, Condition, EmbeddedOptions, EtcdConfig, Op, Store, StoreConfig};
use tokio::sync::watch;

use crate::engine::{LogConsumer, PolicySnapshot, Snapshot, run_consumer, run_engine};
use crate::api::sources::FlowSource;
use crate::api::{ApiState, PeerInfo, router};
use crate::auth::{Role, TokenRecord, new_token, token_key};
use crate::reconciler::{DataplaneConfig, DataplaneConsumer};
use crate::flows::{FlowOptions, FlowService};
use porin_dataplane::DataplaneOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Datastore {
    Embedded,
    Etcd,
    /// The Kubernetes API server (`--kubeconfig`): its objects are mirrored into the embedded store
    /// (crates/kube); tokens, audit records and WorkloadEndpoints stay local.
    Kubernetes,
}

/// Which dataplane the agent programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DataplaneKind {
    /// eBPF (TCX on each local workload's host-side interface). Opened lazily: an agent with no local
    /// workload interface mounts and loads nothing.
    Ebpf,
    /// Compute policy only; enforce nothing.
    None,
}

/// Why the agent could not start, or stopped. Each message says what it was doing and where.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A file, socket or namespace operation failed (`what` says which and where).
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The configuration cannot work (the message names the flag).
    #[error("{0}")]
    Config(String),
    /// The datastore refused or failed.
    #[error("{what}")]
    Store {
        what: String,
        #[source]
        source: Box<porin_store::StoreError>,
    },
    /// The admin token could not be set up.
    #[error("setting up the admin token")]
    AdminToken(#[source] Box<AgentError>),
    /// TLS material could not be set up.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The TLS set-up in the state directory failed.
    #[error("setting up TLS in {}", dir.display())]
    TlsSetup {
        dir: PathBuf,
        #[source]
        source: crate::tls::TlsError,
    },
    /// Flow visibility could not start.
    #[error("starting flow visibility")]
    Flows(#[source] crate::flows::FlowStartError),
    /// An API server stopped with an error.
    #[error(transparent)]
    Serve(#[from] std::io::Error),
}

type Result<T, E = AgentError> = std::result::Result<T, E>;

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> AgentError {
    move |source| AgentError::Io { what, source }
}

/// Where `porin` finds the agent's API by default.
pub const DEFAULT_SOCKET: &str = "/run/porin/porin.sock";
/// The agent's state directory by default: the embedded store, admin.token and tls/.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/porin";

/// What the agent runs: the full node agent, or only the API server (a control-plane process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// API server, engine, reconciler and flow service.
    #[default]
    Agent,
    /// API server and the resource cache only: no policy engine, no dataplane, no flows.
    ApiOnly,
}

/// Everything the agent is configured with (the flags of `porin agent` / `porin serve`).
#[derive(Args, Debug, Clone)]
pub struct AgentConfig {
    /// Agent or API server only (set by the subcommand, not a flag).
    #[arg(skip)]
    pub mode: Mode,
    /// How often the agent looks for GlobalReports that are due (their cron schedules), in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub report_check_seconds: u64,
    /// How often the agent checks whether a GlobalThreatFeed is due for a pull, in seconds (tests: 1).
    #[arg(long, default_value_t = 10, value_name = "SECONDS", hide = true)]
    pub threatfeed_check_seconds: u64,
    /// How soon a failed threat-feed pull is retried, in seconds (a success waits the feed's period).
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub threatfeed_retry_seconds: u64,
    /// POST every alert as JSON to this URL (repeatable): retried with exponential backoff while the receiver is
    /// down, from a bounded queue whose overflow is counted (`porin_alert_webhook_dropped_total`).
    #[arg(long = "alert-webhook", value_name = "URL", help_heading = "Alerts")]
    pub alert_webhooks: Vec<String>,
    /// Longest wait between two delivery attempts of a webhook that keeps failing, in seconds (tests: 1).
    #[arg(long, default_value_t = 30, value_name = "SECONDS", hide = true)]
    pub alert_webhook_max_backoff_seconds: u64,
    /// Repeats of one threat-feed alert (same source workload, feed, destination, verdict) within this many
    /// seconds are counted in the first alert's `detail.repeats` instead of raising new alerts.
    #[arg(long, default_value_t = 60, value_name = "SECONDS", help_heading = "Alerts")]
    pub alert_dedup_seconds: u64,
    /// State directory: the embedded store, admin.token and tls/.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// The API's Unix socket.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Also serve the API on TCP with TLS (HTTPS; bearer tokens required), e.g. 127.0.0.1:7443. Without
    /// --tls-cert/--tls-key the agent issues its own certificate from a CA it keeps in <data-dir>/tls/ (clients:
    /// --ca <data-dir>/tls/ca.crt).
    #[arg(long, value_name = "ADDR", help_heading = "API")]
    pub listen: Option<std::net::SocketAddr>,
    /// The TLS certificate chain (PEM, leaf first) for --listen, instead of a generated one.
    #[arg(long, value_name = "FILE", requires = "tls_key", requires = "listen", help_heading = "API")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert", help_heading = "API")]
    pub tls_key: Option<PathBuf>,
    /// Extra DNS names or IP addresses for the generated certificate (repeatable).
    #[arg(long, value_name = "NAME", conflicts_with = "tls_cert", help_heading = "API")]
    pub tls_san: Vec<String>,
    /// Also serve the API on TCP as plain HTTP (no TLS; bearer tokens required). Loopback addresses only.
    #[arg(long, value_name = "ADDR", help_heading = "API")]
    pub insecure_listen: Option<std::net::SocketAddr>,
    /// Bind --insecure-listen in the network namespace the agent starts in, before joining --netns (the lab:
    /// the web console on the host's loopback while the agent lives in its node's namespace).
    #[arg(long, requires = "insecure_listen", requires = "netns", help_heading = "API")]
    pub insecure_listen_host: bool,
    /// Where objects are stored: `embedded` (a local file under --data-dir), `etcd` (shared by every agent;
    /// needs --etcd-endpoints) or `kubernetes` (read from the Kubernetes API through --kubeconfig, or the
    /// in-cluster service account; changed with kubectl there, not through this agent).
    #[arg(long, value_enum, default_value = "embedded")]
    pub datastore: Datastore,
    /// kubeconfig for --datastore kubernetes [default: KUBECONFIG, ~/.kube/config, or in-cluster].
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// etcd client URLs, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Must not exceed etcd's --max-txn-ops; bounds the objects in one apply.
    #[arg(long, default_value_t = 1024)]
    pub etcd_max_txn_ops: usize,
    /// CA certificate (PEM) of etcd's server certificate; needed for https:// endpoints.
    #[arg(long, value_name = "FILE")]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's --client-cert-auth (with --etcd-key).
    #[arg(long, value_name = "FILE")]
    pub etcd_cert: Option<PathBuf>,
    /// Client key (PEM) for --etcd-cert.
    #[arg(long, value_name = "FILE")]
    pub etcd_key: Option<PathBuf>,
    /// This node's name (default: the hostname). The agent enforces the WorkloadEndpoints whose spec.node is this name.
    #[arg(long)]
    pub node: Option<String>,
    /// The dataplane to program (agent only). `ebpf` does nothing until a WorkloadEndpoint binds a pod to
    /// an interface on this node (pod annotations are not read), or pinned state exists under --bpf-dir.
    #[arg(long, value_enum, default_value = "ebpf")]
    pub dataplane: DataplaneKind,
    /// Where the eBPF maps and links are pinned (a bpffs; mounted there if needed). Default: <data-dir>/bpf.
    #[arg(long)]
    pub bpf_dir: Option<PathBuf>,
    /// Run inside this network namespace (a name under /run/netns or a path): joined by the main
    /// thread before anything else starts, so every thread, socket and attachment lives there.
    #[arg(long)]
    pub netns: Option<String>,
    /// Size of the policy map (entries) when it is first created (tests: a tiny map shows map-full behaviour).
    #[arg(long, hide = true)]
    pub dp_max_policy: Option<u32>,
    /// Size of the event ring buffer (bytes, power of two, >= page size) when first created (tests: a tiny
    /// ring shows loss accounting).
    #[arg(long, hide = true)]
    pub dp_ringbuf_bytes: Option<u32>,
    /// Size of the packet capture ring buffer (bytes, power of two, >= page size) when first created
    /// (default 8 MiB; tests: a tiny ring shows loss accounting).
    #[arg(long, hide = true)]
    pub capture_ringbuf_bytes: Option<u32>,
    /// Most conntrack entries one workload may hold (one per flow, opened or accepted). Over it, that workload's
    /// new flows drop (reason ct_budget); no other workload is affected. 0 admits no new flow.
    #[arg(long, default_value_t = porin_dataplane::DEFAULT_CT_BUDGET, help_heading = "Dataplane capacity")]
    pub ct_budget: u32,
    /// Most policy-map entries one workload's policy may take (per generation). A larger policy locks that
    /// workload down (it denies everything) and is reported in `porin status`. 0: only the map size limits.
    #[arg(long, default_value_t = porin_dataplane::DEFAULT_POLICY_QUOTA, help_heading = "Dataplane capacity")]
    pub policy_quota: u32,
    /// Size of the node's conntrack map when first created (entries). For full isolation between workloads
    /// size it as --ct-budget x workloads per node.
    #[arg(long, help_heading = "Dataplane capacity")]
    pub max_conntrack: Option<u32>,
    /// Flows the kernel's denied-packet aggregates hold between two drains, when first created (tests: a
    /// tiny map sends the overflow through the ring buffer).
    #[arg(long, hide = true)]
    pub dp_denied_aggregates: Option<u32>,
    /// Flow records: one per 5-tuple, or per (workload, peer workload, port) like Calico's level 2.
    #[arg(long, value_enum, default_value = "five-tuple", help_heading = "Flows")]
    pub flow_aggregation: FlowAggregation,
    /// How often aggregated flow records are written (e.g. 1s, 200ms).
    #[arg(long, default_value = "1s", value_parser = parse_duration, help_heading = "Flows")]
    pub flow_flush_interval: std::time::Duration,
    /// Flow store budget (bytes of records; suffixes K, M, G, Ki, Mi, Gi). Stored under <data-dir>/flows.
    #[arg(long, default_value = "1Gi", value_parser = parse_bytes, help_heading = "Flows")]
    pub flow_store_max_bytes: u64,
    /// Flow records older than this are evicted (e.g. 24h, 30m).
    #[arg(long, default_value = "24h", value_parser = parse_duration, help_heading = "Flows")]
    pub flow_store_max_age: std::time::Duration,
    /// Also write every flow record as JSON lines to DIR/flows.jsonl (rotated), for log shippers.
    #[arg(long, value_name = "DIR", help_heading = "Flows")]
    pub flow_export: Option<PathBuf>,
    /// Capacity of the ring-buffer reader -> pipeline queue (events; overflow is counted as lost).
    #[arg(long, default_value_t = 65_536, hide = true)]
    pub flow_queue_capacity: usize,
    /// Serve Prometheus metrics (OpenMetrics, plain HTTP, no authentication) at http://ADDR/metrics.
    /// The API also serves /metrics, with authentication.
    #[arg(long, value_name = "ADDR", help_heading = "Flows")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// `--flow-aggregation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlowAggregation {
    FiveTuple,
    Workload,
}

fn parse_duration(s: &str) -> std::result::Result<std::time::Duration, String> {
    porin_flow::time::parse_duration(s).map_err(|e| e.to_string())
}

/// `1Gi`, `512Mi`, `1G`, `1.5GiB`, `100` (bytes), parsed by the bytesize crate.
fn parse_bytes(s: &str) -> std::result::Result<u64, String> {
    s.trim().parse::<bytesize::ByteSize>().map(|b| b.as_u64()).map_err(|e| format!("{s:?}: expected a size like 512Mi, 1Gi or 1G ({e})"))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "localhost".into())
}

/// Read `<data-dir>/admin.token`, or create it (mode 0600), and make sure the store knows its hash.
async fn ensure_admin_token(store: &AnyStore, dir: &Path, node: &str) -> Result<()> {
    let path = dir.join("admin.token");
    let token = match std::fs::read_to_string(&path) {
        Ok(t) => t.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let t = new_token().map_err(io_err("generating the admin token".into()))?;
            let tmp = dir.join(".admin.token.tmp");
            {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(io_err(format!("creating {}", tmp.display())))?;
                f.write_all(format!("{t}\n").as_bytes()).and_then(|_| f.sync_all()).map_err(io_err(format!("writing {}", tmp.display())))?;
            }
            std::fs::rename(&tmp, &path).map_err(io_err(format!("renaming {} to {}", tmp.display(), path.display())))?;
            t
        }
        Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
    };
    let key = token_key(&token);
    let store_err = |what: &str| {
        let what = what.to_string();
        move |source| AgentError::Store { what, source: Box::new(source) }
    };
    if store.get(&key).await.map_err(store_err("reading the admin token's record"))?.is_none() {
        let rec = TokenRecord {
            name: format!("admin@{node}"),
            role: Role::Admin,
            created: crate::timefmt::rfc3339(crate::timefmt::now_secs()),
            expires: None,
        };
        let value = serde_json::to_vec(&rec).expect("a token record serialises");
        store.txn(vec![Condition::absent(key.clone())], vec![Op::put(key, value)]).await.map_err(store_err("storing the admin token's record"))?;
    }
    Ok(())
}

/// The node agent.
pub struct Agent;

impl Agent {
    /// The one entry point: run the agent (or the API server only, by `config.mode`) until SIGINT or
    /// SIGTERM. Joins `config.netns` first, before any thread exists, so every thread, socket and
    /// attachment lives there.
    pub fn run(config: AgentConfig) -> Result<()> {
        let host_listener = bind_host_listener(config.insecure_listen.filter(|_| config.insecure_listen_host))?;
        if let Some(ns) = &config.netns {
            // Before the runtime exists: this is the only thread, so the whole process moves.
            let path = if ns.contains('/') { PathBuf::from(ns) } else { porin_lab::netns::netns_path(ns) };
            let f = std::fs::File::open(&path).map_err(io_err(format!("opening network namespace {}", path.display())))?;
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from).map_err(io_err(format!("joining network namespace {}", path.display())))?;
        }
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(io_err("starting the runtime".into()))?;
        let engine = config.mode == Mode::Agent;
        rt.block_on(run_async(config, engine, host_listener))
    }
}

/// `--insecure-listen-host`: bind the plain-HTTP listener now, in the namespace the agent starts in (before it
/// joins `--netns`), so the API and console are reachable on the host's loopback. Loopback addresses only.
fn bind_host_listener(addr: Option<std::net::SocketAddr>) -> Result<Option<std::net::TcpListener>> {
    let Some(addr) = addr else { return Ok(None) };
    if !addr.ip().is_loopback() {
        return Err(AgentError::Config(format!("--insecure-listen {addr}: plain HTTP is only allowed on a loopback address; use --listen (TLS)")));
    }
    let l = std::net::TcpListener::bind(addr).map_err(io_err(format!("binding {addr} (--insecure-listen-host)")))?;
    l.set_nonblocking(true).map_err(io_err(format!("binding {addr} (--insecure-listen-host)")))?;
    Ok(Some(l))
}

async fn run_async(a: AgentConfig, engine: bool, host_listener: Option<std::net::TcpListener>) -> Result<()> {
    std::fs::create_dir_all(&a.data_dir).map_err(io_err(format!("creating {}", a.data_dir.display())))?;
    std::fs::set_permissions(&a.data_dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err(format!("chmod {}", a.data_dir.display())))?;
    let node = a.node.clone().unwrap_or_else(hostname);
    let (config, kind, desc) = match a.datastore {
        Datastore::Kubernetes => (
            StoreConfig::Embedded {
                dir: a.data_dir.join("store"),
                options: EmbeddedOptions { max_txn_ops: 100_000, ..Default::default() },
            },
            "kubernetes",
            format!(
                "Kubernetes API ({}) mirrored into the embedded store at {}",
                a.kubeconfig.as_ref().map_or_else(|| "kubeconfig from the environment".to_string(), |p| p.display().to_string()),
                a.data_dir.join("store").display()
            ),
        ),
        Datastore::Embedded => (
            StoreConfig::Embedded {
                dir: a.data_dir.join("store"),
                options: EmbeddedOptions { max_txn_ops: 100_000, ..Default::default() },
            },
            "embedded",
            format!("embedded store at {}", a.data_dir.join("store").display()),
        ),
        Datastore::Etcd => {
            if a.etcd_endpoints.is_empty() {
                return Err(AgentError::Config("--datastore etcd needs --etcd-endpoints URL,...".into()));
            }
            (
                StoreConfig::Etcd({
                    let c = EtcdConfig::new(a.etcd_endpoints.clone()).with_max_txn_ops(a.etcd_max_txn_ops);
                    match crate::etcd_tls::from_flags(&a.etcd_endpoints, a.etcd_ca.as_ref(), a.etcd_cert.as_ref(), a.etcd_key.as_ref())
                        .map_err(|e| AgentError::Config(e.to_string()))?
                    {
                        Some(t) => c.with_tls(t),
                        None => c,
                    }
                }),
                "etcd",
                format!("etcd at {}", a.etcd_endpoints.join(",")),
            )
        }
    };
    let store = AnyStore::open(config).await.map_err(|source| AgentError::Store { what: "opening the datastore".into(), source: Box::new(source) })?;
    ensure_admin_token(&store, &a.data_dir, &node).await.map_err(|e| AgentError::AdminToken(Box::new(e)))?;
    if a.datastore == Datastore::Kubernetes {
        let client = porin_kube::client(a.kubeconfig.as_deref()).await.map_err(|e| AgentError::Config(e.to_string()))?;
        let syncer = porin_kube::Syncer::new(store.clone(), client, porin_kube::SyncOptions::default());
        tokio::spawn(syncer.run(crate::registry::kube_resources()));
    }

    let (snap_tx, snap_rx) = watch::channel(Arc::new(Snapshot::default()));
    let (policy_tx, policy_rx) = watch::channel(Arc::new(PolicySnapshot::default()));
    tokio::spawn(run_engine(store.clone(), engine, snap_tx, policy_tx));
    let (dp_tx, dp_rx) = watch::channel(Arc::new(crate::reconciler::none_status()));
    let flows = if engine {
        let opts = FlowOptions {
            node: node.clone(),
            level: match a.flow_aggregation {
                FlowAggregation::FiveTuple => porin_flow::AggregationLevel::FiveTuple,
                FlowAggregation::Workload => porin_flow::AggregationLevel::Workload,
            },
            flush_interval: a.flow_flush_interval,
            store_dir: a.data_dir.join("flows"),
            store: porin_flow::FlowStoreOptions { max_bytes: a.flow_store_max_bytes, max_age: a.flow_store_max_age, fsync: true },
            export: a.flow_export.clone(),
            queue_capacity: a.flow_queue_capacity,
            rule_hits: Some(a.data_dir.join("rule-hits.json")),
        };
        Some(FlowService::start(opts).map_err(AgentError::Flows)?)
    } else {
        None
    };
    let mut captures = None;
    if engine {
        match a.dataplane {
            DataplaneKind::Ebpf => {
                let cfg = DataplaneConfig {
                    node: node.clone(),
                    pin_dir: a.bpf_dir.clone().unwrap_or_else(|| a.data_dir.join("bpf")),
                    options: DataplaneOptions {
                        max_policy: a.dp_max_policy,
                        max_conntrack: a.max_conntrack,
                        ct_budget: a.ct_budget,
                        policy_quota: (a.policy_quota > 0).then_some(a.policy_quota),
                        ringbuf_bytes: a.dp_ringbuf_bytes.unwrap_or(DataplaneOptions::default().ringbuf_bytes),
                        max_denied_aggregates: a.dp_denied_aggregates,
                        capture_ringbuf_bytes: a.capture_ringbuf_bytes,
                        ..Default::default()
                    },
                };
                let copts = crate::capture::CaptureOptions { node: node.clone(), dir: a.data_dir.join("captures"), pin_dir: cfg.pin_dir.clone() };
                captures = Some(
                    crate::capture::CaptureService::start(copts, snap_rx.clone())
                        .map_err(io_err("starting the packet capture thread".into()))?,
                );
                let mut consumer = DataplaneConsumer::new(cfg, dp_tx);
                if let Some(f) = &flows {
                    consumer = consumer.with_flows(f.clone());
                }
                crate::reconciler::spawn(consumer, policy_rx, std::time::Duration::from_secs(2)).map_err(io_err("starting the dataplane thread".into()))?;
            }
            DataplaneKind::None => {
                tokio::spawn(run_consumer(policy_rx, LogConsumer));
            }
        }
    }
    let alerts = Arc::new(crate::alerts::AlertLog::new(node.clone(), crate::alerts::DEFAULT_CAPACITY));
    if let Some(f) = &flows {
        f.set_alerts(alerts.clone());
    }
    let state = Arc::new(ApiState {
        store,
        store_kind: kind,
        store_desc: desc,
        node: node.clone(),
        snapshot: snap_rx,
        token_cache: Mutex::new(HashMap::new()),
        dataplane: Arc::new(dp_rx),
        flows: flows.clone().map(|f| f as Arc<dyn FlowSource>),
        captures: captures.clone(),
        write_lock: tokio::sync::Mutex::new(()),
        guard_decode: Default::default(),
        alerts,
    });
    let alert_file = crate::alerts::persist::path(&a.data_dir);
    let (restored, _) = crate::alerts::persist::restore(&state.alerts, &alert_file);
    if restored > 0 {
        tracing::info!(restored, path = %alert_file.display(), "alerts restored");
    }
    crate::alerts::persist::spawn_writer(state.alerts.clone(), alert_file);
    for url in &a.alert_webhooks {
        crate::alerts::webhook::check_url(url).map_err(AgentError::Config)?;
        let backoff = std::time::Duration::from_secs(a.alert_webhook_max_backoff_seconds.max(1));
        crate::alerts::webhook::spawn(state.alerts.clone(), url.clone(), backoff);
    }
    if engine {
        let window = std::time::Duration::from_secs(a.alert_dedup_seconds);
        tokio::spawn(crate::alerts::watch::run(state.clone(), state.alerts.clone(), window));
    }
    if engine {
        let every = std::time::Duration::from_secs(a.report_check_seconds.max(1));
        tokio::spawn(crate::reports::scheduler(state.clone(), every));
        tokio::spawn(crate::recommender::run(state.clone()));
        let feeds = crate::threatfeeds::FeedOptions {
            check_every: std::time::Duration::from_secs(a.threatfeed_check_seconds.max(1)),
            retry_after: std::time::Duration::from_secs(a.threatfeed_retry_seconds.max(1)),
            ..Default::default()
        };
        tokio::spawn(crate::threatfeeds::syncer(state.clone(), feeds));
    }
    let alerts = state.alerts.clone();
    if let Some(c) = &captures {
        tokio::spawn(crate::capture::publisher(state.clone(), c.clone(), std::time::Duration::from_millis(500)));
    }
    let app = router(state);

    if let Some(dir) = a.socket.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    }
    match std::fs::remove_file(&a.socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(format!("removing stale {}", a.socket.display()))(e)),
    }
    let unix = tokio::net::UnixListener::bind(&a.socket).map_err(io_err(format!("binding {}", a.socket.display())))?;
    // Anyone may connect; peer uid 0 is admin, everyone else needs a token.
    std::fs::set_permissions(&a.socket, std::fs::Permissions::from_mode(0o666)).map_err(io_err(format!("chmod {}", a.socket.display())))?;
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    };
    if let Some(addr) = a.metrics_listen {
        let l = tokio::net::TcpListener::bind(addr).await.map_err(io_err(format!("binding the metrics listener {addr}")))?;
        let m = crate::api::flows::metrics_router(flows.clone().map(|f| f as Arc<dyn FlowSource>), alerts.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(l, m).await {
                tracing::warn!(error = %e, "metrics listener failed");
            }
        });
        announce!("porin: Prometheus metrics on http://{addr}/metrics");
    }
    let unix_srv = axum::serve(unix, app.clone().into_make_service_with_connect_info::<PeerInfo>());
    let mut listeners = format!("{}", a.socket.display());
    let mut tcp_servers: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>>> = Vec::new();
    if let Some(addr) = a.listen {
        let cert = match (&a.tls_cert, &a.tls_key) {
            (Some(cert), Some(key)) => crate::tls::ServerCert { cert: cert.clone(), key: key.clone(), ca: None, names: vec![] },
            _ => {
                let names = crate::tls::names_for(addr, &hostname(), &a.tls_san);
                let dir = a.data_dir.join("tls");
                crate::tls::ensure_self_signed(&dir, &names).map_err(|source| AgentError::TlsSetup { dir: dir.clone(), source })?
            }
        };
        let config = crate::tls::server_config(&cert.cert, &cert.key)?;
        let tcp = tokio::net::TcpListener::bind(addr).await.map_err(io_err(format!("binding {addr}")))?;
        let tls = crate::api::listener::TlsListener::new(tcp, config).map_err(io_err(format!("listening on {addr}")))?;
        tcp_servers.push(Box::pin(axum::serve(tls, app.clone().into_make_service_with_connect_info::<PeerInfo>()).into_future()));
        listeners.push_str(&format!(" and https://{addr}"));
        match &cert.ca {
            Some(ca) => announce!(
                "porin: TLS certificate {} for {}; clients trust the CA {} (porin --server https://{addr} --ca {} or PORIN_CA)",
                cert.cert.display(),
                cert.names.join(", "),
                ca.display(),
                ca.display()
            ),
            None => announce!("porin: TLS certificate {}", cert.cert.display()),
        }
    }
    if let Some(addr) = a.insecure_listen {
        if !addr.ip().is_loopback() {
            return Err(AgentError::Config(format!("--insecure-listen {addr}: plain HTTP is only allowed on a loopback address; use --listen (TLS)")));
        }
        let tcp = match host_listener {
            Some(l) => tokio::net::TcpListener::from_std(l).map_err(io_err(format!("serving {addr}")))?,
            None => tokio::net::TcpListener::bind(addr).await.map_err(io_err(format!("binding {addr}")))?,
        };
        tcp_servers.push(Box::pin(axum::serve(tcp, app.clone().into_make_service_with_connect_info::<PeerInfo>()).into_future()));
        listeners.push_str(&format!(" and http://{addr} (no TLS)"));
    }
    announce!("porin {}: node {node}, {kind} store, API on {listeners}", if engine { "agent" } else { "serve" });
    let tcp_srv = async move {
        if tcp_servers.is_empty() {
            std::future::pending::<std::io::Result<()>>().await
        } else {
            futures::future::select_all(tcp_servers).await.0
        }
    };
    tokio::select! {
        r = unix_srv => r?,
        r = tcp_srv => r?,
        _ = shutdown => {},
    }
    let _ = std::fs::remove_file(&a.socket);
    Ok(())
}

/// Where the start-up lines (API addresses, the CA to trust, the metrics URL) go: plain lines on stderr
/// (default), or log events when the logs are JSON ([`set_announce_as_log`]), so a collector reads only JSON.
static ANNOUNCE_AS_LOG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Send the start-up lines through `tracing` (INFO) instead of printing them.
pub fn set_announce_as_log(on: bool) {
    ANNOUNCE_AS_LOG.store(on, std::sync::atomic::Ordering::Relaxed);
}

fn announce_line(msg: String) {
    if ANNOUNCE_AS_LOG.load(std::sync::atomic::Ordering::Relaxed) {
        tracing::info!("{msg}");
    } else {
        eprintln!("{msg}");
    }
}
