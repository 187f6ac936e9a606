//! Bindings (WorkloadEndpoints) through the real API: who may write them, the system-owned parts of Pods
//! (status, `porin.io/*` annotations), and duplicate addresses refused with nothing written.

#[path = "control_plane/common.rs"]
mod common;

use common::*;

fn wep(name: &str, ns: &str, pod: &str, ifname: &str, ip: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec: {{node: test-node, pod: {pod}, interfaceName: {ifname}, ipNetworks: ['{ip}/32'], orchestrator: k8s, endpoint: eth0}}\n"
    )
}

const WEB_AS_WRITTEN: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: team-a, labels: {app: web}}\n\
     spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}\n";

fn weps(a: &Agent) -> String {
    a.ok(&["get", "wep", "-A", "-o", "json"])
}

#[test]
fn tenants_cannot_touch_bindings_pod_status_or_system_annotations() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &["--dataplane", "none"]);
    a.ok(&["apply", "-f", &a.write("base.yaml", BASE)]);
    let scoped = a.ok(&["token", "create", "team-a", "--role", "scoped", "--namespace", "team-a", "--tier", "app"]).trim().to_string();
    let ro = a.ok(&["token", "create", "viewer", "--role", "read-only"]).trim().to_string();
    let web_wep = a.write("wep.yaml", &wep("web", "team-a", "web", "porinx0", "10.0.0.1"));

    // Scoped and read-only tokens may not create a WorkloadEndpoint, even in their own namespace.
    for t in [&scoped, &ro] {
        let (code, _, err) = a.porin_as(Some(t), &["apply", "-f", &web_wep]);
        assert!(code != 0 && err.contains("Forbidden"), "{err}");
    }
    assert!(!weps(&a).contains("porinx0"), "nothing written");
    // Admin may; then the tenant may neither change nor delete it.
    assert_eq!(a.ok(&["apply", "-f", &web_wep]), "workloadendpoint.porin.io/web created\n");
    let listed = a.ok(&["get", "wep", "-A"]);
    assert!(listed.contains("NAMESPACE") && listed.contains("team-a") && listed.contains("porinx0") && listed.contains("10.0.0.1/32"), "{listed}");
    let moved = a.write("moved.yaml", &wep("web", "team-a", "web", "porinx9", "10.0.0.1"));
    let (code, _, err) = a.porin_as(Some(&scoped), &["apply", "-f", &moved]);
    assert!(code != 0 && err.contains("Forbidden") && err.contains("system-owned"), "{err}");
    let (code, _, err) = a.porin_as(Some(&scoped), &["delete", "wep", "web", "-n", "team-a"]);
    assert!(code != 0 && err.contains("Forbidden"), "{err}");
    let (code, _, err) = a.porin_as(Some(&scoped), &["delete", "-f", &web_wep]);
    assert!(code != 0 && err.contains("Forbidden"), "{err}");
    assert!(weps(&a).contains("porinx0"), "still bound");

    // Pod status is system-owned: a tenant may not set it (403 naming the field) ...
    let moved_ip = format!("{WEB_AS_WRITTEN}status: {{podIP: 10.0.0.99}}\n");
    let (code, _, err) = a.porin_as(Some(&scoped), &["apply", "-f", &a.write("ip.yaml", &moved_ip)]);
    assert!(code != 0 && err.contains("Forbidden") && err.contains("status.podIP"), "{err}");
    // ... nor a porin.io/ annotation (the old binding annotation included) ...
    let annotated = WEB_AS_WRITTEN.replace("labels: {app: web}}", "labels: {app: web}, annotations: {porin.io/interface: porinx1}}");
    let (code, _, err) = a.porin_as(Some(&scoped), &["apply", "-f", &a.write("annot.yaml", &annotated)]);
    assert!(code != 0 && err.contains("Forbidden") && err.contains("porin.io/interface"), "{err}");
    // ... and a new pod of its own carrying one is refused too.
    let hijack = "apiVersion: v1\nkind: Pod\nmetadata: {name: zz-hijack, namespace: team-a, annotations: {porin.io/netns: /proc/1/ns/net}}\n";
    let (code, _, err) = a.porin_as(Some(&scoped), &["apply", "-f", &a.write("hijack.yaml", hijack)]);
    assert!(code != 0 && err.contains("porin.io/netns"), "{err}");
    // Re-applying the pod as the user wrote it (no status) keeps the stored status: the pod keeps its address.
    assert_eq!(a.porin_as(Some(&scoped), &["apply", "-f", &a.write("web.yaml", WEB_AS_WRITTEN)]).0, 0);
    let pod = a.ok(&["get", "pod", "web", "-n", "team-a", "-o", "json"]);
    assert!(pod.contains("\"podIP\": \"10.0.0.1\""), "{pod}");
    // Admin may set status and annotations (annotations are inert: nothing reads them).
    a.ok(&["apply", "-f", &a.write("annot-admin.yaml", &annotated)]);
}

#[test]
fn a_cni_token_writes_bindings_and_pod_status_only() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &["--dataplane", "none"]);
    a.ok(&["apply", "-f", &a.write("base.yaml", BASE)]);
    let cni = a.ok(&["token", "create", "cni", "--role", "cni"]).trim().to_string();
    let (code, _, err) = a.porin_as(Some(&cni), &["apply", "-f", &a.write("w.yaml", &wep("web", "team-a", "web", "porinx0", "10.0.0.1"))]);
    assert_eq!(code, 0, "{err}");
    // Pod status of an existing pod: yes. Anything else about pods, or any other kind: no.
    let status = "apiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: team-a, labels: {app: db}}\nstatus: {podIP: 10.0.0.3}\n";
    let (code, _, err) = a.porin_as(Some(&cni), &["apply", "-f", &a.write("st.yaml", status)]);
    assert_eq!(code, 0, "{err}");
    let relabel = status.replace("app: db", "app: web");
    let (code, _, err) = a.porin_as(Some(&cni), &["apply", "-f", &a.write("rl.yaml", &relabel)]);
    assert!(code != 0 && err.contains("Forbidden") && err.contains("only the status"), "{err}");
    let newpod = "apiVersion: v1\nkind: Pod\nmetadata: {name: new, namespace: team-a}\nstatus: {podIP: 10.0.0.7}\n";
    let (code, _, err) = a.porin_as(Some(&cni), &["apply", "-f", &a.write("np.yaml", newpod)]);
    assert!(code != 0 && err.contains("Forbidden"), "{err}");
    let (code, _, err) = a.porin_as(Some(&cni), &["delete", "pod", "db", "-n", "team-a"]);
    assert!(code != 0 && err.contains("Forbidden"), "{err}");
    let (code, _, err) = a.porin_as(Some(&cni), &["apply", "-f", &a.write("p.yaml", &app_policy("x", "team-a", "app"))]);
    assert!(code != 0 && err.contains("Forbidden") && err.contains("(cni)"), "{err}");
    let (code, _, err) = a.porin_as(Some(&cni), &["token", "create", "y", "--role", "admin"]);
    assert!(code != 0 && err.contains("Forbidden"), "{err}");
}

#[test]
fn duplicate_addresses_and_interfaces_are_refused_naming_both_objects() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &["--dataplane", "none"]);
    a.ok(&["apply", "-f", &a.write("base.yaml", BASE)]);
    a.ok(&["apply", "-f", &a.write("w.yaml", &wep("web", "team-a", "web", "porinx0", "10.0.0.1"))]);
    let before = (a.ok(&["get", "pods", "-A", "-o", "json"]), weps(&a));

    // A second pod claiming web's address: 409, naming both; nothing of the batch is written.
    let thief = "apiVersion: v1\nkind: Pod\nmetadata: {name: thief, namespace: team-a}\nstatus: {podIP: 10.0.0.1}\n";
    let batch = format!("{}---\n{thief}", app_policy("innocent", "team-a", "app"));
    let (code, _, err) = a.porin(&["apply", "-f", &a.write("thief.yaml", &batch)]);
    assert!(code != 0 && err.contains("Conflict") && err.contains("Pod team-a/web") && err.contains("Pod team-a/thief"), "{err}");
    assert!(!a.ok(&["get", "pnp", "-A"]).contains("innocent"), "the batch is atomic");
    // Changing an existing pod's status onto another's address: refused too.
    let db = "apiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: team-a, labels: {app: db}}\nstatus: {podIP: 10.0.0.1}\n";
    let (code, _, err) = a.porin(&["apply", "-f", &a.write("db.yaml", db)]);
    assert!(code != 0 && err.contains("Conflict") && err.contains("Pod team-a/db"), "{err}");
    // A WorkloadEndpoint for db claiming web's address, or web's interface: refused.
    let (code, _, err) = a.porin(&["apply", "-f", &a.write("w2.yaml", &wep("db", "team-a", "db", "porinx1", "10.0.0.1"))]);
    assert!(code != 0 && err.contains("WorkloadEndpoint team-a/db") && err.contains("Pod team-a/web"), "{err}");
    let (code, _, err) = a.porin(&["apply", "-f", &a.write("w3.yaml", &wep("db", "team-a", "db", "porinx0", "10.0.0.2"))]);
    assert!(code != 0 && err.contains("porinx0") && err.contains("WorkloadEndpoint team-a/web"), "{err}");
    assert_eq!((a.ok(&["get", "pods", "-A", "-o", "json"]), weps(&a)), before, "nothing written");
    // The offline validator reports it as well, with file, document and field path.
    let f = a.write("offline.yaml", &format!("{BASE}---\n{thief}"));
    let (code, _, err) = a.porin(&["validate", "-f", &f]);
    assert!(code != 0 && err.contains("offline.yaml doc 8") && err.contains("status.podIP") && err.contains("Pod team-a/web"), "{err}");
    // Once web lets go of the address, another pod may take it.
    a.ok(&["delete", "wep", "web", "-n", "team-a"]);
    a.ok(&["delete", "pod", "web", "-n", "team-a"]);
    a.ok(&["apply", "-f", &a.write("thief2.yaml", thief)]);
}

#[test]
fn the_old_binding_annotation_binds_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &[]);
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: x, namespace: team-a, annotations: {porin.io/interface: lo}}\n\
               spec: {nodeName: test-node}\nstatus: {podIP: 10.0.0.5}\n";
    a.ok(&["apply", "-f", &a.write("pod.yaml", pod)]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let s: serde_json::Value = serde_json::from_str(&a.ok(&["status", "-o", "json"])).unwrap();
    assert_eq!(s["dataplane"]["endpoints"], serde_json::json!([]), "{s}");
    assert!(s["dataplane"]["mode"].as_str().unwrap().contains("idle"), "{s}");
}
