//! `RecommendationScope` (`porin.io/v1`, cluster-scoped singleton named `default`): continuous policy
//! recommendations, shaped like Calico's `PolicyRecommendationScope`. The agent keeps one staged
//! recommendation per selected namespace current (see the agent's `recommender`).
//!
//! ```yaml
//! apiVersion: porin.io/v1
//! kind: RecommendationScope
//! metadata: {name: default}
//! spec:
//!   interval: 2m30s              # how often recommendations are refreshed
//!   initialLookback: 24h         # how far back the first recommendation of a namespace reads flows
//!   stabilizationPeriod: 10m     # unchanged this long: Stable
//!   namespaceSpec:
//!     recStatus: Enabled         # Enabled | Disabled (default)
//!     selector: "!(projectcalico.org/name starts with 'kube-')"   # over namespace labels
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The only name a RecommendationScope may have.
pub const SINGLETON: &str = "default";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecommendationScopeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_lookback: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stabilization_period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_spec: Option<NamespaceSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceSpec {
    /// `Enabled` or `Disabled` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rec_status: Option<String>,
    /// Which namespaces get recommendations (Calico selector over the namespace's labels, which include
    /// `projectcalico.org/name`); default: all but `kube-*`, `calico-*`, `tigera-*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The recommendations' tier (default `namespace-isolation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier_name: Option<String>,
}

/// Defaults (Calico's).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(150);
pub const DEFAULT_LOOKBACK: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_STABILIZATION: Duration = Duration::from_secs(600);
pub const DEFAULT_SELECTOR: &str =
    "!(projectcalico.org/name starts with 'tigera-') && !(projectcalico.org/name starts with 'calico-') && !(projectcalico.org/name starts with 'kube-')";
pub const DEFAULT_TIER: &str = "namespace-isolation";

/// A Go-style duration: one or more `<number><unit>`, units `ms`, `s`, `m`, `h` (and `d`).
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let mut rest = input.trim();
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
        let n: f64 = rest[..digits].parse().map_err(|_| format!("{input:?}: expected a number"))?;
        rest = &rest[digits..];
        let unit = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let secs = match &rest[..unit] {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            "d" => n * 86_400.0,
            u => return Err(format!("{input:?}: unknown unit {u:?} (ms, s, m, h, d)")),
        };
        total += Duration::from_secs_f64(secs);
        rest = &rest[unit..];
    }
    Ok(total)
}

impl RecommendationScopeSpec {
    fn dur(v: &Option<String>, d: Duration) -> Duration {
        v.as_deref().and_then(|s| parse_duration(s).ok()).unwrap_or(d)
    }
    pub fn interval(&self) -> Duration {
        Self::dur(&self.interval, DEFAULT_INTERVAL)
    }
    pub fn initial_lookback(&self) -> Duration {
        Self::dur(&self.initial_lookback, DEFAULT_LOOKBACK)
    }
    pub fn stabilization_period(&self) -> Duration {
        Self::dur(&self.stabilization_period, DEFAULT_STABILIZATION)
    }
    pub fn enabled(&self) -> bool {
        self.namespace_spec.as_ref().and_then(|n| n.rec_status.as_deref()) == Some("Enabled")
    }
    pub fn selector(&self) -> &str {
        self.namespace_spec.as_ref().and_then(|n| n.selector.as_deref()).unwrap_or(DEFAULT_SELECTOR)
    }
    pub fn tier(&self) -> &str {
        self.namespace_spec.as_ref().and_then(|n| n.tier_name.as_deref()).unwrap_or(DEFAULT_TIER)
    }
}

/// Field problems: (path, message).
pub fn check(name: &str, s: &RecommendationScopeSpec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if name != SINGLETON {
        out.push(("metadata.name".into(), format!("{name:?}: a RecommendationScope must be named {SINGLETON:?} (there is one)")));
    }
    for (f, v) in [("interval", &s.interval), ("initialLookback", &s.initial_lookback), ("stabilizationPeriod", &s.stabilization_period)] {
        if let Some(v) = v {
            match parse_duration(v) {
                Ok(d) if d.is_zero() => out.push((format!("spec.{f}"), format!("{v:?} must be longer than zero"))),
                Ok(_) => {}
                Err(e) => out.push((format!("spec.{f}"), e)),
            }
        }
    }
    if let Some(n) = &s.namespace_spec {
        if let Some(r) = &n.rec_status
            && r != "Enabled"
            && r != "Disabled"
        {
            out.push(("spec.namespaceSpec.recStatus".into(), format!("{r:?}: one of Enabled, Disabled")));
        }
        if let Some(sel) = &n.selector
            && let Err(e) = porin_selector::Selector::parse(sel)
        {
            out.push(("spec.namespaceSpec.selector".into(), e.to_string()));
        }
        if let Some(t) = &n.tier_name
            && t.is_empty()
        {
            out.push(("spec.namespaceSpec.tierName".into(), "must not be empty".into()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_defaults_and_errors() {
        assert_eq!(parse_duration("2m30s").unwrap(), Duration::from_secs(150));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("5 parsecs").is_err());
        let s = RecommendationScopeSpec::default();
        assert_eq!((s.interval(), s.enabled(), s.tier()), (DEFAULT_INTERVAL, false, "namespace-isolation"));
        assert!(porin_selector::Selector::parse(DEFAULT_SELECTOR).is_ok());
        let bad = RecommendationScopeSpec {
            interval: Some("0s".into()),
            namespace_spec: Some(NamespaceSpec { rec_status: Some("On".into()), selector: Some("a ==".into()), tier_name: None }),
            ..Default::default()
        };
        let paths: Vec<String> = check("other", &bad).into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["metadata.name", "spec.interval", "spec.namespaceSpec.recStatus", "spec.namespaceSpec.selector"]);
    }
}
