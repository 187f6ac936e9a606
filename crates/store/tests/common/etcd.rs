//! A throwaway etcd server for tests and benchmarks: random free ports on 127.0.0.1, a temporary
//! data directory, killed on drop (also when a test panics).
//!
//! If the `etcd` binary is not on `PATH` this panics — the etcd tests fail rather than silently
//! pass — unless `PORIN_SKIP_ETCD=1` is set, in which case [`EtcdServer::start`] returns `None`
//! and the test returns early.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use porin_store::EtcdConfig;

/// `--max-txn-ops` the test server runs with (etcd's default is 128).
pub const MAX_TXN_OPS: usize = 1024;

pub struct EtcdServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
}

/// True if etcd tests should be skipped (explicitly requested).
pub fn skip_requested() -> bool {
    std::env::var("PORIN_SKIP_ETCD").is_ok_and(|v| v == "1")
}

fn etcd_on_path() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("etcd").is_file()))
}

fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    (a.local_addr().unwrap().port(), b.local_addr().unwrap().port())
}

impl EtcdServer {
    /// Starts a single-member etcd and waits until it serves requests.
    pub fn start() -> Option<Self> {
        if skip_requested() {
            eprintln!("PORIN_SKIP_ETCD=1: skipping etcd test");
            return None;
        }
        assert!(
            etcd_on_path(),
            "the `etcd` binary is not on PATH: install it (Debian: apt-get install etcd-server) \
             or set PORIN_SKIP_ETCD=1 to skip the etcd tests explicitly"
        );
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let (client_port, peer_port) = free_ports();
            let mut server = EtcdServer {
                child: None,
                dir: tempfile::Builder::new().prefix("porin-etcd-").tempdir().expect("tempdir"),
                client_port,
                peer_port,
            };
            server.spawn();
            if server.wait_ready(Duration::from_secs(15)) {
                return Some(server);
            }
            last_log = server.log_tail();
            server.stop();
        }
        panic!("etcd did not become ready; log tail:\n{last_log}");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// A client configuration for this server (root `/porin/`, its `--max-txn-ops`).
    pub fn config(&self) -> EtcdConfig {
        EtcdConfig::new([self.endpoint()]).with_max_txn_ops(MAX_TXN_OPS)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    fn spawn(&mut self) {
        let data = self.dir.path().join("data");
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("etcd log file");
        let child = Command::new("etcd")
            .arg("--name=porin-test")
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=porin-test={peer}"))
            .arg("--initial-cluster-state=new")
            .arg(format!("--max-txn-ops={MAX_TXN_OPS}"))
            .args(["--logger=zap", "--log-outputs=stderr", "--log-level=warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        self.child = Some(child);
    }

    /// Polls `/health` until etcd has a leader and answers.
    fn wait_ready(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(_status)) = c.try_wait()
            {
                return false;
            }
            if self.healthy() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }

    fn healthy(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.client_port)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let req = format!("GET /health HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n", self.client_port);
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body.contains("\"health\":\"true\"")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Kills etcd (SIGKILL), keeping its data directory and ports.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts etcd again on the same data directory and ports.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            self.spawn();
            if self.wait_ready(Duration::from_secs(10)) {
                return;
            }
            self.stop();
            assert!(Instant::now() < deadline, "etcd did not restart; log tail:\n{}", self.log_tail());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}
