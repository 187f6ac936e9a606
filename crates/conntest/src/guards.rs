//! Guards checked offline (`porin validate`, `porin test`): every `ReachabilityGuard` among the inputs against
//! the enforced model the other inputs build, as the API checks them on every write.

use porin_model::load::join_path;
use porin_model::{Document, ManifestError, Resource};
use porin_policy::Cluster;
use porin_policy::guard::{Guard, Violation};

/// The guards among `docs`, in input order, with their first violation against `c` (None: kept).
pub fn check<'d>(c: &Cluster, docs: &'d [Document]) -> Vec<(&'d Document, Option<Violation>)> {
    docs.iter()
        .filter_map(|d| match &d.resource {
            Resource::ReachabilityGuard(o) => {
                let g = Guard { name: &o.metadata.name, spec: &o.spec };
                Some((d, porin_policy::guard::check(c, &[g]).into_iter().next()))
            }
            _ => None,
        })
        .collect()
}

/// A violation as a manifest error on the guard's `spec.expect`.
pub fn error(d: &Document, v: &Violation) -> ManifestError {
    ManifestError::new(&d.source, Some(d.doc), join_path(&d.prefix, "spec.expect"), v.to_string())
}
