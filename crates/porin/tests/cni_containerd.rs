//! porin-cni driven by a real container runtime: containerd (`ctr run --cni`) and a real `porin agent`, both
//! inside a node network namespace this test creates, so the plugin's "host" is that namespace and nothing
//! touches the root namespace. Containers run busybox from a local directory (`ctr run --rootfs`); nothing
//! is pulled.
//!
//! Lab hygiene: the node namespace is `porin-cni-<test>`, containerd's root, state and socket are
//! `/var/lib/porin-containerd-<test>` and `/run/porin-containerd-<test>/` (runc's state under it via
//! `--runc-root`, fifos via `--fifo-dir`), host-side veths are `porin<hash>`. `ctr` reads CNI files only from `/etc/cni/net.d` and
//! `/opt/cni/bin` (containerd 1.6 has no flag for either), so it runs in a private mount namespace in which an
//! overlay makes `/etc/cni/net.d` this test's directory and a tmpfs on `/opt` holds `/opt/cni/bin` bound to
//! this test's plugin directory: the real `/etc/cni` and `/opt` are never written. Outside our control:
//! containerd 1.6's shim puts its socket under `/run/containerd/s/<hash>` (removed when the shim exits).
//! A crashed run is cleaned up at the next start: processes found by this test's unique socket path are
//! killed by pid, directories and the namespace removed.
//! `ctr run` (not detached) calls CNI DEL when its task exits, so "deleting a container" is `ctr task kill`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

static SERIAL: Mutex<()> = Mutex::new(());

fn porin_bin() -> &'static str {
    env!("CARGO_BIN_EXE_porin")
}

/// porin-cni, built next to porin (scripts/test.sh builds it; `cargo build -p porin-cni`).
fn cni_bin() -> PathBuf {
    let p = Path::new(porin_bin()).with_file_name("porin-cni");
    assert!(p.is_file(), "{} is missing: build it first with `cargo build -p porin-cni`", p.display());
    p
}

fn host_local() -> PathBuf {
    let p = PathBuf::from("/usr/lib/cni/host-local");
    assert!(p.is_file(), "host-local missing: install containernetworking-plugins (scripts/setup.sh)");
    p
}

fn sh(cmd: &str, args: &[&str]) -> (bool, String, String) {
    let o = Command::new(cmd).args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn must(cmd: &str, args: &[&str]) -> String {
    let (ok, out, err) = sh(cmd, args);
    assert!(ok, "{cmd} {args:?} failed: {out}{err}");
    out
}

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills (by pid) every process whose command line names `marker` (this test's unique paths).
fn kill_marked(marker: &str) {
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        if pid == std::process::id() as i32 {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(marker) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// A node: its network namespace with a Porin agent and containerd in it, and porin-cni installed in the
/// test's own CNI directories.
struct Node {
    name: String,
    ns: String,
    dir: PathBuf,
    root: PathBuf,
    state: PathBuf,
    agent: Option<Child>,
    containerd: Option<Child>,
    runs: Vec<(String, Child)>,
}

impl Node {
    fn paths(name: &str) -> (String, PathBuf, PathBuf, PathBuf) {
        (
            format!("porin-cni-{name}"),
            PathBuf::from(format!("/tmp/porin-cni-{name}")),
            PathBuf::from(format!("/var/lib/porin-containerd-{name}")),
            PathBuf::from(format!("/run/porin-containerd-{name}")),
        )
    }

    /// Removes whatever a crashed earlier run of this test left.
    fn cleanup(name: &str) {
        let (ns, dir, root, state) = Self::paths(name);
        kill_marked(&state.display().to_string());
        kill_marked(&dir.display().to_string());
        std::thread::sleep(Duration::from_millis(200));
        if dir.join("data/bpf").exists() {
            let _ = nix::mount::umount2(&dir.join("data/bpf"), nix::mount::MntFlags::MNT_DETACH);
        }
        for d in [&dir, &root, &state] {
            let _ = std::fs::remove_dir_all(d);
        }
        if Path::new("/run/netns").join(&ns).exists() {
            let _ = sh("ip", &["netns", "del", &ns]);
        }
        // containerd 1.6's shim socket directory: removed only when empty (another runtime may use it).
        let _ = std::fs::remove_dir("/run/containerd/s");
        let _ = std::fs::remove_dir("/run/containerd");
    }

    fn start(name: &str) -> Node {
        Self::start_with(name, &[], true)
    }

    fn start_with(name: &str, agent_extra: &[&str], with_containerd: bool) -> Node {
        Self::cleanup(name);
        let (ns, dir, root, state) = Self::paths(name);
        for d in ["netd", "bin", "ipam", "cni", "data", "up", "work"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        must("ip", &["netns", "add", &ns]);
        let mut node = Node { name: name.into(), ns: ns.clone(), dir: dir.clone(), root: root.clone(), state: state.clone(), agent: None, containerd: None, runs: Vec::new() };
        must("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        porin_lab::netns::write_sysctls(&ns, &[("net/ipv4/ip_forward".into(), "1".into())]).unwrap();

        // The agent, in the node's namespace.
        let log = std::fs::File::create(dir.join("agent.log")).unwrap();
        let agent = Command::new(porin_bin())
            .args(["agent", "--netns", &ns, "--node", "cni-node", "--data-dir"])
            .arg(dir.join("data"))
            .arg("--socket")
            .arg(dir.join("porin.sock"))
            .args(agent_extra)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        node.agent = Some(agent);
        wait_for("the agent synced", 30, || {
            let (ok, out, _) = node.porin(&["status", "-o", "json"]);
            (ok && out.contains("\"synced\": true")).then_some(())
        });

        // containerd, in the node's namespace and a private mount namespace.
        if with_containerd {
            node.start_containerd();
        }
        node.install_cni();
        node
    }

    fn start_containerd(&mut self) {
        let (dir, root, state, ns) = (self.dir.clone(), self.root.clone(), self.state.clone(), self.ns.clone());
        std::fs::write(
            dir.join("containerd.toml"),
            format!(
                "version = 2\nroot = \"{r}\"\nstate = \"{s}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{s}/containerd.sock\"\n[ttrpc]\n  address = \"{s}/containerd.sock.ttrpc\"\n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{r}/opt\"\n",
                r = root.display(),
                s = state.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let c = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args(["unshare", "-m", "--propagation", "private", "containerd", "--config"])
            .arg(dir.join("containerd.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.containerd = Some(c);
        wait_for("containerd", 30, || self.ctr(&["version"]).0.then_some(()));

        // `ctr` sees /etc/cni/net.d and /opt/cni/bin as this test's directories (private mount namespace).
        std::fs::write(
            dir.join("ctr.sh"),
            format!(
                "#!/bin/sh\nset -e\nmount -t overlay overlay -o lowerdir=/etc,upperdir={d}/up,workdir={d}/work /etc\n\
                 mkdir -p /etc/cni/net.d\nmount --bind {d}/netd /etc/cni/net.d\nmount -t tmpfs porin-cni-opt /opt\n\
                 mkdir -p /opt/cni/bin\nmount --bind {d}/bin /opt/cni/bin\nexec ctr \"$@\"\n",
                d = dir.display()
            ),
        )
        .unwrap();
        must("chmod", &["+x", dir.join("ctr.sh").to_str().unwrap()]);
    }

    fn install_cni(&self) {
        let dir = &self.dir;
        // porin install-cni into the test's directories, with a cni token created through the agent.
        let out = self.porin_ok(&[
            "install-cni",
            "--conf-dir",
            dir.join("netd").to_str().unwrap(),
            "--bin-dir",
            dir.join("bin").to_str().unwrap(),
            "--binary",
            cni_bin().to_str().unwrap(),
            "--network",
            "porin-test",
            "--subnet",
            "10.77.0.0/28",
            "--ipam-data-dir",
            dir.join("ipam").to_str().unwrap(),
            "--cni-data-dir",
            dir.join("cni").to_str().unwrap(),
            "--agent-socket",
            dir.join("porin.sock").to_str().unwrap(),
            "--pod-namespace",
            "shop",
            "--timeout-seconds",
            "20",
        ]);
        assert!(out.contains("10-porin.conflist"), "{out}");
        std::fs::copy(host_local(), dir.join("bin/host-local")).unwrap();
    }

    fn porin(&self, args: &[&str]) -> (bool, String, String) {
        let o = Command::new(porin_bin())
            .args(args)
            .env("PORIN_SERVER", self.dir.join("porin.sock"))
            .env_remove("PORIN_TOKEN")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
    }

    fn porin_ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.porin(args);
        assert!(ok, "porin {args:?}: {out}{err}");
        out
    }

    fn apply(&self, yaml: &str) {
        let f = self.dir.join("apply.yaml");
        std::fs::write(&f, yaml).unwrap();
        self.porin_ok(&["apply", "-f", f.to_str().unwrap()]);
    }

    fn status(&self) -> Value {
        serde_json::from_str(&self.porin_ok(&["status", "-o", "json"])).unwrap()
    }

    fn sock(&self) -> String {
        format!("{}/containerd.sock", self.state.display())
    }

    fn ctr(&self, args: &[&str]) -> (bool, String, String) {
        let mut a = vec!["--address".to_string(), self.sock(), "-n".into(), self.ns.clone()];
        a.extend(args.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        sh("ctr", &a)
    }

    /// A busybox root filesystem of its own for container `id` (`/www/index.html` says `porin-ok`).
    fn rootfs(&self, id: &str) -> PathBuf {
        let r = self.dir.join(format!("rootfs-{id}"));
        let _ = std::fs::remove_dir_all(&r);
        for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "www"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::copy("/usr/bin/busybox", r.join("bin/busybox")).unwrap();
        for app in ["sh", "ping", "nc", "sleep", "httpd", "echo", "ip", "cat", "grep", "printf"] {
            std::os::unix::fs::symlink("busybox", r.join("bin").join(app)).unwrap();
        }
        std::fs::write(r.join("www/index.html"), "porin-ok\n").unwrap();
        r
    }

    /// `ctr run --cni --rm` of container `id` running `script` (stdout and stderr to `<dir>/<id>.out`).
    fn run(&mut self, id: &str, script: &str) {
        let rootfs = self.rootfs(id);
        let out = std::fs::File::create(self.dir.join(format!("{id}.out"))).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .args(["unshare", "-m", "--propagation", "private"])
            .arg(self.dir.join("ctr.sh"))
            .args(["--address", &self.sock(), "-n", &self.ns, "run", "--cni", "--rm", "--runc-root"])
            .arg(self.state.join("runc"))
            .arg("--fifo-dir")
            .arg(self.state.join("fifo"))
            .args(["--env", "PATH=/bin", "--rootfs"])
            .arg(&rootfs)
            .args([id, "/bin/sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        self.runs.push((id.to_string(), child));
        wait_for(&format!("container {id} running"), 40, || {
            if let Some((_, c)) = self.runs.iter_mut().find(|(i, _)| i == id)
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!("ctr run {id} exited with {st}: {}", self.output(id));
            }
            self.task_pid(id)
        });
    }

    fn output(&self, id: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{id}.out"))).unwrap_or_default()
    }

    /// The task's pid while it runs.
    fn task_pid(&self, id: &str) -> Option<u32> {
        let (ok, out, _) = self.ctr(&["task", "ls"]);
        if !ok {
            return None;
        }
        out.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && f[0] == id && f[2] == "RUNNING").then(|| f[1].parse().ok()).flatten()
        })
    }

    /// Deletes a container: kill its task; `ctr run` then calls CNI DEL and removes it.
    fn delete(&mut self, id: &str) {
        must("ctr", &["--address", &self.sock(), "-n", &self.ns, "task", "kill", "-s", "SIGKILL", id]);
        let i = self.runs.iter().position(|(x, _)| x == id).expect("known container");
        let (_, mut c) = self.runs.remove(i);
        let st = wait_for(&format!("ctr run {id} to exit"), 30, || c.try_wait().unwrap());
        let _ = st;
        wait_for(&format!("container {id} removed"), 10, || {
            let (_, out, _) = self.ctr(&["container", "ls", "-q"]);
            (!out.lines().any(|l| l.trim() == id)).then_some(())
        });
    }

    fn pod_ip(&self, pod: &str) -> String {
        let v: Value = serde_json::from_str(&self.porin_ok(&["get", "pod", pod, "-n", "shop", "-o", "json"])).unwrap();
        v["status"]["podIP"].as_str().unwrap_or_default().to_string()
    }

    fn links(&self) -> Vec<String> {
        porin_lab::netns::link_indexes(&self.ns).unwrap().into_iter().map(|(n, _)| n).filter(|n| n != "lo").collect()
    }

    fn routes(&self) -> String {
        must("ip", &["-n", &self.ns, "route", "show"])
    }

    fn leases(&self) -> Vec<String> {
        let d = self.dir.join("ipam/porin-test");
        std::fs::read_dir(&d)
            .map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.parse::<std::net::Ipv4Addr>().is_ok()).collect())
            .unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let sock = self.sock();
        for (id, c) in &mut self.runs {
            let _ = Command::new("ctr").args(["--address", &sock, "-n", &self.ns, "task", "kill", "-s", "SIGKILL", id]).output();
            let _ = c.kill();
            let _ = c.wait();
        }
        for c in [self.containerd.as_mut(), self.agent.as_mut()].into_iter().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::env::var("PORIN_KEEP").is_err() {
            Node::cleanup(&self.name);
        }
    }
}

/// An HTTP GET from inside the network namespace `netns` (a path): Some(body) or None when the
/// connection is not established within 2 s. A refused connection (a reset came back) panics: it
/// means packets reached the pod.
fn http_from(netns: &str, ip: &str, port: u16) -> Option<String> {
    let to: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    porin_lab::netns::in_netns(netns, move || {
        Ok(match TcpStream::connect_timeout(&to, Duration::from_secs(2)) {
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
                let mut b = String::new();
                let _ = s.read_to_string(&mut b);
                Some(b)
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => None,
            Err(e) => panic!("connect {to} from {netns}: {e} (a denied pod must drop, not answer)"),
        })
    })
    .unwrap()
}

fn netns_of(pid: u32) -> String {
    format!("/proc/{pid}/ns/net")
}

const PODS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: porin-cni-rt-web, namespace: shop, labels: {app: web}}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: porin-cni-rt-client, namespace: shop, labels: {app: client}}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: porin-cni-rt-other, namespace: shop, labels: {app: other}}\n";

const POLICY: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: shop}\n\
spec:\n  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Ingress]\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: client}}}]\n    ports: [{protocol: TCP, port: 8080}]\n";

const WEB: &str = "httpd -f -p 8080 -h /www";

#[test]
fn containerd_pods_are_enforced_from_the_first_packet_and_leave_nothing_behind() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (network namespaces, eBPF, containerd)");
    let mut node = Node::start("rt");
    node.apply(PODS);
    node.apply(POLICY);

    // "other" is started first and pings every address of the range from its first instruction, five
    // times a second, for as long as it runs: the web pod must never answer it, not even while starting.
    let sweep = (1..=14).map(|i| format!("ping -i 0.2 10.77.0.{i} & ")).collect::<String>();
    node.run("other", &format!("{sweep} wait"));
    node.run("web", WEB);
    let web_ip = node.pod_ip("porin-cni-rt-web");
    let other_ip = node.pod_ip("porin-cni-rt-other");
    assert!(web_ip.starts_with("10.77.0.") && other_ip.starts_with("10.77.0.") && web_ip != other_ip, "{web_ip} {other_ip}");
    // The client's first command is its connection to web: allowed from the first packet.
    node.run("client", &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {web_ip} 8080 | grep -q porin-ok && echo first-request-ok; sleep 3600"));
    wait_for("the client's first request", 20, || node.output("client").contains("first-request-ok").then_some(()));

    // Real packets from inside the containers: client → web allowed, other → web dropped.
    let client_ns = netns_of(node.task_pid("client").unwrap());
    let other_ns = netns_of(node.task_pid("other").unwrap());
    assert!(http_from(&client_ns, &web_ip, 8080).unwrap_or_default().contains("porin-ok"), "client → web must be allowed");
    assert_eq!(http_from(&other_ns, &web_ip, 8080), None, "other → web must be dropped");
    // web is not isolated for egress and other has no policy: web → other answers pings (sanity: packets flow).
    let st = node.status();
    let eps = st["dataplane"]["endpoints"].as_array().unwrap().clone();
    assert_eq!(eps.iter().filter(|e| e["state"] == "programmed").count(), 3, "{eps:?}");
    let weps = node.porin_ok(&["get", "wep", "-A"]);
    for p in ["porin-cni-rt-web", "porin-cni-rt-client", "porin-cni-rt-other"] {
        assert!(weps.contains(p), "{weps}");
    }

    // Re-applying the pods' manifests as written (no status) keeps them bound and enforced.
    node.apply(PODS);
    node.apply(POLICY);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(http_from(&other_ns, &web_ip, 8080), None, "re-applied manifests must not open web");
    assert!(http_from(&client_ns, &web_ip, 8080).unwrap_or_default().contains("porin-ok"));
    assert_eq!(node.pod_ip("porin-cni-rt-web"), web_ip, "the pod keeps its address");

    // Re-adding the pod: delete web, start it again (new veth, maybe a new address): closed throughout.
    let veths_before = node.links().len();
    node.delete("web");
    assert_eq!(node.links().len(), veths_before - 1, "web's veth is gone: {:?}", node.links());
    node.run("web", WEB);
    let web_ip2 = node.pod_ip("porin-cni-rt-web");
    assert_eq!(http_from(&other_ns, &web_ip2, 8080), None, "re-added web must not be open to other");
    assert!(http_from(&client_ns, &web_ip2, 8080).unwrap_or_default().contains("porin-ok"));

    // The start-up probe: other pinged every address five times a second the whole time; web never answered.
    let pings = node.output("other");
    for ip in [&web_ip, &web_ip2] {
        assert!(!pings.contains(&format!("bytes from {ip}:")), "web ({ip}) answered other's ping:\n{pings}");
    }
    // The probe itself works: other's pings to its own address are answered.
    assert!(pings.contains(&format!("bytes from {other_ip}:")), "the probe never saw any answer:\n{pings}");

    // Deleting every container leaves no veth, route, WorkloadEndpoint, kernel endpoint or lease.
    for id in ["client", "web", "other"] {
        node.delete(id);
    }
    assert_eq!(node.links(), Vec::<String>::new(), "veths left");
    let routes = node.routes();
    assert!(!routes.contains("10.77.0."), "routes left: {routes}");
    assert_eq!(node.leases(), Vec::<String>::new(), "IPAM leases left");
    let weps: Value = serde_json::from_str(&node.porin_ok(&["get", "wep", "-A", "-o", "json"])).unwrap();
    assert_eq!(weps["items"].as_array().map(Vec::len), Some(0), "WorkloadEndpoints left: {weps}");
    assert_eq!(node.pod_ip("porin-cni-rt-web"), "", "the pod's status address is cleared");
    assert!(std::fs::read_dir(node.dir.join("cni/porin-test")).unwrap().next().is_none(), "plugin state left");
    let t0 = Instant::now();
    loop {
        let st = node.status();
        let eps = st["dataplane"]["endpoints"].as_array().map(Vec::len).unwrap_or(0);
        let entries = |prefix: &str| {
            st["dataplane"]["occupancy"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["map"].as_str().is_some_and(|n| n.starts_with(prefix)))
                .and_then(|m| m["entries"].as_u64())
        };
        // No endpoint entry and no policy entry is left in the kernel maps.
        if eps == 0 && entries("porin_ep_") == Some(0) && entries("porin_pol_") == Some(0) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "the agent still has endpoints: {}", st["dataplane"]);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One porin-cni invocation as a runtime makes it, in the node's namespace: (exit code, stdout as JSON).
fn cni(node: &Node, command: &str, container: &str, netns: &str, conf: &Value) -> (i32, Value) {
    cni_args(node, command, container, netns, conf, "")
}

/// [`cni`] with `CNI_ARGS`.
fn cni_args(node: &Node, command: &str, container: &str, netns: &str, conf: &Value, args: &str) -> (i32, Value) {
    let mut c = Command::new("nsenter");
    if !args.is_empty() {
        c.env("CNI_ARGS", args);
    }
    c.arg(format!("--net=/run/netns/{}", node.ns))
        .arg(node.dir.join("bin/porin-cni"))
        .env("CNI_COMMAND", command)
        .env("CNI_PATH", node.dir.join("bin"))
        .env("CNI_IFNAME", "eth0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if !container.is_empty() {
        c.env("CNI_CONTAINERID", container);
    }
    if !netns.is_empty() {
        c.env("CNI_NETNS", netns);
    }
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(conf.to_string().as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let v = if out.trim().is_empty() { Value::Null } else { serde_json::from_str(&out).unwrap_or_else(|e| panic!("{command}: stdout is not JSON ({e}): {out}")) };
    eprintln!("porin-cni {command} {container}: {} {v} {}", o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stderr).trim());
    (o.status.code().unwrap_or(-1), v)
}

/// The plugin's entry of the installed conflist, as a runtime hands it over (name and version filled in).
fn plugin_conf(node: &Node, version: &str) -> Value {
    let list: Value = serde_json::from_slice(&std::fs::read(node.dir.join("netd/10-porin.conflist")).unwrap()).unwrap();
    let mut c = list["plugins"][0].clone();
    c["name"] = list["name"].clone();
    c["cniVersion"] = Value::String(version.into());
    c
}

struct Sandbox(String);
impl Sandbox {
    fn new(name: &str) -> Sandbox {
        let _ = sh("ip", &["netns", "del", name]);
        must("ip", &["netns", "add", name]);
        Sandbox(name.into())
    }
    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}
impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = sh("ip", &["netns", "del", &self.0]);
    }
}

fn nothing_left(node: &Node, what: &str) {
    assert_eq!(node.links(), Vec::<String>::new(), "{what}: veths left");
    assert!(!node.routes().contains("10.77.0."), "{what}: routes left: {}", node.routes());
    assert_eq!(node.leases(), Vec::<String>::new(), "{what}: leases left");
    let weps: Value = serde_json::from_str(&node.porin_ok(&["get", "wep", "-A", "-o", "json"])).unwrap();
    assert_eq!(weps["items"].as_array().map(Vec::len), Some(0), "{what}: WorkloadEndpoints left: {weps}");
}

#[test]
fn cni_commands_errors_idempotent_del_and_gc() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    assert!(nix::unistd::geteuid().is_root(), "this test needs root");
    let node = Node::start_with("dx", &[], false);
    node.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: porin-cni-dx-a, namespace: shop, labels: {app: a}}\n");
    let sb = Sandbox::new("porin-cni-dx-sb");
    let conf = plugin_conf(&node, "1.1.0");

    let (code, v) = cni(&node, "VERSION", "", "", &json_version("1.0.0"));
    assert_eq!(code, 0);
    assert_eq!(v["supportedVersions"], serde_json::json!(["1.0.0", "1.1.0"]));

    // Errors: the spec's codes and shape; nothing created.
    let (code, v) = cni(&node, "ADD", "porin-cni-dx-ghost", &sb.path(), &conf);
    assert_eq!((code, v["code"].as_u64()), (1, Some(101)), "unknown pod: {v}");
    assert!(v["msg"].as_str().unwrap().contains("shop/porin-cni-dx-ghost") && v["cniVersion"] == "1.1.0", "{v}");
    nothing_left(&node, "ADD of an unknown pod");
    let mut old = conf.clone();
    old["cniVersion"] = "0.3.1".into();
    assert_eq!(cni(&node, "ADD", "porin-cni-dx-a", &sb.path(), &old).1["code"], 1);
    let mut typo = conf.clone();
    typo["tokenFlie"] = "/x".into();
    let (_, v) = cni(&node, "ADD", "porin-cni-dx-a", &sb.path(), &typo);
    assert!(v["code"] == 2 && v["msg"].as_str().unwrap().contains("tokenFlie"), "{v}");
    let mut no_token = conf.clone();
    no_token.as_object_mut().unwrap().remove("tokenFile");
    assert_eq!(cni(&node, "ADD", "porin-cni-dx-a", &sb.path(), &no_token).1["code"], 7, "no fallback to root's admin identity");
    assert_eq!(cni(&node, "ADD", "porin-cni-dx-a", "", &conf).1["code"], 4, "CNI_NETNS missing");
    let mut v10 = conf.clone();
    v10["cniVersion"] = "1.0.0".into();
    assert_eq!(cni(&node, "GC", "", "", &v10).1["code"], 1, "GC is a 1.1.0 command");
    nothing_left(&node, "refused ADDs");

    // STATUS, ADD, CHECK.
    assert_eq!(cni(&node, "STATUS", "", "", &conf).0, 0);
    let (code, res) = cni(&node, "ADD", "porin-cni-dx-a", &sb.path(), &conf);
    assert_eq!(code, 0, "{res}");
    let addr = res["ips"][0]["address"].as_str().unwrap().to_string();
    assert!(addr.starts_with("10.77.0.") && addr.ends_with("/32"), "{res}");
    assert_eq!(res["ips"][0]["gateway"], "169.254.1.1");
    assert_eq!(res["routes"][0], serde_json::json!({"dst": "0.0.0.0/0", "gw": "169.254.1.1"}));
    assert_eq!(res["interfaces"][1]["sandbox"], sb.path().as_str());
    let host = res["interfaces"][0]["name"].as_str().unwrap().to_string();
    assert!(host.starts_with("porin") && node.links() == vec![host.clone()], "{:?}", node.links());
    let in_pod = must("ip", &["-n", &sb.0, "route", "show"]);
    assert!(in_pod.contains("default via 169.254.1.1 dev eth0") && in_pod.contains("169.254.1.1 dev eth0"), "{in_pod}");
    assert!(node.routes().contains(&format!("{} dev {host}", addr.trim_end_matches("/32"))), "{}", node.routes());
    let mut chk = conf.clone();
    chk["prevResult"] = res.clone();
    assert_eq!(cni(&node, "CHECK", "porin-cni-dx-a", &sb.path(), &chk).0, 0);
    let listed = node.porin_ok(&["get", "wep", "-A"]);
    assert!(listed.contains("porin-cni-dx-a-eth0") && listed.contains(&host), "{listed}");

    // DEL twice: both succeed, nothing is left; CHECK then says the container is unknown.
    assert_eq!(cni(&node, "DEL", "porin-cni-dx-a", &sb.path(), &chk).0, 0);
    nothing_left(&node, "DEL");
    assert_eq!(cni(&node, "DEL", "porin-cni-dx-a", &sb.path(), &chk).0, 0, "DEL is idempotent");
    assert_eq!(cni(&node, "DEL", "porin-cni-dx-a", "", &conf).0, 0, "DEL without a netns");
    assert_eq!(cni(&node, "CHECK", "porin-cni-dx-a", &sb.path(), &chk).1["code"], 3);

    // GC removes the attachments that are not valid (everything here), twice without error.
    let (code, _) = cni(&node, "ADD", "porin-cni-dx-a", &sb.path(), &conf);
    assert_eq!(code, 0);
    let mut keep = conf.clone();
    keep["cni.dev/valid-attachments"] = serde_json::json!([{"containerID": "porin-cni-dx-a", "ifname": "eth0"}]);
    assert_eq!(cni(&node, "GC", "", "", &keep).0, 0);
    assert_eq!(node.links().len(), 1, "GC keeps a valid attachment");
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = serde_json::json!([]);
    assert_eq!(cni(&node, "GC", "", "", &gc).0, 0);
    nothing_left(&node, "GC");
    assert_eq!(cni(&node, "GC", "", "", &gc).0, 0, "GC is idempotent");

    // A kubelet-style attachment (pod named in CNI_ARGS) whose local record was lost: GC finds it by its
    // WorkloadEndpoint and removes the binding, the pod's address, the veth and the lease.
    node.apply("apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: shop, labels: {app: web}}\n");
    let k8s = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1";
    let (code, res) = cni_args(&node, "ADD", "3f6940ab5ab4", &sb.path(), &conf, k8s);
    assert_eq!(code, 0, "{res}");
    assert!(node.porin_ok(&["get", "wep", "-n", "shop"]).contains("web-1-eth0"));
    for e in std::fs::read_dir(node.dir.join("cni/porin-test")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    assert_eq!(cni(&node, "GC", "", "", &gc).0, 0);
    nothing_left(&node, "GC of an attachment known only by its WorkloadEndpoint");
    let pod: Value = serde_json::from_str(&node.porin_ok(&["get", "pod", "web-1", "-n", "shop", "-o", "json"])).unwrap();
    assert!(pod["status"]["podIP"].is_null(), "{pod}");
}

fn json_version(v: &str) -> Value {
    serde_json::json!({"cniVersion": v})
}

/// An agent that programs nothing (`--dataplane none`): ADD waits, gives up with code 102 and removes what
/// it created; the host side never came up, so the pod was never reachable. STATUS says not available (50).
#[test]
fn add_fails_closed_when_the_agent_does_not_program() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    assert!(nix::unistd::geteuid().is_root(), "this test needs root");
    let node = Node::start_with("nd", &["--dataplane", "none"], false);
    node.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: porin-cni-nd-a, namespace: shop}\n");
    let sb = Sandbox::new("porin-cni-nd-sb");
    let mut conf = plugin_conf(&node, "1.1.0");
    conf["timeoutSeconds"] = 2.into();
    assert_eq!(cni(&node, "STATUS", "", "", &conf).1["code"], 50);
    // While ADD waits, the host side of the veth is down: nothing can reach the pod.
    let watcher = {
        let ns = node.ns.clone();
        std::thread::spawn(move || {
            let mut seen_up = false;
            let mut seen = false;
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(3) {
                let (_, out, _) = sh("ip", &["-n", &ns, "-o", "link", "show"]);
                for l in out.lines().filter(|l| l.contains(": porin")) {
                    seen = true;
                    seen_up |= l.contains(",UP") || l.contains("<UP");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (seen, seen_up)
        })
    };
    let (code, v) = cni(&node, "ADD", "porin-cni-nd-a", &sb.path(), &conf);
    assert_eq!((code, v["code"].as_u64()), (1, Some(102)), "{v}");
    let (seen, seen_up) = watcher.join().unwrap();
    assert!(seen && !seen_up, "the host side existed ({seen}) and was never up ({seen_up})");
    nothing_left(&node, "failed ADD");
    let pod: Value = serde_json::from_str(&node.porin_ok(&["get", "pod", "porin-cni-nd-a", "-n", "shop", "-o", "json"])).unwrap();
    assert!(pod["status"]["podIP"].is_null(), "{pod}");
}
