// SPDX-License-Identifier: Apache-2.0
/*
 * Porin per-endpoint enforcement: two tc (TCX) programs attached to the HOST
 * side of each workload veth, in the node network namespace.
 *
 *   porin_from_wl  host-veth ingress = packets leaving the workload  (EGRESS policy)
 *   porin_to_wl    host-veth egress  = packets entering the workload (INGRESS policy)
 *
 * Per packet: endpoint lookup -> parse -> source check (from the workload:
 * its own address; to the workload: a local endpoint's address only from that
 * endpoint's veth) -> (fragment | ICMP error | ND) special cases -> conntrack
 * lookup -> on miss: ipcache + ONE policy LPM lookup + the endpoint's
 * conntrack budget.
 * Every path that cannot decide returns TC_ACT_SHOT. See
 * docs/design/dataplane.md for the full design.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "porin/abi.h"

/* Bytes made linear before direct packet access: Ethernet + fixed IPv6 header
 * (the larger of the two fixed L3 headers). Everything past the fixed L3
 * header is read with bpf_skb_load_bytes, which works on non-linear skbs. */
#define PORIN_LINEAR_LEN (14 + 40)

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_AUTH 51
#define NEXTHDR_DEST 60

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

#define ETH_P_ARP_BE bpf_htons(ETH_P_ARP)
#define ETH_P_IP_BE bpf_htons(ETH_P_IP)
#define ETH_P_IPV6_BE bpf_htons(ETH_P_IPV6)

/* Pass = "no objection": lets later TCX programs run; the kernel passes the
 * packet if no program decides. We attach first, so nothing before us can
 * bypass enforcement. */
#define PORIN_PASS TC_ACT_UNSPEC
#define PORIN_DROP TC_ACT_SHOT

enum frag_kind { FRAG_NONE = 0, FRAG_FIRST = 1, FRAG_LATER = 2 };

/* Parse outcomes other than "parsed an IP packet". */
enum parse_res {
	PARSE_IP = 0,
	PARSE_INFRA = 1, /* ARP */
	PARSE_MALFORMED = 2,
	PARSE_UNSUPPORTED = 3,
};

enum icmp_class { ICMP_NOT = 0, ICMP_PLAIN = 1, ICMP_ERROR = 2, ICMP_ND = 3 };

struct pkt {
	__u8 family;
	__u8 proto;
	__u8 tcp_flags;
	__u8 frag;        /* enum frag_kind */
	__u8 icmp;        /* enum icmp_class */
	__u8 pad[3];
	__u32 frag_id;
	__u32 l4_off;     /* offset of the L4 header from the start of the frame */
	__be16 sport;     /* conntrack tuple ports */
	__be16 dport;
	__be16 pol_port;  /* policy "port" */
	__u16 ev_sport;   /* host order, for events */
	__u16 ev_dport;
	__u16 pad2;
	__u8 src[16];
	__u8 dst[16];
};

struct verdict {
	__u8 reason;     /* enum porin_reason */
	__u8 ev_type;    /* 0 = no event */
	__u8 pad[2];
	__u32 rule_id;
	__u32 identity;
	__u32 pad2;
	__u64 packets;
	__u64 bytes;
};

struct ep_snapshot {
	__u32 endpoint_id;
	__u32 gen;
	__u32 rev;
	__u32 flags;
	__u8 addr4[4];
	__u8 addr6[16];
};

static __always_inline void count(__u32 reason)
{
	__u64 *c = bpf_map_lookup_elem(&porin_cnt_v1, &reason);
	if (c)
		*c += 1;
}

static __always_inline void copy16(__u8 *dst, const __u8 *src)
{
	__builtin_memcpy(dst, src, 16);
}

/* ------------------------------------------------------------------------ */
/* Flow events: wake-up batching                                              */
/* ------------------------------------------------------------------------ */

/* Submitting a ring-buffer record normally wakes the consumer whenever it had
 * caught up, i.e. for nearly every event at a low rate: a wake-up (irq_work, a
 * self-IPI, then a cross-CPU wake-up) per new connection or denied packet, far
 * more expensive than the packet itself. Records are submitted without a
 * wake-up instead; the agent polls the ring on an interval (PORIN_EV_POLL_MS)
 * and is woken early only by the record that takes the unread data across
 * 1/PORIN_EV_WAKE_FRACTION of the ring (once per crossing, not by every record
 * above it), so a burst cannot fill the ring before the next poll. Nothing is
 * lost uncounted by this: a reserve that fails is counted
 * (PORIN_R_RINGBUF_FULL). `avail` includes this record (reserved, not yet
 * submitted); PORIN_EV_RECORD_SPAN is its footprint (header + record). */
#define PORIN_EV_RECORD_SPAN (8 + sizeof(struct porin_event))
static __always_inline __u64 ev_submit_flags(void)
{
	__u64 avail = bpf_ringbuf_query(&porin_ev_v1, BPF_RB_AVAIL_DATA);
	__u64 mark = bpf_ringbuf_query(&porin_ev_v1, BPF_RB_RING_SIZE) / PORIN_EV_WAKE_FRACTION;
	if (avail >= mark && avail < mark + PORIN_EV_RECORD_SPAN)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

static __always_inline void emit(struct __sk_buff *skb, const struct ep_snapshot *ep, __u8 dir,
				 const struct pkt *p, const struct verdict *v)
{
	struct porin_event *e = bpf_ringbuf_reserve(&porin_ev_v1, sizeof(*e), 0);
	if (!e) {
		count(PORIN_R_RINGBUF_FULL);
		return;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->packets = v->packets;
	e->bytes = v->bytes;
	e->endpoint_id = ep->endpoint_id;
	e->peer_identity = v->identity;
	e->rule_id = v->rule_id;
	e->ifindex = skb->ifindex;
	e->policy_rev = ep->rev;
	e->type = v->ev_type;
	e->dir = dir;
	e->family = p->family;
	e->proto = p->proto;
	e->reason = v->reason;
	e->tcp_flags = p->tcp_flags;
	e->pad = 0;
	copy16(e->src, p->src);
	copy16(e->dst, p->dst);
	e->sport = p->ev_sport;
	e->dport = p->ev_dport;
	e->pad2[0] = 0;
	e->pad2[1] = 0;
	bpf_ringbuf_submit(e, ev_submit_flags());
}

/* Denied-packet aggregation (see porin_dagg_v1 in abi.h). Returns 1 if the
 * packet was added to an aggregate (no event needed), 0 if it must be sent as
 * an event (aggregation off, or no entry could be created). */
static __always_inline int deny_aggregate(struct __sk_buff *skb, const struct ep_snapshot *ep, __u8 dir,
					  const struct pkt *p, const struct verdict *v)
{
	__u32 zero = 0;
	struct porin_evctl *ctl = bpf_map_lookup_elem(&porin_evctl_v1, &zero);
	if (!ctl || !(ctl->flags & PORIN_EVCTL_F_AGGREGATE_DENIED))
		return 0;
	struct porin_dagg_key k = {};
	k.endpoint_id = ep->endpoint_id;
	k.generation = ctl->generation;
	k.rule_id = v->rule_id;
	k.peer_identity = v->identity;
	k.dir = dir;
	k.family = p->family;
	k.proto = p->proto;
	k.reason = v->reason;
	copy16(k.src, p->src);
	copy16(k.dst, p->dst);
	k.sport = p->ev_sport;
	k.dport = p->ev_dport;
	/* The coarse clock: no clock-source read per denied packet; an aggregate
	 * spans a drain interval (hundreds of ms), its first/last times are
	 * good to a tick. */
	__u64 now = bpf_ktime_get_coarse_ns();
	/* Per-CPU value: only this CPU writes it, and tc programs do not nest on
	 * a CPU, so plain adds are exact. */
	struct porin_dagg_value *a = bpf_map_lookup_elem(&porin_dagg_v1, &k);
	if (a) {
		a->last_ns = now;
		a->packets += 1;
		a->bytes += skb->len;
		a->tcp_flags |= p->tcp_flags;
		a->policy_rev = ep->rev;
		return 1;
	}
	struct porin_dagg_value n = {
		.first_ns = now,
		.last_ns = now,
		.packets = 1,
		.bytes = skb->len,
		.ifindex = skb->ifindex,
		.policy_rev = ep->rev,
		.tcp_flags = p->tcp_flags,
	};
	return bpf_map_update_elem(&porin_dagg_v1, &k, &n, BPF_NOEXIST) == 0;
}

#include "porin_tc/parse.h"

/* ------------------------------------------------------------------------ */
/* Lookups                                                                   */
/* ------------------------------------------------------------------------ */

/* Returns 0 and sets *identity, or -1 if the address has no identity. */
static __always_inline int lookup_identity(__u8 family, const __u8 *addr, __u32 *identity)
{
	struct porin_ipcache_value *v;
	if (family == PORIN_FAMILY_V4) {
		struct porin_ipcache_v4_key k = { .prefixlen = 32 };
		__builtin_memcpy(k.addr, addr, 4);
		v = bpf_map_lookup_elem(&porin_ipc4_v1, &k);
	} else {
		struct porin_ipcache_v6_key k = { .prefixlen = 128 };
		__builtin_memcpy(k.addr, addr, 16);
		v = bpf_map_lookup_elem(&porin_ipc6_v1, &k);
	}
	if (!v)
		return -1;
	*identity = v->identity;
	return 0;
}

/* The policy decision for a flow: peer address, direction, proto and policy
 * port. Fills v (reason, rule_id, identity). Returns 1 if allowed. */
static __always_inline int policy_decide(const struct ep_snapshot *ep, __u8 dir, __u8 family,
					 const __u8 *peer, __u8 proto, __be16 port,
					 struct verdict *v)
{
	if (ep->flags & PORIN_EP_F_LOCKDOWN) {
		v->reason = PORIN_R_DROP_LOCKDOWN;
		return 0;
	}
	__u32 identity = 0;
	if (lookup_identity(family, peer, &identity) < 0) {
		v->reason = PORIN_R_DROP_NO_IDENTITY;
		return 0;
	}
	v->identity = identity;

	struct porin_policy_key k = {
		.prefixlen = PORIN_POL_PREFIX_FULL,
		.policy_id = (ep->endpoint_id << 2) | ((ep->gen & 1) << 1) | (dir & 1),
		.identity = identity,
		.proto = proto,
		.pad = 0,
		.port = port,
	};
	struct porin_policy_value *pv = bpf_map_lookup_elem(&porin_pol_v1, &k);
	if (!pv) {
		v->reason = PORIN_R_DROP_NO_POLICY;
		return 0;
	}
	v->rule_id = pv->rule_id;
	if (pv->action == PORIN_ACTION_ALLOW) {
		v->reason = PORIN_R_ALLOW_NEW;
		return 1;
	}
	v->reason = pv->action == PORIN_ACTION_DENY ? PORIN_R_DROP_POLICY_DENY
						     : PORIN_R_DROP_BAD_ACTION;
	return 0;
}

/* The flow's one conntrack key at endpoint `endpoint_id` (abi.h): the
 * endpoint's side first. Leaving the workload (egress) that is the packet's
 * source; entering it (ingress), its destination. A packet and its reply get
 * the same key. */
static __always_inline void ct_key_of(struct porin_ct_key *k, __u32 endpoint_id, __u8 dir,
				      __u8 family, __u8 proto, const __u8 *src, const __u8 *dst,
				      __be16 sport, __be16 dport)
{
	k->endpoint_id = endpoint_id;
	k->family = family;
	k->proto = proto;
	k->dir = 0;
	k->pad = 0;
	if (dir == PORIN_DIR_EGRESS) {
		copy16(k->src, src);
		copy16(k->dst, dst);
		k->sport = sport;
		k->dport = dport;
	} else {
		copy16(k->src, dst);
		copy16(k->dst, src);
		k->sport = dport;
		k->dport = sport;
	}
}

static __always_inline __u64 ct_lifetime(const struct porin_ct_value *cv, __u8 proto)
{
	if (cv->flags & PORIN_CT_F_CLOSING)
		return PORIN_CT_LIFETIME_CLOSING_NS;
	if (proto == IPPROTO_TCP)
		return PORIN_CT_LIFETIME_TCP_NS;
	return PORIN_CT_LIFETIME_OTHER_NS;
}

/* Conntrack time is the coarse monotonic clock: no clock-source read per
 * packet, and its tick (1-10 ms) is nothing against lifetimes of 30 s and
 * more. Userspace compares with CLOCK_MONOTONIC, ahead of it by less than a
 * tick. The age is signed: an entry stamped by the precise clock (a previous
 * program version) may be up to a tick "in the future", which is fresh, not
 * expired. */
static __always_inline __u64 ct_now(void)
{
	return bpf_ktime_get_coarse_ns();
}

static __always_inline int ct_fresh(const struct porin_ct_value *cv, __u8 proto, __u64 now)
{
	return (__s64)(now - cv->last_seen_ns) < (__s64)ct_lifetime(cv, proto);
}

#include "porin_tc/icmp.h"

/* ------------------------------------------------------------------------ */
/* Conntrack budget per endpoint                                             */
/* ------------------------------------------------------------------------ */

#define PORIN_EEXIST 17

static __always_inline void ct_count_add(__u32 endpoint_id, __s64 d)
{
	struct porin_ct_count *c = bpf_map_lookup_elem(&porin_ctn_v1, &endpoint_id);
	if (c)
		__sync_fetch_and_add(&c->entries, d);
}

/* Deletes a conntrack entry; only the delete that actually removed it
 * (BPF or userspace) gives its slot back to the endpoint. */
static __always_inline void ct_delete(const struct porin_ct_key *k)
{
	if (bpf_map_delete_elem(&porin_ct_v3, k) == 0)
		ct_count_add(k->endpoint_id, -1);
}

/* Takes n entries of the endpoint's conntrack budget. Returns 0, or -1 when
 * the budget is used up or cannot be accounted (fail closed). Check, then
 * add: concurrent CPUs may overshoot by at most n entries each. */
static __always_inline int ct_reserve(__u32 endpoint_id, __s64 n)
{
	__u32 zero = 0;
	struct porin_config *cfg = bpf_map_lookup_elem(&porin_cfg_v1, &zero);
	if (!cfg)
		return -1;
	__s64 budget = cfg->ct_budget;
	struct porin_ct_count *c = bpf_map_lookup_elem(&porin_ctn_v1, &endpoint_id);
	if (!c) {
		struct porin_ct_count z = {};
		bpf_map_update_elem(&porin_ctn_v1, &endpoint_id, &z, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&porin_ctn_v1, &endpoint_id);
		if (!c)
			return -1;
	}
	__s64 released = 0;
	struct porin_ct_count *rel = bpf_map_lookup_elem(&porin_ctr_v1, &endpoint_id);
	if (rel)
		released = rel->entries;
	if (c->entries - released + n > budget)
		return -1;
	__sync_fetch_and_add(&c->entries, n);
	return 0;
}

/* Inserts a new entry whose slot was reserved. Returns 0 or -1 (not inserted,
 * slot given back). An entry another CPU created meanwhile is overwritten and
 * the extra slot given back. */
static __always_inline int ct_insert_reserved(const struct porin_ct_key *k,
					      const struct porin_ct_value *v)
{
	long rc = bpf_map_update_elem(&porin_ct_v3, k, v, BPF_NOEXIST);
	if (rc == 0)
		return 0;
	ct_count_add(k->endpoint_id, -1);
	if (rc == -PORIN_EEXIST && bpf_map_update_elem(&porin_ct_v3, k, v, BPF_EXIST) == 0)
		return 0;
	return -1;
}

/* ------------------------------------------------------------------------ */
/* Conntrack + policy                                                        */
/* ------------------------------------------------------------------------ */

/* Decide an IP packet that is not a non-first fragment. Returns 1 to pass. */
static __always_inline int decide_flow(struct __sk_buff *skb, const struct ep_snapshot *ep,
				       __u8 dir, struct pkt *p, struct verdict *v)
{
	struct porin_ct_key k = {};
	__u64 now = ct_now();

	/* One lookup finds the flow whichever way the packet goes. */
	ct_key_of(&k, ep->endpoint_id, dir, p->family, p->proto, p->src, p->dst, p->sport, p->dport);
	struct porin_ct_value *cv = bpf_map_lookup_elem(&porin_ct_v3, &k);
	if (cv) {
		int fresh = ct_fresh(cv, p->proto, now);
		/* A new SYN on a closing tuple starts a new connection. */
		int reopen = p->proto == IPPROTO_TCP && (cv->flags & PORIN_CT_F_CLOSING) &&
			     (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN;
		if (!fresh || reopen) {
			ct_delete(&k);
			cv = NULL;
		}
	}
	if (cv) {
		int orig = dir == cv->dir_of_origin;
		v->identity = cv->peer_identity;
		v->rule_id = cv->rule_id;
		if (cv->policy_rev != ep->rev) {
			/* Revalidate the ORIGINAL direction against the active
			 * policy; the peer is the key's peer side. */
			struct verdict rv = {};
			if (!policy_decide(ep, cv->dir_of_origin, p->family, k.dst, p->proto, cv->pol_port, &rv)) {
				v->packets = orig ? cv->packets : cv->packets_reply;
				v->bytes = orig ? cv->bytes : cv->bytes_reply;
				v->reason = PORIN_R_DROP_REVOKED;
				v->ev_type = PORIN_EV_REVOKED;
				v->rule_id = rv.rule_id;
				ct_delete(&k);
				return 0;
			}
			count(PORIN_R_REVALIDATED);
			cv->policy_rev = ep->rev;
			cv->rule_id = rv.rule_id;
			cv->peer_identity = rv.identity;
			v->rule_id = rv.rule_id;
			v->identity = rv.identity;
		}
		cv->last_seen_ns = now;
		__u64 packets, bytes;
		__u8 flags_here, flags_there;
		if (orig) {
			packets = __sync_fetch_and_add(&cv->packets, 1) + 1;
			bytes = __sync_fetch_and_add(&cv->bytes, skb->len) + skb->len;
			cv->tcp_flags |= p->tcp_flags;
			flags_here = cv->tcp_flags;
			flags_there = cv->tcp_flags_reply;
		} else {
			packets = __sync_fetch_and_add(&cv->packets_reply, 1) + 1;
			bytes = __sync_fetch_and_add(&cv->bytes_reply, skb->len) + skb->len;
			cv->tcp_flags_reply |= p->tcp_flags;
			flags_here = cv->tcp_flags_reply;
			flags_there = cv->tcp_flags;
		}
		v->reason = PORIN_R_ALLOW_ESTABLISHED;
		if (p->proto == IPPROTO_TCP) {
			if ((p->tcp_flags & (TCP_FIN | TCP_RST)) && !(cv->flags & PORIN_CT_F_CLOSING)) {
				cv->flags |= PORIN_CT_F_CLOSING;
				/* This direction's totals, as v2's entry of this
				 * direction reported them. */
				v->ev_type = PORIN_EV_CLOSE;
				v->packets = packets;
				v->bytes = bytes;
			} else if ((cv->flags & PORIN_CT_F_CLOSING) && (flags_here & TCP_FIN) && (flags_there & TCP_FIN) &&
				   (p->tcp_flags & (TCP_FIN | TCP_SYN | TCP_RST | TCP_ACK)) == TCP_ACK) {
				/* The end of a normal close: a plain ACK once both
				 * directions have sent FIN (the ACK of the last FIN,
				 * from the side that closed first). It passes, and the
				 * flow's entry goes now, giving its budget back,
				 * instead of holding it for the closing lifetime: a
				 * workload opening thousands of short connections per
				 * second would otherwise use up its budget with closed
				 * ones. A later packet of the tuple (a FIN resent because
				 * this ACK was lost) is a new flow, policy-checked. */
				ct_delete(&k);
			}
		}
		return 1;
	}

	/* New flow: one ipcache lookup, one policy lookup. */
	const __u8 *peer = dir == PORIN_DIR_EGRESS ? p->dst : p->src;
	v->packets = 1;
	v->bytes = skb->len;
	if (!policy_decide(ep, dir, p->family, peer, p->proto, p->pol_port, v)) {
		v->ev_type = PORIN_EV_DENIED;
		return 0;
	}

	struct porin_ct_value fwd = {
		.last_seen_ns = now,
		.packets = 1,
		.bytes = skb->len,
		.policy_rev = ep->rev,
		.rule_id = v->rule_id,
		.peer_identity = v->identity,
		.dir_of_origin = dir,
		.flags = 0,
		.tcp_flags = p->tcp_flags,
		.pol_port = p->pol_port,
	};
	/* One entry of THIS endpoint's budget: a flood fills only its own share
	 * of the node-wide map. */
	if (ct_reserve(ep->endpoint_id, 1) < 0) {
		v->reason = PORIN_R_DROP_CT_BUDGET;
		v->ev_type = PORIN_EV_DENIED;
		return 0;
	}
	if (ct_insert_reserved(&k, &fwd) < 0) {
		v->reason = PORIN_R_DROP_CT_FULL;
		v->ev_type = PORIN_EV_DENIED;
		return 0;
	}
	v->ev_type = PORIN_EV_NEW_ALLOWED;
	return 1;
}

static __always_inline void frag_key_of(struct porin_frag_key *fk, __u32 endpoint_id, __u8 dir,
					const struct pkt *p)
{
	fk->endpoint_id = endpoint_id;
	fk->family = p->family;
	fk->proto = p->proto;
	fk->dir = dir;
	fk->pad = 0;
	fk->id = p->frag_id;
	copy16(fk->src, p->src);
	copy16(fk->dst, p->dst);
}

#include "porin_tc/capture.h"

/* ------------------------------------------------------------------------ */
/* Entry points                                                              */
/* ------------------------------------------------------------------------ */

static __always_inline int finish(struct __sk_buff *skb, const struct ep_snapshot *ep, __u8 dir,
				  const struct pkt *p, const struct verdict *v, int pass)
{
	count(v->reason);
	if (v->ev_type && !(v->ev_type == PORIN_EV_DENIED && deny_aggregate(skb, ep, dir, p, v)))
		emit(skb, ep, dir, p, v);
	capture(skb, dir, p, pass);
	return pass ? PORIN_PASS : PORIN_DROP;
}

static __always_inline int handle(struct __sk_buff *skb, __u8 dir)
{
	struct pkt p = {};
	struct verdict v = {};
	struct ep_snapshot ep = {};
	__u32 ifindex = skb->ifindex;

	v.packets = 1;
	v.bytes = skb->len;

	struct porin_endpoint *e = bpf_map_lookup_elem(&porin_ep_v2, &ifindex);
	if (!e) {
		v.reason = PORIN_R_DROP_NO_ENDPOINT;
		v.ev_type = PORIN_EV_DENIED;
		return finish(skb, &ep, dir, &p, &v, 0);
	}
	/* Read the endpoint value ONCE: active_gen, policy_rev, flags and the
	 * addresses must come from the same version of the entry. */
	ep.endpoint_id = e->endpoint_id;
	ep.gen = e->active_gen;
	ep.rev = e->policy_rev;
	ep.flags = e->flags;
	__builtin_memcpy(ep.addr4, e->addr4, 4);
	__builtin_memcpy(ep.addr6, e->addr6, 16);

	switch (parse(skb, &p)) {
	case PARSE_IP:
		break;
	case PARSE_INFRA:
		v.reason = PORIN_R_ALLOW_INFRA;
		return finish(skb, &ep, dir, &p, &v, 1);
	case PARSE_UNSUPPORTED:
		v.reason = PORIN_R_DROP_UNSUPPORTED_L3;
		v.ev_type = PORIN_EV_DENIED;
		return finish(skb, &ep, dir, &p, &v, 0);
	default:
		v.reason = PORIN_R_DROP_MALFORMED;
		v.ev_type = PORIN_EV_DENIED;
		return finish(skb, &ep, dir, &p, &v, 0);
	}

	/* From the workload: before fragments, ICMP and conntrack, so that no
	 * packet with a forged source reaches any of them. (To the workload the
	 * source is a peer; its identity comes from the ipcache.) */
	if (dir == PORIN_DIR_EGRESS && !source_is_own(&ep, &p)) {
		v.reason = PORIN_R_DROP_SPOOFED;
		v.ev_type = PORIN_EV_DENIED;
		return finish(skb, &ep, dir, &p, &v, 0);
	}

	/* To the workload: a local endpoint's address only from its own veth. */
	if (dir == PORIN_DIR_INGRESS && !source_arrived_right(skb, &p)) {
		v.reason = PORIN_R_DROP_SPOOFED_INGRESS;
		v.ev_type = PORIN_EV_DENIED;
		return finish(skb, &ep, dir, &p, &v, 0);
	}

	struct porin_frag_key fk = {};
	if (p.frag == FRAG_LATER) {
		frag_key_of(&fk, ep.endpoint_id, dir, &p);
		struct porin_frag_value *fv = bpf_map_lookup_elem(&porin_frag_v1, &fk);
		if (fv && fv->action == PORIN_ACTION_ALLOW) {
			v.reason = PORIN_R_ALLOW_FRAG;
			v.rule_id = fv->rule_id;
			return finish(skb, &ep, dir, &p, &v, 1);
		}
		v.reason = PORIN_R_DROP_FRAG;
		v.ev_type = PORIN_EV_DENIED;
		return finish(skb, &ep, dir, &p, &v, 0);
	}

	int pass;
	if (p.icmp == ICMP_ND) {
		v.reason = PORIN_R_ALLOW_INFRA;
		pass = 1;
	} else if (p.icmp == ICMP_ERROR) {
		pass = icmp_error_related(skb, &p, ep.endpoint_id, ep.rev, dir);
		if (pass) {
			v.reason = PORIN_R_ALLOW_RELATED;
		} else {
			/* Not related: a new flow like any other ICMP message,
			 * subject to policy (type << 8 | code as the port). Denied
			 * by policy, it is counted as what it is. */
			pass = decide_flow(skb, &ep, dir, &p, &v);
			if (!pass && (v.reason == PORIN_R_DROP_NO_POLICY ||
				      v.reason == PORIN_R_DROP_POLICY_DENY))
				v.reason = PORIN_R_DROP_ICMP_UNRELATED;
		}
	} else {
		pass = decide_flow(skb, &ep, dir, &p, &v);
	}

	if (p.frag == FRAG_FIRST) {
		struct porin_frag_value fv = {
			.rule_id = v.rule_id,
			.action = pass ? PORIN_ACTION_ALLOW : PORIN_ACTION_DENY,
		};
		frag_key_of(&fk, ep.endpoint_id, dir, &p);
		/* If this fails, later fragments find no record and drop. */
		bpf_map_update_elem(&porin_frag_v1, &fk, &fv, BPF_ANY);
	}
	return finish(skb, &ep, dir, &p, &v, pass);
}

/* host-veth tc ingress: packets LEAVING the workload -> its EGRESS policy. */
SEC("classifier")
int porin_from_wl(struct __sk_buff *skb)
{
	return handle(skb, PORIN_DIR_EGRESS);
}

/* host-veth tc egress: packets ENTERING the workload -> its INGRESS policy. */
SEC("classifier")
int porin_to_wl(struct __sk_buff *skb)
{
	return handle(skb, PORIN_DIR_INGRESS);
}

/* Matches the SPDX tag. No GPL-only helper is used; switching to a
 * GPL-compatible string is a licensing decision, not a technical one. */
char LICENSE[] SEC("license") = "Apache-2.0";
