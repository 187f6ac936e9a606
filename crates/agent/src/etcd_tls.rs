//! `--etcd-ca`, `--etcd-cert`, `--etcd-key`: TLS to etcd with client certificates (etcd's
//! `--client-cert-auth`). Checked before connecting, each problem naming the flag and file.

use std::path::{Path, PathBuf};

use porin_store::EtcdTls;

/// A problem with the etcd TLS flags (the message names the flag and file).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EtcdTlsFlagError(String);

fn read(flag: &str, p: &Path) -> Result<Vec<u8>, EtcdTlsFlagError> {
    let b = std::fs::read(p).map_err(|e| EtcdTlsFlagError(format!("{flag} {}: {e}", p.display())))?;
    if !String::from_utf8_lossy(&b).contains("-----BEGIN ") {
        return Err(EtcdTlsFlagError(format!("{flag} {}: not a PEM file", p.display())));
    }
    Ok(b)
}

/// The TLS material for `endpoints`, or None for plain HTTP.
pub fn from_flags(endpoints: &[String], ca: Option<&PathBuf>, cert: Option<&PathBuf>, key: Option<&PathBuf>) -> Result<Option<EtcdTls>, EtcdTlsFlagError> {
    let https = endpoints.iter().filter(|e| e.starts_with("https://")).count();
    if https > 0 && https < endpoints.len() {
        return Err(EtcdTlsFlagError("--etcd-endpoints mixes http:// and https:// URLs".into()));
    }
    let Some(ca) = ca else {
        if cert.is_some() || key.is_some() {
            return Err(EtcdTlsFlagError("--etcd-cert/--etcd-key need --etcd-ca (the CA of etcd's server certificate)".into()));
        }
        if https > 0 {
            return Err(EtcdTlsFlagError("https:// etcd endpoints need --etcd-ca (and --etcd-cert/--etcd-key for client-cert-auth)".into()));
        }
        return Ok(None);
    };
    if https == 0 {
        return Err(EtcdTlsFlagError(format!("--etcd-ca {} is given but the etcd endpoints are not https://", ca.display())));
    }
    let identity = match (cert, key) {
        (Some(c), Some(k)) => Some((read("--etcd-cert", c)?, read("--etcd-key", k)?)),
        (None, None) => None,
        _ => return Err(EtcdTlsFlagError("--etcd-cert and --etcd-key go together".into())),
    };
    Ok(Some(EtcdTls { ca: read("--etcd-ca", ca)?, identity }))
}
