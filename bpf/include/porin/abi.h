/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Porin dataplane ABI: the ONE definition of every map, key/value struct and
 * enum shared between the BPF programs (bpf/porin_tc.bpf.c) and userspace
 * (crates/dataplane/src/abi.rs mirrors these with #[repr(C)] structs; a test
 * checks sizes, field offsets and enum values against the BTF of the compiled
 * object).
 *
 * Rules for changing this file:
 *   - Layouts use fixed-width integers only; explicit padding, no implicit holes.
 *   - Any change to a key/value layout or to the meaning of a field requires a
 *     new versioned map name (porin_xxx_v2) and a migration in userspace: maps
 *     are pinned and survive agent restarts, so an old pinned map with the old
 *     layout may still be in use by the old program.
 *   - Map names must fit in 15 characters (BPF_OBJ_NAME_LEN - 1).
 *
 * Byte order: ports in keys are network byte order (as on the wire), ports in
 * events are host byte order. Everything else is host byte order. Addresses are
 * raw bytes as on the wire; IPv4 addresses use the first 4 bytes of a 16-byte
 * array, the other 12 bytes are zero.
 */
#ifndef PORIN_ABI_H
#define PORIN_ABI_H

#include <linux/types.h>

/* Bumped on any change of meaning that is not expressed by a new map name. */
#define PORIN_ABI_VERSION 1

/* ------------------------------------------------------------------------ */
/* Enums. All of them are also carried by struct porin_abi_anchor below so   */
/* that they appear in the object's BTF (clang only emits types that a map,  */
/* global or function signature references).                                 */
/* ------------------------------------------------------------------------ */

/* Direction from the WORKLOAD's point of view. The host-veth tc ingress hook
 * sees packets leaving the workload (EGRESS policy); the host-veth tc egress
 * hook sees packets entering the workload (INGRESS policy). */
enum porin_dir {
	PORIN_DIR_INGRESS = 0,
	PORIN_DIR_EGRESS = 1,
};

/* Policy entry action. 0 is deliberately invalid: a zeroed value drops. */
enum porin_action {
	PORIN_ACTION_INVALID = 0,
	PORIN_ACTION_ALLOW = 1,
	PORIN_ACTION_DENY = 2,
};

enum porin_event_type {
	PORIN_EV_NEW_ALLOWED = 1,
	PORIN_EV_DENIED = 2,
	PORIN_EV_CLOSE = 3,
	PORIN_EV_REVOKED = 4,
	/* Never emitted by the programs: the agent makes it from a conntrack entry
	 * (its packets/bytes so far), so long-lived connections report counters
	 * periodically and not only at close. */
	PORIN_EV_PROGRESS = 5,
};

/* Reasons. Used both as the index of the porin_cnt_v1 counters and as the
 * `reason` field of events. 0..15 are "passed"/bookkeeping counters, 16..31
 * are drop reasons. */
enum porin_reason {
	PORIN_R_ALLOW_NEW = 0,         /* new flow admitted by policy */
	PORIN_R_ALLOW_ESTABLISHED = 1, /* conntrack hit (either direction) */
	PORIN_R_ALLOW_RELATED = 2,     /* ICMP error whose inner tuple is tracked */
	PORIN_R_ALLOW_INFRA = 3,       /* ARP, IPv6 neighbour discovery */
	PORIN_R_ALLOW_FRAG = 4,        /* non-first fragment of an admitted datagram */
	PORIN_R_RINGBUF_FULL = 5,      /* counter only: event lost, verdict unchanged */
	PORIN_R_REVALIDATED = 6,       /* counter only: CT entry re-checked and kept */
	PORIN_R_DROP_FIRST = 16,
	PORIN_R_DROP_NO_ENDPOINT = 16, /* interface has no endpoints entry */
	PORIN_R_DROP_LOCKDOWN = 17,    /* endpoint in lockdown (map full) */
	PORIN_R_DROP_NO_IDENTITY = 18, /* peer address not in the ipcache */
	PORIN_R_DROP_NO_POLICY = 19,   /* no policy entry matched */
	PORIN_R_DROP_POLICY_DENY = 20, /* a DENY entry matched */
	PORIN_R_DROP_REVOKED = 21,     /* established flow no longer allowed */
	PORIN_R_DROP_FRAG = 22,        /* non-first fragment without an allowed record */
	PORIN_R_DROP_MALFORMED = 23,   /* truncated or invalid headers */
	PORIN_R_DROP_UNSUPPORTED_L3 = 24, /* not IPv4/IPv6/ARP */
	PORIN_R_DROP_ICMP_UNRELATED = 25, /* ICMP error about an untracked flow */
	PORIN_R_DROP_CT_FULL = 26,     /* could not insert the conntrack entries */
	PORIN_R_DROP_BAD_ACTION = 27,  /* policy value with an invalid action */
	PORIN_R_DROP_SPOOFED = 28,     /* from the workload: source is not its own address */
	PORIN_R_DROP_SPOOFED_INGRESS = 29, /* to the workload: a local endpoint's address that
					    * did not enter through that endpoint's interface */
	PORIN_R_DROP_CT_BUDGET = 30,   /* the endpoint's conntrack budget is used up */
	PORIN_R_MAX = 32,
};

enum porin_family {
	PORIN_FAMILY_V4 = 4,
	PORIN_FAMILY_V6 = 6,
};

enum porin_ep_flags {
	/* Drop every new and established IP flow of this endpoint (set by
	 * userspace when the policy map overflowed). ARP/ND still pass. */
	PORIN_EP_F_LOCKDOWN = 1,
	/* addr4 / addr6 hold the endpoint's own address. Without the flag the
	 * workload may send no packet of that family (fail closed); with it, only
	 * packets whose source is that address (anti-spoofing). */
	PORIN_EP_F_HAS_V4 = 2,
	PORIN_EP_F_HAS_V6 = 4,
};

enum porin_meta_flags {
	/* The last ipcache sync overflowed: every endpoint is locked down. */
	PORIN_META_F_IPCACHE_DEGRADED = 1,
};

enum porin_ct_flags {
	PORIN_CT_F_REPLY = 1,   /* v1/v2 only: the entry was the reversed (reply) tuple */
	PORIN_CT_F_CLOSING = 2, /* FIN or RST seen */
};

/* Prefix lengths of the policy LPM key levels. */
enum porin_policy_prefix {
	PORIN_POL_PREFIX_DEFAULT = 32,  /* (endpoint, gen, dir): every peer */
	PORIN_POL_PREFIX_IDENTITY = 64, /* + peer identity */
	PORIN_POL_PREFIX_PROTO = 80,    /* + L4 protocol (pad = 0) */
	PORIN_POL_PREFIX_FULL = 96,     /* + all 16 port bits (80 + k for k bits) */
};

/* Misc constants (compile-time, shared). */
enum porin_limits {
	PORIN_MAX_IPV6_EXT_HDRS = 8,
	PORIN_MAX_ENDPOINT_ID = 0x3fffffff, /* policy_id = endpoint_id << 2 | gen << 1 | dir */
};

/* Largest ICMP/ICMPv6 error (whole IP packet) accepted as RELATED: what
 * RFC 1812 4.3.2.3 (576) and RFC 4443 2.4(c) (1280, the IPv6 minimum MTU)
 * let a router or host send. Larger "errors" are not errors but payload. */
enum porin_icmp_caps {
	PORIN_ICMP4_ERR_MAX_LEN = 576,
	PORIN_ICMP6_ERR_MAX_LEN = 1280,
};

/* Conntrack lifetimes (idle time after which an entry is treated as absent). */
#define PORIN_CT_LIFETIME_TCP_NS     (6ULL * 3600 * 1000000000ULL)
#define PORIN_CT_LIFETIME_CLOSING_NS (30ULL * 1000000000ULL)
#define PORIN_CT_LIFETIME_OTHER_NS   (180ULL * 1000000000ULL)

/* ------------------------------------------------------------------------ */
/* Keys and values                                                           */
/* ------------------------------------------------------------------------ */

/* porin_ep_v2: key = __u32 host-veth ifindex (in the node netns).
 * (v1 was the same without addr4/addr6.) */
struct porin_endpoint {
	__u32 endpoint_id; /* < 2^30 */
	__u32 active_gen;  /* 0 or 1: which policy generation packets use */
	__u32 policy_rev;  /* node-wide unique, bumped on every flip */
	__u32 flags;       /* enum porin_ep_flags */
	__u8 addr4[4];     /* own IPv4 address if PORIN_EP_F_HAS_V4, else 0 */
	__u8 addr6[16];    /* own IPv6 address if PORIN_EP_F_HAS_V6, else 0 */
};

/* porin_pol_v1 LPM key. prefixlen counts bits after the prefixlen field. */
struct porin_policy_key {
	__u32 prefixlen;
	__u32 policy_id; /* endpoint_id << 2 | gen << 1 | dir */
	__u32 identity;  /* peer identity */
	__u8 proto;      /* IPPROTO_* */
	__u8 pad;        /* always 0 */
	__be16 port;     /* dport, or (type << 8 | code) for ICMP/ICMPv6 */
};

struct porin_policy_value {
	__u32 rule_id; /* opaque cookie of the compiler, reported in events */
	__u8 action;   /* enum porin_action */
	__u8 flags;    /* reserved, 0 */
	__u16 pad;
};

/* porin_ipc4_v1 / porin_ipc6_v1 LPM keys. */
struct porin_ipcache_v4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct porin_ipcache_v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct porin_ipcache_value {
	__u32 identity;
};

/* porin_ct_v3: ONE entry per flow and local endpoint, for both directions.
 * The key is the flow as seen from endpoint `endpoint_id`: src/sport = the
 * endpoint's side (the source of a packet leaving it, the destination of one
 * entering it), dst/dport = the peer's side; dir is always 0. A packet and its
 * reply therefore map to the same key, found with one lookup; which way a
 * packet goes is its hook direction compared with dir_of_origin.
 * (v1/v2 kept two entries per flow: the tuple as seen at each hook direction,
 * the reply's marked PORIN_CT_F_REPLY; an older build's map is converted.)
 * For ICMP echo, sport = dport = echo id; for other ICMP, the local side's
 * port is 0 or htons(type << 8 | code) as the packet's sport/dport were. */
struct porin_ct_key {
	__u32 endpoint_id;
	__u8 family; /* enum porin_family */
	__u8 proto;
	__u8 dir;    /* 0 (v1/v2: the hook direction this tuple was seen in) */
	__u8 pad;
	__u8 src[16]; /* the local endpoint's address */
	__u8 dst[16]; /* the peer's address */
	__be16 sport; /* the local endpoint's port */
	__be16 dport; /* the peer's port */
};

struct porin_ct_value {
	__u64 last_seen_ns;  /* either direction */
	__u64 packets;       /* original direction (dir_of_origin) */
	__u64 bytes;
	__u64 packets_reply; /* reply direction */
	__u64 bytes_reply;
	__u32 policy_rev;    /* endpoint policy_rev when last (re)validated */
	__u32 rule_id;
	__u32 peer_identity;
	__u8 dir_of_origin;  /* enum porin_dir of the packet that created the flow */
	__u8 flags;          /* enum porin_ct_flags */
	__u8 tcp_flags;      /* OR of TCP flags seen in the original direction */
	__u8 tcp_flags_reply; /* ... in the reply direction */
	__be16 pol_port;     /* the policy "port" of the original direction */
	__u8 pad2[6];
};

/* porin_frag_v1: first-fragment verdicts, consulted by later fragments. */
struct porin_frag_key {
	__u32 endpoint_id;
	__u8 family;
	__u8 proto;
	__u8 dir;
	__u8 pad;
	__u32 id; /* IPv4 id (host order, 16 bits) or IPv6 fragment id (host order) */
	__u8 src[16];
	__u8 dst[16];
};

struct porin_frag_value {
	__u32 rule_id;
	__u8 action; /* enum porin_action */
	__u8 pad[3];
};

/* porin_meta_v1[0]: written and read by userspace only. */
struct porin_meta {
	__u32 abi_version;
	__u32 rev_high_water; /* highest policy_rev ever handed out */
	__u32 flags;          /* enum porin_meta_flags */
	__u32 pad;
};

/* porin_own_v1: which local endpoint owns an address (anti-spoofing towards
 * workloads). Key: family + address (IPv4 in the first 4 bytes). Written by
 * userspace with the endpoint's addresses. */
struct porin_own_key {
	__u8 family; /* enum porin_family */
	__u8 pad[3];
	__u8 addr[16];
};

struct porin_own_value {
	__u32 ifindex;     /* the owner's host-veth ifindex (node netns) */
	__u32 endpoint_id;
};

/* porin_ctn_v1 / porin_ctr_v1 (key: endpoint_id): conntrack accounting.
 * ctn: written by BPF only (atomic adds): +1 per new flow, -1 per entry BPF
 * deleted. ctr: written by userspace only: +1 per entry userspace deleted
 * (expiry sweep, removed endpoint). entries(ctn) - entries(ctr) is exactly
 * the endpoint's number of entries in porin_ct_v3 (a plain hash: nothing is
 * evicted behind our back). Two maps because userspace cannot add to a value
 * atomically while BPF does. */
struct porin_ct_count {
	__s64 entries;
};

/* porin_cfg_v1[0]: settings written by userspace at open, read by BPF. */
struct porin_config {
	__u32 ct_budget; /* max conntrack entries per endpoint; 0 = no new flow */
	__u32 pad[3];
};

/* porin_ev_v1 ring buffer record. */
struct porin_event {
	__u64 ts_ns;   /* bpf_ktime_get_ns() */
	__u64 packets; /* CLOSE/REVOKED: packets of the CT entry; else 1 */
	__u64 bytes;
	__u32 endpoint_id;
	__u32 peer_identity;
	__u32 rule_id;
	__u32 ifindex;
	__u32 policy_rev;
	__u8 type;      /* enum porin_event_type */
	__u8 dir;       /* enum porin_dir */
	__u8 family;    /* enum porin_family, 0 for non-IP */
	__u8 proto;
	__u8 reason;    /* enum porin_reason */
	__u8 tcp_flags;
	__u16 pad;
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;    /* host order; ICMP: 0 */
	__u16 dport;    /* host order; ICMP: type << 8 | code */
	__u32 pad2[2];
};

/* Never read or written: makes every ABI type and enum appear in BTF so the
 * userspace layout test can check against the compiled object. */
struct porin_abi_anchor {
	struct porin_event ev;
	struct porin_own_key own_key;
	struct porin_own_value own_value;
	struct porin_ct_count ct_count;
	struct porin_config config;
	enum porin_dir dir;
	enum porin_action action;
	enum porin_event_type ev_type;
	enum porin_reason reason;
	enum porin_family family;
	enum porin_ep_flags ep_flags;
	enum porin_meta_flags meta_flags;
	enum porin_ct_flags ct_flags;
	enum porin_policy_prefix prefix;
	enum porin_limits limits;
	enum porin_icmp_caps icmp_caps;
};

/* ------------------------------------------------------------------------ */
/* Maps (BPF side only). Default sizes; userspace may override max_entries   */
/* at creation. All maps except porin_abi_v1 are pinned by name under the    */
/* pin directory chosen by the agent.                                        */
/* ------------------------------------------------------------------------ */
#ifdef __bpf__
#include <bpf/bpf_helpers.h>

#ifndef LIBBPF_PIN_BY_NAME
#define LIBBPF_PIN_BY_NAME 1
#endif

/* Writer: userspace (set_endpoint). Reader: BPF, every packet.
 * NO_PREALLOC: a replaced element is freed after an RCU grace period, so a
 * program that is still reading the old value never sees it reused. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct porin_endpoint);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} porin_ep_v2 SEC(".maps");

/* Writer: userspace (set_ipcache). Reader: BPF, new flows and revalidation. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 131072);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct porin_ipcache_v4_key);
	__type(value, struct porin_ipcache_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} porin_ipc4_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 131072);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct porin_ipcache_v6_key);
	__type(value, struct porin_ipcache_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} porin_ipc6_v1 SEC(".maps");

/* Writer: userspace (set_endpoint, double-buffered). Reader: BPF, one lookup
 * per new flow and per revalidation. Node-wide, shared by all endpoints. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct porin_policy_key);
	__type(value, struct porin_policy_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} porin_pol_v1 SEC(".maps");

/* Writer: BPF (inserts, lazy expiry, revocation), userspace (expiry sweep,
 * removed endpoints). Reader: BPF (every packet), userspace.
 * A plain hash, not LRU (v1 was LRU): an LRU map evicts any endpoint's
 * entries when full, so one endpoint could break everyone's flows, and
 * silent eviction would make the per-endpoint counts (porin_ctn_v1) drift.
 * Every delete is explicit and accounted. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__type(key, struct porin_ct_key);
	__type(value, struct porin_ct_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} porin_ct_v3 SEC(".maps");

/* Writer: BPF (+/- on insert/delete); userspace deletes the counter of a
 * removed endpoint. Reader: BPF (new flows), userspace. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct porin_ct_count);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} porin_ctn_v1 SEC(".maps");

/* Writer: userspace (expiry sweep, removed endpoints). Reader: BPF (new flows). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct porin_ct_count);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} porin_ctr_v1 SEC(".maps");

/* Writer: userspace (with the endpoint's addresses). Reader: BPF (every
 * packet towards a workload). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct porin_own_key);
	__type(value, struct porin_own_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} porin_own_v1 SEC(".maps");

/* Writer: userspace (open). Reader: BPF (new flows). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct porin_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} porin_cfg_v1 SEC(".maps");

/* Writer: BPF (first fragments). Reader: BPF (later fragments). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct porin_frag_key);
	__type(value, struct porin_frag_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} porin_frag_v1 SEC(".maps");

/* Writer: BPF. Reader: userspace (summed over CPUs). Index: enum porin_reason. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PORIN_R_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} porin_cnt_v1 SEC(".maps");

/* Writer: BPF. Reader: userspace event reader. Records: struct porin_event. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} porin_ev_v1 SEC(".maps");

/* Writer/reader: userspace only. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct porin_meta);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} porin_meta_v1 SEC(".maps");

/* Never used at run time; see struct porin_abi_anchor. Not pinned. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct porin_abi_anchor);
} porin_abi_v1 SEC(".maps");

#endif /* __bpf__ */

/* ------------------------------------------------------------------------ */
/* Flow events: delivery (appended; owned by the flow pipeline)              */
/* ------------------------------------------------------------------------ */

/* Flow-event wake-ups (see ev_submit_flags in porin_tc.bpf.c): records are
 * submitted without waking the consumer, which polls the ring at least every
 * PORIN_EV_POLL_MS; the producer wakes it early once the unread data reaches
 * 1/PORIN_EV_WAKE_FRACTION of the ring. */
#define PORIN_EV_WAKE_FRACTION 4
#define PORIN_EV_POLL_MS 100

/* Denied-packet aggregation. With PORIN_EVCTL_F_AGGREGATE_DENIED set, a denied
 * packet is not sent as an event: it is added to its flow's entry in the
 * per-CPU porin_dagg_v1 (key: the event's tuple, reason and the current
 * generation), and the agent drains whole generations: it flips `generation`, waits
 * for an RCU grace period (no program still uses the old one), reads and
 * deletes every entry of other generations and turns each into one DENIED
 * event with the summed packets and bytes. If an entry cannot be created (map
 * full, or another CPU created it first) the packet is sent as an event as
 * before, so every denied packet is in an entry, an event or the
 * PORIN_R_RINGBUF_FULL counter. */
enum porin_evctl_flags {
	PORIN_EVCTL_F_AGGREGATE_DENIED = 1,
};

/* porin_evctl_v1[0]: written by the event consumer, read by BPF per denied packet. */
struct porin_evctl {
	__u32 generation; /* current aggregation generation */
	__u32 flags; /* enum porin_evctl_flags */
};

/* porin_dagg_v1 key: the fields of the event a denied packet would have sent
 * (so an aggregate never mixes packets a per-packet event would have told
 * apart: another rule or peer identity after a policy change is another key). */
struct porin_dagg_key {
	__u32 endpoint_id;
	__u32 generation;
	__u32 rule_id;
	__u32 peer_identity;
	__u8 dir;       /* enum porin_dir */
	__u8 family;    /* enum porin_family, 0 for non-IP */
	__u8 proto;
	__u8 reason;    /* enum porin_reason */
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;    /* host order, as in events */
	__u16 dport;
};

/* porin_dagg_v1 value (per CPU). */
struct porin_dagg_value {
	__u64 first_ns;
	__u64 last_ns;
	__u64 packets;
	__u64 bytes;
	__u32 ifindex;
	__u32 policy_rev;    /* of the last packet */
	__u8 tcp_flags;      /* OR over the packets */
	__u8 pad[7];
};

/* Never read or written: puts the flow-delivery types into BTF (layout test). */
struct porin_abi_anchor_ev {
	struct porin_evctl ctl;
	struct porin_dagg_key dk;
	struct porin_dagg_value dv;
	enum porin_evctl_flags evctl_flags;
};

#ifdef __bpf__
/* Writer: the event consumer (userspace). Reader: BPF, per denied packet. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct porin_evctl);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} porin_evctl_v1 SEC(".maps");

/* Writer: BPF (add), the event consumer (drain + delete). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct porin_dagg_key);
	__type(value, struct porin_dagg_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} porin_dagg_v1 SEC(".maps");

/* Not pinned, never used at run time. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct porin_abi_anchor_ev);
} porin_abi_ev_v1 SEC(".maps");
#endif /* __bpf__ */

/* ------------------------------------------------------------------------ */
/* Packet capture (appended; owned by the capture service, see               */
/* docs/design/capture.md)                                                   */
/* ------------------------------------------------------------------------ */

/* The programs copy the packets of interfaces with an entry in porin_cap_v1
 * that match one of its filters (none: every packet), up to snaplen bytes, to
 * the porin_caprb_v1 ring buffer as a struct porin_cap_hdr followed by the
 * frame's first cap_len bytes. A record the ring cannot take is counted
 * (porin_capst_v1[PORIN_CAP_ST_LOST]); the verdict never depends on capture.
 * porin_capif_v2[ifindex] (slot 0 for every ifindex >= PORIN_CAP_IFINDEX_SLOTS)
 * holds a summary of the filters of the interfaces with an entry in porin_cap_v1
 * (struct porin_capif): a packet of any other interface, or one that no filter
 * of its interface can match by the summary, costs one array lookup and nothing
 * else. (porin_capif_v1, a plain nonzero flag, was replaced by it.) */
enum porin_cap_limits {
	PORIN_CAP_MAX_FILTERS = 8,
	PORIN_CAP_MAX_SNAPLEN = 16384,
	PORIN_CAP_IFINDEX_SLOTS = 65536,
};

/* Indexes of the per-CPU porin_capst_v1 counters. */
enum porin_cap_stats {
	PORIN_CAP_ST_CAPTURED = 0, /* records written to the ring */
	PORIN_CAP_ST_LOST = 1,     /* matching packets the ring could not take */
	PORIN_CAP_ST_MAX = 2,
};

/* One filter: protocol (0 = any) and a port range matched against the source
 * OR the destination port (host order; port_lo = port_hi = 0: any port). */
struct porin_cap_filter {
	__u8 proto;
	__u8 pad;
	__u16 port_lo;
	__u16 port_hi;
	__u16 pad2;
};

/* porin_cap_v1 value; key = __u32 host-veth ifindex. */
struct porin_cap_config {
	__u32 snaplen;   /* 1..PORIN_CAP_MAX_SNAPLEN */
	__u32 n_filters; /* 0 = every packet; at most PORIN_CAP_MAX_FILTERS */
	struct porin_cap_filter filters[8];
};

/* Protocol classes of the capture summary (bit numbers in porin_capif's masks). */
enum porin_cap_class {
	PORIN_CAP_CL_TCP = 0,
	PORIN_CAP_CL_UDP = 1,
	PORIN_CAP_CL_SCTP = 2,
	PORIN_CAP_CL_ICMP = 3,
	PORIN_CAP_CL_ICMPV6 = 4,
	PORIN_CAP_CL_OTHER = 5, /* every other protocol, and non-IP (proto 0) */
};

enum porin_capif_flags {
	PORIN_CAPIF_F_ON = 1,  /* the slot's interface(s) are captured */
	PORIN_CAPIF_F_ALL = 2, /* some filter matches every packet (or there are none) */
};

/* porin_capif_v2 value: a summary of the filters of the interfaces in the slot.
 * A packet MAY match (and porin_cap_v1 is consulted, whose filters decide) if
 * flags has F_ON and: F_ALL; or its protocol class's bit is in any_port (a
 * filter of that protocol without ports); or the bit is in with_port (a filter
 * of that protocol, or of any protocol, with a port range) and its source or
 * destination port is in [port_lo, port_hi] (the union of those ranges). The
 * summary never rejects a packet a filter matches (the agent computes it;
 * porin_abi tests it against the filters). */
struct porin_capif {
	__u8 flags;     /* enum porin_capif_flags */
	__u8 any_port;  /* 1 << enum porin_cap_class */
	__u8 with_port; /* 1 << enum porin_cap_class */
	__u8 pad;
	__u16 port_lo;  /* host order */
	__u16 port_hi;
};

/* porin_caprb_v1 record header, followed by cap_len bytes of the frame. */
struct porin_cap_hdr {
	__u64 ts_ns;   /* bpf_ktime_get_ns() */
	__u32 ifindex;
	__u32 len;     /* the packet's length on the wire (skb->len) */
	__u32 cap_len; /* bytes that follow: min(len, snaplen) */
	__u8 dir;      /* enum porin_dir */
	__u8 proto;    /* IP protocol, 0 for non-IP */
	__u16 sport;   /* host order, 0 without ports */
	__u16 dport;
	__u8 passed;   /* 1: the program passed the packet, 0: dropped it */
	__u8 pad[5];
};

/* Never read or written: puts the capture types into BTF (layout test). */
struct porin_abi_anchor_cap {
	struct porin_cap_filter f;
	struct porin_cap_config c;
	struct porin_cap_hdr h;
	enum porin_cap_limits limits;
	enum porin_cap_stats stats;
	struct porin_capif s;
	enum porin_cap_class cls;
	enum porin_capif_flags capif_flags;
};

#ifdef __bpf__
/* Writer: the capture service. Reader: BPF, per packet while capture is on. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct porin_cap_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} porin_cap_v1 SEC(".maps");

/* Writer: the capture service (set after the porin_cap_v1 entry, cleared
 * before it is deleted). Reader: BPF, every packet. Index: ifindex, or 0 for
 * ifindexes >= PORIN_CAP_IFINDEX_SLOTS. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PORIN_CAP_IFINDEX_SLOTS);
	__type(key, __u32);
	__type(value, struct porin_capif);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} porin_capif_v2 SEC(".maps");

/* Writer: BPF. Reader: the capture service (summed over CPUs). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PORIN_CAP_ST_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} porin_capst_v1 SEC(".maps");

/* Writer: BPF. Reader: the capture service. Separate from porin_ev_v1, so a
 * capture can never take the room of flow events. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 23);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} porin_caprb_v1 SEC(".maps");

/* Not pinned, never used at run time. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct porin_abi_anchor_cap);
} porin_abi_cap_v1 SEC(".maps");
#endif /* __bpf__ */

#endif /* PORIN_ABI_H */
