//! `porin get` / `porin delete` arguments as kinds and names: `KIND`, `KIND NAME...`, `KIND1,KIND2 [NAME...]`,
//! `KIND/NAME...` (kubectl's forms), with kubectl's messages.

use crate::Result;
use porin_model::Kind;

/// A kind by any of its CLI names (plural, singular, short name).
pub fn kind_of(name: &str) -> Result<Kind> {
    Kind::from_cli(name).ok_or_else(|| {
        invalid!("the server doesn't have a resource type {name:?} (try `pods`, `netpol`, `gnp`, `tiers`, ...)")
    })
}

/// What `porin get all` lists: the workloads and everything that decides their traffic (as `kubectl get all`
/// lists a namespace's common kinds).
pub const ALL: [Kind; 10] = [
    Kind::Pod,
    Kind::K8sNetworkPolicy,
    Kind::Tier,
    Kind::NetworkPolicy,
    Kind::GlobalNetworkPolicy,
    Kind::StagedNetworkPolicy,
    Kind::StagedGlobalNetworkPolicy,
    Kind::StagedKubernetesNetworkPolicy,
    Kind::NetworkSet,
    Kind::GlobalNetworkSet,
];

/// `KIND`, `KIND NAME...`, `KIND1,KIND2 [NAME...]` or `KIND/NAME...` as (kind, name) pairs, in order.
pub fn targets(args: &[String]) -> Result<Vec<(Kind, Option<String>)>> {
    let Some(first) = args.first() else {
        bail!("you must specify the type of resource to get (like `porin get pods`)")
    };
    if first.contains('/') {
        return args
            .iter()
            .map(|a| {
                let (k, n) = a
                    .split_once('/')
                    .filter(|(k, n)| !k.is_empty() && !n.is_empty() && !n.contains('/'))
                    .ok_or_else(|| invalid!("{a:?}: arguments in resource/name form must all be KIND/NAME"))?;
                Ok((kind_of(k)?, Some(n.to_string())))
            })
            .collect();
    }
    let mut kinds = Vec::new();
    for k in first.split(',') {
        if k.eq_ignore_ascii_case("all") {
            for x in ALL {
                if !kinds.contains(&x) {
                    kinds.push(x);
                }
            }
        } else {
            let k = kind_of(k)?;
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
    }
    let names = &args[1..];
    if let Some(n) = names.iter().find(|n| n.contains('/')) {
        bail!("{n:?}: there is no need to give a kind as a separate argument when passing arguments in KIND/NAME form");
    }
    if names.is_empty() {
        return Ok(kinds.into_iter().map(|k| (k, None)).collect());
    }
    Ok(kinds.into_iter().flat_map(|k| names.iter().map(move |n| (k, Some(n.clone())))).collect())
}
