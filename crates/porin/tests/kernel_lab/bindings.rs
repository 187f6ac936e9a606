//! Bindings on real packets: WorkloadEndpoints, not pod annotations, decide what the kernel enforces where.

use super::*;

// ---- Bindings: WorkloadEndpoints, not pod annotations, decide what the kernel enforces where. ----

/// x/a accepts ingress only from namespace y, on TCP 81.
const X_A_FROM_Y_81: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x-a-from-y-81, namespace: x}\n\
spec:\n  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Ingress]\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {ns: y}}}]\n    ports: [{protocol: TCP, port: 81}]\n";

/// x/a accepts ingress only from pods labelled access=yes (any namespace).
const X_A_FROM_ACCESS: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x-a-from-access, namespace: x}\n\
spec:\n  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Ingress]\n  ingress:\n  - from: [{namespaceSelector: {}, podSelector: {matchLabels: {access: 'yes'}}}]\n";

fn tmp_write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn endpoints_by_state(st: &Value) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in st["dataplane"]["endpoints"].as_array().unwrap() {
        *m.entry(e["state"].as_str().unwrap().to_string()).or_insert(0) += 1;
    }
    m
}

#[test]
fn reapplying_pod_manifests_as_written_changes_no_enforcement() {
    if !kernel_ok() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = fixture("tests/fixtures/netpol-e2e/cluster.yaml");
    let dir = tempfile::tempdir().unwrap();
    let policy = tmp_write(dir.path(), "policy.yaml", X_A_FROM_Y_81);
    let lab = TestLab::up("ktr", 1, std::slice::from_ref(&cluster), None);
    let l = lab.lab();
    let to = |from: &str, to: &str, port: u16| l.probe_one(from, to, port, porin_lab::Proto::Tcp, Duration::from_millis(500)).unwrap();
    let reapply = |step: &str| {
        let out = lab.ok(&["apply", "-f", &cluster]);
        assert!(out.lines().all(|l| l.ends_with(" unchanged")), "{step}: re-applying the pods as written changed something:\n{out}");
        lab.lab_ok(&["wait"]);
        let st = lab.status();
        assert_eq!(endpoints_by_state(&st), BTreeMap::from([("programmed".to_string(), 9)]), "{step}: {st}");
    };
    let wep_list = lab.ok(&["get", "wep", "-A"]);
    assert_eq!(wep_list.lines().count(), 10, "one WorkloadEndpoint per pod:\n{wep_list}");
    assert!(wep_list.contains("n0-k8s-a-eth0"), "{wep_list}");

    // Step 1, open cluster: re-apply, still everything open.
    reapply("open");
    assert!(to("x/b", "x/a", 81) && to("z/c", "x/a", 80));

    // Step 2, x/a isolated: re-apply at once and again later; the kernel must equal the engine each time.
    lab.apply(&[&policy]);
    let expected = matrix(&[cluster.clone(), policy.clone()]);
    let probe81 = || lab.probe(&["--port", "81", "--protocol", "tcp"]);
    let expected81 = {
        let mut e = expected.clone();
        e["matrices"].as_array_mut().unwrap().retain(|m| m["port"] == 81 && m["protocol"] == "TCP");
        e
    };
    assert_same("isolated", &probe81(), &expected81);
    for step in ["isolated, first re-apply", "isolated, second re-apply"] {
        reapply(step);
        assert_same(step, &probe81(), &expected81);
        assert!(!to("x/b", "x/a", 81) && !to("z/c", "x/a", 81) && !to("y/a", "x/a", 80) && to("y/b", "x/a", 81), "{step}");
    }

    // Step 3, the old hijack: a pod naming x/a's veth in the old annotations, created and deleted as admin
    // (tenants are refused outright). Annotations bind nothing, so x/a stays enforced throughout.
    let victim = l.pod("x/a").unwrap().clone();
    let hijack = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: zz-hijack\n  namespace: y\n  annotations: {{porin.io/interface: {}, porin.io/netns: {}}}\n",
        victim.host_ifname, victim.node_netns
    );
    let hijack = tmp_write(dir.path(), "hijack.yaml", &hijack);
    lab.apply(&[&hijack]);
    assert!(!to("x/b", "x/a", 81) && to("y/b", "x/a", 81), "after the hijack pod was created");
    lab.delete(&[&hijack]);
    assert!(!to("x/b", "x/a", 81) && !to("z/a", "x/a", 81) && to("y/b", "x/a", 81), "after the hijack pod was deleted");
    reapply("after the hijack");
    assert_same("after the hijack", &probe81(), &expected81);
}

#[test]
fn a_lost_binding_drops_and_stays_attached_until_bound_again() {
    if !kernel_ok() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = fixture("tests/fixtures/netpol-e2e/cluster.yaml");
    let dir = tempfile::tempdir().unwrap();
    let lab = TestLab::up("ktl", 1, std::slice::from_ref(&cluster), None);
    let l = lab.lab();
    let to = |from: &str, to: &str| l.probe_one(from, to, 80, porin_lab::Proto::Tcp, Duration::from_millis(500)).unwrap();
    assert!(to("x/a", "y/a") && to("y/a", "x/a"), "open cluster");
    let victim = l.pod("x/a").unwrap().clone();
    // Keep the objects as stored, to put them back later.
    let stored = |args: &[&str]| -> String {
        let mut v: Value = serde_json::from_str(&lab.ok(args)).unwrap();
        v["metadata"].as_object_mut().unwrap().remove("resourceVersion");
        serde_json::to_string(&v).unwrap()
    };
    let pod = tmp_write(dir.path(), "pod.json", &stored(&["get", "pod", "a", "-n", "x", "-o", "json"]));
    let wep = tmp_write(dir.path(), "wep.json", &stored(&["get", "wep", "n0-k8s-a-eth0", "-n", "x", "-o", "json"]));
    let state_of = |ifname: &str| -> Value {
        let st = lab.status();
        st["dataplane"]["endpoints"].as_array().unwrap().iter().find(|e| e["interface"] == ifname).cloned().unwrap_or(Value::Null)
    };

    // The WorkloadEndpoint goes: x/a's interface stays attached and drops both ways; nothing else changes.
    lab.ok(&["delete", "wep", "n0-k8s-a-eth0", "-n", "x"]);
    lab.lab_ok(&["wait"]);
    assert!(!to("x/a", "y/a") && !to("y/a", "x/a") && !to("x/b", "x/a"), "an unbound interface passes traffic");
    assert!(to("y/a", "x/b") && to("x/b", "y/a"), "other pods are affected");
    let e = state_of(&victim.host_ifname);
    assert_eq!(e["state"], "unbound", "{e}");
    assert_eq!(e["ifindex"], victim.host_ifindex, "{e}");
    // Then the pod as well: still dropping.
    lab.ok(&["delete", "pod", "a", "-n", "x"]);
    lab.lab_ok(&["wait"]);
    assert!(!to("x/a", "y/a") && !to("y/a", "x/a"), "dropped after the pod is deleted too");
    // The binding comes back before its pod: denied (reported), still nothing passes.
    lab.apply(&[&wep]);
    let e = state_of(&victim.host_ifname);
    assert_eq!(e["state"], "denied", "{e}");
    assert!(e["error"].as_str().unwrap().contains("does not exist"), "{e}");
    assert!(lab.status()["health"].as_str().unwrap().starts_with("degraded"), "health must show the denied endpoint");
    assert!(!to("x/a", "y/a") && !to("y/a", "x/a"), "a WorkloadEndpoint without its pod opened traffic");
    // The pod comes back: bound, open again.
    lab.apply(&[&pod]);
    assert_eq!(state_of(&victim.host_ifname)["state"], "programmed");
    assert!(to("x/a", "y/a") && to("y/a", "x/a"), "re-bound endpoint is open again");
    assert_eq!(lab.status()["health"], "ok");

    // An unbound interface that goes away takes its state and pinned links with it (refresh tick).
    let other = l.pod("x/b").unwrap().clone();
    lab.ok(&["delete", "wep", "n0-k8s-b-eth0", "-n", "x"]);
    lab.lab_ok(&["wait"]);
    assert_eq!(state_of(&other.host_ifname)["state"], "unbound");
    let links = Path::new(lab.status()["dataplane"]["pinDir"].as_str().unwrap()).join("links");
    let pins = || {
        std::fs::read_dir(&links)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("{}_", other.host_ifname)))
            .count()
    };
    assert!(pins() > 0, "the unbound interface lost its links while it exists");
    let out = Command::new("ip").args(["netns", "exec", &other.node_netns, "ip", "link", "del", &other.host_ifname]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t0 = Instant::now();
    while !(state_of(&other.host_ifname).is_null() && pins() == 0) {
        assert!(t0.elapsed() < Duration::from_secs(15), "state of a deleted interface kept: {} ({} pins)", state_of(&other.host_ifname), pins());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn duplicate_address_forced_into_etcd_denies_its_claimants_and_label_changes_still_reach_the_kernel() {
    if !kernel_ok() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = fixture("tests/fixtures/netpol-e2e/cluster.yaml");
    let dir = tempfile::tempdir().unwrap();
    let policy = tmp_write(dir.path(), "policy.yaml", X_A_FROM_ACCESS);
    let lab = TestLab::up("ktd", 2, std::slice::from_ref(&cluster), None);
    let l = lab.lab();
    let to = |from: &str, to: &str| l.probe_one(from, to, 80, porin_lab::Proto::Tcp, Duration::from_millis(500)).unwrap();
    lab.apply(&[&policy]);
    lab.ok(&["label", "pod", "b", "-n", "y", "access=yes"]);
    lab.lab_ok(&["wait"]);
    assert!(to("y/b", "x/a") && !to("y/c", "x/a"), "policy before the conflict");

    // A pod claiming an existing pod's address, written straight into etcd (the API refuses it).
    let victim = l.pods().iter().find(|p| p.node == 0 && !["x/a", "y/b", "y/c", "y/a", "x/b"].contains(&p.key.as_str())).unwrap().clone();
    let node0 = &l.nodes()[0];
    let etcd = format!("http://{}:2379", node0.underlay_ipv4.unwrap());
    let etcdctl = |args: &[&str]| {
        let out = Command::new("ip").args(["netns", "exec", &node0.netns, "etcdctl", "--endpoints", &etcd]).args(args).output().unwrap();
        assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let dup = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dup", "namespace": "x", "labels": {"access": "yes"}},
                                 "spec": {}, "status": {"podIP": victim.ipv4.to_string()}});
    let victim_state = || -> Value {
        let st = lab.status();
        st["dataplane"]["endpoints"].as_array().unwrap().iter().find(|e| e["pod"] == victim.key.as_str()).cloned().unwrap()
    };
    let until = |want: &str| {
        let t0 = Instant::now();
        while victim_state()["state"] != want {
            assert!(t0.elapsed() < Duration::from_secs(20), "{} never became {want}: {}", victim.key, victim_state());
            std::thread::sleep(Duration::from_millis(100));
        }
        lab.lab_ok(&["wait"]);
    };
    etcdctl(&["put", "/porin/resources/core/pods/x/dup", &dup.to_string()]);
    until("denied");
    // The claimant on this node denies, visibly.
    let st = lab.status();
    let e = victim_state();
    assert!(e["error"].as_str().unwrap().contains("duplicate address"), "{e}");
    assert!(st["health"].as_str().unwrap().starts_with("degraded"), "{st}");
    assert!(!to(&victim.key, "y/a") && !to("y/a", &victim.key), "a conflicting endpoint passes traffic");

    // Label changes after the conflict still reach the kernel: revoke y/b, grant y/c.
    lab.ok(&["label", "pod", "b", "-n", "y", "access-"]);
    lab.ok(&["label", "pod", "c", "-n", "y", "access=yes"]);
    lab.lab_ok(&["wait"]);
    assert!(!to("y/b", "x/a"), "revoked pair still connected: the label change did not reach the kernel");
    assert!(to("y/c", "x/a"), "granted pair not connected: the label change did not reach the kernel");
    assert!(to("x/b", "y/a") && to("y/a", "x/b"), "unaffected pairs");
    assert!(lab.status()["dataplane"]["errors"].as_array().unwrap().iter().all(|e| !e.as_str().unwrap().starts_with("ipcache")), "ipcache sync failed");

    // The conflict resolved: the victim is bound again.
    etcdctl(&["del", "/porin/resources/core/pods/x/dup"]);
    until("programmed");
    assert!(to(&victim.key, "y/a") && to("y/a", &victim.key), "the victim stays denied after the conflict is gone");
    assert_eq!(lab.status()["health"], "ok");
}

/// Pairs allowed on TCP/80 as observed on real packets.
fn allowed_pairs(lab: &TestLab) -> Vec<(String, String)> {
    let observed = lab.probe(&["--port", "80", "--protocol", "TCP"]);
    observed["matrices"][0]["allowed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn an_undecodable_stored_policy_locks_its_namespace_down_on_real_packets() {
    if !kernel_ok() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = fixture("tests/fixtures/netpol-e2e/cluster.yaml");
    // Two nodes: the agents share a real etcd (in node 0's namespace), where a stray writer can leave bytes
    // no agent can decode.
    let lab = TestLab::up("ktu", 2, std::slice::from_ref(&cluster), None);
    let open = allowed_pairs(&lab);
    assert!(open.iter().any(|(a, b)| a == "x/a" && b == "y/b"), "no policy: x/a -> y/b should be open: {open:?}");
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(lab.state_dir.path().join("ktu.json")).unwrap()).unwrap();
    let (url, netns) = (meta["control"]["etcd"]["url"].as_str().unwrap().to_string(), meta["control"]["agents"][0]["netns"].as_str().unwrap().to_string());
    let etcdctl = |args: &[&str]| {
        let out = Command::new("ip").args(["netns", "exec", &netns, "etcdctl", "--endpoints", &url]).args(args).output().unwrap();
        assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let key = "/porin/resources/porin.io/networkpolicies/y/isolate-y";
    etcdctl(&["put", key, "{\"apiVersion\": \"porin.io/v1\", \"kind\": \"NetworkPolicy\", \"spec\": ["]);
    let t0 = Instant::now();
    while !lab.status()["health"].as_str().unwrap_or("").contains("do not decode") {
        assert!(t0.elapsed() < Duration::from_secs(15), "the agent did not report the undecodable object: {}", lab.status());
        std::thread::sleep(Duration::from_millis(100));
    }
    lab.lab_ok(&["wait"]);
    let locked = allowed_pairs(&lab);
    for (a, b) in &locked {
        assert!(!a.starts_with("y/") && !b.starts_with("y/"), "{a} -> {b} allowed though namespace y is locked down");
    }
    assert!(locked.iter().any(|(a, b)| a == "x/a" && b == "z/c"), "endpoints outside y lost their traffic: {locked:?}");
    let eps = lab.status()["dataplane"]["endpoints"].clone();
    assert!(eps.as_array().unwrap().iter().any(|e| e["pod"].as_str().unwrap().starts_with("y/") && e["state"] == "locked-down"), "{eps}");
    // Deleting the bad object lifts the lockdown.
    etcdctl(&["del", key]);
    let t0 = Instant::now();
    while lab.status()["health"] != "ok" {
        assert!(t0.elapsed() < Duration::from_secs(15), "still degraded: {}", lab.status());
        std::thread::sleep(Duration::from_millis(100));
    }
    lab.lab_ok(&["wait"]);
    assert_eq!(allowed_pairs(&lab), open, "the lockdown did not clear");
}

/// Lines of a lab agent's log, without terminal colour codes.
fn agent_log(lab: &TestLab, node: &str) -> Vec<String> {
    fn find(dir: &Path, name: &str) -> Option<PathBuf> {
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                if let Some(f) = find(&p, name) {
                    return Some(f);
                }
            } else if e.file_name() == name {
                return Some(p);
            }
        }
        None
    }
    let path = find(lab.state_dir.path(), &format!("{node}.log")).expect("the lab agent's log");
    let text = std::fs::read_to_string(path).unwrap();
    let mut plain = String::with_capacity(text.len());
    let mut esc = false;
    for c in text.chars() {
        match (esc, c) {
            (false, '\u{1b}') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => plain.push(c),
        }
    }
    plain.lines().map(str::to_string).collect()
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {name}="))? + name.len() + 2;
    line[at..].split_whitespace().next()
}

#[test]
fn a_new_interface_is_attached_only_once_its_policy_is_compiled_and_drops_until_its_entry_is_written() {
    if !kernel_ok() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = fixture("tests/fixtures/netpol-e2e/cluster.yaml");
    let lab = TestLab::up("kat", 1, std::slice::from_ref(&cluster), None);
    let pods = lab.lab().pods().len();
    assert!(pods >= 2, "the fixture has pods");
    let log = agent_log(&lab, "n0");
    let pos = |pred: &dyn Fn(&str) -> bool| log.iter().position(|l| pred(l));
    let attached: Vec<(usize, String, String)> = log
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("dataplane attached"))
        .map(|(i, l)| (i, field(l, "revision").unwrap().to_string(), field(l, "interface").unwrap().to_string()))
        .collect();
    assert_eq!(attached.len(), pods, "one attach per pod interface:\n{}", log.join("\n"));
    for (at, rev, ifname) in &attached {
        // The revision's policy was compiled (for this interface's pod too) before the attach ...
        let compiled = pos(&|l| l.contains("dataplane compiled") && field(l, "revision") == Some(rev.as_str()));
        assert!(compiled.is_some_and(|c| c < *at), "{ifname} attached before revision {rev} was compiled:\n{}", log.join("\n"));
        // ... and its entry was written right after, in the same programming, with no compile in between.
        let programmed = log.iter().enumerate().skip(at + 1).find(|(_, l)| l.contains("dataplane endpoint programmed after attach") && field(l, "interface") == Some(ifname.as_str()));
        let (p, line) = programmed.unwrap_or_else(|| panic!("{ifname}: no entry written after its attach:\n{}", log.join("\n")));
        assert_eq!(field(line, "revision"), Some(rev.as_str()), "{line}");
        assert!(!log[*at..p].iter().any(|l| l.contains("dataplane compiled")), "a compile ran while {ifname} was attached without its entry");
        assert!(
            !log[at + 1..p].iter().any(|l| l.contains("dataplane attached")),
            "another interface was attached while {ifname} waited for its entry:\n{}",
            log[*at..=p].join("\n")
        );
        let ms: f64 = field(line, "dropped_millis").unwrap().parse().unwrap();
        eprintln!("{ifname}: attached without its entry (dropping) for {ms:.3} ms");
    }
    // That an attached interface without its entry drops every packet (never passes) is shown on real
    // packets by a_lost_binding_drops_and_stays_attached_until_bound_again (the same state: attached, no entry).
}
