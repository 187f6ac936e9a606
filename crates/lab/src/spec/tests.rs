use std::collections::BTreeSet;

use super::*;

fn spec() -> LabSpec {
    LabSpec::new("t1", 2)
        .pod(PodSpec::new("x", "a", 0).with_ports(&[(80, Proto::Tcp)]))
        .pod(PodSpec { ipv4: Some(Ipv4Addr::new(10, 244, 0, 2)), ..PodSpec::new("x", "b", 1) })
        .pod(PodSpec::new("y", "a", 0))
}

#[test]
fn proto_json_and_parse() {
    assert_eq!(serde_json::to_string(&Proto::Sctp).unwrap(), "\"SCTP\"");
    assert_eq!(serde_json::from_str::<Proto>("\"udp\"").unwrap(), Proto::Udp);
    let pod: PodSpec = serde_json::from_str(r#"{"namespace":"x","name":"a","node":0,"ports":[[80,"TCP"],[9,"sctp"]]}"#).unwrap();
    assert_eq!(pod.ports, vec![(80, Proto::Tcp), (9, Proto::Sctp)]);
    assert_eq!("udp".parse::<Proto>().unwrap(), Proto::Udp);
    assert!("icmp".parse::<Proto>().is_err());
    let ports = parse_ports("80/tcp,53/UDP,9/sctp,8080").unwrap();
    assert_eq!(ports, vec![(80, Proto::Tcp), (53, Proto::Udp), (9, Proto::Sctp), (8080, Proto::Tcp)]);
    assert_eq!(parse_ports(&format_ports(&ports)).unwrap(), ports);
    assert_eq!(parse_ports("").unwrap(), vec![]);
    assert!(parse_port("0/tcp").is_err());
    assert!(parse_port("x/tcp").is_err());
}

#[test]
fn names() {
    assert!(validate_lab_name("ab-1").is_ok());
    for bad in ["", "-a", "a-", "A", "a_b", "abcdefghijklmnopqrstu"] {
        assert!(validate_lab_name(bad).is_err(), "{bad}");
    }
    assert_eq!(parse_lab_netns("porin-a-b-n0"), Some("a-b"));
    assert_eq!(parse_lab_netns("porin-a-p12"), Some("a"));
    assert_eq!(parse_lab_netns("porin-a-u"), Some("a"));
    assert_eq!(parse_lab_netns("porin-a-x1"), None);
    assert_eq!(parse_lab_netns("porin-a-n"), None);
    assert_eq!(parse_lab_netns("other-a-n0"), None);
    assert!(is_lab_netns("a", "porin-a-n3"));
    assert!(!is_lab_netns("a", "porin-a-b-n3"));
}

#[test]
fn plan_allocates_and_skips_fixed() {
    let p = plan(&spec()).unwrap();
    assert_eq!(p.underlay_netns.as_deref(), Some("porin-t1-u"));
    assert_eq!(p.pods[0].ipv4, Ipv4Addr::new(10, 244, 0, 3), "10.244.0.2 is fixed for x/b");
    assert_eq!(p.pods[1].ipv4, Ipv4Addr::new(10, 244, 0, 2));
    assert_eq!(p.pods[2].ipv4, Ipv4Addr::new(10, 244, 0, 4));
    assert_eq!(p.pods[1].netns, "porin-t1-p1");
    assert_eq!(p.pods[1].node_netns, "porin-t1-n1");
    assert!(p.pods.iter().all(|p| p.ipv6.is_none()));
    assert_eq!(p.namespaces(), ["porin-t1-u", "porin-t1-n0", "porin-t1-n1", "porin-t1-p0", "porin-t1-p1", "porin-t1-p2"]);
    let mut s = spec();
    s.ipv6 = true;
    let p6 = plan(&s).unwrap();
    assert_eq!(p6.pods[0].ipv6, Some("fd00:244::3".parse().unwrap()));
    assert_eq!(p6.pods[1].ipv6, Some("fd00:244:1::2".parse().unwrap()));
}

#[test]
fn plan_rejects_bad_specs() {
    let mut s = spec();
    s.pods[1].node = 2;
    assert!(matches!(plan(&s), Err(LabError::Spec { field, .. }) if field == "pods[1].node"));
    let mut s = spec();
    s.pods[2].name = "a".into();
    s.pods[2].namespace = "x".into();
    assert!(plan(&s).is_err());
    let mut s = spec();
    s.pods[0].ipv4 = Some(Ipv4Addr::new(10, 244, 0, 2));
    assert!(plan(&s).is_err(), "duplicate fixed address");
    let mut s = spec();
    s.pods[0].ipv4 = Some(Ipv4Addr::new(169, 254, 1, 1));
    assert!(plan(&s).is_err());
    let mut s = spec();
    s.nodes = 0;
    assert!(plan(&s).is_err());
}

#[test]
fn hosts_parse_plan_and_route_from_every_node() {
    let h: HostSpec = "name=c2,ip=203.0.113.9,ip=2001:db8::9,port=443,port=53/udp,node=n1".parse().unwrap();
    assert_eq!(h.name, "c2");
    assert_eq!(h.ipv4, Some(Ipv4Addr::new(203, 0, 113, 9)));
    assert_eq!(h.ipv6, Some("2001:db8::9".parse().unwrap()));
    assert_eq!(h.ports, vec![(443, Proto::Tcp), (53, Proto::Udp)]);
    assert_eq!(h.node, 1);
    for bad in ["ip=1.2.3.4", "name=a,ip=x", "name=a,port=0", "name=a,color=red", "name=a,ip=1.1.1.1,ip=2.2.2.2", "name=a,oops"] {
        assert!(bad.parse::<HostSpec>().is_err(), "{bad}");
    }
    let s = spec().host(HostSpec::new("c2")).host(HostSpec { node: 1, ..HostSpec::new("web") });
    let p = plan(&s).unwrap();
    assert_eq!(p.hosts[0].ipv4, Ipv4Addr::new(203, 0, 113, 10));
    assert_eq!(p.hosts[1].ipv4, Ipv4Addr::new(203, 0, 113, 11));
    assert_eq!(p.hosts[1].netns, "porin-t1-h1");
    assert!(p.namespaces().ends_with(&["porin-t1-h0".to_string(), "porin-t1-h1".to_string()]));
    assert_eq!(parse_lab_netns("porin-t1-h1"), Some("t1"));
    let cmds = link_commands(&p);
    let has = |ns: &str, args: &str| cmds.iter().any(|c| c.netns == ns && c.args.join(" ") == args);
    assert!(has("porin-t1-n0", "route add 203.0.113.10/32 dev porinh0 scope link"));
    assert!(has("porin-t1-n1", "route add 203.0.113.10/32 via 10.242.0.1 dev porinu0"), "other nodes route through the gateway node");
    assert!(has("porin-t1-n0", "route add 203.0.113.11/32 via 10.242.0.2 dev porinu0"));
    assert!(has("porin-t1-h0", "route add default via 169.254.1.1 dev porin-eth0"));
    // Bad hosts: inside the pod networks, a pod's address, duplicate names, unknown node, bad name.
    for (h, field) in [
        (HostSpec { ipv4: Some(Ipv4Addr::new(10, 244, 9, 9)), ..HostSpec::new("a") }, "hosts[0].ipv4"),
        (HostSpec { ipv4: Some(Ipv4Addr::new(10, 244, 0, 2)), ..HostSpec::new("a") }, "hosts[0].ipv4"),
        (HostSpec { ipv6: Some("fd00:244:7::1".parse().unwrap()), ..HostSpec::new("a") }, "hosts[0].ipv6"),
        (HostSpec { node: 2, ..HostSpec::new("a") }, "hosts[0].node"),
        (HostSpec::new("A/b"), "hosts[0].name"),
        (HostSpec { ports: vec![(80, Proto::Tcp), (80, Proto::Tcp)], ..HostSpec::new("a") }, "hosts[0].ports[1]"),
    ] {
        let err = plan(&spec().host(h.clone())).unwrap_err();
        assert!(matches!(&err, LabError::Spec { field: f, .. } if f == field), "{h:?}: {err}");
    }
    let dup = spec().host(HostSpec::new("a")).host(HostSpec::new("a"));
    assert!(matches!(plan(&dup), Err(LabError::Spec { field, .. }) if field == "hosts[1].name"));
    let clash = spec().host(HostSpec::new("a")).host(HostSpec { ipv4: Some(Ipv4Addr::new(203, 0, 113, 10)), ..HostSpec::new("b") });
    assert!(plan(&clash).is_err(), "the second host takes the first's default address");
}

#[test]
fn names_fit_and_every_command_is_namespaced() {
    let mut s = spec();
    s.ipv6 = true;
    s.name = "abcdefghijklmnopqrst".into();
    for k in 0..20 {
        s.pods.push(PodSpec::new("z", format!("p{k}"), 1));
    }
    let p = plan(&s).unwrap();
    let cmds = link_commands(&p);
    let owned: BTreeSet<String> = p.namespaces().into_iter().collect();
    for c in &cmds {
        assert!(owned.contains(&c.netns), "{c:?} outside the lab");
        if let Some(i) = c.args.iter().position(|a| a == "netns") {
            assert!(owned.contains(&c.args[i + 1]), "{c:?} moves a link outside the lab");
        }
        if c.args[0] == "link" && c.args[1] == "add" {
            assert!(c.args[2].starts_with("porin") && c.args[2].len() <= 15, "{c:?}");
            let peer = &c.args[c.args.iter().position(|a| a == "name").map_or(2, |i| i + 1)];
            assert!(peer.starts_with("porin") && peer.len() <= 15, "{c:?}");
        }
    }
    for p in &p.pods {
        assert!(p.host_ifname.len() <= 15 && p.host_ifname.starts_with("porin"));
    }
    // One batch per namespace, plus the underlay twice (bridge first, ports after the nodes).
    let groups = group_by_netns(&cmds);
    assert_eq!(groups.len(), p.namespaces().len() + 1);
    for c in &cmds {
        assert!(c.args.iter().all(|a| !a.is_empty() && !a.contains(char::is_whitespace)), "batch-safe: {c:?}");
    }
}
