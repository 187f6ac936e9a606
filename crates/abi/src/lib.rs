//! `porin-abi`: the Rust mirror of `bpf/include/porin/abi.h`, the decoding of the programs' events
//! ([`event`]) and the enums and counters shared by the dataplane and flow visibility.
//!
//! It owns the byte layout userspace and the BPF programs agree on, and nothing else. It must never load,
//! attach or touch BPF objects (that is `porin-dataplane`), and never depend on aya (only the optional `aya`
//! feature adds `aya::Pod` for the dataplane's maps) or on a build script: crates that only read events and
//! counters (flow visibility) build without clang or libbpf.
//!
//! Every struct is `#[repr(C)]` with fixed-width fields and explicit padding, so
//! it can be handed to the kernel byte for byte. The test `abi_matches_btf`
//! (in `btf.rs`) checks each struct's size and every field's offset and size,
//! and every enum value, against the BTF of the compiled BPF object — not
//! against numbers copied by hand.

use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};

pub mod event;

pub use event::{DecodeError, Event};

/// ABI version written to `porin_meta_v1` (must equal `PORIN_ABI_VERSION`).
pub const ABI_VERSION: u32 = 1;

/// Map names (≤ 15 characters; pinned under the pin directory by these names).
pub mod map_names {
    pub const ENDPOINTS: &str = "porin_ep_v2";
    /// The endpoints map before it carried the endpoint's addresses (value
    /// 16 bytes). Never reused; `Dataplane::open` removes its pin.
    pub const ENDPOINTS_V1: &str = "porin_ep_v1";
    pub const IPCACHE_V4: &str = "porin_ipc4_v1";
    pub const IPCACHE_V6: &str = "porin_ipc6_v1";
    pub const POLICY: &str = "porin_pol_v1";
    /// Plain hash, ONE entry per flow and endpoint for both directions (see `abi.h`).
    pub const CONNTRACK: &str = "porin_ct_v3";
    /// The plain-hash conntrack map of older builds (two entries per flow, [`CtValueV2`] values): its
    /// entries are converted into `porin_ct_v3` (with per-endpoint accounting) and its pin removed.
    pub const CONNTRACK_V2: &str = "porin_ct_v2";
    /// The LRU conntrack map of still older builds (v2's layout): converted the same way.
    pub const CONNTRACK_V1: &str = "porin_ct_v1";
    /// Conntrack entries per endpoint (budget accounting).
    pub const CT_COUNT: &str = "porin_ctn_v1";
    /// Conntrack entries per endpoint deleted by userspace.
    pub const CT_RELEASED: &str = "porin_ctr_v1";
    /// Address -> local endpoint owning it (anti-spoofing towards workloads).
    pub const OWN: &str = "porin_own_v1";
    /// Settings for the programs (conntrack budget).
    pub const CONFIG: &str = "porin_cfg_v1";
    pub const FRAGS: &str = "porin_frag_v1";
    pub const COUNTERS: &str = "porin_cnt_v1";
    pub const EVENTS: &str = "porin_ev_v1";
    pub const META: &str = "porin_meta_v1";
    /// Never used at run time; exists so that BTF carries every ABI type.
    pub const ABI_ANCHOR: &str = "porin_abi_v1";
    /// Every map that is pinned (all but the anchor).
    pub const PINNED: [&str; 13] = [
        ENDPOINTS, IPCACHE_V4, IPCACHE_V6, POLICY, CONNTRACK, FRAGS, COUNTERS, EVENTS, META, CT_COUNT, CT_RELEASED, OWN,
        CONFIG,
    ];
}

/// Program (C function) names.
pub mod prog_names {
    /// host-veth tc ingress: packets leaving the workload (its egress policy).
    pub const FROM_WORKLOAD: &str = "porin_from_wl";
    /// host-veth tc egress: packets entering the workload (its ingress policy).
    pub const TO_WORKLOAD: &str = "porin_to_wl";
}

/// One field of a mirrored struct: (name, byte offset, byte size).
pub type FieldLayout = (&'static str, usize, usize);

/// The layout of a mirrored struct, computed by the compiler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub c_name: &'static str,
    pub size: usize,
    pub fields: Vec<FieldLayout>,
}

macro_rules! abi_struct {
    (
        $(#[$m:meta])*
        $cname:literal => pub struct $name:ident {
            $( $(#[$fm:meta])* pub $f:ident : $t:ty ),* $(,)?
        }
    ) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name {
            $( $(#[$fm])* pub $f: $t ),*
        }

        impl $name {
            /// The C struct this mirrors.
            pub const C_NAME: &'static str = $cname;

            /// Size and field offsets as laid out by rustc.
            pub fn layout() -> Layout {
                Layout {
                    c_name: $cname,
                    size: size_of::<Self>(),
                    fields: vec![ $( (stringify!($f), offset_of!(Self, $f), size_of::<$t>()) ),* ],
                }
            }

            /// The raw bytes, as the kernel sees them.
            pub fn as_bytes(&self) -> &[u8] {
                // SAFETY: `Self` is repr(C), made only of integers and integer
                // arrays, and has no padding (the BTF test checks that the field
                // sizes add up to the struct size), so every byte is initialised.
                unsafe { std::slice::from_raw_parts((self as *const Self).cast::<u8>(), size_of::<Self>()) }
            }

            /// Reads a value from raw bytes (unaligned), `None` if too short.
            pub fn from_bytes(b: &[u8]) -> Option<Self> {
                if b.len() < size_of::<Self>() {
                    return None;
                }
                // SAFETY: the length was checked; every bit pattern is a valid
                // value of an all-integer repr(C) struct; read_unaligned copes
                // with any alignment of `b`.
                Some(unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<Self>()) })
            }
        }

        // SAFETY: repr(C), all fields are integers or integer arrays, no
        // implicit padding (checked by the BTF layout test), any bit pattern valid.
        #[cfg(feature = "aya")]
        unsafe impl aya::Pod for $name {}
    };
}

abi_struct! {
    /// `porin_ep_v2` value; key = host-veth ifindex (`u32`). `addr4`/`addr6`
    /// are the endpoint's own addresses (wire byte order), valid with
    /// [`EP_F_HAS_V4`]/[`EP_F_HAS_V6`].
    "porin_endpoint" => pub struct EndpointValue {
        pub endpoint_id: u32,
        pub active_gen: u32,
        pub policy_rev: u32,
        pub flags: u32,
        pub addr4: [u8; 4],
        pub addr6: [u8; 16],
    }
}

abi_struct! {
    /// `porin_pol_v1` LPM key. `port` holds the big-endian port bytes
    /// (use [`PolicyKey::new`]).
    "porin_policy_key" => pub struct PolicyKey {
        pub prefixlen: u32,
        pub policy_id: u32,
        pub identity: u32,
        pub proto: u8,
        pub pad: u8,
        pub port: u16,
    }
}

abi_struct! {
    "porin_policy_value" => pub struct PolicyValue {
        pub rule_id: u32,
        pub action: u8,
        pub flags: u8,
        pub pad: u16,
    }
}

abi_struct! {
    "porin_ipcache_v4_key" => pub struct IpcacheV4Key {
        pub prefixlen: u32,
        pub addr: [u8; 4],
    }
}

abi_struct! {
    "porin_ipcache_v6_key" => pub struct IpcacheV6Key {
        pub prefixlen: u32,
        pub addr: [u8; 16],
    }
}

abi_struct! {
    "porin_ipcache_value" => pub struct IpcacheValue {
        pub identity: u32,
    }
}

abi_struct! {
    /// `porin_ct_v3` key: the flow as seen from endpoint `endpoint_id`, its side first (`abi.h`; v1/v2: the
    /// tuple as seen at `dir`'s hook).
    "porin_ct_key" => pub struct CtKey {
        pub endpoint_id: u32,
        pub family: u8,
        pub proto: u8,
        pub dir: u8,
        pub pad: u8,
        pub src: [u8; 16],
        pub dst: [u8; 16],
        pub sport: u16,
        pub dport: u16,
    }
}

abi_struct! {
    "porin_ct_value" => pub struct CtValue {
        pub last_seen_ns: u64,
        /// Original direction (`dir_of_origin`).
        pub packets: u64,
        pub bytes: u64,
        /// Reply direction.
        pub packets_reply: u64,
        pub bytes_reply: u64,
        pub policy_rev: u32,
        pub rule_id: u32,
        pub peer_identity: u32,
        pub dir_of_origin: u8,
        pub flags: u8,
        pub tcp_flags: u8,
        pub tcp_flags_reply: u8,
        pub pol_port: u16,
        pub pad2: [u8; 6],
    }
}

abi_struct! {
    /// The conntrack value of `porin_ct_v1` / `porin_ct_v2` (older builds: one entry per flow direction,
    /// the key being the tuple as seen at hook direction `dir`). Not in today's object; read only to
    /// convert an older build's map.
    "porin_ct_value_v2" => pub struct CtValueV2 {
        pub last_seen_ns: u64,
        pub packets: u64,
        pub bytes: u64,
        pub policy_rev: u32,
        pub rule_id: u32,
        pub peer_identity: u32,
        pub dir_of_origin: u8,
        pub flags: u8,
        pub tcp_flags: u8,
        pub pad: u8,
        pub pol_port: u16,
        pub pad2: [u8; 6],
    }
}

impl CtKey {
    /// The key of a flow at endpoint `endpoint_id` for a packet seen at hook direction `dir` (`abi.h`):
    /// the endpoint's side (the source of a packet leaving it, the destination of one entering it) first.
    #[allow(clippy::too_many_arguments)]
    pub fn of_packet(
        endpoint_id: u32,
        dir: Direction,
        family: u8,
        proto: u8,
        src: [u8; 16],
        dst: [u8; 16],
        sport_be: u16,
        dport_be: u16,
    ) -> Self {
        let (src, dst, sport, dport) = match dir {
            Direction::Egress => (src, dst, sport_be, dport_be),
            Direction::Ingress => (dst, src, dport_be, sport_be),
        };
        CtKey { endpoint_id, family, proto, dir: 0, pad: 0, src, dst, sport, dport }
    }

    /// The packet tuple `(src, dst, sport_be, dport_be)` of this flow as seen at hook direction `dir`
    /// (the inverse of [`CtKey::of_packet`]).
    pub fn tuple_at(&self, dir: Direction) -> ([u8; 16], [u8; 16], u16, u16) {
        match dir {
            Direction::Egress => (self.src, self.dst, self.sport, self.dport),
            Direction::Ingress => (self.dst, self.src, self.dport, self.sport),
        }
    }
}

abi_struct! {
    "porin_frag_key" => pub struct FragKey {
        pub endpoint_id: u32,
        pub family: u8,
        pub proto: u8,
        pub dir: u8,
        pub pad: u8,
        pub id: u32,
        pub src: [u8; 16],
        pub dst: [u8; 16],
    }
}

abi_struct! {
    "porin_frag_value" => pub struct FragValue {
        pub rule_id: u32,
        pub action: u8,
        pub pad: [u8; 3],
    }
}

abi_struct! {
    "porin_meta" => pub struct Meta {
        pub abi_version: u32,
        pub rev_high_water: u32,
        pub flags: u32,
        pub pad: u32,
    }
}

abi_struct! {
    /// `porin_own_v1` key: an endpoint's own address (IPv4 in the first 4 bytes).
    "porin_own_key" => pub struct OwnKey {
        pub family: u8,
        pub pad: [u8; 3],
        pub addr: [u8; 16],
    }
}

abi_struct! {
    /// `porin_own_v1` value: the owner's host-veth ifindex and endpoint id.
    "porin_own_value" => pub struct OwnValue {
        pub ifindex: u32,
        pub endpoint_id: u32,
    }
}

abi_struct! {
    /// `porin_ctn_v1` value (key: endpoint id).
    "porin_ct_count" => pub struct CtCount {
        pub entries: i64,
    }
}

abi_struct! {
    /// `porin_cfg_v1[0]`.
    "porin_config" => pub struct Config {
        pub ct_budget: u32,
        pub pad: [u32; 3],
    }
}

abi_struct! {
    /// One ring-buffer record of `porin_ev_v1`.
    "porin_event" => pub struct RawEvent {
        pub ts_ns: u64,
        pub packets: u64,
        pub bytes: u64,
        pub endpoint_id: u32,
        pub peer_identity: u32,
        pub rule_id: u32,
        pub ifindex: u32,
        pub policy_rev: u32,
        pub r#type: u8,
        pub dir: u8,
        pub family: u8,
        pub proto: u8,
        pub reason: u8,
        pub tcp_flags: u8,
        pub pad: u16,
        pub src: [u8; 16],
        pub dst: [u8; 16],
        pub sport: u16,
        pub dport: u16,
        pub pad2: [u32; 2],
    }
}

/// All mirrored struct layouts (checked against BTF).
pub fn all_layouts() -> Vec<Layout> {
    vec![
        EndpointValue::layout(),
        PolicyKey::layout(),
        PolicyValue::layout(),
        IpcacheV4Key::layout(),
        IpcacheV6Key::layout(),
        IpcacheValue::layout(),
        CtKey::layout(),
        CtValue::layout(),
        FragKey::layout(),
        FragValue::layout(),
        Meta::layout(),
        OwnKey::layout(),
        OwnValue::layout(),
        CtCount::layout(),
        Config::layout(),
        RawEvent::layout(),
        EvCtl::layout(),
        DaggKey::layout(),
        DaggValue::layout(),
        CapFilter::layout(),
        CapConfig::layout(),
        CapHdr::layout(),
        CapIf::layout(),
    ]
}

/// Prefix lengths of the policy key levels (`enum porin_policy_prefix`).
pub const POL_PREFIX_DEFAULT: u32 = 32;
pub const POL_PREFIX_IDENTITY: u32 = 64;
pub const POL_PREFIX_PROTO: u32 = 80;
pub const POL_PREFIX_FULL: u32 = 96;

/// `enum porin_ep_flags`.
pub const EP_F_LOCKDOWN: u32 = 1;
pub const EP_F_HAS_V4: u32 = 2;
pub const EP_F_HAS_V6: u32 = 4;
/// The address flags (everything but lockdown).
pub const EP_F_ADDRS: u32 = EP_F_HAS_V4 | EP_F_HAS_V6;
/// `enum porin_meta_flags`.
pub const META_F_IPCACHE_DEGRADED: u32 = 1;
/// `enum porin_ct_flags`.
pub const CT_F_REPLY: u8 = 1;
pub const CT_F_CLOSING: u8 = 2;
/// `enum porin_family`.
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;
/// `enum porin_limits`.
pub const MAX_IPV6_EXT_HDRS: u32 = 8;
pub const MAX_ENDPOINT_ID: u32 = 0x3fff_ffff;
/// `enum porin_icmp_caps`: largest ICMP/ICMPv6 error (IP packet) that is RELATED.
pub const ICMP4_ERR_MAX_LEN: u32 = 576;
pub const ICMP6_ERR_MAX_LEN: u32 = 1280;
/// Size of the counters array (`PORIN_R_MAX`).
pub const REASON_MAX: u32 = 32;

/// Direction from the workload's point of view (`enum porin_dir`): the policy direction of a packet and of
/// a flow record (serialised `ingress` / `egress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Packets entering the workload (host-veth tc egress).
    Ingress = 0,
    /// Packets leaving the workload (host-veth tc ingress).
    Egress = 1,
}

impl Direction {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Ingress),
            1 => Some(Self::Egress),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// Policy entry action (`enum porin_action`; 0 is invalid and drops).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Allow = 1,
    Deny = 2,
}

impl Action {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Allow),
            2 => Some(Self::Deny),
            _ => None,
        }
    }
}

/// Event type (`enum porin_event_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    NewAllowed = 1,
    Denied = 2,
    Close = 3,
    Revoked = 4,
    /// Made by the agent from a conntrack entry (never by the programs): a live connection's counters so far.
    Progress = 5,
}

impl EventType {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::NewAllowed),
            2 => Some(Self::Denied),
            3 => Some(Self::Close),
            4 => Some(Self::Revoked),
            5 => Some(Self::Progress),
            _ => None,
        }
    }
}

macro_rules! reasons {
    ($( $variant:ident = $val:literal => $cname:literal, $metric:literal; )*) => {
        /// Counter index and event reason (`enum porin_reason`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $( $variant = $val, )*
        }

        impl Reason {
            pub const ALL: &'static [Reason] = &[ $( Reason::$variant, )* ];

            pub fn from_u8(v: u8) -> Option<Self> {
                match v {
                    $( $val => Some(Self::$variant), )*
                    _ => None,
                }
            }

            /// The C enumerator name.
            pub fn c_name(self) -> &'static str {
                match self {
                    $( Self::$variant => $cname, )*
                }
            }

            /// A stable snake_case name for metrics labels and JSON.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $metric, )*
                }
            }
        }
    };
}

reasons! {
    AllowNew = 0 => "PORIN_R_ALLOW_NEW", "allow_new";
    AllowEstablished = 1 => "PORIN_R_ALLOW_ESTABLISHED", "allow_established";
    AllowRelated = 2 => "PORIN_R_ALLOW_RELATED", "allow_related";
    AllowInfra = 3 => "PORIN_R_ALLOW_INFRA", "allow_infra";
    AllowFrag = 4 => "PORIN_R_ALLOW_FRAG", "allow_frag";
    RingbufFull = 5 => "PORIN_R_RINGBUF_FULL", "ringbuf_full";
    Revalidated = 6 => "PORIN_R_REVALIDATED", "revalidated";
    DropNoEndpoint = 16 => "PORIN_R_DROP_NO_ENDPOINT", "drop_no_endpoint";
    DropLockdown = 17 => "PORIN_R_DROP_LOCKDOWN", "drop_lockdown";
    DropNoIdentity = 18 => "PORIN_R_DROP_NO_IDENTITY", "drop_no_identity";
    DropNoPolicy = 19 => "PORIN_R_DROP_NO_POLICY", "drop_no_policy";
    DropPolicyDeny = 20 => "PORIN_R_DROP_POLICY_DENY", "drop_policy_deny";
    DropRevoked = 21 => "PORIN_R_DROP_REVOKED", "drop_revoked";
    DropFrag = 22 => "PORIN_R_DROP_FRAG", "drop_frag";
    DropMalformed = 23 => "PORIN_R_DROP_MALFORMED", "drop_malformed";
    DropUnsupportedL3 = 24 => "PORIN_R_DROP_UNSUPPORTED_L3", "drop_unsupported_l3";
    DropIcmpUnrelated = 25 => "PORIN_R_DROP_ICMP_UNRELATED", "drop_icmp_unrelated";
    DropCtFull = 26 => "PORIN_R_DROP_CT_FULL", "drop_ct_full";
    DropBadAction = 27 => "PORIN_R_DROP_BAD_ACTION", "drop_bad_action";
    DropSpoofed = 28 => "PORIN_R_DROP_SPOOFED", "drop_spoofed";
    DropSpoofedIngress = 29 => "PORIN_R_DROP_SPOOFED_INGRESS", "drop_spoofed_ingress";
    DropCtBudget = 30 => "PORIN_R_DROP_CT_BUDGET", "drop_ct_budget";
}

impl Reason {
    /// True for reasons that mean the packet was dropped.
    pub fn is_drop(self) -> bool {
        (self as u8) >= 16
    }
}

/// Every enumerator the Rust side relies on, as (C enum, C enumerator, value).
/// The BTF test checks each against the compiled object.
pub fn enum_values() -> Vec<(&'static str, &'static str, u64)> {
    let mut v = vec![
        ("porin_dir", "PORIN_DIR_INGRESS", Direction::Ingress as u64),
        ("porin_dir", "PORIN_DIR_EGRESS", Direction::Egress as u64),
        ("porin_action", "PORIN_ACTION_INVALID", 0),
        ("porin_action", "PORIN_ACTION_ALLOW", Action::Allow as u64),
        ("porin_action", "PORIN_ACTION_DENY", Action::Deny as u64),
        ("porin_event_type", "PORIN_EV_NEW_ALLOWED", EventType::NewAllowed as u64),
        ("porin_event_type", "PORIN_EV_DENIED", EventType::Denied as u64),
        ("porin_event_type", "PORIN_EV_CLOSE", EventType::Close as u64),
        ("porin_event_type", "PORIN_EV_REVOKED", EventType::Revoked as u64),
        ("porin_event_type", "PORIN_EV_PROGRESS", EventType::Progress as u64),
        ("porin_reason", "PORIN_R_MAX", u64::from(REASON_MAX)),
        ("porin_family", "PORIN_FAMILY_V4", u64::from(FAMILY_V4)),
        ("porin_family", "PORIN_FAMILY_V6", u64::from(FAMILY_V6)),
        ("porin_ep_flags", "PORIN_EP_F_LOCKDOWN", u64::from(EP_F_LOCKDOWN)),
        ("porin_ep_flags", "PORIN_EP_F_HAS_V4", u64::from(EP_F_HAS_V4)),
        ("porin_ep_flags", "PORIN_EP_F_HAS_V6", u64::from(EP_F_HAS_V6)),
        ("porin_meta_flags", "PORIN_META_F_IPCACHE_DEGRADED", u64::from(META_F_IPCACHE_DEGRADED)),
        ("porin_ct_flags", "PORIN_CT_F_REPLY", u64::from(CT_F_REPLY)),
        ("porin_ct_flags", "PORIN_CT_F_CLOSING", u64::from(CT_F_CLOSING)),
        ("porin_policy_prefix", "PORIN_POL_PREFIX_DEFAULT", u64::from(POL_PREFIX_DEFAULT)),
        ("porin_policy_prefix", "PORIN_POL_PREFIX_IDENTITY", u64::from(POL_PREFIX_IDENTITY)),
        ("porin_policy_prefix", "PORIN_POL_PREFIX_PROTO", u64::from(POL_PREFIX_PROTO)),
        ("porin_policy_prefix", "PORIN_POL_PREFIX_FULL", u64::from(POL_PREFIX_FULL)),
        ("porin_limits", "PORIN_MAX_IPV6_EXT_HDRS", u64::from(MAX_IPV6_EXT_HDRS)),
        ("porin_limits", "PORIN_MAX_ENDPOINT_ID", u64::from(MAX_ENDPOINT_ID)),
        ("porin_icmp_caps", "PORIN_ICMP4_ERR_MAX_LEN", u64::from(ICMP4_ERR_MAX_LEN)),
        ("porin_icmp_caps", "PORIN_ICMP6_ERR_MAX_LEN", u64::from(ICMP6_ERR_MAX_LEN)),
    ];
    for r in Reason::ALL {
        v.push(("porin_reason", r.c_name(), *r as u64));
    }
    v.push(("porin_evctl_flags", "PORIN_EVCTL_F_AGGREGATE_DENIED", u64::from(EVCTL_F_AGGREGATE_DENIED)));
    v.extend(capture_enum_values());
    v
}

impl PolicyKey {
    /// Builds a key. `port` is a host-order value stored big-endian.
    pub fn new(prefixlen: u32, policy_id: u32, identity: u32, proto: u8, port: u16) -> Self {
        Self { prefixlen, policy_id, identity, proto, pad: 0, port: port.to_be() }
    }

    /// The port as a host-order number.
    pub fn port_host(&self) -> u16 {
        u16::from_be(self.port)
    }

    /// The key without `prefixlen`, as the LPM trie's data bytes.
    pub fn data_bytes(&self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out.copy_from_slice(&self.as_bytes()[4..16]);
        out
    }

    /// Rebuilds a key from a prefix length and data bytes.
    pub fn from_parts(prefixlen: u32, data: &[u8; 12]) -> Self {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&prefixlen.to_ne_bytes());
        b[4..].copy_from_slice(data);
        Self::from_bytes(&b).expect("16 bytes")
    }

    /// The endpoint id encoded in `policy_id`.
    pub fn endpoint_id(&self) -> u32 {
        self.policy_id >> 2
    }

    /// The generation bit encoded in `policy_id`.
    pub fn generation(&self) -> u32 {
        (self.policy_id >> 1) & 1
    }
}

impl OwnKey {
    /// The key of one address.
    pub fn of(addr: std::net::IpAddr) -> Self {
        let mut k = Self::default();
        match addr {
            std::net::IpAddr::V4(a) => {
                k.family = FAMILY_V4;
                k.addr[..4].copy_from_slice(&a.octets());
            }
            std::net::IpAddr::V6(a) => {
                k.family = FAMILY_V6;
                k.addr = a.octets();
            }
        }
        k
    }
}

impl EndpointValue {
    /// The endpoint's own addresses (v4 first), as flagged.
    pub fn addrs(&self) -> Vec<std::net::IpAddr> {
        let mut out = Vec::new();
        if self.flags & EP_F_HAS_V4 != 0 {
            out.push(std::net::IpAddr::from(self.addr4));
        }
        if self.flags & EP_F_HAS_V6 != 0 {
            out.push(std::net::IpAddr::from(self.addr6));
        }
        out
    }
}

/// `policy_id = endpoint_id << 2 | gen << 1 | dir`.
pub fn policy_id(endpoint_id: u32, generation: u32, dir: Direction) -> u32 {
    (endpoint_id << 2) | ((generation & 1) << 1) | dir as u32
}

// ---------------------------------------------------------------------------
// Flow-event delivery: denied-packet aggregation (appended; see abi.h).

/// Maps of the flow-event delivery (pinned like the others).
pub mod flow_map_names {
    /// `porin_evctl_v1[0]`: [`super::EvCtl`], written by the event consumer.
    pub const EVCTL: &str = "porin_evctl_v1";
    /// Per-CPU hash [`super::DaggKey`] → [`super::DaggValue`]: denied packets per flow.
    pub const DENIED_AGG: &str = "porin_dagg_v1";
    pub const PINNED: [&str; 2] = [EVCTL, DENIED_AGG];
}

/// `enum porin_evctl_flags`: denied packets go to `porin_dagg_v1`, not the ring.
pub const EVCTL_F_AGGREGATE_DENIED: u32 = 1;

abi_struct! {
    /// `porin_evctl_v1` value.
    "porin_evctl" => pub struct EvCtl {
        pub generation: u32,
        pub flags: u32,
    }
}

abi_struct! {
    /// `porin_dagg_v1` key: the tuple of the event a denied packet would have sent.
    "porin_dagg_key" => pub struct DaggKey {
        pub endpoint_id: u32,
        pub generation: u32,
        pub rule_id: u32,
        pub peer_identity: u32,
        pub dir: u8,
        pub family: u8,
        pub proto: u8,
        pub reason: u8,
        pub src: [u8; 16],
        pub dst: [u8; 16],
        pub sport: u16,
        pub dport: u16,
    }
}

abi_struct! {
    /// `porin_dagg_v1` value (one per CPU).
    "porin_dagg_value" => pub struct DaggValue {
        pub first_ns: u64,
        pub last_ns: u64,
        pub packets: u64,
        pub bytes: u64,
        pub ifindex: u32,
        pub policy_rev: u32,
        pub tcp_flags: u8,
        pub pad: [u8; 7],
    }
}

/// Drop/pass counters summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub by_reason: BTreeMap<Reason, u64>,
}

impl Counters {
    pub fn get(&self, r: Reason) -> u64 {
        self.by_reason.get(&r).copied().unwrap_or(0)
    }

    /// All drops.
    pub fn drops(&self) -> u64 {
        self.by_reason.iter().filter(|(r, _)| r.is_drop()).map(|(_, v)| v).sum()
    }
}

/// Entries vs capacity of one map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapOccupancy {
    pub name: &'static str,
    pub entries: usize,
    pub max_entries: u32,
}

mod capture;
pub use capture::*;
