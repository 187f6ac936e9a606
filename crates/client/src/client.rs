//! A small HTTP/1.1 client for the API (Unix socket, HTTPS, or plain HTTP on loopback), one connection per
//! request.

use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::{Error, Result};

pub use porin_agent::DEFAULT_SOCKET;
/// The agent's default `--data-dir`; a CLI on the same machine trusts its `tls/ca.crt` by default.
pub use porin_agent::DEFAULT_DATA_DIR;

/// Flags shared by every command that talks to the API.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// API server: a Unix socket path (`unix:/path` or `/path`), `https://HOST:PORT` (`porin agent --listen`),
    /// or `http://HOST:PORT` (`--insecure-listen`) [default: the context's server, else /run/porin/porin.sock].
    #[arg(long, env = "PORIN_SERVER")]
    pub server: Option<String>,
    /// The context of the config file (`porin config`) to take server, CA and token from
    /// [default: its current-context].
    #[arg(long, env = "PORIN_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,
    /// Bearer token (default: Unix peer credentials; uid 0 is admin). Required over TCP.
    #[arg(long, env = "PORIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificates (PEM) that an https:// server must chain to [default: the local agent's
    /// /var/lib/porin/tls/ca.crt, when readable].
    #[arg(long, env = "PORIN_CA", value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
}

impl ClientArgs {
    /// A local agent's Unix socket, with peer credentials.
    pub fn socket(path: impl Into<String>) -> ClientArgs {
        ClientArgs { server: Some(path.into()), context: None, token: None, ca: None }
    }

    /// Server, token and CA after the config file's context is applied under the flags (see `config`).
    pub fn resolved(&self) -> Result<ClientArgs> {
        let explicit = self.server.is_some();
        let ctx_needed = !explicit || self.token.is_none() || self.ca.is_none() || self.context.is_some();
        let mut out = self.clone();
        if ctx_needed && let Some(path) = crate::config::path() {
            let cfg = crate::config::Config::load(&path)?;
            if let Some(ctx) = cfg.active(self.context.as_deref()).map_err(Error::context(path.display().to_string()))? {
                // A context's token belongs to its server: never send it to a server named by a flag.
                let same_server = !explicit || self.server == ctx.server;
                if out.server.is_none() {
                    out.server = ctx.server.clone();
                }
                if out.ca.is_none() && same_server {
                    out.ca = ctx.ca.clone();
                }
                if out.token.is_none() && same_server {
                    out.token = ctx.token()?;
                }
            }
        }
        out.server.get_or_insert_with(|| DEFAULT_SOCKET.to_string());
        Ok(out)
    }
}

pub struct Client {
    server: String,
    token: Option<String>,
    ca: Option<std::path::PathBuf>,
    /// A config file problem, reported by the first request (so that building a client cannot fail).
    config_error: Option<String>,
}

/// A non-2xx answer, rendered kubectl-style.
#[derive(Debug)]
pub struct ServerError {
    pub reason: String,
    pub message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Error from server ({}): {}", self.reason, self.message)
    }
}
impl std::error::Error for ServerError {}

impl ServerError {
    /// From a non-2xx answer's JSON body (`reason`, `message`; the HTTP status when they are missing).
    pub fn from_body(status: hyper::StatusCode, v: &Value) -> ServerError {
        let mut message = v["message"].as_str().unwrap_or("").to_string();
        if message.is_empty() {
            message = status.to_string();
        }
        ServerError { reason: v["reason"].as_str().unwrap_or("Unknown").into(), message }
    }
}

impl Client {
    pub fn new(a: &ClientArgs) -> Client {
        match a.resolved() {
            Ok(r) => Client {
                server: r.server.unwrap_or_else(|| DEFAULT_SOCKET.to_string()),
                token: r.token.filter(|t| !t.is_empty()),
                ca: r.ca,
                config_error: None,
            },
            Err(e) => Client { server: DEFAULT_SOCKET.into(), token: None, ca: None, config_error: Some(chain(&e)) },
        }
    }

    /// Send a request; returns the response with its body unread (for watches).
    pub async fn send(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Response<Incoming>> {
        if let Some(e) = &self.config_error {
            bail!("config file: {e}");
        }
        let mut req = Request::builder().method(method).uri(path).header("host", "porin");
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        if let Some(hostport) = self.server.strip_prefix("https://") {
            let hostport = hostport.trim_end_matches('/');
            let host = host_of(hostport).ok_or_else(|| invalid!("--server {}: expected https://HOST:PORT", self.server))?;
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| invalid!("--server {}: {host:?} is not a host name or address: {e}", self.server))?;
            let config = porin_agent::tls::client_config(&self.ca_file()?)?;
            let s = tokio::net::TcpStream::connect(hostport).await.map_err(Error::io(format!("connecting to {}", self.server)))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, s)
                .await
                .map_err(Error::io(format!("TLS with {} (is --ca / PORIN_CA the agent's <data-dir>/tls/ca.crt?)", self.server)))?;
            send_on(tls, req).await
        } else if let Some(hostport) = self.server.strip_prefix("http://") {
            let hostport = hostport.trim_end_matches('/');
            let s = tokio::net::TcpStream::connect(hostport).await.map_err(Error::io(format!("connecting to {}", self.server)))?;
            send_on(s, req).await
        } else {
            let path = self.server.strip_prefix("unix:").unwrap_or(&self.server);
            if path.contains("://") {
                bail!("--server {}: expected a Unix socket path, https://HOST:PORT or http://HOST:PORT", self.server);
            }
            let s = tokio::net::UnixStream::connect(path)
                .await
                .map_err(Error::io(format!("connecting to {path} (is `porin agent` running? --server / PORIN_SERVER)")))?;
            send_on(s, req).await
        }
    }

    /// The CA bundle for https://: `--ca`, else the local agent's, else an error that says what to pass.
    fn ca_file(&self) -> Result<std::path::PathBuf> {
        if let Some(ca) = &self.ca {
            return Ok(ca.clone());
        }
        let local = std::path::Path::new(DEFAULT_DATA_DIR).join("tls/ca.crt");
        if std::fs::File::open(&local).is_ok() {
            return Ok(local);
        }
        bail!(
            "--server {}: no CA to verify the server with; pass --ca FILE (or PORIN_CA), the agent's <data-dir>/tls/ca.crt \
             (it prints the path at start)",
            self.server
        )
    }

    /// Send and read a JSON answer; a non-2xx answer becomes a [`ServerError`].
    pub async fn call(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Value> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| invalid!("bad answer from server ({status}): {e}"))?;
        if !status.is_success() {
            return Err(ServerError::from_body(status, &v).into());
        }
        Ok(v)
    }
}

async fn send_on<S>(s: S, req: Request<Full<Bytes>>) -> Result<Response<Incoming>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender.send_request(req).await?)
}

/// `host` of `host:port` or `[v6]:port`.
fn host_of(hostport: &str) -> Option<&str> {
    if let Some(rest) = hostport.strip_prefix('[') {
        return rest.split_once(']').map(|(h, _)| h);
    }
    hostport.rsplit_once(':').map(|(h, _)| h).filter(|h| !h.is_empty())
}

/// An error with its causes, `: `-separated (as `{:#}` renders an `anyhow` chain).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

/// A current-thread runtime for one CLI command.
pub fn block_on<F: std::future::Future>(f: F) -> Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(Error::io("starting the runtime"))?;
    Ok(rt.block_on(f))
}

/// The REST path of a kind's collection (`ns` only for namespaced kinds).
pub fn collection_path(kind: porin_model::Kind, ns: Option<&str>) -> String {
    let i = kind.info();
    let base = if i.group.is_empty() { "/api/v1".to_string() } else { format!("/apis/{}/{}", i.group, i.version) };
    match (i.namespaced, ns) {
        (true, Some(ns)) => format!("{base}/namespaces/{ns}/{}", i.plural),
        _ => format!("{base}/{}", i.plural),
    }
}

/// `networkpolicy.networking.k8s.io` / `pod`, as kubectl names types in its messages.
pub fn type_name(kind: porin_model::Kind) -> String {
    let i = kind.info();
    if i.group.is_empty() { i.singular.to_string() } else { format!("{}.{}", i.singular, i.group) }
}

/// Everything but RFC 3986's unreserved characters is percent-encoded in a query value.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encode a query value.
pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_VALUE).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_keep_only_unreserved_characters() {
        assert_eq!(super::enc("app in (a,b)"), "app%20in%20%28a%2Cb%29");
        assert_eq!(super::enc("A-z_0.9~/é"), "A-z_0.9~%2F%C3%A9");
    }
}
