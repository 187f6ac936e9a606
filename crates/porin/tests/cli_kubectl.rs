//! The CLI's kubectl-shaped surface: error prefixes, `get` output formats and argument forms, `get --watch`
//! rows, `delete -l/--all`, `version`, `completion`. Against a real `porin agent` where a server is involved.

#[path = "control_plane/common.rs"]
mod common;

use std::io::BufReader;
use std::process::{Command, Stdio};

use common::*;

/// `porin ARGS` with no agent anywhere (PORIN_SERVER points at a socket that does not exist).
fn offline(args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(args)
        .env("PORIN_SERVER", dir.path().join("none.sock"))
        .env_remove("PORIN_TOKEN")
        .env_remove("PORIN_CA")
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn server_errors_carry_one_prefix_and_client_errors_another() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &[]);
    a.ok(&["apply", "-f", &a.write("base.yaml", BASE)]);
    let (code, out, err) = a.porin(&["get", "pod", "nope", "-n", "team-a"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err, "Error from server (NotFound): pod \"nope\" not found\n");
    let (code, _, err) = a.porin(&["delete", "pod", "nope", "-n", "team-a"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("Error from server (NotFound): ") && err.matches("Error from server").count() == 1,
        "{err}"
    );
    assert!(!err.contains("error:"), "{err}");
    // Client side: `error: ...`, once.
    let (code, _, err) = a.porin(&["get", "po", "-l", "app in db"]);
    assert!(code == 1 && err.starts_with("error: invalid selector") && err.matches("error:").count() == 1, "{err}");
    let (code, _, err) = offline(&["get", "pods"]);
    assert!(
        code == 1 && err.starts_with("error: connecting to ") && err.contains("is `porin agent` running?"),
        "{err}"
    );
    let (code, _, err) = offline(&["get", "gadgets"]);
    assert!(code == 1 && err.starts_with("error: the server doesn't have a resource type \"gadgets\""), "{err}");
}

#[test]
fn get_output_formats_and_argument_forms() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &[]);
    a.ok(&["apply", "-f", &a.write("base.yaml", BASE)]);
    assert_eq!(a.ok(&["get", "pods", "-n", "team-a", "-o", "name"]), "pod/db\npod/web\n");
    assert_eq!(
        a.ok(&["get", "pnp,netpol", "-n", "team-a", "-o", "name"]),
        "networkpolicy.porin.io/platform-guard\nnetworkpolicy.networking.k8s.io/web-in\n"
    );
    golden("get-pods-show-labels.txt", &a.ok(&["get", "pods", "-n", "team-a", "--show-labels"]));
    golden("get-pods-no-headers.txt", &a.ok(&["get", "pods", "-n", "team-a", "--no-headers"]));
    // KIND/NAME of several kinds: one table per kind, names as type/name.
    golden("get-kind-slash-name.txt", &a.ok(&["get", "pod/web", "netpol/web-in", "tier/app", "-n", "team-a"]));
    golden("get-two-kinds.txt", &a.ok(&["get", "tiers,pods", "-n", "team-a"]));
    // KIND NAME NAME.
    assert_eq!(a.ok(&["get", "pods", "web", "db", "-n", "team-a", "-o", "name"]), "pod/web\npod/db\n");
    // jsonpath on a list and on one object; custom columns.
    assert_eq!(a.ok(&["get", "pods", "-n", "team-a", "-o", "jsonpath={.items[*].metadata.name}"]), "db web");
    assert_eq!(a.ok(&["get", "pod", "web", "-n", "team-a", "-o", "jsonpath={.status.podIP}{\"\\n\"}"]), "10.0.0.1\n");
    assert_eq!(
        a.ok(&["get", "pod/web", "pod/db", "-n", "team-a", "-o", "jsonpath={.items[*].metadata.labels.app}"]),
        "web db"
    );
    golden(
        "get-custom-columns.txt",
        &a.ok(&[
            "get",
            "pods",
            "-n",
            "team-a",
            "-o",
            "custom-columns=NAME:.metadata.name,APP:.metadata.labels.app,NODE:.spec.nodeName",
        ]),
    );
    // Several answers in JSON are one List.
    let v: serde_json::Value =
        serde_json::from_str(&a.ok(&["get", "pod/web", "tier/app", "-n", "team-a", "-o", "json"])).unwrap();
    assert_eq!(v["kind"], "List");
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    // Nothing found: stdout empty, a note on stderr.
    let (code, out, err) = a.porin(&["get", "pods", "-n", "empty", "-o", "name"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", "No resources found in empty namespace.\n"));
    // Bad forms are errors that say what is wrong.
    for (args, needle) in [
        (&["get", "pods", "-o", "yml"][..], "unknown output format \"yml\""),
        (&["get", "pods", "-o", "jsonpath={range .items[*]}{end}"][..], "only plain paths"),
        (&["get", "pods", "-o", "custom-columns=NAME"][..], "HEADER:PATH"),
        (&["get", "pod/web", "db"][..], "KIND/NAME"),
        (&["get", "pods", "pod/web"][..], "KIND/NAME form"),
        (&["get", "pods,gadgets"][..], "\"gadgets\""),
        (&["get", "pods,tiers", "--watch"][..], "one kind"),
    ] {
        let (code, _, err) = a.porin(args);
        assert!(code != 0 && err.contains(needle), "{args:?}: {err}");
    }
}

/// Read lines until one contains `needle` (the watch prints in its own time).
fn line_with(lines: &mut BufReader<std::process::ChildStdout>, needle: &str) -> String {
    for _ in 0..20 {
        let l = read_line(lines);
        assert!(!l.is_empty(), "watch ended before a line with {needle:?}");
        if l.contains(needle) {
            return l;
        }
    }
    panic!("no line with {needle:?}");
}

#[test]
fn watch_prints_the_state_then_a_row_per_change() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &[]);
    a.ok(&["apply", "-f", &a.write("base.yaml", BASE)]);
    let spawn = |extra: &[&str]| {
        let mut child = Command::new(bin())
            .args(["get", "pods", "-n", "team-a", "--watch"])
            .args(extra)
            .env("PORIN_SERVER", &a.socket)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        (child, out)
    };
    let (mut rows, mut rl) = spawn(&[]);
    let (mut evs, mut el) = spawn(&["--output-watch-events"]);
    let (mut names, mut nl) = spawn(&["-o", "name"]);
    let (mut cols, mut cl) = spawn(&["-o", "custom-columns=POD:.metadata.name,ENV:.metadata.labels.env", "--no-headers"]);
    let (mut paths, mut pl) = spawn(&["-o", "jsonpath={.metadata.name}:{.metadata.labels.env}"]);
    // The current state first: a table with its header.
    assert!(read_line(&mut rl).starts_with("NAME "));
    assert!(read_line(&mut rl).starts_with("db "));
    assert!(read_line(&mut rl).starts_with("web "));
    assert!(read_line(&mut el).starts_with("EVENT   NAME "));
    assert!(read_line(&mut el).starts_with("ADDED   db "));
    assert!(read_line(&mut el).starts_with("ADDED   web "));
    assert_eq!(read_line(&mut nl), "pod/db\n");
    assert_eq!(read_line(&mut nl), "pod/web\n");
    assert_eq!(read_line(&mut cl), "db    <none>\n");
    assert_eq!(read_line(&mut cl), "web   <none>\n");
    assert_eq!(read_line(&mut pl), "db:\n");
    assert_eq!(read_line(&mut pl), "web:\n");
    a.ok(&["label", "pod", "web", "-n", "team-a", "env=prod"]);
    a.ok(&["delete", "pod", "db", "-n", "team-a"]);
    // Rows, not JSON; aligned under the header of the first table.
    let l = line_with(&mut rl, "web");
    assert!(l.starts_with("web ") && !l.contains('{'), "{l:?}");
    let l = line_with(&mut rl, "db");
    assert!(l.starts_with("db "), "{l:?}");
    assert!(line_with(&mut el, "web").starts_with("MODIFIED   web "));
    assert!(line_with(&mut el, "db").starts_with("DELETED    db "));
    assert_eq!(read_line(&mut nl), "pod/web\n");
    assert_eq!(read_line(&mut nl), "pod/db\n");
    assert_eq!(read_line(&mut cl), "web   prod\n");
    assert_eq!(read_line(&mut cl), "db    <none>\n");
    assert_eq!(read_line(&mut pl), "web:prod\n");
    assert_eq!(read_line(&mut pl), "db:\n");
    for c in [&mut rows, &mut evs, &mut names, &mut cols, &mut paths] {
        c.kill().unwrap();
        c.wait().unwrap();
    }
}

#[test]
fn delete_by_selector_or_all_is_one_transaction() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &[]);
    a.ok(&["apply", "-f", &a.write("base.yaml", BASE)]);
    let web2 = "apiVersion: v1\nkind: Pod\nmetadata: {name: web2, namespace: team-a, labels: {app: web}}\nstatus: {podIP: 10.0.0.3}\n";
    a.ok(&["apply", "-f", &a.write("web2.yaml", web2)]);
    assert_eq!(
        a.ok(&["delete", "pods", "-n", "team-a", "-l", "app=web"]),
        "pod \"web\" deleted\npod \"web2\" deleted\n"
    );
    assert_eq!(a.ok(&["get", "pods", "-n", "team-a", "-o", "name"]), "pod/db\n");
    let (code, out, err) = a.porin(&["delete", "pods", "-n", "team-a", "-l", "app=web"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", "No resources found in team-a namespace.\n"));
    // A scoped token may not delete the platform tier's policy: `--all` then deletes nothing at all.
    let scoped = a
        .ok(&["token", "create", "team-a", "--role", "scoped", "--namespace", "team-a", "--tier", "app"])
        .trim()
        .to_string();
    a.ok(&["apply", "-f", &a.write("mine.yaml", &app_policy("mine", "team-a", "app"))]);
    let (code, _, err) = a.porin_as(Some(&scoped), &["delete", "pnp", "--all", "-n", "team-a"]);
    assert!(code == 1 && err.starts_with("Error from server (Forbidden): "), "{err}");
    assert_eq!(
        a.ok(&["get", "pnp", "-n", "team-a", "-o", "name"]),
        "networkpolicy.porin.io/mine\nnetworkpolicy.porin.io/platform-guard\n"
    );
    assert_eq!(
        a.ok(&["delete", "pnp", "--all", "-n", "team-a"]),
        "networkpolicy.porin.io \"mine\" deleted\nnetworkpolicy.porin.io \"platform-guard\" deleted\n"
    );
    // Other namespaces and kinds are untouched.
    assert_eq!(a.ok(&["get", "pods", "-n", "team-a", "-o", "name"]), "pod/db\n");
    for (args, needle) in [
        (&["delete", "pods", "web", "--all"][..], "not both"),
        (&["delete", "pods", "-l", "app=web", "--all"][..], "cannot be used with"),
        (&["delete", "pods", "-l", "app in web"][..], "invalid selector"),
        (&["delete", "pods"][..], "usage: porin delete"),
    ] {
        let (code, _, err) = a.porin(args);
        assert!(code != 0 && err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn version_names_client_and_server() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &[]);
    let v = env!("CARGO_PKG_VERSION");
    assert_eq!(
        a.ok(&["version"]),
        format!(
            "Client Version: v{v}\nServer Version: unknown (the agent on node test-node does not report its version)\n"
        )
    );
    assert_eq!(offline(&["version", "--client"]), (0, format!("Client Version: v{v}\n"), String::new()));
    // No server: the client line, then the error.
    let (code, out, err) = offline(&["version"]);
    assert_eq!((code, out), (1, format!("Client Version: v{v}\n")));
    assert!(err.starts_with("error: connecting to "), "{err}");
}

#[test]
fn completion_scripts_for_each_shell() {
    let (code, bash, _) = offline(&["completion", "bash"]);
    assert_eq!(code, 0);
    assert!(
        bash.contains("_porin()") && bash.contains("complete -F _porin") && bash.contains("--show-labels"),
        "{bash}"
    );
    let (code, zsh, _) = offline(&["completion", "zsh"]);
    assert!(code == 0 && zsh.starts_with("#compdef porin"), "{zsh}");
    let (code, fish, _) = offline(&["completion", "fish"]);
    assert!(code == 0 && fish.contains("complete -c porin") && fish.contains("__fish_porin"), "{fish}");
    let (code, _, err) = offline(&["completion", "tcsh"]);
    assert!(code == 2 && err.contains("tcsh"), "{err}");
    // The scripts are valid shell, as far as bash itself can tell.
    if Command::new("bash").arg("--version").output().is_ok() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("porin.bash");
        std::fs::write(&f, &bash).unwrap();
        let st = Command::new("bash").arg("-n").arg(&f).status().unwrap();
        assert!(st.success());
    }
}
