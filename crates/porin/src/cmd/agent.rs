//! `porin agent` and `porin serve`: open the store, make sure an admin token exists, start the engine task
//! and serve the API on the Unix socket (and optionally TCP).

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use porin_store::{AnyStore, Condition, EmbeddedOptions, EtcdConfig, Op, Store, StoreConfig};
use tokio::sync::watch;

use crate::agent::{LogConsumer, PolicySnapshot, Snapshot, run_consumer, run_engine};
use crate::api::{ApiState, PeerInfo, router};
use crate::auth::{Role, TokenRecord, new_token, token_key};
use crate::dataplane::{DataplaneConfig, DataplaneConsumer};
use crate::flows::{FlowOptions, FlowService};
use porin_dataplane::DataplaneOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Datastore {
    Embedded,
    Etcd,
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

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// State directory: the embedded store, admin.token and tls/.
    #[arg(long, default_value = crate::client::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// The API's Unix socket.
    #[arg(long, default_value = crate::client::DEFAULT_SOCKET)]
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
    /// Where objects are stored: `embedded` (a local file under --data-dir) or `etcd` (shared by every agent;
    /// needs --etcd-endpoints).
    #[arg(long, value_enum, default_value = "embedded")]
    pub datastore: Datastore,
    /// etcd client URLs, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Must not exceed etcd's --max-txn-ops; bounds the objects in one apply.
    #[arg(long, default_value_t = 1024)]
    pub etcd_max_txn_ops: usize,
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
    /// Run inside this network namespace (a name under /var/run/netns or a path): joined by the main
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
    /// Most conntrack entries one workload may hold (two per flow, opened or accepted). Over it, that workload's
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

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    porin_flow::time::parse_duration(s).map_err(|e| e.to_string())
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{s:?}: expected a number of bytes like 512Mi or 1G"))?;
    let mult: u64 = match unit {
        "" | "B" => 1,
        "K" | "k" | "KB" => 1000,
        "M" | "MB" => 1_000_000,
        "G" | "GB" => 1_000_000_000,
        "Ki" | "KiB" => 1 << 10,
        "Mi" | "MiB" => 1 << 20,
        "Gi" | "GiB" => 1 << 30,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (K, M, G, Ki, Mi, Gi)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?}: too large"))
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
            let t = new_token()?;
            let tmp = dir.join(".admin.token.tmp");
            {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
                f.write_all(format!("{t}\n").as_bytes())?;
                f.sync_all()?;
            }
            std::fs::rename(&tmp, &path)?;
            t
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let key = token_key(&token);
    if store.get(&key).await?.is_none() {
        let rec = TokenRecord {
            name: format!("admin@{node}"),
            role: Role::Admin,
            created: crate::timefmt::rfc3339(crate::timefmt::now_secs()),
            expires: None,
        };
        store.txn(vec![Condition::absent(key.clone())], vec![Op::put(key, serde_json::to_vec(&rec)?)]).await?;
    }
    Ok(())
}

pub fn agent(a: AgentArgs) -> Result<ExitCode> {
    run(a, true)
}

pub fn serve(a: AgentArgs) -> Result<ExitCode> {
    run(a, false)
}

fn run(a: AgentArgs, engine: bool) -> Result<ExitCode> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PORIN_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .try_init();
    let host_listener = crate::api::ui::bind_host_listener(a.insecure_listen.filter(|_| a.insecure_listen_host))?;
    if let Some(ns) = &a.netns {
        // Before the runtime exists: this is the only thread, so the whole process moves.
        let path = if ns.contains('/') { PathBuf::from(ns) } else { Path::new("/var/run/netns").join(ns) };
        let f = std::fs::File::open(&path).with_context(|| format!("opening network namespace {}", path.display()))?;
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).with_context(|| format!("joining network namespace {}", path.display()))?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(run_async(a, engine, host_listener))
}

async fn run_async(a: AgentArgs, engine: bool, host_listener: Option<std::net::TcpListener>) -> Result<ExitCode> {
    std::fs::create_dir_all(&a.data_dir).with_context(|| format!("creating {}", a.data_dir.display()))?;
    std::fs::set_permissions(&a.data_dir, std::fs::Permissions::from_mode(0o700))?;
    let node = a.node.clone().unwrap_or_else(hostname);
    let (config, kind, desc) = match a.datastore {
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
                bail!("--datastore etcd needs --etcd-endpoints URL,...");
            }
            (
                StoreConfig::Etcd(EtcdConfig::new(a.etcd_endpoints.clone()).with_max_txn_ops(a.etcd_max_txn_ops)),
                "etcd",
                format!("etcd at {}", a.etcd_endpoints.join(",")),
            )
        }
    };
    let store = AnyStore::open(config).await.context("opening the datastore")?;
    ensure_admin_token(&store, &a.data_dir, &node).await.context("setting up the admin token")?;

    let (snap_tx, snap_rx) = watch::channel(Arc::new(Snapshot::default()));
    let (policy_tx, policy_rx) = watch::channel(Arc::new(PolicySnapshot::default()));
    tokio::spawn(run_engine(store.clone(), engine, snap_tx, policy_tx));
    let (dp_tx, dp_rx) = watch::channel(Arc::new(crate::dataplane::none_status()));
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
        };
        Some(FlowService::start(opts).context("starting flow visibility")?)
    } else {
        None
    };
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
                        ..Default::default()
                    },
                };
                let mut consumer = DataplaneConsumer::new(cfg, dp_tx);
                if let Some(f) = &flows {
                    consumer = consumer.with_flows(f.clone());
                }
                crate::dataplane::spawn(consumer, policy_rx, std::time::Duration::from_secs(2)).context("starting the dataplane thread")?;
            }
            DataplaneKind::None => {
                tokio::spawn(run_consumer(policy_rx, LogConsumer));
            }
        }
    }
    let state = Arc::new(ApiState {
        store,
        store_kind: kind,
        store_desc: desc,
        node: node.clone(),
        snapshot: snap_rx,
        token_cache: Mutex::new(HashMap::new()),
        dataplane: dp_rx,
        flows: flows.clone(),
    });
    let app = router(state);

    if let Some(dir) = a.socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match std::fs::remove_file(&a.socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing stale {}", a.socket.display())),
    }
    let unix = tokio::net::UnixListener::bind(&a.socket).with_context(|| format!("binding {}", a.socket.display()))?;
    // Anyone may connect; peer uid 0 is admin, everyone else needs a token.
    std::fs::set_permissions(&a.socket, std::fs::Permissions::from_mode(0o666))?;
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    };
    if let Some(addr) = a.metrics_listen {
        let l = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding the metrics listener {addr}"))?;
        let m = crate::api::flows::metrics_router(flows.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(l, m).await {
                tracing::warn!(error = %e, "metrics listener failed");
            }
        });
        eprintln!("porin: Prometheus metrics on http://{addr}/metrics");
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
                crate::tls::ensure_self_signed(&dir, &names).with_context(|| format!("setting up TLS in {}", dir.display()))?
            }
        };
        let config = crate::tls::server_config(&cert.cert, &cert.key)?;
        let tcp = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        let tls = crate::api::listener::TlsListener::new(tcp, config)?;
        tcp_servers.push(Box::pin(axum::serve(tls, app.clone().into_make_service_with_connect_info::<PeerInfo>()).into_future()));
        listeners.push_str(&format!(" and https://{addr}"));
        match &cert.ca {
            Some(ca) => eprintln!(
                "porin: TLS certificate {} for {}; clients trust the CA {} (porin --server https://{addr} --ca {} or PORIN_CA)",
                cert.cert.display(),
                cert.names.join(", "),
                ca.display(),
                ca.display()
            ),
            None => eprintln!("porin: TLS certificate {}", cert.cert.display()),
        }
    }
    if let Some(addr) = a.insecure_listen {
        if !addr.ip().is_loopback() {
            bail!("--insecure-listen {addr}: plain HTTP is only allowed on a loopback address; use --listen (TLS)");
        }
        let tcp = match host_listener {
            Some(l) => tokio::net::TcpListener::from_std(l)?,
            None => tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?,
        };
        tcp_servers.push(Box::pin(axum::serve(tcp, app.clone().into_make_service_with_connect_info::<PeerInfo>()).into_future()));
        listeners.push_str(&format!(" and http://{addr} (no TLS)"));
    }
    eprintln!("porin {}: node {node}, {kind} store, API on {listeners}", if engine { "agent" } else { "serve" });
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
    Ok(ExitCode::SUCCESS)
}
