//! Tiered-policy semantics, Calico rules exactly (docs/reference: tiers by order, missing order last, ties by
//! name; policies by order then `name/namespace/kind`; rules in order; Allow/Deny final; Pass to the next tier;
//! Log continues; end-of-tier default for tiers with a selecting policy; tiers without one skipped).
//!
//! Every expectation below is written from the semantics, not read off the engine: the exact hit list
//! (`tier|policy|rule|action`, rule -1 for an end-of-tier default), and the reason text for a few.
//! The cluster is `tests/fixtures/tiers/cluster.yaml` (described at its top).

mod common;

use common::*;
use porin_model::Protocol;
use porin_policy::{HitAction, Packet, Variant};

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn no_policy_means_default_allow_with_no_hits() {
    let c = build("");
    let v = tcp(&c, "app/web", "app/api", 9090);
    assert!(v.allowed);
    assert!(ih(&v).is_empty() && eh(&v).is_empty());
    assert_eq!(ingress(&v).reason, "no policy selects app/api for ingress: default allow");
    assert_eq!(egress(&v).reason, "no policy selects app/web for egress: default allow");
}

const TIER_ORDER: &str = r#"
apiVersion: porin.io/v1
kind: Tier
metadata: {name: beta}
spec: {order: 10, defaultAction: Pass}
---
apiVersion: porin.io/v1
kind: Tier
metadata: {name: alpha}
spec: {order: 10, defaultAction: Pass}
---
apiVersion: porin.io/v1
kind: Tier
metadata: {name: zulu-last}
spec: {defaultAction: Deny}
---
apiVersion: porin.io/v1
kind: Tier
metadata: {name: omega-last}
spec: {defaultAction: Pass}
---
apiVersion: porin.io/v1
kind: Tier
metadata: {name: early}
spec: {order: 1.5, defaultAction: Pass}
---
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: pass-beta}
spec: {tier: beta, selector: "app == 'api'", ingress: [{action: Pass}]}
---
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: pass-alpha}
spec: {tier: alpha, selector: "app == 'api'", ingress: [{action: Pass}]}
---
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: allow-zulu}
spec: {tier: zulu-last, selector: "app == 'api'", ingress: [{action: Allow}]}
---
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: pass-omega}
spec: {tier: omega-last, selector: "app == 'api'", ingress: [{action: Pass}]}
---
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: pass-early}
spec: {tier: early, selector: "app == 'api'", ingress: [{action: Pass}]}
---
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: pass-default}
spec: {selector: "app == 'api'", ingress: [{action: Pass}]}
"#;

#[test]
fn tiers_sorted_by_order_missing_order_last_ties_by_name() {
    let c = build(TIER_ORDER);
    let names: Vec<&str> = c.tiers.iter().map(|t| t.name.as_str()).collect();
    // 1.5 < 10 (alpha before beta by name) < default at 1,000,000 < no order (omega before zulu by name).
    assert_eq!(names, ["early", "alpha", "beta", "default", "omega-last", "zulu-last"]);
    let v = tcp(&c, "app/web", "app/api", 9090);
    assert_eq!(
        ih(&v),
        s(&[
            "early|pass-early|0|pass",
            "alpha|pass-alpha|0|pass",
            "beta|pass-beta|0|pass",
            "default|pass-default|0|pass",
            "omega-last|pass-omega|0|pass",
            "zulu-last|allow-zulu|0|allow",
        ])
    );
    assert!(v.allowed);
    assert_eq!(ingress(&v).reason, "ingress rule 0 of allow-zulu in tier zulu-last allows it");
}

#[test]
fn policies_sorted_by_order_then_name_namespace_kind() {
    let c = build(
        r#"
apiVersion: porin.io/v1
kind: Tier
metadata: {name: sec}
spec: {order: 100}
---
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: p-c, namespace: app}
spec: {tier: sec, order: 5, selector: "app == 'api'", ingress: [{action: Log}]}
---
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: p-b, namespace: app}
spec: {tier: sec, order: 5, selector: "app == 'api'", ingress: [{action: Log}]}
---
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: p-b}
spec: {tier: sec, order: 5, selector: "app == 'api'", ingress: [{action: Log}]}
---
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: p-a, namespace: app}
spec: {tier: sec, selector: "app == 'api'", ingress: [{action: Allow}]}
---
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: p-z, namespace: app}
spec: {tier: sec, order: 1, selector: "app == 'api'", ingress: [{action: Log}]}
"#,
    );
    let v = tcp(&c, "app/web", "app/api", 9090);
    // order 1; then the three at order 5 by "name/namespace/kind": "p-b//…" < "p-b/app/…" < "p-c/app/…";
    // then the policy without order.
    assert_eq!(
        ih(&v),
        s(&["sec|app/p-z|0|log", "sec|p-b|0|log", "sec|app/p-b|0|log", "sec|app/p-c|0|log", "sec|app/p-a|0|allow"])
    );
    assert!(v.allowed);
}

#[test]
fn rules_run_in_order_and_the_first_allow_or_deny_is_final() {
    let c = build(
        r#"
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: rules, namespace: app}
spec:
  selector: app == 'api'
  ingress:
    - action: Deny
      source: {nets: [10.3.0.0/16]}
    - action: Allow
      protocol: TCP
      destination: {ports: [9090]}
    - action: Deny
    - action: Allow
"#,
    );
    let v = tcp(&c, "dev/tool", "app/api", 9090);
    assert!(!v.allowed);
    assert_eq!(ih(&v), s(&["default|app/rules|0|deny"]));
    assert_eq!(ingress(&v).hits[0].action, HitAction::Deny);
    assert_eq!(ingress(&v).reason, "ingress rule 0 of app/rules in tier default denies it");
    let v = tcp(&c, "app/web", "app/api", 9090);
    assert!(v.allowed);
    assert_eq!(ih(&v), s(&["default|app/rules|1|allow"]));
    let v = tcp(&c, "app/web", "app/api", 9091);
    assert!(!v.allowed);
    assert_eq!(ih(&v), s(&["default|app/rules|2|deny"]));
    // The policy only selects api: web's egress and pg's ingress are untouched.
    assert!(egress(&tcp(&c, "app/web", "db/pg", 5432)).hits.is_empty());
    assert!(tcp(&c, "app/web", "db/pg", 5432).allowed);
}

const PLATFORM_PASS: &str = r#"
apiVersion: porin.io/v1
kind: Tier
metadata: {name: platform}
spec: {order: 100, defaultAction: Deny}
---
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: platform-pass}
spec:
  tier: platform
  order: 1
  selector: app == 'api'
  ingress:
    - action: Pass
      source: {nets: [10.1.0.0/16]}
---
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: platform-deny}
spec:
  tier: platform
  order: 2
  selector: app == 'api'
  ingress:
    - action: Deny
"#;

#[test]
fn pass_skips_the_rest_of_its_tier() {
    let c = build(PLATFORM_PASS);
    // web passes out of `platform` before platform-deny is looked at; no later tier selects api.
    let v = tcp(&c, "app/web", "app/api", 9090);
    assert!(v.allowed);
    assert_eq!(ih(&v), s(&["platform|platform-pass|0|pass"]));
    assert_eq!(ingress(&v).reason, "every tier applying to app/api for ingress passed: default allow");
    // tool does not match the Pass rule and meets the Deny rule of the next policy.
    let v = tcp(&c, "dev/tool", "app/api", 9090);
    assert!(!v.allowed);
    assert_eq!(ih(&v), s(&["platform|platform-deny|0|deny"]));
}

#[test]
fn pass_goes_on_to_the_next_tier_which_decides() {
    let c = build(&format!(
        "{PLATFORM_PASS}\n---\n{}",
        r#"
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: only-from-pg, namespace: app}
spec:
  selector: app == 'api'
  ingress:
    - action: Allow
      source: {nets: [10.2.0.10/32]}
"#
    ));
    let v = tcp(&c, "app/web", "app/api", 9090);
    assert!(!v.allowed);
    assert_eq!(ih(&v), s(&["platform|platform-pass|0|pass", "default|app/only-from-pg|-1|deny"]));
    assert_eq!(ingress(&v).hits[1].action, HitAction::EndOfTierDeny);
}

#[test]
fn log_records_a_hit_and_continues_and_end_of_tier_deny_names_the_last_policy() {
    let c = build(
        r#"
apiVersion: porin.io/v1
kind: Tier
metadata: {name: platform}
spec: {order: 100}
---
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: audit}
spec: {tier: platform, order: 1, selector: all(), ingress: [{action: Log}]}
---
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: next}
spec:
  tier: platform
  order: 2
  selector: app == 'api'
  ingress:
    - action: Log
      protocol: TCP
      destination: {ports: [9091]}
    - action: Allow
      source: {nets: [10.1.0.0/16]}
"#,
    );
    let v = tcp(&c, "app/web", "app/api", 9091);
    assert!(v.allowed);
    assert_eq!(ih(&v), s(&["platform|audit|0|log", "platform|next|0|log", "platform|next|1|allow"]));
    let v = tcp(&c, "dev/tool", "app/api", 9090);
    assert!(!v.allowed);
    assert_eq!(ih(&v), s(&["platform|audit|0|log", "platform|next|-1|deny"]));
    let end = &ingress(&v).hits[1];
    assert_eq!((end.rule, end.action), (-1, HitAction::EndOfTierDeny));
    assert_eq!(
        ingress(&v).reason,
        "tier platform has policies selecting app/api for ingress but no rule matched: end-of-tier deny"
    );
    // audit selects every pod: pg is selected only by a Log-only policy, so the tier still ends in deny.
    let v = tcp(&c, "app/web", "db/pg", 5432);
    assert!(!v.allowed);
    assert_eq!(ih(&v), s(&["platform|audit|0|log", "platform|audit|-1|deny"]));
}

#[test]
fn log_only_policy_still_triggers_end_of_tier_deny() {
    let c = build(
        r#"
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: log-only, namespace: app}
spec: {selector: "app == 'api'", ingress: [{action: Log}]}
"#,
    );
    let v = tcp(&c, "app/web", "app/api", 9090);
    assert!(!v.allowed);
    assert_eq!(ih(&v), s(&["default|app/log-only|0|log", "default|app/log-only|-1|deny"]));
}

#[test]
fn tier_with_pass_default_passes_at_its_end() {
    let c = build(
        r#"
apiVersion: porin.io/v1
kind: Tier
metadata: {name: soft}
spec: {order: 50, defaultAction: Pass}
---
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: soft-pol}
spec:
  tier: soft
  selector: app in {'api', 'pg'}
  ingress:
    - action: Deny
      source: {nets: [10.3.0.0/16]}
---
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: allow-web, namespace: app}
spec:
  selector: app == 'api'
  ingress:
    - action: Allow
      source: {selector: app == 'web'}
"#,
    );
    let v = tcp(&c, "app/web", "app/api", 9090);
    assert!(v.allowed);
    assert_eq!(ih(&v), s(&["soft|soft-pol|-1|pass", "default|app/allow-web|0|allow"]));
    assert_eq!(ingress(&v).hits[0].action, HitAction::EndOfTierPass);
    let v = tcp(&c, "db/pg", "app/api", 9090);
    assert!(!v.allowed);
    assert_eq!(ih(&v), s(&["soft|soft-pol|-1|pass", "default|app/allow-web|-1|deny"]));
    let v = tcp(&c, "dev/tool", "app/api", 9090);
    assert_eq!(ih(&v), s(&["soft|soft-pol|0|deny"]));
    // pg: only the Pass-default tier applies; after it no tier is left, so the profile (allow) decides.
    let v = tcp(&c, "app/web", "db/pg", 5432);
    assert!(v.allowed);
    assert_eq!(ih(&v), s(&["soft|soft-pol|-1|pass"]));
    assert_eq!(ingress(&v).reason, "every tier applying to db/pg for ingress passed: default allow");
}

#[test]
fn tier_with_no_selecting_policy_is_skipped_per_direction() {
    let c = build(
        r#"
apiVersion: porin.io/v1
kind: Tier
metadata: {name: strict}
spec: {order: 10, defaultAction: Deny}
---
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: pg-only}
spec:
  tier: strict
  selector: app == 'pg'
  ingress:
    - action: Allow
      source: {nets: [10.9.0.0/16]}
---
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: api-egress}
spec:
  tier: strict
  selector: app == 'api'
  types: [Egress]
  egress:
    - action: Allow
      destination: {nets: [10.2.0.0/16]}
"#,
    );
    // api's ingress: nothing in `strict` selects it for ingress (api-egress is egress-only): skipped.
    let v = tcp(&c, "app/web", "app/api", 9090);
    assert!(v.allowed);
    assert!(ih(&v).is_empty());
    assert_eq!(ingress(&v).reason, "no policy selects app/api for ingress: default allow");
    // pg's ingress: selected, no rule matches.
    let v = tcp(&c, "app/web", "db/pg", 5432);
    assert!(!v.allowed);
    assert_eq!(ih(&v), s(&["strict|pg-only|-1|deny"]));
    // api's egress: allowed to pg, end-of-tier deny to web.
    let v = tcp(&c, "app/api", "db/pg", 5432);
    assert_eq!(eh(&v), s(&["strict|api-egress|0|allow"]));
    let v = tcp(&c, "app/api", "app/web", 8080);
    assert!(!v.allowed);
    assert_eq!(eh(&v), s(&["strict|api-egress|-1|deny"]));
    assert!(ih(&v).is_empty());
}

const K8S_ALLOW_WEB: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-web, namespace: app}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
    - from:
        - podSelector: {matchLabels: {app: web}}
"#;

fn deny_web_at(name: &str, order: f64) -> String {
    format!(
        r#"
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {{name: {name}, namespace: app}}
spec:
  order: {order}
  selector: app == 'api'
  ingress:
    - action: Deny
      source: {{selector: app == 'web'}}
"#
    )
}

#[test]
fn kubernetes_policies_sit_in_the_default_tier_at_order_1000() {
    // Only the K8s policy.
    let c = build(K8S_ALLOW_WEB);
    let v = tcp(&c, "app/web", "app/api", 9090);
    assert_eq!(ih(&v), s(&["default|app/knp.allow-web|0|allow"]));
    let v = tcp(&c, "db/pg", "app/api", 9090);
    assert_eq!(ih(&v), s(&["default|app/knp.allow-web|-1|deny"]));

    // Order 999 runs before the K8s policy: its Deny wins.
    let c = build(&format!("{K8S_ALLOW_WEB}\n---\n{}", deny_web_at("early", 999.0)));
    let v = tcp(&c, "app/web", "app/api", 9090);
    assert!(!v.allowed);
    assert_eq!(ih(&v), s(&["default|app/early|0|deny"]));

    // Order 1001 runs after: the K8s Allow is final.
    let c = build(&format!("{K8S_ALLOW_WEB}\n---\n{}", deny_web_at("late", 1001.0)));
    let v = tcp(&c, "app/web", "app/api", 9090);
    assert!(v.allowed);
    assert_eq!(ih(&v), s(&["default|app/knp.allow-web|0|allow"]));
    // pg matches neither; the last selecting policy in the tier is `late`.
    let v = tcp(&c, "db/pg", "app/api", 9090);
    assert_eq!(ih(&v), s(&["default|app/late|-1|deny"]));

    // Equal order 1000: the name breaks the tie ("aaa" < "allow-web").
    let c = build(&format!("{K8S_ALLOW_WEB}\n---\n{}", deny_web_at("aaa", 1000.0)));
    assert_eq!(ih(&tcp(&c, "app/web", "app/api", 9090)), s(&["default|app/aaa|0|deny"]));

    // A policy without order sorts after the K8s policy.
    let c = build(&format!(
        "{K8S_ALLOW_WEB}\n---\n{}",
        deny_web_at("unordered", 0.0).replace("  order: 0\n", "")
    ));
    assert_eq!(ih(&tcp(&c, "app/web", "app/api", 9090)), s(&["default|app/knp.allow-web|0|allow"]));
}

#[test]
fn zero_trust_mode_denies_unselected_endpoints() {
    let settings = r#"
apiVersion: porin.io/v1
kind: ClusterSettings
metadata: {name: default}
spec: {defaultEndpointAction: Deny}
"#;
    let c = build(settings);
    let v = tcp(&c, "app/web", "app/api", 9090);
    assert!(!v.allowed);
    assert!(!egress(&v).allowed && !ingress(&v).allowed);
    assert_eq!(egress(&v).reason, "no policy selects app/web for egress: default deny (zero-trust mode)");
    assert_eq!(ingress(&v).reason, "no policy selects app/api for ingress: default deny (zero-trust mode)");
    // An external source: only the destination's ingress side exists, and it is denied.
    let v = tcp(&c, "203.0.113.5", "app/api", 9090);
    assert!(v.enforced.egress.is_none() && !v.allowed);

    // Allowing ingress to api is not enough: web's egress is unselected, hence denied.
    let c = build(&format!("{settings}\n---\n{K8S_ALLOW_WEB}"));
    let v = tcp(&c, "app/web", "app/api", 9090);
    assert!(ingress(&v).allowed && !egress(&v).allowed && !v.allowed);

    // A Pass-default tier that passes everything still ends in the zero-trust default.
    let c = build(&format!(
        "{settings}\n---\n{K8S_ALLOW_WEB}\n---\n{}",
        r#"
apiVersion: porin.io/v1
kind: Tier
metadata: {name: egress-tier}
spec: {order: 10, defaultAction: Pass}
---
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: egress-all}
spec: {tier: egress-tier, selector: all(), types: [Egress], egress: [{action: Allow, destination: {nets: [10.1.0.0/16]}}]}
"#
    ));
    let v = tcp(&c, "app/web", "app/api", 9090);
    assert!(v.allowed);
    assert_eq!(eh(&v), s(&["egress-tier|egress-all|0|allow"]));
    let v = tcp(&c, "app/web", "db/pg", 5432);
    assert!(!v.allowed);
    assert_eq!(eh(&v), s(&["egress-tier|egress-all|-1|pass"]));
    assert_eq!(egress(&v).reason, "every tier applying to app/web for egress passed: default deny (zero-trust mode)");
}

#[path = "tiers/rule_fields.rs"]
mod rule_fields;

#[test]
fn platform_tier_above_app_tier() {
    let text = std::fs::read_to_string(fixture("tiers/platform-app.yaml")).unwrap();
    let c = build(&text);
    // Platform passes prod traffic; the app tier allows it.
    let v = tcp(&c, "app/web", "app/api", 9090);
    assert!(v.allowed);
    assert_eq!(ih(&v), s(&["platform|platform-guard|1|pass", "app|app/app-allow-all|1|allow"]));
    // Platform denies dev even though the app tier would allow.
    let v = tcp(&c, "dev/tool", "app/api", 9090);
    assert!(!v.allowed);
    assert_eq!(ih(&v), s(&["platform|platform-guard|0|deny"]));
    // Platform lets prod through, and the app tier's own deny decides.
    let v = tcp(&c, "db/pg", "app/api", 9091);
    assert!(!v.allowed);
    assert_eq!(ih(&v), s(&["platform|platform-guard|1|pass", "app|app/app-allow-all|0|deny"]));
    // An address outside every namespace matches no platform rule: end-of-tier deny there.
    let v = tcp(&c, "192.0.2.10", "app/api", 9090);
    assert_eq!(ih(&v), s(&["platform|platform-guard|-1|deny"]));
    // pg: platform passes, no app-tier policy selects pg, so that tier is skipped: default allow.
    let v = tcp(&c, "app/web", "db/pg", 5432);
    assert!(v.allowed);
    assert_eq!(ih(&v), s(&["platform|platform-guard|1|pass"]));
    // dev/tool is not in a prod namespace: nothing selects it.
    assert!(ih(&tcp(&c, "app/web", "dev/tool", 80)).is_empty());
    // Pending equals enforced when nothing is staged.
    assert_eq!(v.enforced, v.pending);
    assert_eq!(c.matrix(Variant::Enforced, Protocol::Tcp, 9090), c.matrix_reference(Variant::Enforced, Protocol::Tcp, 9090));
}
