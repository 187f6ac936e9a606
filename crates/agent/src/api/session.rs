//! Console sessions: sign in with a Porin token, get a session cookie.
//!
//! * `POST /porin/v1/console/login` with `{"token": "..."}` (and the header `X-Porin-Console: 1`) checks the
//!   token like any bearer token and answers with a `Set-Cookie` of a random session id: `HttpOnly`,
//!   `SameSite=Strict`, `Path=/`, `Max-Age` ([`SESSION_TTL`]), and `Secure` when the connection is TLS. The body
//!   names the caller, its role and scope, and a CSRF token the SPA keeps in memory.
//! * The server keeps only the SHA-256 of the session id. Each request with the cookie re-checks the token the
//!   session was opened with, so revoking or expiring the token ends its sessions at once.
//! * The cookie is accepted only on the console's routes (`/porin/v1/console/...`, see [`super::console`]):
//!   those filter by scope. A request that is not a GET/HEAD and carries a session must also carry
//!   `X-Porin-CSRF` equal to the session's CSRF token, and an `Origin`, when present, must be this host: a
//!   cross-site page can neither send the cookie (SameSite=Strict) nor set that header without a CORS
//!   preflight, which this server never answers.
//! * Nothing that authenticates ever travels in a URL.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::header::{COOKIE, HOST, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ApiError, PeerInfo, Shared};
use crate::auth::{Identity, Role};

/// How long a session lives (seconds).
pub const SESSION_TTL: i64 = 8 * 3600;
/// The session cookie's name.
pub const COOKIE_NAME: &str = "porin_session";
/// The header the SPA sends on every console request (login included); a cross-site form cannot.
pub const CONSOLE_HEADER: &str = "x-porin-console";
/// The header that carries the session's CSRF token on writes.
pub const CSRF_HEADER: &str = "x-porin-csrf";
/// At most this many live sessions (each needs a valid token to open); beyond it logins get 503.
const MAX_SESSIONS: usize = 10_000;
/// A login body is a token in a small JSON object.
pub const MAX_LOGIN_BODY: usize = 4096;

#[derive(Clone)]
struct Session {
    /// The token the session was opened with (kept only in this process's memory).
    token: String,
    csrf: String,
    expires: i64,
}

/// Sessions by the SHA-256 of their id.
static SESSIONS: LazyLock<Mutex<HashMap<String, Session>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

fn sessions() -> std::sync::MutexGuard<'static, HashMap<String, Session>> {
    SESSIONS.lock().unwrap_or_else(|e| e.into_inner())
}

fn random_hex(n: usize) -> Result<String, ApiError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| ApiError::internal(format!("random: {e}")))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Constant-time equality of two secrets.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The caller's role in the shape the console shows.
pub fn describe_identity(id: &Identity) -> Value {
    let (role, namespaces, tiers) = match &id.role {
        Role::Admin => ("admin", None, None),
        Role::ReadOnly => ("read-only", None, None),
        Role::Cni => ("cni", None, None),
        Role::Scoped { namespaces, tiers } => ("scoped", Some(namespaces.clone()), Some(tiers.clone())),
    };
    json!({
        "user": id.user,
        "role": role,
        "namespaces": namespaces,
        "tiers": tiers,
        "canWrite": matches!(id.role, Role::Admin | Role::Scoped { .. }),
    })
}

/// An `Origin` header, when present, must name the host the request was sent to.
fn check_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(ORIGIN) else { return Ok(()) };
    let origin = origin.to_str().unwrap_or("");
    let host = headers.get(HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
    if host.is_empty() || origin_host != host {
        return Err(ApiError::forbidden(format!("cross-origin console request from {origin:?} refused")));
    }
    Ok(())
}

fn require_console_header(headers: &HeaderMap) -> Result<(), ApiError> {
    if headers.get(CONSOLE_HEADER).is_none() {
        return Err(ApiError::forbidden(format!("console requests carry the {CONSOLE_HEADER} header")));
    }
    Ok(())
}

/// `POST /porin/v1/console/login` `{"token": "..."}`.
pub async fn login(State(st): State<Shared>, ConnectInfo(peer): ConnectInfo<PeerInfo>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    require_console_header(&headers)?;
    check_origin(&headers)?;
    if body.len() > MAX_LOGIN_BODY {
        return Err(ApiError::bad_request(format!("a login body is at most {MAX_LOGIN_BODY} bytes")));
    }
    let v: Value = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("login body: {e}")))?;
    let Some(token) = v.get("token").and_then(Value::as_str).map(str::trim).filter(|t| !t.is_empty()) else {
        return Err(ApiError::bad_request("login body: field \"token\" (a Porin token) is required"));
    };
    // Only tokens sign in: a socket peer's uid is not a credential a browser can carry.
    let id = st.authenticate(Some(token), &PeerInfo { uid: None, tls: peer.tls }).await?;
    if matches!(id.role, Role::Cni) {
        return Err(ApiError::forbidden(format!("{} has a cni token: it cannot sign in to the console", id.user)));
    }
    let sid = random_hex(32)?;
    let csrf = random_hex(32)?;
    let now = crate::timefmt::now_secs();
    let expires = now + SESSION_TTL;
    {
        let mut s = sessions();
        s.retain(|_, v| v.expires > now);
        if s.len() >= MAX_SESSIONS {
            return Err(ApiError::unavailable("too many console sessions; try again later"));
        }
        s.insert(crate::sha256::hex_digest(sid.as_bytes()), Session { token: token.to_string(), csrf: csrf.clone(), expires });
    }
    let secure = if peer.tls { "; Secure" } else { "" };
    let cookie = format!("{COOKIE_NAME}={sid}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_TTL}{secure}");
    let mut body = describe_identity(&id);
    body["csrf"] = json!(csrf);
    body["expires"] = json!(crate::timefmt::rfc3339(expires));
    let mut resp = Json(body).into_response();
    resp.headers_mut().insert(SET_COOKIE, HeaderValue::from_str(&cookie).map_err(|e| ApiError::internal(e.to_string()))?);
    Ok(resp)
}

/// `POST /porin/v1/console/logout`: ends the session (when there is one) and clears the cookie.
pub async fn logout(headers: HeaderMap) -> Result<Response, ApiError> {
    require_console_header(&headers)?;
    check_origin(&headers)?;
    if let Some(sid) = cookie(&headers, COOKIE_NAME) {
        let key = crate::sha256::hex_digest(sid.as_bytes());
        let mut s = sessions();
        // Logging out is a write: it needs the session's CSRF token like any other.
        let csrf = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if let Some(sess) = s.get(&key) {
            if !same_secret(&sess.csrf, csrf) {
                return Err(ApiError::forbidden(format!("logout needs the session's {CSRF_HEADER} header")));
            }
            s.remove(&key);
        }
    }
    let mut resp = Json(json!({"loggedOut": true})).into_response();
    resp.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_static("porin_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(resp)
}

/// `GET /porin/v1/console/session`: who the caller is, and the session's CSRF token (readable only by a
/// same-origin page: the server sends no CORS headers).
pub async fn whoami(axum::Extension(id): axum::Extension<Identity>, headers: HeaderMap) -> Json<Value> {
    let mut body = describe_identity(&id);
    if let Some(s) = cookie(&headers, COOKIE_NAME).and_then(|sid| sessions().get(&crate::sha256::hex_digest(sid.as_bytes())).cloned()) {
        body["csrf"] = json!(s.csrf);
        body["expires"] = json!(crate::timefmt::rfc3339(s.expires));
    }
    Json(body)
}

/// Authentication of the console's data routes: a bearer token (scripts, tests), else the session cookie
/// (with the CSRF check on writes), else the Unix socket peer. Then the same admission as every API route.
pub async fn console_authn(State(st): State<Shared>, ConnectInfo(peer): ConnectInfo<PeerInfo>, req: Request, next: Next) -> Response {
    let (headers, method) = (req.headers().clone(), req.method().clone());
    match authenticate(&st, &peer, &headers, &method).await {
        Ok(id) => match super::admit(&id, req).await {
            Ok(mut req) => {
                req.extensions_mut().insert(id);
                next.run(req).await
            }
            Err(e) => e.into_response(),
        },
        Err(e) => e.into_response(),
    }
}

async fn authenticate(st: &Shared, peer: &PeerInfo, headers: &HeaderMap, method: &Method) -> Result<Identity, ApiError> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|s| s.trim().to_string());
    if bearer.is_some() {
        return st.authenticate(bearer.as_deref(), peer).await;
    }
    let Some(sid) = cookie(headers, COOKIE_NAME) else {
        return st.authenticate(None, peer).await;
    };
    let key = crate::sha256::hex_digest(sid.as_bytes());
    let now = crate::timefmt::now_secs();
    let sess = {
        let mut s = sessions();
        match s.get(&key) {
            Some(v) if v.expires > now => v.clone(),
            Some(_) => {
                s.remove(&key);
                return Err(ApiError::unauthorized("the console session expired: sign in again"));
            }
            None => return Err(ApiError::unauthorized("no such console session: sign in again")),
        }
    };
    if !matches!(*method, Method::GET | Method::HEAD) {
        require_console_header(headers)?;
        check_origin(headers)?;
        let csrf = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !same_secret(&sess.csrf, csrf) {
            return Err(ApiError::forbidden(format!("a console write with a session needs the session's {CSRF_HEADER} header")));
        }
    }
    // The token behind the session is checked on every request: revoked or expired, the session is over.
    match st.authenticate(Some(&sess.token), peer).await {
        Ok(id) => Ok(id),
        Err(e) => {
            sessions().remove(&key);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_parsing_finds_only_the_named_cookie() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; porin_session=abc; b=2"));
        assert_eq!(cookie(&h, COOKIE_NAME).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "porin"), None);
        let mut h2 = HeaderMap::new();
        h2.append(COOKIE, HeaderValue::from_static("xporin_session=abc"));
        assert_eq!(cookie(&h2, COOKIE_NAME), None);
    }

    #[test]
    fn origin_must_match_host() {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("127.0.0.1:7480"));
        assert!(check_origin(&h).is_ok(), "no Origin: same-origin navigation or a tool");
        h.insert(ORIGIN, HeaderValue::from_static("http://127.0.0.1:7480"));
        assert!(check_origin(&h).is_ok());
        h.insert(ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(check_origin(&h).is_err());
        h.insert(ORIGIN, HeaderValue::from_static("null"));
        assert!(check_origin(&h).is_err());
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", "a"));
    }
}
