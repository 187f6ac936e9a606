//! The web console's server side: the embedded app at /ui/, login → session cookie, CSRF on writes, the
//! session accepted only on the console's routes, read-only and scoped tokens, and revocation — attacked over
//! real HTTP (curl) against a real `porin agent`.

#[path = "control_plane/common.rs"]
mod common;

use std::process::Command;

use common::*;

struct Resp {
    status: u16,
    headers: String,
    body: String,
}

/// One request with curl: `-i` gives the status line and headers.
fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>, extra: &[&str]) -> Resp {
    let mut c = Command::new("curl");
    c.args(["-sS", "-i", "-X", method, url, "--max-time", "10"]);
    for (k, v) in headers {
        c.args(["-H", &format!("{k}: {v}")]);
    }
    if let Some(b) = body {
        c.args(["--data-binary", b]);
    }
    c.args(extra);
    let out = c.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Resp { status, headers: head.to_ascii_lowercase(), body: body.to_string() }
}

fn set_cookie(r: &Resp) -> Option<String> {
    r.headers.lines().find_map(|l| l.strip_prefix("set-cookie: ").map(String::from))
}

/// The `porin_session=<id>` pair of a Set-Cookie header (case as sent: ids are lower-case hex).
fn session_pair(r: &Resp) -> String {
    let c = set_cookie(r).unwrap_or_else(|| panic!("no Set-Cookie: {}", r.headers));
    c.split(';').next().unwrap().trim().to_string()
}

fn csrf_of(r: &Resp) -> String {
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body));
    v["csrf"].as_str().unwrap().to_string()
}

const CONSOLE: (&str, &str) = ("X-Porin-Console", "1");

fn login(base: &str, token: &str) -> Resp {
    http("POST", &format!("{base}/porin/v1/console/login"), &[CONSOLE, ("Content-Type", "application/json")], Some(&format!("{{\"token\":\"{token}\"}}")), &[])
}

const TEAM_B: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: team-b}
---
apiVersion: v1
kind: Pod
metadata: {name: vault, namespace: team-b, labels: {app: vault}}
status: {podIP: 10.0.1.1}
---
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: vault-guard, namespace: team-b}
spec:
  tier: app
  selector: all()
  ingress: [{action: Deny}]
---
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: web-app, namespace: team-a}
spec:
  tier: app
  selector: app == 'web'
  ingress: [{action: Allow}]
"#;

#[test]
fn console_login_sessions_csrf_and_scope() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let a = Agent::start(tmp.path(), &["--insecure-listen", &listen, "--dataplane", "none"]);
    a.ok(&["apply", "-f", &a.write("base.yaml", BASE)]);
    a.ok(&["apply", "-f", &a.write("team-b.yaml", TEAM_B)]);
    let base = format!("http://{listen}");
    let admin = std::fs::read_to_string(tmp.path().join("data/admin.token")).unwrap().trim().to_string();

    // The app: public, HTML, strict headers; client routes get the app too.
    let ui = http("GET", &format!("{base}/ui/"), &[], None, &[]);
    assert_eq!(ui.status, 200, "{}", ui.headers);
    assert!(ui.headers.contains("content-type: text/html"), "{}", ui.headers);
    assert!(ui.headers.contains("content-security-policy: default-src 'self'") && ui.headers.contains("frame-ancestors 'none'"), "{}", ui.headers);
    assert!(ui.headers.contains("x-frame-options: deny"), "{}", ui.headers);
    assert!(ui.body.contains("Porin console"), "{}", ui.body);
    assert_eq!(http("GET", &format!("{base}/ui/graph"), &[], None, &[]).body, ui.body);
    let redirect = http("GET", &format!("{base}/ui"), &[], None, &[]);
    assert!(redirect.status == 308 && redirect.headers.contains("location: /ui/"), "{}", redirect.headers);

    // Unauthenticated: 401 and no data, on every console route.
    for path in ["session", "graph", "flows", "policies"] {
        let r = http("GET", &format!("{base}/porin/v1/console/{path}"), &[CONSOLE], None, &[]);
        assert_eq!(r.status, 401, "{path}: {}", r.body);
        assert!(!r.body.contains("team-a") && !r.body.contains("vault"), "{path} leaked: {}", r.body);
    }
    let r = http("POST", &format!("{base}/porin/v1/console/apply"), &[CONSOLE], Some(&app_policy("x", "team-a", "app")), &[]);
    assert_eq!(r.status, 401, "{}", r.body);
    // A forged session id is no session.
    let r = http("GET", &format!("{base}/porin/v1/console/policies"), &[CONSOLE, ("Cookie", "porin_session=00ff")], None, &[]);
    assert_eq!(r.status, 401, "{}", r.body);

    // Bad logins: a wrong token, no console header (a cross-site form), a foreign Origin.
    let r = login(&base, "porin_not-a-token");
    assert!(r.status == 401 && set_cookie(&r).is_none(), "{} {}", r.status, r.headers);
    let r = http("POST", &format!("{base}/porin/v1/console/login"), &[("Content-Type", "application/json")], Some(&format!("{{\"token\":\"{admin}\"}}")), &[]);
    assert!(r.status == 403 && set_cookie(&r).is_none(), "{} {}", r.status, r.body);
    let r = http(
        "POST",
        &format!("{base}/porin/v1/console/login"),
        &[CONSOLE, ("Origin", "https://evil.example"), ("Content-Type", "application/json")],
        Some(&format!("{{\"token\":\"{admin}\"}}")),
        &[],
    );
    assert!(r.status == 403 && set_cookie(&r).is_none(), "{} {}", r.status, r.body);

    // Admin login: the cookie's attributes; the token never comes back.
    let r = login(&base, &admin);
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie = set_cookie(&r).unwrap();
    for attr in ["httponly", "samesite=strict", "path=/", "max-age=28800"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("secure"), "plain HTTP on loopback: no Secure attribute: {cookie}");
    assert!(!r.body.contains(&admin), "the login answer echoes the token: {}", r.body);
    let sess = session_pair(&r);
    let csrf = csrf_of(&r);
    let jar = [CONSOLE, ("Cookie", sess.as_str())];

    // Reads with the session.
    let p = http("GET", &format!("{base}/porin/v1/console/policies"), &jar, None, &[]);
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("platform-guard") && p.body.contains("vault-guard") && p.body.contains("\"team-a/knp.web-in\""), "{}", p.body);
    let g = http("GET", &format!("{base}/porin/v1/console/graph?window=5m"), &jar, None, &[]);
    assert!(g.status == 200 && g.body.contains("wl:team-a/web") && g.body.contains("wl:team-b/vault"), "{}", g.body);
    assert_eq!(http("GET", &format!("{base}/porin/v1/console/graph?window=48h"), &jar, None, &[]).status, 400);
    let w = http("GET", &format!("{base}/porin/v1/console/session"), &jar, None, &[]);
    assert!(w.status == 200 && w.body.contains("\"role\":\"admin\"") && w.body.contains(&csrf), "{}", w.body);

    // The session is only good on the console's routes: the rest of the API wants a token.
    for path in ["/porin/v1/status", "/api/v1/namespaces/team-a/pods", "/porin/v1/flows", "/porin/v1/audit"] {
        let r = http("GET", &format!("{base}{path}"), &jar, None, &[]);
        assert_eq!(r.status, 401, "{path} accepted a console session: {}", r.body);
    }

    // Writes with a session need the CSRF header and a same-origin (or no) Origin.
    let pol = app_policy("from-console", "team-a", "app");
    let apply = |h: &[(&str, &str)]| http("POST", &format!("{base}/porin/v1/console/apply"), h, Some(&pol), &[]);
    let r = apply(&jar);
    assert_eq!(r.status, 403, "no CSRF header: {}", r.body);
    let r = apply(&[CONSOLE, ("Cookie", &sess), ("X-Porin-CSRF", "wrong")]);
    assert_eq!(r.status, 403, "wrong CSRF: {}", r.body);
    let r = apply(&[("Cookie", &sess), ("X-Porin-CSRF", &csrf)]);
    assert_eq!(r.status, 403, "no console header: {}", r.body);
    let r = apply(&[CONSOLE, ("Cookie", &sess), ("X-Porin-CSRF", &csrf), ("Origin", "http://evil.example")]);
    assert_eq!(r.status, 403, "cross-origin: {}", r.body);
    assert!(!a.ok(&["get", "pnp", "-n", "team-a"]).contains("from-console"), "a refused write was applied");
    // The editor's check: the server's dry run answers and writes nothing.
    let r = http("POST", &format!("{base}/porin/v1/console/apply?dryRun=All"), &[CONSOLE, ("Cookie", &sess), ("X-Porin-CSRF", &csrf)], Some(&pol), &[]);
    assert!(r.status == 200 && r.body.contains("\"dryRun\":true"), "{}", r.body);
    assert!(!a.ok(&["get", "pnp", "-n", "team-a"]).contains("from-console"), "a dry run wrote");
    let r = apply(&[CONSOLE, ("Cookie", &sess), ("X-Porin-CSRF", &csrf), ("Origin", &base)]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(a.ok(&["get", "pnp", "-n", "team-a"]).contains("from-console"));

    // A read-only token sees and cannot act.
    let ro = a.ok(&["token", "create", "viewer", "--role", "read-only"]).trim().to_string();
    let r = login(&base, &ro);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"canWrite\":false"), "{}", r.body);
    let (ro_sess, ro_csrf) = (session_pair(&r), csrf_of(&r));
    let r = http("GET", &format!("{base}/porin/v1/console/policies"), &[CONSOLE, ("Cookie", &ro_sess)], None, &[]);
    assert!(r.status == 200 && r.body.contains("vault-guard"), "{}", r.body);
    let pol2 = app_policy("by-viewer", "team-a", "app");
    let r = http("POST", &format!("{base}/porin/v1/console/apply"), &[CONSOLE, ("Cookie", &ro_sess), ("X-Porin-CSRF", &ro_csrf)], Some(&pol2), &[]);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(!a.ok(&["get", "pnp", "-n", "team-a"]).contains("by-viewer"));

    // A scoped token (team-a, tier app): the API filters — other namespaces and tiers are not in any answer.
    let scoped = a.ok(&["token", "create", "team-a", "--role", "scoped", "--namespace", "team-a", "--tier", "app"]).trim().to_string();
    for auth in ["cookie", "bearer"] {
        let h: Vec<(String, String)> = if auth == "cookie" {
            let r = login(&base, &scoped);
            assert!(r.status == 200 && r.body.contains("\"role\":\"scoped\""), "{}", r.body);
            vec![("X-Porin-Console".into(), "1".into()), ("Cookie".into(), session_pair(&r))]
        } else {
            vec![("Authorization".into(), format!("Bearer {scoped}"))]
        };
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let p = http("GET", &format!("{base}/porin/v1/console/policies"), &h, None, &[]);
        assert_eq!(p.status, 200, "{}", p.body);
        assert!(p.body.contains("web-app") && p.body.contains("from-console"), "{}", p.body);
        for hidden in ["team-b", "vault", "platform-guard", "web-in", "\"platform\""] {
            assert!(!p.body.contains(hidden), "{auth}: scoped policies show {hidden}: {}", p.body);
        }
        let g = http("GET", &format!("{base}/porin/v1/console/graph?window=1h"), &h, None, &[]);
        assert!(g.status == 200 && g.body.contains("wl:team-a/web"), "{}", g.body);
        assert!(!g.body.contains("team-b") && !g.body.contains("vault"), "{auth}: scoped graph shows team-b: {}", g.body);
        // Filters cannot name their way out of the scope.
        let f = http("GET", &format!("{base}/porin/v1/console/flows?arg=--namespace&arg=team-b"), &h, None, &[]);
        assert!(f.status == 200 || f.status == 404, "{}", f.body);
        assert!(!f.body.contains("team-b") || f.status == 404, "{}", f.body);
        // Out of scope writes: 403, nothing written.
        let r = http(
            "POST",
            &format!("{base}/porin/v1/console/apply"),
            &[h.as_slice(), &[("X-Porin-CSRF", "x")]].concat(),
            Some(&app_policy("intruder", "team-b", "app")),
            &[],
        );
        assert!(r.status == 403, "{auth}: {}", r.body);
    }
    assert!(!a.ok(&["get", "pnp", "-n", "team-b"]).contains("intruder"));

    // Revoking the token ends its sessions at once.
    let r = login(&base, &ro);
    let ro2 = session_pair(&r);
    assert_eq!(http("GET", &format!("{base}/porin/v1/console/session"), &[CONSOLE, ("Cookie", &ro2)], None, &[]).status, 200);
    a.ok(&["token", "revoke", "viewer"]);
    let r = http("GET", &format!("{base}/porin/v1/console/graph"), &[CONSOLE, ("Cookie", &ro2)], None, &[]);
    assert_eq!(r.status, 401, "{}", r.body);

    // Logout needs the CSRF token, then ends the session.
    let r = http("POST", &format!("{base}/porin/v1/console/logout"), &jar, None, &[]);
    assert_eq!(r.status, 403, "{}", r.body);
    let r = http("POST", &format!("{base}/porin/v1/console/logout"), &[CONSOLE, ("Cookie", &sess), ("X-Porin-CSRF", &csrf)], None, &[]);
    assert!(r.status == 200 && set_cookie(&r).unwrap().contains("max-age=0"), "{}", r.headers);
    assert_eq!(http("GET", &format!("{base}/porin/v1/console/policies"), &jar, None, &[]).status, 401);
}

#[test]
fn https_session_cookie_is_secure() {
    let tmp = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let a = Agent::start(tmp.path(), &["--listen", &listen, "--dataplane", "none"]);
    let admin = std::fs::read_to_string(tmp.path().join("data/admin.token")).unwrap().trim().to_string();
    let ca = tmp.path().join("data/tls/ca.crt");
    let base = format!("https://{listen}");
    let ui = http("GET", &format!("{base}/ui/"), &[], None, &["--cacert", ca.to_str().unwrap()]);
    assert_eq!(ui.status, 200, "{}", ui.headers);
    let r = http(
        "POST",
        &format!("{base}/porin/v1/console/login"),
        &[CONSOLE, ("Content-Type", "application/json")],
        Some(&format!("{{\"token\":\"{admin}\"}}")),
        &["--cacert", ca.to_str().unwrap()],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let c = set_cookie(&r).unwrap();
    assert!(c.contains("; secure") && c.contains("httponly") && c.contains("samesite=strict"), "{c}");
    drop(a);
}
