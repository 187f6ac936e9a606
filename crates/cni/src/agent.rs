//! The local agent's API over its Unix socket: a minimal blocking HTTP/1.1 client (one connection per
//! request, `Connection: close`), authenticated with the `cni` token.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::error::{self, CniError, Result};

/// An HTTP answer: status and body (JSON when the agent answers, which it always does).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
    /// The agent's message (`message`, as Kubernetes' Status carries it).
    pub fn message(&self) -> String {
        self.body["message"].as_str().map(str::to_string).unwrap_or_else(|| self.body.to_string())
    }
}

pub struct Agent {
    socket: PathBuf,
    token: String,
    timeout: Duration,
}

impl Agent {
    /// Reads the token from `token_file` (code 7 when missing or empty: the plugin needs its own role).
    pub fn new(socket: &Path, token_file: Option<&Path>) -> Result<Agent> {
        let Some(tf) = token_file else {
            return Err(CniError::new(
                error::INVALID_CONFIG,
                "network configuration: tokenFile: missing: porin-cni authenticates with a cni token (porin install-cni writes one)",
            ));
        };
        let token = std::fs::read_to_string(tf)
            .map_err(|e| CniError::new(error::INVALID_CONFIG, format!("network configuration: tokenFile {}: {e}", tf.display())))?
            .trim()
            .to_string();
        if token.is_empty() {
            return Err(CniError::new(error::INVALID_CONFIG, format!("network configuration: tokenFile {}: empty", tf.display())));
        }
        Ok(Agent { socket: socket.to_path_buf(), token, timeout: Duration::from_secs(10) })
    }

    /// One request. A socket that cannot be reached is code 11 (try again later).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Answer> {
        let unreachable =
            |e: std::io::Error| CniError::new(error::TRY_AGAIN_LATER, format!("porin agent at {} is unreachable: {e}", self.socket.display()));
        let mut s = UnixStream::connect(&self.socket).map_err(unreachable)?;
        s.set_read_timeout(Some(self.timeout)).map_err(unreachable)?;
        s.set_write_timeout(Some(self.timeout)).map_err(unreachable)?;
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: porin\r\nConnection: close\r\nAuthorization: Bearer {}\r\nAccept: application/json\r\n",
            self.token
        );
        if body.is_some() {
            req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", payload.len()));
        }
        req.push_str("\r\n");
        req.push_str(&payload);
        s.write_all(req.as_bytes()).map_err(unreachable)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(unreachable)?;
        parse_response(&raw).map_err(|m| CniError::new(error::TRY_AGAIN_LATER, format!("porin agent at {}: {m}", self.socket.display())))
    }

    /// `call`, with any non-2xx answer turned into an error: 401/403/409/422 are code 100 (refused), 5xx
    /// code 11.
    pub fn expect(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let a = self.call(method, path, body)?;
        if a.ok() {
            return Ok(a.body);
        }
        let code = if a.status >= 500 { error::TRY_AGAIN_LATER } else { error::AGENT_REFUSED };
        Err(CniError::new(code, format!("porin agent refused {method} {path} ({}): {}", a.status, a.message())))
    }
}

/// Parses a whole HTTP/1.1 response (`Content-Length`, chunked, or read to the end).
pub fn parse_response(raw: &[u8]) -> std::result::Result<Answer, String> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("truncated answer (no header end)")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "answer header is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else { continue };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if k == "content-length" {
            length = v.parse::<usize>().ok();
        }
    }
    let mut body = &raw[split + 4..];
    let decoded;
    if chunked {
        decoded = dechunk(body)?;
        body = &decoded;
    } else if let Some(n) = length {
        body = body.get(..n).ok_or("truncated answer body")?;
    }
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
    };
    Ok(Answer { status, body })
}

fn dechunk(mut b: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").ok_or("truncated chunk size")?;
        let size_txt = std::str::from_utf8(&b[..eol]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_txt.split(';').next().unwrap_or("").trim(), 16).map_err(|_| format!("bad chunk size {size_txt:?}"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..size).ok_or("truncated chunk")?);
        b = b.get(size + 2..).ok_or("truncated chunk end")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_and_chunked_answers() {
        let a = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"a\":1}    ").unwrap();
        assert_eq!((a.status, a.body.clone()), (200, serde_json::json!({"a": 1})));
        let a = parse_response(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"me\r\ne\r\nssage\":\"gone\"}\r\n0\r\n\r\n").unwrap();
        assert_eq!(a.status, 404);
        assert_eq!(a.message(), "gone");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
