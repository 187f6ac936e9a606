//! Pins left by older builds: maps whose layout changed are retired (pin removed) or converted into this
//! build's maps (conntrack), so that an upgrade neither reuses a map with the wrong layout nor drops
//! established flows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aya::maps::{HashMap, Map, MapData};

use crate::abi::{self, CtKey, map_names as names};
use crate::ct;
use crate::error::{Error, Result};

/// An endpoints map pinned by a build before `porin_ep_v2` (`porin_ep_v1`,
/// 16-byte values without the endpoint's addresses) can never be reused: this
/// build would read and write it with the wrong layout. Its pin is removed
/// (the old programs still attached keep the map alive and keep enforcing
/// until `attach` switches their links to this build's programs). The
/// endpoints it held are not migrated: they have no addresses, which would
/// fail closed anyway; `set_endpoint` writes them into `porin_ep_v2`, and an
/// interface re-attached before that drops (`NO_ENDPOINT`). Their policy
/// entries are read back as orphans and adopted or swept as usual.
pub(crate) fn retire_endpoints_v1(pin_dir: &Path) -> Result<()> {
    let path = pin_dir.join(names::ENDPOINTS_V1);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(());
    }
    let endpoints = MapData::from_pin(&path)
        .ok()
        .and_then(|md| HashMap::<MapData, u32, [u8; 16]>::try_from(Map::HashMap(md)).ok())
        .map(|h| h.keys().count());
    tracing::warn!(
        path = %path.display(),
        endpoints = ?endpoints,
        new_map = names::ENDPOINTS,
        "found the endpoints map of an older build ({}, no addresses); it is not reused (layout changed) and its pin \
         is removed; its endpoints must be set again and drop until then",
        names::ENDPOINTS_V1
    );
    std::fs::remove_file(&path).map_err(|source| Error::Io { what: "removing the old endpoints map pin", path, source })
}

/// The conntrack maps of older builds (`porin_ct_v1`, LRU; `porin_ct_v2`, hash; both with two entries per
/// flow), if pinned: their entries (read before the new maps exist, so nothing is lost to the pin removal),
/// and their pin paths.
#[allow(clippy::type_complexity)]
pub(crate) fn take_old_conntrack(pin_dir: &Path) -> Result<Option<(Vec<PathBuf>, Vec<(CtKey, abi::CtValueV2)>)>> {
    let mut paths = Vec::new();
    let mut entries = Vec::new();
    for name in [names::CONNTRACK_V1, names::CONNTRACK_V2] {
        let path = pin_dir.join(name);
        if std::fs::symlink_metadata(&path).is_err() {
            continue;
        }
        let md = MapData::from_pin(&path).ok();
        let map = md.map(|md| if name == names::CONNTRACK_V1 { Map::LruHashMap(md) } else { Map::HashMap(md) });
        let read: Vec<(CtKey, abi::CtValueV2)> = map
            .and_then(|m| HashMap::<MapData, CtKey, abi::CtValueV2>::try_from(m).ok())
            .map(|h| h.iter().filter_map(|r| r.ok()).collect())
            .unwrap_or_default();
        entries.extend(read);
        paths.push(path);
    }
    Ok((!paths.is_empty()).then_some((paths, entries)))
}

/// Converts the entries of an older build's conntrack map into `porin_ct_v3` (so that established
/// connections survive the upgrade; [`ct::convert_v2`]), counting each inserted entry against its endpoint
/// like the program would, then removes the old pins. The old programs keep using the old map until
/// `attach` switches their links; flows they open in between are not copied (their replies are then new
/// flows, policy-checked).
pub(crate) fn migrate_old_conntrack(m: &mut ct::CtMaps, paths: &[PathBuf], old: Vec<(CtKey, abi::CtValueV2)>) -> Result<()> {
    let entries = ct::convert_v2(&old);
    let mut per_ep: BTreeMap<u32, i64> = BTreeMap::new();
    let mut copied = 0usize;
    for (k, v) in &entries {
        // BPF_NOEXIST: never overwrite (or double-count) what the new programs hold.
        if m.ct.insert(k, v, 1).is_ok() {
            *per_ep.entry(k.endpoint_id).or_default() += 1;
            copied += 1;
        }
    }
    // Counted on the userspace side (porin_ctr_v1 only has one writer,
    // userspace): a negative "released" count is a slot taken.
    m.add_released(&per_ep.into_iter().map(|(id, n)| (id, -n)).collect())?;
    for path in paths {
        tracing::warn!(path = %path.display(), old_entries = old.len(), flows = entries.len(), copied,
            new_map = names::CONNTRACK, "converted the conntrack entries of an older build's map and removed its pin");
        let what = "removing the old conntrack map pin";
        std::fs::remove_file(path).map_err(|source| Error::Io { what, path: path.to_path_buf(), source })?;
    }
    Ok(())
}
