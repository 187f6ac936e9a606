//! The commands. What ADD creates, in order, so that the pod is never open:
//!
//! 1. the pod must exist in Porin's datastore (else code 101: nothing is created);
//! 2. an address from the IPAM plugin;
//! 3. the veth pair: the host side `porin<hash>` stays **down** and has no route, the sandbox side
//!    becomes `CNI_IFNAME` with the address as a /32, a link-local gateway 169.254.1.1 (a permanent
//!    neighbour entry for the host side's MAC, and `proxy_arp` on the host side) and a default route;
//! 4. a state file under `dataDir/<network>/` (what DEL and GC undo);
//! 5. the Pod's status address and the WorkloadEndpoint in one API request (the `cni` token);
//! 6. wait until the agent reports the host interface (by ifindex) `programmed` at a policy revision at
//!    or after that write;
//! 7. only then the host side goes up and the /32 route to the pod is added.
//!
//! Any failure undoes what was done (WorkloadEndpoint, veth, lease, state) and returns the spec's error.
//! DEL and GC undo everything and are idempotent: what is already gone is skipped.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::agent::Agent;
use crate::config::{self, Attachment, Command, Env, NetConf};
use crate::error::{self, CniError, Result};
use crate::ipam;
use crate::link::{self, GATEWAY};

/// Annotation that marks the WorkloadEndpoints a porin-cni network created (value: the network name).
pub const NETWORK_ANNOTATION: &str = "porin.io/cni-network";

/// What ADD recorded about one attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
    pub netns: String,
    pub host_interface: String,
    pub addresses: Vec<Ipv4Addr>,
    pub pod_namespace: String,
    pub pod: String,
    pub workload_endpoint: String,
}

fn state_dir(conf: &NetConf) -> PathBuf {
    conf.data_dir.join(&conf.name)
}

fn state_path(conf: &NetConf, container_id: &str, ifname: &str) -> PathBuf {
    state_dir(conf).join(format!("{container_id}_{ifname}.json"))
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> CniError {
    move |e| CniError::new(error::IO_FAILURE, format!("{what}: {e}"))
}

fn write_state(conf: &NetConf, s: &State) -> Result<()> {
    let dir = state_dir(conf);
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let path = state_path(conf, &s.container_id, &s.ifname);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(s).unwrap_or_default()).map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, &path).map_err(io(format!("renaming {}", tmp.display())))
}

fn read_state(conf: &NetConf, container_id: &str, ifname: &str) -> Result<Option<State>> {
    let path = state_path(conf, container_id, ifname);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| CniError::new(error::DECODE_FAILURE, format!("state file {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(format!("reading {}", path.display()))(e)),
    }
}

fn all_states(conf: &NetConf) -> Result<Vec<State>> {
    let dir = state_dir(conf);
    let rd = match std::fs::read_dir(&dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(format!("reading {}", dir.display()))(e)),
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json")
            && let Ok(b) = std::fs::read(&p)
            && let Ok(s) = serde_json::from_slice::<State>(&b)
        {
            out.push(s);
        }
    }
    Ok(out)
}

/// The WorkloadEndpoint's name: `<pod>-<ifname>`, lower-cased, other characters as `-`.
pub fn wep_name(pod: &str, ifname: &str) -> String {
    format!("{pod}-{ifname}").to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '-' }).collect()
}

fn wep_path(ns: &str, name: &str) -> String {
    format!("/apis/porin.io/v1/namespaces/{ns}/workloadendpoints/{name}")
}

fn pod_path(ns: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{ns}/pods/{name}")
}

/// Runs one command; Ok carries what to print on stdout (nothing for DEL, CHECK, GC, STATUS).
pub fn run(cmd: Command, conf: &NetConf, env: &Env) -> Result<Option<Value>> {
    if cmd.since_1_1() && conf.cni_version != "1.1.0" {
        return Err(CniError::new(
            error::INCOMPATIBLE_VERSION,
            format!("{cmd:?} needs cniVersion 1.1.0; the configuration says {}", conf.cni_version),
        ));
    }
    match cmd {
        Command::Version => Ok(Some(version())),
        Command::Add => add(conf, env).map(Some),
        Command::Del => del(conf, env).map(|_| None),
        Command::Check => check(conf, env).map(|_| None),
        Command::Status => status(conf, env).map(|_| None),
        Command::Gc => gc(conf, env).map(|_| None),
    }
}

pub fn version() -> Value {
    json!({"cniVersion": config::LATEST_VERSION, "supportedVersions": config::SUPPORTED_VERSIONS})
}

fn agent(conf: &NetConf) -> Result<Agent> {
    Agent::new(&conf.agent_socket, conf.token_file.as_deref())
}

/// The agent's node name (a WorkloadEndpoint names it; the agent binds only its own node's).
fn node_of(a: &Agent) -> Result<String> {
    let s = a.expect("GET", "/porin/v1/status", None)?;
    s["node"].as_str().filter(|n| !n.is_empty()).map(str::to_string).ok_or_else(|| CniError::new(error::TRY_AGAIN_LATER, "porin agent status names no node"))
}

fn add(conf: &NetConf, env: &Env) -> Result<Value> {
    let (ns, pod) = config::pod_of(conf, env)?;
    let a = agent(conf)?;
    let node = node_of(&a)?;
    let got = a.call("GET", &pod_path(&ns, &pod), None)?;
    if got.status == 404 {
        return Err(CniError::new(error::UNKNOWN_POD, format!("pod {ns}/{pod} does not exist in Porin's datastore; create it before its sandbox")));
    }
    if !got.ok() {
        return Err(CniError::new(error::AGENT_REFUSED, format!("reading pod {ns}/{pod} ({}): {}", got.status, got.message())));
    }
    let ipam = ipam::find(conf, env)?;
    // A previous ADD of this attachment that did not finish: start from nothing.
    let host = link::host_veth_name(&env.container_id, &env.ifname);
    link::delete_if_exists(&host)?;
    let lease = ipam.call("ADD", conf, env)?;
    let result = (|| {
        let addrs = ipam::ipv4_addresses(&lease)?;
        setup(conf, env, &a, &node, &ns, &pod, &addrs, &lease)
    })();
    match result {
        Ok(r) => Ok(r),
        Err(e) => {
            // Undo everything; the first error is the one reported.
            if let Err(u) = teardown(conf, env, Some(&a), &ipam) {
                eprintln!("porin-cni: undoing the failed ADD: {u}");
            }
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn setup(conf: &NetConf, env: &Env, a: &Agent, node: &str, ns: &str, pod: &str, addrs: &[Ipv4Addr], lease: &Value) -> Result<Value> {
    let host = link::host_veth_name(&env.container_id, &env.ifname);
    let peer = link::temp_peer_name(&env.container_id, &env.ifname);
    let ip = addrs[0];
    let wep = wep_name(pod, &env.ifname);
    write_state(
        conf,
        &State {
            container_id: env.container_id.clone(),
            ifname: env.ifname.clone(),
            netns: env.netns.clone(),
            host_interface: host.clone(),
            addresses: addrs.to_vec(),
            pod_namespace: ns.to_string(),
            pod: pod.to_string(),
            workload_endpoint: wep.clone(),
        },
    )?;
    let mtu = conf.mtu.map(|m| m.to_string());
    let mut add = vec!["link", "add", host.as_str()];
    if let Some(m) = &mtu {
        add.extend(["mtu", m.as_str()]);
    }
    add.extend(["type", "veth", "peer", "name", peer.as_str()]);
    if let Some(m) = &mtu {
        add.extend(["mtu", m.as_str()]);
    }
    link::ip(&add)?;
    // The host side stays down until the policy is in the kernel.
    link::sysctl(&format!("net/ipv4/conf/{host}/proxy_arp"), "1")?;
    link::sysctl(&format!("net/ipv4/neigh/{host}/proxy_delay"), "0")?;
    link::sysctl(&format!("net/ipv4/conf/{host}/forwarding"), "1")?;
    let _ = link::sysctl(&format!("net/ipv6/conf/{host}/disable_ipv6"), "1");
    let (host_index, host_mac) = link::link_info(&host)?.ok_or_else(|| CniError::new(error::INTERFACE_SETUP, format!("{host} vanished after creation")))?;
    link::ip(&["link", "set", "dev", &peer, "netns", &env.netns])?;
    let n = env.netns.as_str();
    if link::link_info_in(n, &env.ifname)?.is_some() {
        return Err(CniError::new(error::INTERFACE_SETUP, format!("interface {} already exists in {n}", env.ifname)));
    }
    link::ip_in(n, &["link", "set", "dev", &peer, "name", &env.ifname])?;
    let cidr = format!("{ip}/32");
    let gw = GATEWAY.to_string();
    link::ip_in(n, &["addr", "add", &cidr, "dev", &env.ifname])?;
    link::ip_in(n, &["link", "set", "dev", &env.ifname, "up"])?;
    link::ip_in(n, &["neigh", "replace", &gw, "lladdr", &host_mac, "dev", &env.ifname, "nud", "permanent"])?;
    link::ip_in(n, &["route", "replace", &gw, "dev", &env.ifname, "scope", "link"])?;
    link::ip_in(n, &["route", "replace", "default", "via", &gw, "dev", &env.ifname])?;
    let (_, pod_mac) = link::link_info_in(n, &env.ifname)?.ok_or_else(|| CniError::new(error::INTERFACE_SETUP, format!("{} vanished in {n}", env.ifname)))?;

    let revision = register(conf, env, a, node, ns, pod, &wep, &host, &cidr, &pod_mac)?;
    wait_programmed(conf, a, &host, host_index, revision)?;

    link::ip(&["link", "set", "dev", &host, "up"])?;
    link::ip(&["route", "replace", &cidr, "dev", &host, "scope", "link"])?;

    let mut out = json!({
        "cniVersion": conf.cni_version,
        "interfaces": [
            {"name": host, "mac": host_mac},
            {"name": env.ifname, "mac": pod_mac, "sandbox": env.netns},
        ],
        "ips": [{"address": cidr, "gateway": gw, "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0", "gw": gw}],
    });
    if let Some(d) = lease.get("dns").filter(|d| d.as_object().is_some_and(|o| !o.is_empty())).or(conf.dns.as_ref()) {
        out["dns"] = d.clone();
    }
    Ok(out)
}

/// Writes the Pod's status address and the WorkloadEndpoint in one request; returns its revision. A pod
/// changed between read and write (409) is read again, a few times.
#[allow(clippy::too_many_arguments)]
fn register(conf: &NetConf, env: &Env, a: &Agent, node: &str, ns: &str, pod: &str, wep: &str, host: &str, cidr: &str, mac: &str) -> Result<u64> {
    let ip = cidr.trim_end_matches("/32");
    let mut last = None;
    for _ in 0..5 {
        let mut p = a.expect("GET", &pod_path(ns, pod), None)?;
        p["status"]["podIP"] = json!(ip);
        p["status"]["podIPs"] = json!([{"ip": ip}]);
        let w = json!({
            "apiVersion": "porin.io/v1",
            "kind": "WorkloadEndpoint",
            "metadata": {"name": wep, "namespace": ns, "annotations": {NETWORK_ANNOTATION: conf.name}},
            "spec": {
                "node": node,
                "pod": pod,
                "interfaceName": host,
                "ipNetworks": [cidr],
                "containerID": env.container_id,
                "endpoint": env.ifname,
                "orchestrator": "cni",
                "mac": mac,
            },
        });
        let ans = a.call("POST", "/porin/v1/apply", Some(&json!([p, w])))?;
        if ans.ok() {
            return ans.body["revision"].as_u64().ok_or_else(|| CniError::new(error::TRY_AGAIN_LATER, format!("apply answer without revision: {}", ans.body)));
        }
        let e = CniError::new(
            if ans.status >= 500 { error::TRY_AGAIN_LATER } else { error::AGENT_REFUSED },
            format!("registering WorkloadEndpoint {ns}/{wep} ({}): {}", ans.status, ans.message()),
        );
        if ans.status != 409 || !ans.message().contains("resourceVersion") {
            return Err(e);
        }
        last = Some(e);
    }
    Err(last.unwrap_or_else(|| CniError::new(error::TRY_AGAIN_LATER, "registering: pod keeps changing")))
}

/// Polls the agent until `host` (ifindex `index`) is `programmed` at policy revision `revision` or later.
fn wait_programmed(conf: &NetConf, a: &Agent, host: &str, index: u32, revision: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(conf.timeout_seconds);
    let mut seen;
    loop {
        match a.expect("GET", "/porin/v1/status", None) {
            Ok(s) => {
                let dp = &s["dataplane"];
                let at = dp["programmedRevision"].as_u64().unwrap_or(0);
                let ep = dp["endpoints"].as_array().into_iter().flatten().find(|e| e["interface"] == host);
                match ep {
                    Some(e) if e["ifindex"].as_u64() == Some(u64::from(index)) => {
                        let state = e["state"].as_str().unwrap_or("");
                        if state == "programmed" && at >= revision {
                            return Ok(());
                        }
                        seen = format!("state {state:?} at revision {at} (want {revision}){}", e["error"].as_str().map(|x| format!(": {x}")).unwrap_or_default());
                    }
                    Some(e) => seen = format!("the agent still sees an older {host} (ifindex {})", e["ifindex"]),
                    None => seen = format!("not attached yet (dataplane {:?}, revision {at})", dp["mode"].as_str().unwrap_or("")),
                }
            }
            Err(e) => seen = e.msg,
        }
        if Instant::now() >= deadline {
            return Err(CniError::new(
                error::NOT_PROGRAMMED,
                format!("the policy of {host} was not in the kernel after {}s; the pod was never reachable and what ADD created was removed", conf.timeout_seconds),
            )
            .with_details(seen));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Removes everything of one attachment: its WorkloadEndpoint (when it is still this container's) and
/// the Pod's status address (when it is still ours), the veth, the lease, the state file. Each step
/// tolerates what is already gone. Local steps run even when the agent is unreachable; that error is
/// returned at the end (code 11), so the runtime retries.
fn teardown(conf: &NetConf, env: &Env, a: Option<&Agent>, ipam: &ipam::Ipam) -> Result<()> {
    teardown_pod(conf, env, a, ipam, None)
}

/// [`teardown`], naming the pod when it is known from elsewhere (GC: from the WorkloadEndpoint).
fn teardown_pod(conf: &NetConf, env: &Env, a: Option<&Agent>, ipam: &ipam::Ipam, known: Option<(String, String, Vec<Ipv4Addr>)>) -> Result<()> {
    let st = read_state(conf, &env.container_id, &env.ifname).ok().flatten();
    let mut errs: Vec<CniError> = Vec::new();
    let mut keep = |r: Result<()>| {
        if let Err(e) = r {
            eprintln!("porin-cni: {e}");
            errs.push(e);
        }
    };
    let (pod, addrs) = match (&st, known) {
        (Some(s), _) => (Some((s.pod_namespace.clone(), s.pod.clone())), s.addresses.clone()),
        (None, Some((ns, pod, addrs))) => (Some((ns, pod)), addrs),
        (None, None) => (config::pod_of(conf, env).ok(), Vec::new()),
    };
    if let (Some(a), Some((ns, pod))) = (a, &pod) {
        keep(unregister(a, env, ns, pod, &addrs));
    }
    let host = link::host_veth_name(&env.container_id, &env.ifname);
    keep(link::delete_if_exists(&host).map(|_| ()));
    keep(ipam.call("DEL", conf, env).map(|_| ()));
    if errs.is_empty() {
        // The record goes last: while anything may be left, DEL and GC can still find it.
        let p = state_path(conf, &env.container_id, &env.ifname);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errs.push(io(format!("removing {}", p.display()))(e)),
        }
    }
    match errs.into_iter().next() {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

fn unregister(a: &Agent, env: &Env, ns: &str, pod: &str, addrs: &[Ipv4Addr]) -> Result<()> {
    let name = wep_name(pod, &env.ifname);
    let got = a.call("GET", &wep_path(ns, &name), None)?;
    if got.ok() && got.body["spec"]["containerID"].as_str() == Some(env.container_id.as_str()) {
        let d = a.call("DELETE", &wep_path(ns, &name), None)?;
        if !d.ok() && d.status != 404 {
            return Err(CniError::new(error::AGENT_REFUSED, format!("deleting WorkloadEndpoint {ns}/{name} ({}): {}", d.status, d.message())));
        }
    } else if !got.ok() && got.status != 404 {
        return Err(CniError::new(error::AGENT_REFUSED, format!("reading WorkloadEndpoint {ns}/{name} ({}): {}", got.status, got.message())));
    }
    // The pod's status address, when it is still the one this attachment had.
    let ours: BTreeSet<String> = addrs.iter().map(|a| a.to_string()).collect();
    for _ in 0..5 {
        let got = a.call("GET", &pod_path(ns, pod), None)?;
        if got.status == 404 {
            return Ok(());
        }
        let mut p = got.body;
        let ip = p["status"]["podIP"].as_str().unwrap_or("").to_string();
        if ip.is_empty() || !ours.contains(&ip) {
            return Ok(());
        }
        if let Some(s) = p["status"].as_object_mut() {
            s.remove("podIP");
            s.remove("podIPs");
            // An all-empty status reads as "status omitted" and the stored one (with the address) would be
            // kept: the pod without its sandbox is Pending, which also says the address is gone.
            if s.get("phase").and_then(Value::as_str).is_none_or(str::is_empty) {
                s.insert("phase".into(), json!("Pending"));
            }
        }
        let ans = a.call("POST", "/porin/v1/apply", Some(&json!([p])))?;
        if ans.ok() {
            return Ok(());
        }
        if ans.status != 409 {
            return Err(CniError::new(error::AGENT_REFUSED, format!("clearing the address of pod {ns}/{pod} ({}): {}", ans.status, ans.message())));
        }
    }
    Err(CniError::new(error::TRY_AGAIN_LATER, format!("pod {ns}/{pod} keeps changing")))
}

fn del(conf: &NetConf, env: &Env) -> Result<()> {
    let ipam = ipam::find(conf, env)?;
    // Without a reachable agent the local parts are still removed, and the error says to try again.
    let a = agent(conf);
    let r = teardown(conf, env, a.as_ref().ok(), &ipam);
    match (a, r) {
        (Err(e), _) => Err(e),
        (Ok(_), r) => r,
    }
}

fn check(conf: &NetConf, env: &Env) -> Result<()> {
    let st = read_state(conf, &env.container_id, &env.ifname)?
        .ok_or_else(|| CniError::new(error::UNKNOWN_CONTAINER, format!("no attachment {}/{} on network {}", env.container_id, env.ifname, conf.name)))?;
    if let Some(prev) = &conf.prev_result {
        let want: BTreeSet<String> = st.addresses.iter().map(|a| format!("{a}/32")).collect();
        let have: BTreeSet<String> = prev["ips"].as_array().into_iter().flatten().filter_map(|i| i["address"].as_str().map(str::to_string)).collect();
        if want != have {
            return Err(CniError::new(error::INTERFACE_SETUP, format!("prevResult addresses {have:?} differ from the attachment's {want:?}")));
        }
    }
    let (index, _) = link::link_info(&st.host_interface)?
        .ok_or_else(|| CniError::new(error::UNKNOWN_CONTAINER, format!("host interface {} is gone", st.host_interface)))?;
    if link::link_info_in(&env.netns, &env.ifname)?.is_none() {
        return Err(CniError::new(error::UNKNOWN_CONTAINER, format!("{} is gone from {}", env.ifname, env.netns)));
    }
    for a in &st.addresses {
        let want = format!("{a}/32");
        if !link::routes_via(&st.host_interface)?.iter().any(|d| *d == want || *d == a.to_string()) {
            return Err(CniError::new(error::INTERFACE_SETUP, format!("the host route {want} via {} is missing", st.host_interface)));
        }
    }
    let a = agent(conf)?;
    let w = a.expect("GET", &wep_path(&st.pod_namespace, &st.workload_endpoint), None)?;
    if w["spec"]["interfaceName"] != st.host_interface.as_str() || w["spec"]["containerID"] != st.container_id.as_str() {
        return Err(CniError::new(error::AGENT_REFUSED, format!("WorkloadEndpoint {}/{} no longer binds this attachment", st.pod_namespace, st.workload_endpoint)));
    }
    let s = a.expect("GET", "/porin/v1/status", None)?;
    let ok = s["dataplane"]["endpoints"].as_array().into_iter().flatten().any(|e| {
        e["interface"] == st.host_interface.as_str() && e["ifindex"].as_u64() == Some(u64::from(index)) && e["state"] == "programmed"
    });
    if !ok {
        return Err(CniError::new(error::NOT_PROGRAMMED, format!("{} is not programmed by the agent", st.host_interface)));
    }
    Ok(())
}

fn status(conf: &NetConf, env: &Env) -> Result<()> {
    let unavailable = |m: String| CniError::new(error::PLUGIN_NOT_AVAILABLE, m);
    let a = agent(conf).map_err(|e| unavailable(e.msg))?;
    let s = a.expect("GET", "/porin/v1/status", None).map_err(|e| unavailable(e.msg))?;
    if s["synced"] != true {
        return Err(unavailable("the porin agent has not synced with its datastore yet".into()));
    }
    let mode = s["dataplane"]["mode"].as_str().unwrap_or("");
    if !mode.starts_with("ebpf") {
        return Err(unavailable(format!("the porin agent enforces nothing (dataplane {mode:?}); pods would never be programmed")));
    }
    let ipam = ipam::find(conf, env).map_err(|e| unavailable(e.msg))?;
    if ipam.supports_1_1 {
        ipam.call("STATUS", conf, env)?;
    }
    Ok(())
}

fn gc(conf: &NetConf, env: &Env) -> Result<()> {
    let valid: BTreeSet<Attachment> = conf.valid_attachments.clone().unwrap_or_default().into_iter().collect();
    let ipam = ipam::find(conf, env)?;
    let a = agent(conf);
    let mut first_err = None;
    // Stale attachments, with their pod when a WorkloadEndpoint names it.
    let mut stale: std::collections::BTreeMap<Attachment, Option<(String, String, Vec<Ipv4Addr>)>> = all_states(conf)?
        .into_iter()
        .map(|s| Attachment { container_id: s.container_id, ifname: s.ifname })
        .filter(|x| !valid.contains(x))
        .map(|x| (x, None))
        .collect();
    // WorkloadEndpoints this network wrote for this node, whose attachment is not valid.
    if let Ok(a) = &a {
        match node_of(a).and_then(|node| a.expect("GET", "/apis/porin.io/v1/workloadendpoints", None).map(|l| (node, l))) {
            Ok((node, list)) => {
                for w in list["items"].as_array().into_iter().flatten() {
                    if w["metadata"]["annotations"][NETWORK_ANNOTATION] != conf.name.as_str() || w["spec"]["node"] != node.as_str() {
                        continue;
                    }
                    let (Some(c), Some(i)) = (w["spec"]["containerID"].as_str(), w["spec"]["endpoint"].as_str()) else { continue };
                    let x = Attachment { container_id: c.into(), ifname: i.into() };
                    if !valid.contains(&x) {
                        let addrs = w["spec"]["ipNetworks"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|n| n.as_str()?.trim_end_matches("/32").parse::<Ipv4Addr>().ok())
                            .collect();
                        let pod = (
                            w["metadata"]["namespace"].as_str().unwrap_or("default").to_string(),
                            w["spec"]["pod"].as_str().unwrap_or("").to_string(),
                            addrs,
                        );
                        stale.insert(x, Some(pod));
                    }
                }
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    for (x, pod) in stale {
        let e = Env { container_id: x.container_id.clone(), ifname: x.ifname.clone(), netns: String::new(), args: Default::default(), path: env.path.clone() };
        if let Err(err) = teardown_pod(conf, &e, a.as_ref().ok(), &ipam, pod) {
            first_err.get_or_insert(err);
        }
    }
    if ipam.supports_1_1
        && let Err(e) = ipam.call("GC", conf, env)
    {
        first_err.get_or_insert(e);
    }
    if let Err(e) = a {
        first_err.get_or_insert(e);
    }
    match first_err {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wep_names_are_dns_safe() {
        assert_eq!(wep_name("web-1", "eth0"), "web-1-eth0");
        assert_eq!(wep_name("web", "Net_1"), "web-net-1");
    }

    #[test]
    fn gc_and_status_need_1_1() {
        let conf = crate::config::parse(br#"{"cniVersion":"1.0.0","name":"n","type":"porin-cni","ipam":{"type":"host-local"}}"#).unwrap();
        for c in [Command::Gc, Command::Status] {
            assert_eq!(run(c, &conf, &Env::default()).unwrap_err().code, error::INCOMPATIBLE_VERSION);
        }
        let v = run(Command::Version, &conf, &Env::default()).unwrap().unwrap();
        assert_eq!(v["supportedVersions"], json!(["1.0.0", "1.1.0"]));
    }

    #[test]
    fn state_round_trips_and_lists() {
        let tmp = tempfile::tempdir().unwrap();
        let raw = format!(r#"{{"cniVersion":"1.1.0","name":"n","type":"porin-cni","ipam":{{"type":"host-local"}},"dataDir":"{}"}}"#, tmp.path().display());
        let conf = crate::config::parse(raw.as_bytes()).unwrap();
        let s = State {
            container_id: "c1".into(),
            ifname: "eth0".into(),
            netns: "/proc/1/ns/net".into(),
            host_interface: link::host_veth_name("c1", "eth0"),
            addresses: vec![Ipv4Addr::new(10, 0, 0, 1)],
            pod_namespace: "default".into(),
            pod: "c1".into(),
            workload_endpoint: "c1-eth0".into(),
        };
        write_state(&conf, &s).unwrap();
        assert_eq!(read_state(&conf, "c1", "eth0").unwrap(), Some(s.clone()));
        assert_eq!(read_state(&conf, "c2", "eth0").unwrap(), None);
        assert_eq!(all_states(&conf).unwrap(), vec![s]);
    }
}
