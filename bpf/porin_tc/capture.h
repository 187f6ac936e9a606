/* Packet capture of selected interfaces to the capture ring.
 * Part of porin_tc.bpf.c: included there at this point, and relies on the definitions above the
 * #include (no include guard, not a standalone header). */

/* ------------------------------------------------------------------------ */
/* Packet capture (see the porin_cap_* maps in abi.h)                        */
/* ------------------------------------------------------------------------ */

/* Per-CPU scratch: the record is assembled here and copied into the ring with
 * its real length (a reserved record's size must be a constant). */
struct cap_record {
	struct porin_cap_hdr h;
	__u8 data[PORIN_CAP_MAX_SNAPLEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cap_record);
} porin_capbuf SEC(".maps");

static __always_inline int cap_match(const struct porin_cap_config *c, const struct pkt *p)
{
	__u32 n = c->n_filters;
	if (n == 0)
		return 1;
	for (int i = 0; i < PORIN_CAP_MAX_FILTERS; i++) {
		if ((__u32)i >= n)
			break;
		const struct porin_cap_filter *f = &c->filters[i];
		if (f->proto && f->proto != p->proto)
			continue;
		if (f->port_hi == 0)
			return 1;
		if ((p->ev_sport >= f->port_lo && p->ev_sport <= f->port_hi) ||
		    (p->ev_dport >= f->port_lo && p->ev_dport <= f->port_hi))
			return 1;
	}
	return 0;
}

static __always_inline __u32 cap_class(__u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return PORIN_CAP_CL_TCP;
	case IPPROTO_UDP:
		return PORIN_CAP_CL_UDP;
	case IPPROTO_SCTP:
		return PORIN_CAP_CL_SCTP;
	case IPPROTO_ICMP:
		return PORIN_CAP_CL_ICMP;
	case IPPROTO_ICMPV6:
		return PORIN_CAP_CL_ICMPV6;
	default:
		return PORIN_CAP_CL_OTHER;
	}
}

/* The interface's filter summary (abi.h): 0 if no filter can match the packet
 * (exact for "no"), 1 if one may (cap_match decides). */
static __always_inline int cap_may_match(const struct porin_capif *s, const struct pkt *p)
{
	if (!(s->flags & PORIN_CAPIF_F_ON))
		return 0;
	if (s->flags & PORIN_CAPIF_F_ALL)
		return 1;
	__u32 bit = 1u << cap_class(p->proto);
	if (s->any_port & bit)
		return 1;
	if (!(s->with_port & bit))
		return 0;
	return (p->ev_sport >= s->port_lo && p->ev_sport <= s->port_hi) ||
	       (p->ev_dport >= s->port_lo && p->ev_dport <= s->port_hi);
}

/* Copies the packet to the capture ring if its interface is captured and a
 * filter matches. Never changes the verdict. An interface that is not
 * captured, or whose filter summary rules the packet out: one (inlined) array
 * lookup and a few compares. */
static __always_inline void capture(struct __sk_buff *skb, __u8 dir, const struct pkt *p, int pass)
{
	__u32 zero = 0;
	__u32 ifindex = skb->ifindex;
	__u32 slot = ifindex < PORIN_CAP_IFINDEX_SLOTS ? ifindex : 0;
	struct porin_capif *s = bpf_map_lookup_elem(&porin_capif_v2, &slot);
	if (!s || !cap_may_match(s, p))
		return;
	struct porin_cap_config *c = bpf_map_lookup_elem(&porin_cap_v1, &ifindex);
	if (!c || !cap_match(c, p))
		return;
	struct cap_record *r = bpf_map_lookup_elem(&porin_capbuf, &zero);
	if (!r)
		return;
	__u32 len = skb->len;
	__u32 cap = c->snaplen < len ? c->snaplen : len;
	if (cap > PORIN_CAP_MAX_SNAPLEN)
		cap = PORIN_CAP_MAX_SNAPLEN;
	if (cap == 0)
		return;
	/* 1..MAX in a form the verifier keeps through the calls (the clamp above
	 * makes the mask a no-op). */
	cap -= 1;
	asm volatile("%0 &= 0x3fff" : "+r"(cap));
	cap += 1;
	if (bpf_skb_load_bytes(skb, 0, r->data, cap) < 0) {
		__u32 k = PORIN_CAP_ST_LOST;
		__u64 *lost = bpf_map_lookup_elem(&porin_capst_v1, &k);
		if (lost)
			*lost += 1;
		return;
	}
	r->h.ts_ns = bpf_ktime_get_ns();
	r->h.ifindex = ifindex;
	r->h.len = len;
	r->h.cap_len = cap;
	r->h.dir = dir;
	r->h.proto = p->proto;
	r->h.sport = p->ev_sport;
	r->h.dport = p->ev_dport;
	r->h.passed = pass ? 1 : 0;
	__builtin_memset(r->h.pad, 0, sizeof(r->h.pad));
	/* Wake the reader once per crossing of a quarter of the ring (as for flow
	 * events); it polls on an interval otherwise. */
	__u64 span = 8 + sizeof(r->h) + cap;
	__u64 avail = bpf_ringbuf_query(&porin_caprb_v1, BPF_RB_AVAIL_DATA);
	__u64 mark = bpf_ringbuf_query(&porin_caprb_v1, BPF_RB_RING_SIZE) / 4;
	__u64 flags = avail < mark && avail + span >= mark ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	__u32 k = bpf_ringbuf_output(&porin_caprb_v1, r, sizeof(r->h) + cap, flags) == 0 ? PORIN_CAP_ST_CAPTURED
											     : PORIN_CAP_ST_LOST;
	__u64 *n = bpf_map_lookup_elem(&porin_capst_v1, &k);
	if (n)
		*n += 1;
}
