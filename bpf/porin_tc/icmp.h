/* ICMP errors RELATED to a tracked flow.
 * Part of porin_tc.bpf.c: included there at this point, and relies on the definitions above the
 * #include (no include guard, not a standalone header). */

/* ------------------------------------------------------------------------ */
/* ICMP errors (RELATED)                                                     */
/* ------------------------------------------------------------------------ */

static __always_inline int addr_eq(__u8 family, const __u8 *a, const __u8 *b)
{
	__u64 a0 = 0, a1 = 0, b0 = 0, b1 = 0;
	if (family == PORIN_FAMILY_V4) {
		__u32 x, y;
		__builtin_memcpy(&x, a, 4);
		__builtin_memcpy(&y, b, 4);
		return x == y;
	}
	__builtin_memcpy(&a0, a, 8);
	__builtin_memcpy(&a1, a + 8, 8);
	__builtin_memcpy(&b0, b, 8);
	__builtin_memcpy(&b1, b + 8, 8);
	return a0 == b0 && a1 == b1;
}

/* An ICMP/ICMPv6 error is RELATED (passes without policy) only if ALL hold,
 * as in netfilter's nf_conntrack_icmp(v6) (and stricter):
 *  - it is not fragmented and not larger than an error may be
 *    (PORIN_ICMP{4,6}_ERR_MAX_LEN): a real error quotes the start of one
 *    packet, anything bigger is a payload channel;
 *  - the embedded packet parses and its tuple is a live (not expired)
 *    conntrack entry of this endpoint in the OPPOSITE hook direction (the
 *    quoted packet travelled the other way), validated against the current
 *    policy revision (the quoted packet hit that very entry on its way and
 *    revalidated it; an entry still on an older revision may be revoked);
 *  - the error goes back to the quoted packet's sender: outer dst == inner
 *    src (netfilter's check);
 *  - sent BY the workload (egress): the workload is a host, not a router, so
 *    the error must come from the quoted packet's destination: outer src ==
 *    inner dst. Towards the workload (ingress) the outer source may be any
 *    router on the path (time exceeded, fragmentation needed).
 * Without these, any allowed flow let a pod send ~1 KB "errors" to any
 * address (outer dst unchecked). Returns 1 if related. */
static __always_inline int icmp_error_related(struct __sk_buff *skb, const struct pkt *p,
					      __u32 endpoint_id, __u32 rev, __u8 dir)
{
	struct porin_ct_key k = {};
	__u8 isrc[16] = {}, idst[16] = {};
	__u8 iproto;
	__be16 isport, idport;
	__u32 inner = p->l4_off + 8;
	__u32 inner_l4;

	if (p->frag != FRAG_NONE)
		return 0;
	if (skb->len < 14)
		return 0;
	if (skb->len - 14 > (p->family == PORIN_FAMILY_V4 ? PORIN_ICMP4_ERR_MAX_LEN
							: PORIN_ICMP6_ERR_MAX_LEN))
		return 0;

	if (p->family == PORIN_FAMILY_V4) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, inner, &ip, sizeof(ip)) < 0)
			return 0;
		if (ip.version != 4 || ip.ihl < 5)
			return 0;
		iproto = ip.protocol;
		__builtin_memcpy(isrc, &ip.saddr, 4);
		__builtin_memcpy(idst, &ip.daddr, 4);
		inner_l4 = inner + (__u32)ip.ihl * 4;
	} else {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, inner, &ip6, sizeof(ip6)) < 0)
			return 0;
		if (ip6.version != 6)
			return 0;
		/* Embedded extension headers are not walked: such errors drop. */
		iproto = ip6.nexthdr;
		__builtin_memcpy(isrc, &ip6.saddr, 16);
		__builtin_memcpy(idst, &ip6.daddr, 16);
		inner_l4 = inner + 40;
	}

	/* Back to the quoted packet's sender. */
	if (!addr_eq(p->family, p->dst, isrc))
		return 0;
	/* A workload is not a router: its errors come from the quoted dst. */
	if (dir == PORIN_DIR_EGRESS && !addr_eq(p->family, p->src, idst))
		return 0;

	__u8 h[8];
	switch (iproto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		/* an ICMP error carries at least 8 bytes of the original L4 header */
		if (bpf_skb_load_bytes(skb, inner_l4, h, 4) < 0)
			return 0;
		__builtin_memcpy(&isport, &h[0], 2);
		__builtin_memcpy(&idport, &h[2], 2);
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		if ((iproto == IPPROTO_ICMP) != (p->family == PORIN_FAMILY_V4))
			return 0;
		if (bpf_skb_load_bytes(skb, inner_l4, h, 8) < 0)
			return 0;
		__u8 t = h[0];
		int echo = p->family == PORIN_FAMILY_V4 ? (t == 8 || t == 0) : (t == 128 || t == 129);
		if (!echo)
			return 0; /* errors about errors are never related */
		__builtin_memcpy(&isport, &h[4], 2);
		idport = isport;
		break;
	}
	default:
		isport = 0;
		idport = 0;
		break;
	}
	/* The quoted packet travelled the other way: its key at the opposite hook. */
	ct_key_of(&k, endpoint_id, dir ^ 1, p->family, iproto, isrc, idst, isport, idport);
	struct porin_ct_value *cv = bpf_map_lookup_elem(&porin_ct_v3, &k);
	if (!cv || cv->policy_rev != rev)
		return 0;
	/* An expired entry is absent (as for every other packet). */
	return ct_fresh(cv, iproto, ct_now());
}

/* Anti-spoofing, for packets LEAVING the workload: the source must be the
 * endpoint's own address of that family; an endpoint without an address of the
 * family may send none (fail closed). The only exception is IPv6 neighbour
 * discovery from the unspecified (DAD) or a link-local address, which the
 * kernel uses before/besides the global address. Returns 1 if the source is
 * acceptable. */
static __always_inline int source_is_own(const struct ep_snapshot *ep, const struct pkt *p)
{
	if (p->family == PORIN_FAMILY_V4) {
		__u32 a, b;
		if (!(ep->flags & PORIN_EP_F_HAS_V4))
			return 0;
		__builtin_memcpy(&a, p->src, 4);
		__builtin_memcpy(&b, ep->addr4, 4);
		return a == b;
	}
	if (p->family != PORIN_FAMILY_V6)
		return 0;
	__u64 a0, a1, b0, b1;
	__builtin_memcpy(&a0, p->src, 8);
	__builtin_memcpy(&a1, p->src + 8, 8);
	if (p->icmp == ICMP_ND) {
		int unspecified = a0 == 0 && a1 == 0;
		int link_local = p->src[0] == 0xfe && (p->src[1] & 0xc0) == 0x80;
		if (unspecified || link_local)
			return 1;
	}
	if (!(ep->flags & PORIN_EP_F_HAS_V6))
		return 0;
	__builtin_memcpy(&b0, ep->addr6, 8);
	__builtin_memcpy(&b1, ep->addr6 + 8, 8);
	return a0 == b0 && a1 == b1;
}

/* Anti-spoofing, for packets ENTERING the workload: a packet whose source is
 * a LOCAL endpoint's address (porin_own_v1) must have entered the node through
 * that endpoint's own host veth (skb->ingress_ifindex, set when the packet was
 * received in the node netns: that veth for a pod's packet, the uplink for a
 * packet from the network, 0 for one the node itself sent). Otherwise anybody
 * on the node's network (or the node) could forge a local pod's address and
 * be admitted by a policy that trusts that pod. Addresses of other nodes'
 * pods are not covered (see docs). Returns 1 if acceptable. */
static __always_inline int source_arrived_right(struct __sk_buff *skb, const struct pkt *p)
{
	struct porin_own_key k = {};
	k.family = p->family;
	copy16(k.addr, p->src);
	struct porin_own_value *o = bpf_map_lookup_elem(&porin_own_v1, &k);
	if (!o)
		return 1; /* not a local endpoint's address */
	return skb->ingress_ifindex == o->ifindex;
}
