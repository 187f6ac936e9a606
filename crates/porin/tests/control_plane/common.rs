// Helpers: run `porin agent` as a real process on a temp data dir and socket, and the CLI against it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_porin")
}

pub struct Agent {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub child: Child,
    args: Vec<String>,
}

impl Agent {
    pub fn start(dir: &Path, extra: &[&str]) -> Agent {
        let socket = dir.join("porin.sock");
        let args: Vec<String> = ["agent", "--data-dir", dir.join("data").to_str().unwrap(), "--socket", socket.to_str().unwrap(), "--node", "test-node"]
            .iter()
            .map(|s| s.to_string())
            .chain(extra.iter().map(|s| s.to_string()))
            .collect();
        let child = spawn(&args, dir);
        let mut a = Agent { dir: dir.to_path_buf(), socket, child, args };
        a.wait_ready();
        a
    }

    fn wait_ready(&mut self) {
        let t0 = Instant::now();
        loop {
            let (code, out, _) = self.porin(&["status", "-o", "json"]);
            if code == 0 && out.contains("\"synced\": true") {
                return;
            }
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("agent exited with {st}: {}", std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default());
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "agent not ready: {out}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kill -9 and start again with the same arguments.
    pub fn crash_and_restart(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
        self.child = spawn(&self.args, &self.dir);
        self.wait_ready();
    }

    pub fn porin(&self, args: &[&str]) -> (i32, String, String) {
        self.porin_as(None, args)
    }

    pub fn porin_as(&self, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
        match token {
            Some(t) => self.porin_env(&[("PORIN_TOKEN", t)], args),
            None => self.porin_env(&[], args),
        }
    }

    /// `porin ARGS` with these environment variables (PORIN_SERVER defaults to the agent's socket; PORIN_TOKEN
    /// and PORIN_CA are unset unless given).
    pub fn porin_env(&self, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
        let mut c = Command::new(bin());
        c.args(args)
            .env("PORIN_SERVER", &self.socket)
            .env_remove("PORIN_TOKEN")
            .env_remove("PORIN_CA")
            .env_remove("PORIN_CONTEXT")
            .env("PORIN_CONFIG", self.dir.join("porin-config.yaml"))
            .current_dir(&self.dir);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    }

    /// `porin ARGS` that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.porin(args);
        assert_eq!(code, 0, "porin {args:?} failed: {err}{out}");
        out
    }

    pub fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    }

    /// Start `porin get KIND -A --watch -o json` (raw events, one a line) and return a reader of its lines.
    pub fn watch(&self, kind: &str) -> (Child, BufReader<std::process::ChildStdout>) {
        let mut child = Command::new(bin())
            .args(["get", kind, "-A", "--watch", "-o", "json"])
            .env("PORIN_SERVER", &self.socket)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        (child, out)
    }
}

fn spawn(args: &[String], dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("agent.log")).unwrap();
    Command::new(bin()).args(args).env("PORIN_LOG", "warn").stdout(Stdio::null()).stderr(log).spawn().unwrap()
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the agent wrote to stderr so far.
impl Agent {
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }
}

/// A real etcd on 127.0.0.1 (free ports, data under `dir/etcd`) that can be killed and restarted on the same
/// data dir and ports. Without etcd installed: panics, or `None` with PORIN_SKIP_ETCD=1.
pub struct Etcd {
    child: Option<Child>,
    dir: PathBuf,
    pub client_port: u16,
    peer_port: u16,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Etcd {
    pub fn start(dir: &Path) -> Option<Etcd> {
        if Command::new("etcd").arg("--version").output().is_err() {
            if std::env::var_os("PORIN_SKIP_ETCD").is_some() {
                return None;
            }
            panic!("etcd is not installed (apt-get install etcd-server); set PORIN_SKIP_ETCD=1 to skip");
        }
        let (c, p) = (free_port(), free_port());
        let mut e = Etcd { child: None, dir: dir.to_path_buf(), client_port: c, peer_port: p, url: format!("http://127.0.0.1:{c}") };
        e.restart();
        Some(e)
    }

    /// Start (again) on the same data dir and ports; returns once the client port accepts connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "etcd is running");
        let (c, p) = (self.client_port, self.peer_port);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("etcd.log")).unwrap();
        let child = Command::new("etcd")
            .args(["--data-dir", self.dir.join("etcd").to_str().unwrap(), "--listen-client-urls", &self.url, "--advertise-client-urls", &self.url])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{p}"), "--initial-advertise-peer-urls", &format!("http://127.0.0.1:{p}")])
            .args(["--initial-cluster", &format!("default=http://127.0.0.1:{p}"), "--max-txn-ops", "1024"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", c)).is_err() {
            assert!(t0.elapsed().as_secs() < 20, "etcd did not start: {}", std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `etcdctl ARGS` against this etcd; must succeed; returns stdout.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new("etcdctl").env("ETCDCTL_API", "3").arg("--endpoints").arg(&self.url).args(args).output().unwrap();
        assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn read_line(r: &mut impl BufRead) -> String {
    let mut s = String::new();
    r.read_line(&mut s).unwrap();
    s
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("PORIN_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing golden file {}", path.display()));
    assert_eq!(actual, want, "output differs from {} (PORIN_BLESS=1 regenerates)", path.display());
}

pub const BASE: &str = r#"apiVersion: porin.io/v1
kind: Tier
metadata: {name: platform}
spec: {order: 100}
---
apiVersion: porin.io/v1
kind: Tier
metadata: {name: app}
spec: {order: 500}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {team: a}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: team-a, labels: {app: web}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: team-a, labels: {app: db}}
status: {podIP: 10.0.0.2}
---
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: platform-guard, namespace: team-a}
spec:
  tier: platform
  order: 10
  selector: all()
  ingress: [{action: Pass}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-in, namespace: team-a, labels: {owner: a}}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: 80}]}]
"#;

pub fn app_policy(name: &str, ns: &str, tier: &str) -> String {
    format!(
        "apiVersion: porin.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  tier: {tier}\n  selector: app == 'web'\n  ingress: [{{action: Allow}}]\n"
    )
}
