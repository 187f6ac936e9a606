//! The compiler from the policy engine to the kernel's maps.
//!
//! Owns: the translation of the policy model to kernel entries (identities, ipcache, LPM entries). Never: I/O or BPF
//! calls; its output must give the reference engine's verdict for every packet.
//!
//! Pure: a [`Cluster`] and the compiler's persistent [`State`] in, [`Compiled`] out. The kernel does one
//! longest-prefix lookup per new flow in a per-endpoint trie keyed by (peer identity, protocol, port); this
//! crate fills that trie so that the lookup gives **exactly** the engine's verdict for every packet.
//!
//! * **Identities** ([`identities`]). Two peers get the same identity when no policy can tell them apart: pods
//!   with the same namespace, labels, service account, named ports and membership in every CIDR any rule or
//!   network set mentions (one identity per address family), and external addresses whose longest match among
//!   those CIDRs is the same prefix. The ipcache maps each pod address (/32, /128) and each such prefix (plus
//!   0.0.0.0/0 and ::/0, "world") to its identity.
//! * **Candidates** ([`index`]). Each rule's peer part is indexed: a CIDR peer names the identities inside it,
//!   a selector peer the pod identities (and network-set members) it selects. The sets over-approximate; the
//!   engine's own rule match decides during the walk.
//! * **Verdict functions** ([`walk`]). For each local endpoint class, direction and identity, the engine's tier
//!   walk runs over that identity's candidate rules only, for every protocol that has meaning (TCP, UDP, SCTP,
//!   ICMP, ICMPv6, any protocol a rule names, and one stand-in for all others) and every port segment between
//!   the boundaries those rules create. Identities no rule can match share one function. Work is proportional
//!   to (identities × rules that can match them), not identities × rules × ports.
//! * **Encoding.** The most common verdict becomes the endpoint default; an identity whose function differs
//!   gets an identity entry, a protocol whose function differs gets a protocol entry, and ports that differ
//!   from their protocol's entry get port-range entries (split into prefixes by the dataplane). Ties break on
//!   the rule's content, never on id allocation history, so a fresh state gives the same entries up to ids.
//!
//! Every entry carries a rule id: the index of the deciding trace (`tier|policy|rule|action` hits) in
//! [`State::rules`], so a flow record can say which rule decided.
//!
//! * **Reuse.** The entries of one (local endpoint class, direction) are reused whole when the applicable
//!   policies, the tier skeleton, the identity set and the global inputs are unchanged. Otherwise each
//!   identity's function is reused when its candidate rules (by content version, in order) are unchanged, so a
//!   one-rule change walks only the identities that rule (old or new) can match.
//! * **Bounded state.** Identities and rule ids that the last two compiles did not use are released and their
//!   ids recycled (an id stays reserved for one compile after its last use, so the previous revision's flow
//!   events still resolve); cached entries and functions are kept only for what the last compile used.

#![forbid(unsafe_code)]

mod identities;
mod index;
mod walk;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use porin_policy::eval::{Direction, Variant};
use porin_policy::Shared;
use porin_policy::ir::{Cluster, Endpoint, IrPolicy, NetSet, PolicyId, RuleMatch, all_cidrs};
use serde::Serialize;

use walk::{Ctx, DirMemo, Func, Value};

/// Identity of every IPv4 address no more specific prefix covers.
pub const IDENTITY_WORLD_V4: u32 = 2;
/// Identity of every IPv6 address no more specific prefix covers.
pub const IDENTITY_WORLD_V6: u32 = 3;
/// First identity the allocator hands out.
pub const FIRST_DYNAMIC_IDENTITY: u32 = 256;

/// Protocols that always get their own entries.
const BASE_PROTOCOLS: [u8; 5] = [1, 6, 17, 58, 132];

/// What an identity stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum IdentityKind {
    /// Pods that policy cannot tell apart; `rep` is one of them (`namespace/name`).
    Pods { rep: String, v6: bool },
    /// Addresses whose longest match is this prefix (and that are not pod addresses).
    Cidr { prefix: IpNet, rep: IpAddr },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub id: u32,
    pub kind: IdentityKind,
    /// Pods carrying this identity (`namespace/name`); empty for CIDR identities.
    pub members: Vec<String>,
}

/// One policy entry: longest match wins (ports > protocol > identity > endpoint default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Entry {
    pub identity: Option<u32>,
    pub proto: Option<u8>,
    /// Inclusive port range (ICMP: `type << 8 | code`).
    pub ports: Option<(u16, u16)>,
    pub allow: bool,
    pub rule_id: u32,
}

/// The compiled policy of one local endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointProgram {
    /// `namespace/name`.
    pub endpoint: String,
    pub ingress: Vec<Entry>,
    pub egress: Vec<Entry>,
}

/// What a rule id means.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct RuleMeta {
    pub allow: bool,
    /// The enforced trace, `tier|policy|rule|action` per hit; empty when no policy applied (default action).
    pub trace: Vec<String>,
}

/// What the entries of one (local endpoint class, direction) depend on, exactly (no hashes: equal keys mean
/// equal inputs to the walks and the encoding).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    /// The local endpoint's class: namespace, labels, service account, named ports and, per address family,
    /// its CIDR signature (or no address) — everything a rule can look at on the local side.
    local: String,
    dir: Direction,
    /// The applicable list: (tier index, versions of the policies in evaluation order). A version denotes one
    /// exact policy content ([`IrPolicy`] equality), never reused.
    applicable: Vec<(usize, Vec<u64>)>,
    /// Tier names and default actions, the last policy of each applicable tier, the default action.
    skeleton: String,
    /// Generation of the global inputs (protocols, namespaces' labels, network sets).
    global: u64,
    /// Generation of the identity set (ids and the keys they stand for).
    idents: u64,
}

/// Counters of the last [`compile`] (for tests and benchmarks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompileStats {
    /// Tier walks run (cumulative over the state's life).
    pub walks: u64,
    /// (endpoint, direction) pairs whose entries were computed (not reused whole) in the last compile.
    pub computed: Vec<(String, Direction)>,
    /// (endpoint, direction) pairs whose entries came from the cache in the last compile.
    pub reused: usize,
    /// Per-identity verdict functions computed (not reused) in the last compile.
    pub functions: usize,
}

/// An allocated identity.
#[derive(Debug, Clone)]
struct IdSlot {
    id: u32,
    serial: u64,
    /// The last compile that used it (kept current only while it is not in the current table).
    seen: u64,
    /// The identity-table generation it was last part of: the current table's are in use.
    table: u64,
}

/// The last seen content of a policy, with its version and the versions of its rules.
#[derive(Debug, Clone)]
struct PolicyRec {
    policy: IrPolicy,
    version: u64,
    /// Ingress, egress: one version per rule (content, index, policy id, tier, namespace).
    rules: [Vec<u64>; 2],
    /// The CIDRs it mentions.
    cidrs: Vec<IpNet>,
}

/// The CIDRs one policy mentions (the engine's own list, for one policy).
fn policy_cidrs(policies: Vec<IrPolicy>) -> Vec<IpNet> {
    all_cidrs(&Cluster { policies, ..Cluster::default() }).into_iter().collect()
}

/// What the identity table was built from, besides the policies' CIDRs.
#[derive(Debug, Clone, Default)]
struct TableInputs {
    /// Shared with the cluster compiled: an unchanged endpoint side compares by pointer.
    endpoints: Shared<Vec<Endpoint>>,
    net_sets: Vec<NetSet>,
    staged_cidrs: Vec<IpNet>,
}

/// State the compiler keeps between runs so identities and rule ids stay stable (the agent owns it), and the
/// results of the last run so an unchanged endpoint (or identity) is not recompiled. Its size is bounded by the
/// current policy, not by its history.
#[derive(Debug, Clone, Default)]
pub struct State {
    identity_ids: HashMap<String, IdSlot>,
    free_identities: BTreeSet<u32>,
    next_identity: u32,
    next_serial: u64,
    rule_ids: HashMap<RuleMeta, u32>,
    /// Index = rule id; id 0 is never used (the kernel treats action 0 as invalid). A released id's slot holds
    /// an empty trace until the id is handed out again; [`State::rule_meta`] says None for it. Ids are
    /// recycled: an id unused by the last two compiles may come back with another meaning, so a consumer that
    /// caches metadata by id must refresh it from here after every compile (every id the previous compile
    /// used still means the same here).
    pub rules: Vec<RuleMeta>,
    /// Parallel to `rules`: the last compile whose entries used the id.
    rule_seen: Vec<u64>,
    free_rules: BTreeSet<u32>,
    policies: HashMap<PolicyId, PolicyRec>,
    next_version: u64,
    /// The last global fingerprint and its generation.
    global_fp: String,
    global_gen: u64,
    /// The last identity set ((id, serial) in id order) and its generation.
    idents_fp: Vec<(u32, u64)>,
    idents_gen: u64,
    /// Entries of the last compile (only keys used by it are kept).
    cache: HashMap<CacheKey, Vec<Entry>>,
    /// Per (class, direction): the functions of the last compile.
    memos: HashMap<(String, Direction), DirMemo>,
    /// The last identity table and its inputs: reused while no CIDR, endpoint or network set changed.
    table: Option<Arc<identities::Table>>,
    table_gen: u64,
    table_inputs: TableInputs,
    /// Rule version → candidate identities (indices into `table`), for the last compile's rules.
    cands: IdMap<(Arc<index::Cands>, u64)>,
    compiles: u64,
    pub stats: CompileStats,
}

impl State {
    pub fn new() -> State {
        State {
            next_identity: FIRST_DYNAMIC_IDENTITY,
            next_serial: 16,
            rules: vec![RuleMeta { allow: false, trace: vec!["<invalid>".into()] }],
            rule_seen: vec![u64::MAX],
            ..State::default()
        }
    }
    /// The id of an identity key (allocated if new; the smallest released id first), and its serial.
    fn identity(&mut self, key: String) -> (u32, u64) {
        let now = self.compiles;
        if let Some(slot) = self.identity_ids.get_mut(&key) {
            slot.seen = now;
            slot.table = self.table_gen;
            return (slot.id, slot.serial);
        }
        let id = match self.free_identities.pop_first() {
            Some(id) => id,
            None => {
                self.next_identity += 1;
                self.next_identity - 1
            }
        };
        let serial = self.next_serial;
        self.next_serial += 1;
        self.identity_ids.insert(key, IdSlot { id, serial, seen: now, table: self.table_gen });
        (id, serial)
    }
    fn rule(&mut self, meta: RuleMeta) -> u32 {
        if let Some(&id) = self.rule_ids.get(&meta) {
            return id;
        }
        let id = match self.free_rules.pop_first() {
            Some(id) => {
                self.rules[id as usize] = meta.clone();
                self.rule_seen[id as usize] = self.compiles;
                id
            }
            None => {
                self.rules.push(meta.clone());
                self.rule_seen.push(self.compiles);
                (self.rules.len() - 1) as u32
            }
        };
        self.rule_ids.insert(meta, id);
        id
    }
    pub fn rule_meta(&self, id: u32) -> Option<&RuleMeta> {
        if id == 0 || self.free_rules.contains(&id) { None } else { self.rules.get(id as usize) }
    }
    /// Rule ids in use (allocated and not released).
    pub fn rule_count(&self) -> usize {
        self.rule_ids.len()
    }
    /// Identity keys in use (allocated and not released).
    pub fn identity_count(&self) -> usize {
        self.identity_ids.len()
    }
    /// Forget the cached entries and functions (identities and rule ids stay): the next compile starts cold.
    pub fn clear_cache(&mut self) {
        self.cache.clear();
        self.memos.clear();
        self.policies.clear();
        self.global_fp.clear();
        self.idents_fp.clear();
        self.table = None;
        self.cands.clear();
    }
    /// The versions of a policy's exact content and of each of its rules.
    /// Also says whether the policy's CIDRs changed.
    fn policy_versions(&mut self, p: &IrPolicy) -> (u64, [Vec<u64>; 2], bool) {
        if let Some(rec) = self.policies.get(&p.id)
            && rec.policy == *p
        {
            return (rec.version, rec.rules.clone(), false);
        }
        let old = self.policies.remove(&p.id);
        let same_header = old.as_ref().is_some_and(|o| o.policy.tier == p.tier && o.policy.namespace == p.namespace);
        let mut next = || {
            self.next_version += 1;
            self.next_version
        };
        let version = next();
        let mut rules: [Vec<u64>; 2] = [vec![], vec![]];
        for (d, (new, was)) in [(&p.ingress, old.as_ref().map(|o| &o.policy.ingress)), (&p.egress, old.as_ref().map(|o| &o.policy.egress))]
            .into_iter()
            .enumerate()
        {
            for (ri, r) in new.iter().enumerate() {
                let kept = match (&old, was) {
                    (Some(o), Some(was)) if same_header && was.get(ri) == Some(r) => Some(o.rules[d][ri]),
                    _ => None,
                };
                rules[d].push(kept.unwrap_or_else(&mut next));
            }
        }
        let cidrs = policy_cidrs(vec![p.clone()]);
        let dirty = old.as_ref().map_or(!cidrs.is_empty(), |o| o.cidrs != cidrs);
        self.policies.insert(p.id.clone(), PolicyRec { policy: p.clone(), version, rules: rules.clone(), cidrs });
        (version, rules, dirty)
    }
    /// Release what the last two compiles did not use.
    fn release(&mut self, endpoints: &[EndpointProgram]) {
        let now = self.compiles;
        for e in endpoints {
            for entry in e.ingress.iter().chain(e.egress.iter()) {
                self.rule_seen[entry.rule_id as usize] = now;
            }
        }
        // Kept functions use their ids too (every identity's function is in the entries; the shared function of
        // identities no rule matches may not be).
        for m in self.memos.values() {
            for f in m.empty.iter() {
                for id in f.rule_ids() {
                    self.rule_seen[id as usize] = now;
                }
            }
        }
        let stale = |seen: u64| seen.saturating_add(1) < now;
        let mut freed = Vec::new();
        for (id, seen) in self.rule_seen.iter().enumerate().skip(1) {
            if stale(*seen) && !self.free_rules.contains(&(id as u32)) {
                freed.push(id as u32);
            }
        }
        for id in freed {
            let meta = std::mem::replace(&mut self.rules[id as usize], RuleMeta { allow: false, trace: vec![] });
            self.rule_ids.remove(&meta);
            self.free_rules.insert(id);
        }
        while self.rules.len() > 1 && self.free_rules.remove(&((self.rules.len() - 1) as u32)) {
            self.rules.pop();
            self.rule_seen.pop();
        }
        let mut freed = Vec::new();
        let current = self.table_gen;
        self.identity_ids.retain(|_, slot| {
            let keep = slot.table == current || !stale(slot.seen);
            if !keep {
                freed.push(slot.id);
            }
            keep
        });
        self.free_identities.extend(freed);
        while self.next_identity > FIRST_DYNAMIC_IDENTITY && self.free_identities.remove(&(self.next_identity - 1)) {
            self.next_identity -= 1;
        }
    }
}

/// The whole compiled state for one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Compiled {
    /// Shared with the compiler's identity table: the same allocation from one compile to the next while the
    /// table is reused (nothing it depends on changed), so a consumer can tell "unchanged" by [`Shared::ptr_eq`].
    pub identities: Shared<Vec<Identity>>,
    /// Prefix → identity, for the kernel's LPM ipcache (shared like `identities`).
    pub ipcache: Shared<Vec<(IpNet, u32)>>,
    pub endpoints: Vec<EndpointProgram>,
}

impl Compiled {
    pub fn endpoint(&self, id: &str) -> Option<&EndpointProgram> {
        self.endpoints.iter().find(|e| e.endpoint == id)
    }
    pub fn identity(&self, id: u32) -> Option<&Identity> {
        self.identities.iter().find(|i| i.id == id)
    }
}

/// A fast hasher for the compiler's own counters (versions, serials): not exposed to outside input.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CounterHasher(u64);

impl std::hash::Hasher for CounterHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// A map keyed by one of the compiler's counters.
pub(crate) type IdMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<CounterHasher>>;

/// [`Cluster::applicable`]: (tier index, policy indices) in evaluation order.
type Applicable = Vec<(usize, Vec<usize>)>;

/// Compile the enforced policy of every endpoint `local` accepts.
pub fn compile(c: &Cluster, state: &mut State, local: &dyn Fn(&Endpoint) -> bool) -> Compiled {
    state.compiles += 1;
    // Versions first: they tell whether any policy's CIDRs changed.
    let mut cidrs_dirty = false;
    let mut versions: Vec<u64> = Vec::with_capacity(c.policies.len());
    let mut rule_versions: Vec<[Vec<u64>; 2]> = Vec::with_capacity(c.policies.len());
    for p in &c.policies {
        let (v, r, dirty) = state.policy_versions(p);
        cidrs_dirty |= dirty;
        versions.push(v);
        rule_versions.push(r);
    }
    let live: std::collections::HashSet<&PolicyId> = c.policies.iter().map(|p| &p.id).collect();
    state.policies.retain(|id, rec| {
        let keep = live.contains(id);
        cidrs_dirty |= !keep && !rec.cidrs.is_empty();
        keep
    });

    // The identity table: rebuilt only when its inputs changed.
    let staged: Vec<IrPolicy> = c.pending_policies.iter().filter(|p| p.id.staged).cloned().collect();
    let staged_cidrs = if staged.is_empty() { vec![] } else { policy_cidrs(staged) };
    let reuse = !cidrs_dirty
        && state.table.is_some()
        && state.table_inputs.staged_cidrs == staged_cidrs
        && state.table_inputs.net_sets == c.net_sets
        && state.table_inputs.endpoints == c.endpoints;
    let table: Arc<identities::Table> = match (&state.table, reuse) {
        (Some(t), true) => t.clone(),
        _ => {
            // The old table's identities were in use up to the previous compile.
            let (old_gen, now) = (state.table_gen, state.compiles);
            for slot in state.identity_ids.values_mut() {
                if slot.table == old_gen {
                    slot.seen = slot.seen.max(now - 1);
                }
            }
            state.table_gen += 1;
            // all_cidrs(c), from the per-policy lists already at hand.
            let mut cidrs: Vec<IpNet> = state.policies.values().flat_map(|r| r.cidrs.iter().copied()).collect();
            cidrs.extend(staged_cidrs.iter().copied());
            cidrs.extend(c.net_sets.iter().flat_map(|s| s.nets.iter().copied()));
            cidrs.sort_unstable();
            cidrs.dedup();
            let t = Arc::new(identities::build(c, state, cidrs.into_iter().collect()));
            state.table = Some(t.clone());
            state.table_inputs =
                TableInputs { endpoints: c.endpoints.clone(), net_sets: c.net_sets.clone(), staged_cidrs };
            t
        }
    };

    // Protocols with their own entries, and a stand-in for every other protocol.
    let mut protocols: BTreeSet<u8> = BASE_PROTOCOLS.into_iter().collect();
    for p in &c.policies {
        for r in p.ingress.iter().chain(p.egress.iter()) {
            if let RuleMatch::Calico { protocol, not_protocol, .. } = &r.matcher {
                protocols.extend(protocol.iter().chain(not_protocol.iter()).copied());
            }
        }
    }
    let other = (2u8..=255).find(|p| !protocols.contains(p)).expect("some protocol is unnamed");

    // Everything outside the applicable rules, the tier skeleton and the identities that a walk or the encoding
    // can depend on.
    let global_fp = serde_json::to_string(&(&protocols, other, &c.namespaces, format!("{:?}", c.net_sets)))
        .expect("serialisable");
    let mut carried = std::mem::take(&mut state.cands);
    if global_fp != state.global_fp {
        state.global_gen += 1;
        state.global_fp = global_fp;
        carried.clear();
    }
    if !reuse {
        let idents_fp: Vec<(u32, u64)> =
            table.identities.iter().zip(&table.info).map(|(i, n)| (i.id, n.serial)).collect();
        if idents_fp != state.idents_fp {
            state.idents_gen += 1;
            state.idents_fp = idents_fp;
        }
        // Candidates are identity indices: a rebuilt table renumbers them.
        carried.clear();
    }
    let (global, idents) = (state.global_gen, state.idents_gen);

    let mut ctx = Ctx {
        c,
        table: &table,
        index: index::Index::new(c, &table, carried, state.compiles),
        now: state.compiles,
        protocols: &protocols,
        other,
        rule_versions: &rule_versions,
        rule_ids: HashMap::new(),
    };
    let mut old = std::mem::take(&mut state.cache);
    let mut old_memos = std::mem::take(&mut state.memos);
    let mut used: HashMap<CacheKey, Vec<Entry>> = HashMap::new();
    let mut memos: HashMap<(String, Direction), DirMemo> = HashMap::new();
    state.stats.computed.clear();
    state.stats.reused = 0;
    state.stats.functions = 0;
    // The applicable lists depend only on the local class: computed once per class.
    let mut applicable_of: HashMap<String, [Applicable; 2]> = HashMap::new();
    let mut by_class: HashMap<&str, (Vec<Entry>, Vec<Entry>)> = HashMap::new();
    let mut endpoints = Vec::new();
    for (ei, e) in c.endpoints.iter().enumerate() {
        if !local(e) {
            continue;
        }
        let class = &table.classes[ei];
        // Endpoints of one class get the same entries: compiled once per run.
        if let Some((ingress, egress)) = by_class.get(class.as_str()) {
            state.stats.reused += 2;
            endpoints.push(EndpointProgram { endpoint: e.id(), ingress: ingress.clone(), egress: egress.clone() });
            continue;
        }
        let lists = applicable_of
            .entry(class.clone())
            .or_insert_with(|| [Direction::Ingress, Direction::Egress].map(|dir| c.applicable(Variant::Enforced, e, dir)))
            .clone();
        let mut program = EndpointProgram { endpoint: e.id(), ingress: vec![], egress: vec![] };
        for (dir, applicable) in [Direction::Ingress, Direction::Egress].into_iter().zip(lists) {
            let skeleton = skeleton(c, &applicable);
            let key = CacheKey {
                local: class.clone(),
                dir,
                applicable: applicable.iter().map(|(ti, list)| (*ti, list.iter().map(|&pi| versions[pi]).collect())).collect(),
                skeleton: skeleton.clone(),
                global,
                idents,
            };
            let memo_key = (class.clone(), dir);
            let entries = if let Some(v) = used.get(&key) {
                state.stats.reused += 1;
                v.clone()
            } else if let Some(v) = old.remove(&key) {
                state.stats.reused += 1;
                if let Some(m) = old_memos.remove(&memo_key) {
                    memos.insert(memo_key, m);
                }
                used.insert(key, v.clone());
                v
            } else {
                state.stats.computed.push((e.id(), dir));
                let prev = old_memos.remove(&memo_key).or_else(|| memos.remove(&memo_key));
                let (funcs, memo) =
                    walk::compile_direction(&mut ctx, state, e, dir, &applicable, &skeleton, global, prev);
                state.stats.walks += funcs.walks;
                state.stats.functions += funcs.computed;
                memos.insert(memo_key, memo);
                let v = encode(state, &table.identities, &funcs.funcs);
                used.insert(key, v.clone());
                v
            };
            match dir {
                Direction::Ingress => program.ingress = entries,
                Direction::Egress => program.egress = entries,
            }
        }
        by_class.insert(class, (program.ingress.clone(), program.egress.clone()));
        endpoints.push(program);
    }
    state.cands = ctx.index.into_used();
    state.cache = used;
    state.memos = memos;
    state.release(&endpoints);
    Compiled { identities: table.identities.clone(), ipcache: table.ipcache.clone(), endpoints }
}

/// What the walk of a (class, direction) depends on besides its rules: each applicable tier's name, default
/// action and last policy (named by an end-of-tier hit), and the default action.
fn skeleton(c: &Cluster, applicable: &[(usize, Vec<usize>)]) -> String {
    let mut s = format!("{}", c.default_allow);
    for (ti, list) in applicable {
        let t = &c.tiers[*ti];
        let last = list.last().map(|&pi| c.policies[pi].id.to_string()).unwrap_or_default();
        s.push_str(&format!("|{}:{:?}:{}", t.name, t.default_action, last));
    }
    s
}

/// Orders verdicts by content (allow, trace), never by id, so ties break the same in every state.
fn by_content<'s>(state: &'s State) -> impl Fn(&Value) -> (bool, &'s [String]) + 's {
    move |v: &Value| (v.0, state.rules[v.1 as usize].trace.as_slice())
}

/// The entries of one (class, direction) from its per-identity functions.
fn encode(state: &mut State, identities: &[Identity], funcs: &[Arc<Func>]) -> Vec<Entry> {
    // The endpoint default: the most common verdict of identities whose function is constant; deny if none.
    // (Runs of one shared function, such as that of identities no rule matches, are counted at once.)
    let mut counts: HashMap<Value, usize> = HashMap::new();
    let mut k = 0;
    while k < funcs.len() {
        let run = funcs[k..].iter().take_while(|f| Arc::ptr_eq(f, &funcs[k])).count();
        if funcs[k].constant {
            *counts.entry(funcs[k].other).or_default() += run;
        }
        k += run;
    }
    let default = {
        let content = by_content(state);
        counts
            .into_iter()
            .max_by(|a, b| {
                a.1.cmp(&b.1).then_with(|| (!a.0.0).cmp(&!b.0.0)).then_with(|| content(&b.0).cmp(&content(&a.0)))
            })
            .map(|(v, _)| v)
    };
    let default = match default {
        Some(v) => v,
        None => (false, state.rule(RuleMeta { allow: false, trace: vec![] })),
    };
    let content = by_content(state);
    let mut out = vec![Entry { identity: None, proto: None, ports: None, allow: default.0, rule_id: default.1 }];
    for (ident, f) in identities.iter().zip(funcs) {
        if f.constant && f.other == default {
            continue;
        }
        let id = ident.id;
        out.push(Entry { identity: Some(id), proto: None, ports: None, allow: f.other.0, rule_id: f.other.1 });
        for (p, segs) in &f.protos {
            if segs.len() == 1 && segs[0].2 == f.other {
                continue;
            }
            // The protocol entry takes the verdict that covers most ports; the rest become port ranges.
            let mut cover: Vec<(Value, u32)> = Vec::new();
            for (lo, hi, v) in segs {
                let n = u32::from(*hi) - u32::from(*lo) + 1;
                match cover.iter_mut().find(|c| c.0 == *v) {
                    Some(c) => c.1 += n,
                    None => cover.push((*v, n)),
                }
            }
            let base = cover
                .into_iter()
                .max_by(|a, b| a.1.cmp(&b.1).then_with(|| content(&b.0).cmp(&content(&a.0))))
                .map(|(v, _)| v)
                .expect("at least one segment");
            out.push(Entry { identity: Some(id), proto: Some(*p), ports: None, allow: base.0, rule_id: base.1 });
            for (lo, hi, v) in segs {
                if *v != base {
                    out.push(Entry { identity: Some(id), proto: Some(*p), ports: Some((*lo, *hi)), allow: v.0, rule_id: v.1 });
                }
            }
        }
    }
    out
}

/// The kernel's lookup, emulated: the most specific entry that matches.
pub fn lookup(entries: &[Entry], identity: u32, proto: u8, port: u16) -> Option<&Entry> {
    entries
        .iter()
        .filter(|e| {
            e.identity.is_none_or(|i| i == identity)
                && (e.identity.is_some() || e.proto.is_none())
                && e.proto.is_none_or(|p| p == proto)
                && e.ports.is_none_or(|(lo, hi)| (lo..=hi).contains(&port))
        })
        .max_by_key(|e| (e.identity.is_some(), e.proto.is_some(), e.ports.is_some()))
}

/// The kernel's ipcache lookup, emulated: the longest prefix containing `ip`.
pub fn lookup_identity(ipcache: &[(IpNet, u32)], ip: IpAddr) -> Option<u32> {
    ipcache.iter().filter(|(n, _)| n.contains(&ip)).max_by_key(|(n, _)| n.prefix_len()).map(|(_, id)| *id)
}
