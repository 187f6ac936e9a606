//! A small outbound HTTP/1.1 client for the agent's own requests: threat-feed pulls (GET) and alert webhooks
//! (POST). `http://` and `https://` (rustls with the ring provider, verified against the system's CA bundle:
//! `$SSL_CERT_FILE`, else the usual bundle paths); one connection per request, a deadline on the whole
//! exchange, a bound on the body read, no redirects followed (a 3xx is an error naming `Location`).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// Why a request failed; the message names the URL.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url}: {message}")]
    Failed { url: String, message: String },
    #[error("{url}: HTTP {status}{detail}")]
    Status { url: String, status: u16, detail: String },
}

impl HttpError {
    fn failed(url: &str, message: impl std::fmt::Display) -> Self {
        HttpError::Failed { url: url.to_string(), message: message.to_string() }
    }
}

const CA_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let path = std::env::var("SSL_CERT_FILE")
        .ok()
        .or_else(|| CA_BUNDLES.iter().find(|p| std::path::Path::new(p).exists()).map(|p| p.to_string()))
        .ok_or("no CA bundle to verify https:// servers with (set SSL_CERT_FILE)")?;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&path).map_err(|e| format!("reading CA bundle {path}: {e}"))?;
    for c in certs.flatten() {
        let _ = roots.add(c);
    }
    if roots.is_empty() {
        return Err(format!("CA bundle {path} holds no certificate"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Sends one request and returns the body of a 2xx answer (at most `max_body` bytes).
pub async fn request(
    method: hyper::Method,
    url: &str,
    headers: &[(String, String)],
    body: Option<(Vec<u8>, &str)>,
    timeout: Duration,
    max_body: usize,
) -> Result<Vec<u8>, HttpError> {
    match tokio::time::timeout(timeout, exchange(method, url, headers, body, max_body)).await {
        Ok(r) => r,
        Err(_) => Err(HttpError::failed(url, format!("no answer within {timeout:?}"))),
    }
}

async fn exchange(
    method: hyper::Method,
    url: &str,
    headers: &[(String, String)],
    body: Option<(Vec<u8>, &str)>,
    max_body: usize,
) -> Result<Vec<u8>, HttpError> {
    let uri: hyper::Uri = url.parse().map_err(|e| HttpError::failed(url, format!("not a URL: {e}")))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(HttpError::failed(url, "expected http:// or https://")),
    };
    let host = uri.host().ok_or_else(|| HttpError::failed(url, "no host"))?.to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let bare = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let path = uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", uri.authority().map(|a| a.as_str().to_string()).unwrap_or(host.clone()))
        .header("user-agent", concat!("porin-agent/", env!("CARGO_PKG_VERSION")));
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let payload = match body {
        Some((b, content_type)) => {
            req = req.header("content-type", content_type);
            b
        }
        None => Vec::new(),
    };
    let req = req.body(Full::new(Bytes::from(payload))).map_err(|e| HttpError::failed(url, e))?;
    let tcp = tokio::net::TcpStream::connect((bare.as_str(), port)).await.map_err(|e| HttpError::failed(url, format!("connecting: {e}")))?;
    let resp = if https {
        let cfg = tls_config().map_err(|e| HttpError::failed(url, e))?;
        let name = rustls::pki_types::ServerName::try_from(bare.clone()).map_err(|e| HttpError::failed(url, e))?;
        let tls = tokio_rustls::TlsConnector::from(cfg).connect(name, tcp).await.map_err(|e| HttpError::failed(url, format!("TLS: {e}")))?;
        send(TokioIo::new(tls), req).await
    } else {
        send(TokioIo::new(tcp), req).await
    }
    .map_err(|e| HttpError::failed(url, e))?;
    let status = resp.status();
    if status.is_redirection() {
        let loc = resp.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        return Err(HttpError::Status { url: url.into(), status: status.as_u16(), detail: format!(" (redirects are not followed; Location: {loc})") });
    }
    if !status.is_success() {
        return Err(HttpError::Status { url: url.into(), status: status.as_u16(), detail: String::new() });
    }
    let bytes = Limited::new(resp.into_body(), max_body)
        .collect()
        .await
        .map_err(|e| HttpError::failed(url, format!("reading the body (at most {max_body} bytes): {e}")))?
        .to_bytes();
    Ok(bytes.to_vec())
}

async fn send<S>(io: TokioIo<S>, req: hyper::Request<Full<Bytes>>) -> Result<hyper::Response<hyper::body::Incoming>, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await
}
