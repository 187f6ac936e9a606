//! TLS for the API's TCP listener (rustls with the *ring* provider).
//!
//! * Server: `porin agent --listen ADDR` serves HTTPS with `--tls-cert/--tls-key`, or — when none are given —
//!   with a certificate issued by a self-signed CA the agent keeps under `<data-dir>/tls/`:
//!   `ca.crt` + `ca.key` (created once, key 0600) and `server.crt` + `server.key` (re-issued at every start for
//!   the current listen address, hostname and `--tls-san` names, key 0600). Clients trust `ca.crt`.
//! * Client: [`client_config`] trusts exactly the CA bundle it is given (`--ca` / `PORIN_CA`, or the local
//!   agent's `ca.crt`); there is no fallback to system roots and no "skip verification" switch.
//!
//! The CA's subject is derived from its public key, so the issuer can be rebuilt from `ca.key` alone (rcgen
//! cannot parse certificates without x509-parser, which we do not pull in); every issued chain is verified
//! against the `ca.crt` on disk before it is served, so a mismatch fails at start, not at the first client.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// Why TLS material could not be set up or used. Each message names the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file or directory operation failed (`what` says which and where).
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A PEM file could not be read.
    #[error("{what}")]
    Pem {
        what: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// Certificate material is unusable or could not be made.
    #[error("{0}")]
    Material(String),
}

type Result<T, E = TlsError> = std::result::Result<T, E>;

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> TlsError {
    move |source| TlsError::Io { what, source }
}

/// The one crypto provider Porin uses (ring; never aws-lc-rs).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Where the server's certificate material came from.
#[derive(Debug, Clone)]
pub struct ServerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA clients should trust, when the agent generated it.
    pub ca: Option<PathBuf>,
    /// The names and addresses the generated certificate is valid for.
    pub names: Vec<String>,
}

/// The names a generated server certificate carries: the listen address (or, for 0.0.0.0 / ::, every local
/// interface address), loopback, `localhost`, the hostname and `extra`.
pub fn names_for(listen: SocketAddr, hostname: &str, extra: &[String]) -> Vec<String> {
    let mut ips: Vec<IpAddr> = vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)];
    if listen.ip().is_unspecified() {
        if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
            for a in addrs {
                let Some(sa) = a.address else { continue };
                if let Some(v4) = sa.as_sockaddr_in() {
                    ips.push(IpAddr::V4(v4.ip()));
                } else if let Some(v6) = sa.as_sockaddr_in6()
                    && !v6.ip().is_unicast_link_local()
                {
                    ips.push(IpAddr::V6(v6.ip()));
                }
            }
        }
    } else {
        ips.insert(0, listen.ip());
    }
    let mut names: Vec<String> = Vec::new();
    let mut push = |s: String| {
        if !s.is_empty() && !names.contains(&s) {
            names.push(s);
        }
    };
    for ip in ips {
        push(ip.to_string());
    }
    push(hostname.to_string());
    push("localhost".to_string());
    for e in extra {
        push(e.clone());
    }
    names
}

/// Make sure `<dir>/ca.{crt,key}` exist (created once) and issue a fresh `server.{crt,key}` for `names`.
pub fn ensure_self_signed(dir: &Path, names: &[String]) -> Result<ServerCert> {
    std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err(format!("chmod {}", dir.display())))?;
    let (ca_crt, ca_key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
    let ca_key = match std::fs::read_to_string(&ca_key_path) {
        Ok(pem) => KeyPair::from_pem(&pem).map_err(|e| TlsError::Material(format!("{}: not a usable private key: {e}", ca_key_path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let k = KeyPair::generate().map_err(|e| TlsError::Material(format!("generating the CA key: {e}")))?;
            write_file(&ca_key_path, k.serialize_pem().as_bytes(), 0o600)?;
            // A new key means a new CA: an old ca.crt belongs to another key.
            let _ = std::fs::remove_file(&ca_crt);
            k
        }
        Err(e) => return Err(io_err(format!("reading {}", ca_key_path.display()))(e)),
    };
    let ca_params = ca_params(&ca_key)?;
    if !ca_crt.exists() {
        let cert = ca_params.self_signed(&ca_key).map_err(|e| TlsError::Material(format!("self-signing the CA: {e}")))?;
        write_file(&ca_crt, cert.pem().as_bytes(), 0o644)?;
    }
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(names.to_vec()).map_err(|e| TlsError::Material(format!("certificate names {names:?}: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, names.iter().find(|n| n.parse::<IpAddr>().is_err()).cloned().unwrap_or_else(|| "porin".into()));
    params.distinguished_name.push(DnType::OrganizationName, "Porin agent");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial()?);
    let (y, m, d) = yesterday();
    let from = rcgen::date_time_ymd(y, m, d);
    params.not_before = from;
    params.not_after = from + Duration::from_secs(398 * 86_400);
    let key = KeyPair::generate().map_err(|e| TlsError::Material(format!("generating the server key: {e}")))?;
    let cert = params.signed_by(&key, &issuer).map_err(|e| TlsError::Material(format!("issuing the server certificate: {e}")))?;
    let (crt_path, key_path) = (dir.join("server.crt"), dir.join("server.key"));
    write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&crt_path, cert.pem().as_bytes(), 0o644)?;
    let sc = ServerCert { cert: crt_path, key: key_path, ca: Some(ca_crt), names: names.to_vec() };
    verify_chain(&sc)?;
    Ok(sc)
}

/// The CA's parameters, a pure function of its key (so the issuer can be rebuilt from `ca.key`).
fn ca_params(key: &KeyPair) -> Result<CertificateParams> {
    let mut p = CertificateParams::default();
    let id: String = p.key_identifier(key).iter().take(8).map(|b| format!("{b:02x}")).collect();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, format!("Porin agent CA {id}"));
    p.distinguished_name.push(DnType::OrganizationName, "Porin");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let (y, m, d) = yesterday();
    let from = rcgen::date_time_ymd(y, m, d);
    p.not_before = from;
    p.not_after = from + Duration::from_secs(10 * 365 * 86_400);
    p.serial_number = Some(random_serial()?);
    Ok(p)
}

/// Yesterday (UTC): certificates start a day early, for clocks that disagree.
fn yesterday() -> (i32, u8, u8) {
    civil_from_days(crate::timefmt::now_secs().div_euclid(86_400) - 1)
}

/// Days since 1970-01-01 -> (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

fn random_serial() -> Result<rcgen::SerialNumber> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| TlsError::Material(format!("random: {e}")))?;
    b[0] &= 0x7f; // positive
    Ok(rcgen::SerialNumber::from_slice(&b))
}

/// Write `bytes` to `path` atomically with `mode` (the temporary file has the mode from the start).
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(format!("creating {}", tmp.display())))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(io_err(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io_err(format!("renaming {} to {}", tmp.display(), path.display())))?;
    Ok(())
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|source| TlsError::Pem { what: format!("reading {}", path.display()), source })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Material(format!("{}: bad PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError::Material(format!("{}: no CERTIFICATE in it", path.display())));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Material(format!("{}: no usable private key: {e}", path.display())))
}

/// A client-side check of a generated chain against the CA file on disk, for the first name.
fn verify_chain(sc: &ServerCert) -> Result<()> {
    let Some(ca) = &sc.ca else { return Ok(()) };
    let roots = roots(ca)?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::Material(format!("{}: {e}", ca.display())))?;
    let chain = load_certs(&sc.cert)?;
    let name = ServerName::try_from(sc.names.first().cloned().unwrap_or_else(|| "localhost".into()))
        .map_err(|e| TlsError::Material(format!("server name: {e}")))?;
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
        .map_err(|e| TlsError::Material(format!("{} does not verify against {}: {e} (remove {} to start a new CA)", sc.cert.display(), ca.display(), ca.display())))?;
    Ok(())
}

/// The rustls server configuration for `cert` (PEM chain, leaf first) and `key` (PEM).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let chain = load_certs(cert)?;
    let key = load_key(key)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Material(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Material(format!("TLS certificate {}: {e}", cert.display())))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn roots(ca: &Path) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).map_err(|e| TlsError::Material(format!("{}: not a usable CA certificate: {e}", ca.display())))?;
    }
    Ok(roots)
}

/// A client configuration that trusts exactly the certificates in `ca` (PEM).
pub fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Material(format!("TLS: {e}")))?
        .with_root_certificates(roots(ca)?)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn generated_material_verifies_and_keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tls");
        let names = names_for("127.0.0.1:7443".parse().unwrap(), "node-1", &["api.example".into()]);
        assert_eq!(&names[..4], ["127.0.0.1", "::1", "node-1", "localhost"]);
        let a = ensure_self_signed(&dir, &names).unwrap();
        let ca1 = std::fs::read(dir.join("ca.crt")).unwrap();
        for k in ["ca.key", "server.key"] {
            assert_eq!(std::fs::metadata(dir.join(k)).unwrap().permissions().mode() & 0o777, 0o600, "{k}");
        }
        // A restart keeps the CA and re-issues a server certificate that still chains to it, for every name.
        let b = ensure_self_signed(&dir, &names).unwrap();
        assert_eq!(std::fs::read(dir.join("ca.crt")).unwrap(), ca1);
        for n in &names {
            verify_chain(&ServerCert { names: vec![n.clone()], ..b.clone() }).unwrap();
        }
        let err = verify_chain(&ServerCert { names: vec!["other.example".into()], ..a }).unwrap_err();
        assert!(err.to_string().contains("does not verify"), "{err}");
        server_config(&b.cert, &b.key).unwrap();
        client_config(b.ca.as_ref().unwrap()).unwrap();
    }

    #[test]
    fn a_foreign_ca_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let names = vec!["127.0.0.1".to_string()];
        let a = ensure_self_signed(&tmp.path().join("a"), &names).unwrap();
        let b = ensure_self_signed(&tmp.path().join("b"), &names).unwrap();
        assert!(verify_chain(&ServerCert { ca: b.ca.clone(), ..a }).is_err());
    }
}
