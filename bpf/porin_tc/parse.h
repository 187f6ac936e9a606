/* Parsing: Ethernet, IPv4/IPv6 with extension headers, L4 ports and ICMP.
 * Part of porin_tc.bpf.c: included there at this point, and relies on the definitions above the
 * #include (no include guard, not a standalone header). */

/* ------------------------------------------------------------------------ */
/* Parsing                                                                   */
/* ------------------------------------------------------------------------ */

static __always_inline int icmp4_is_error(__u8 type)
{
	return type == 3 /* dest unreachable */ || type == 11 /* time exceeded */ ||
	       type == 12 /* parameter problem */;
}

static __always_inline int icmp6_is_error(__u8 type)
{
	return type == 1 /* dest unreachable */ || type == 2 /* packet too big */ ||
	       type == 3 /* time exceeded */ || type == 4 /* parameter problem */;
}

/* Copies `len` (a constant) bytes of the L4 header at `off` into `to`. The
 * common cases (an IPv4 header without options, an IPv6 header without
 * extension headers, the L4 header in the skb's linear data) are read directly
 * from the packet; anything else through bpf_skb_load_bytes, which also works
 * on non-linear skbs. Returns 0 or < 0 (truncated). */
static __always_inline int load_l4(struct __sk_buff *skb, __u32 off, void *to, __u32 len)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	if (off == 14 + 20) {
		if (data + 14 + 20 + len <= data_end) {
			__builtin_memcpy(to, data + 14 + 20, len);
			return 0;
		}
	} else if (off == 14 + 40) {
		if (data + 14 + 40 + len <= data_end) {
			__builtin_memcpy(to, data + 14 + 40, len);
			return 0;
		}
	}
	return bpf_skb_load_bytes(skb, off, to, len);
}

/* Fill sport/dport/pol_port from the L4 header at p->l4_off. Returns 0 or -1
 * (truncated). Not called for non-first fragments. */
static __always_inline int parse_l4(struct __sk_buff *skb, struct pkt *p)
{
	switch (p->proto) {
	case IPPROTO_TCP: {
		__u8 h[14];
		if (load_l4(skb, p->l4_off, h, sizeof(h)) < 0)
			return -1;
		__builtin_memcpy(&p->sport, &h[0], 2);
		__builtin_memcpy(&p->dport, &h[2], 2);
		p->tcp_flags = h[13];
		break;
	}
	case IPPROTO_UDP: {
		__u8 h[8];
		if (load_l4(skb, p->l4_off, h, sizeof(h)) < 0)
			return -1;
		__builtin_memcpy(&p->sport, &h[0], 2);
		__builtin_memcpy(&p->dport, &h[2], 2);
		break;
	}
	case IPPROTO_SCTP: {
		__u8 h[12]; /* common header: sport, dport, vtag, checksum */
		if (load_l4(skb, p->l4_off, h, sizeof(h)) < 0)
			return -1;
		__builtin_memcpy(&p->sport, &h[0], 2);
		__builtin_memcpy(&p->dport, &h[2], 2);
		break;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		if ((p->proto == IPPROTO_ICMP) != (p->family == PORIN_FAMILY_V4)) {
			/* ICMPv4 inside IPv6 or ICMPv6 inside IPv4: no ports. */
			p->pol_port = 0;
			return 0;
		}
		__u8 h[8]; /* type, code, checksum, rest-of-header */
		if (load_l4(skb, p->l4_off, h, sizeof(h)) < 0)
			return -1;
		__u8 type = h[0], code = h[1];
		__u16 tc = ((__u16)type << 8) | code;
		p->pol_port = bpf_htons(tc);
		p->ev_sport = 0;
		p->ev_dport = tc;
		int echo = p->family == PORIN_FAMILY_V4 ? (type == 8 || type == 0)
							: (type == 128 || type == 129);
		int err = p->family == PORIN_FAMILY_V4 ? icmp4_is_error(type)
						       : icmp6_is_error(type);
		if (echo) {
			/* request and reply share one tuple: both ports = echo id */
			__builtin_memcpy(&p->sport, &h[4], 2);
			p->dport = p->sport;
			p->icmp = ICMP_PLAIN;
		} else if (err) {
			/* Tuple as for other non-echo ICMP (used when it is not
			 * RELATED and policy decides it as a flow of its own). */
			p->sport = 0;
			p->dport = p->pol_port;
			p->icmp = ICMP_ERROR;
		} else if (p->family == PORIN_FAMILY_V6 && type >= 133 && type <= 137) {
			p->icmp = ICMP_ND;
		} else if (p->family == PORIN_FAMILY_V6 &&
			   (type == 130 || type == 131 || type == 132 || type == 143) &&
			   p->dst[0] == 0xff && p->dst[1] == 0x02) {
			/* Multicast listener discovery to a link-scope group: link
			 * control like ND (every IPv6 stack sends MLD reports on
			 * link-up), not a flow between workloads. */
			p->icmp = ICMP_ND;
		} else {
			p->sport = 0;
			p->dport = p->pol_port;
			p->icmp = ICMP_PLAIN;
		}
		return 0;
	}
	default:
		/* Other protocols: port 0, still policy-checked by protocol. */
		return 0;
	}
	p->pol_port = p->dport;
	p->ev_sport = bpf_ntohs(p->sport);
	p->ev_dport = bpf_ntohs(p->dport);
	return 0;
}

static __always_inline int parse_ipv6_ext(struct __sk_buff *skb, struct pkt *p, __u8 nexthdr)
{
	__u32 off = 14 + 40;
	__u8 nh = nexthdr;

	for (int i = 0; i < PORIN_MAX_IPV6_EXT_HDRS; i++) {
		switch (nh) {
		case NEXTHDR_HOP:
		case NEXTHDR_ROUTING:
		case NEXTHDR_DEST: {
			__u8 h[2];
			if (bpf_skb_load_bytes(skb, off, h, 2) < 0)
				return -1;
			nh = h[0];
			off += ((__u32)h[1] + 1) * 8;
			break;
		}
		case NEXTHDR_AUTH: {
			__u8 h[2];
			if (bpf_skb_load_bytes(skb, off, h, 2) < 0)
				return -1;
			nh = h[0];
			off += ((__u32)h[1] + 2) * 4;
			break;
		}
		case NEXTHDR_FRAGMENT: {
			__u8 h[8]; /* nexthdr, reserved, frag_off(13 bits) res M, id */
			if (bpf_skb_load_bytes(skb, off, h, 8) < 0)
				return -1;
			__u16 fo = ((__u16)h[2] << 8) | h[3];
			__u32 id = ((__u32)h[4] << 24) | ((__u32)h[5] << 16) | ((__u32)h[6] << 8) | h[7];
			nh = h[0];
			off += 8;
			if (fo & 0xfff8) {
				p->frag = FRAG_LATER;
				p->frag_id = id;
				p->proto = nh;
				p->l4_off = off;
				return 0;
			}
			if (fo & 1) {
				p->frag = FRAG_FIRST;
				p->frag_id = id;
			}
			/* offset 0 and M=0: an atomic fragment, a whole datagram */
			break;
		}
		default:
			p->proto = nh;
			p->l4_off = off;
			return 0;
		}
		if (off > 0xffff)
			return -1;
	}
	/* Too many extension headers to walk: cannot decide. */
	return -1;
}

/* Returns enum parse_res. */
static __always_inline int parse(struct __sk_buff *skb, struct pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	if (data + PORIN_LINEAR_LEN > data_end) {
		__u32 want = skb->len < PORIN_LINEAR_LEN ? skb->len : PORIN_LINEAR_LEN;
		/* Failure leaves the skb as it was; the bounds checks below then
		 * drop it as malformed. */
		bpf_skb_pull_data(skb, want);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return PARSE_MALFORMED;

	__be16 proto = eth->h_proto;
	if (proto == ETH_P_ARP_BE)
		return PARSE_INFRA;

	if (proto == ETH_P_IP_BE) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end)
			return PARSE_MALFORMED;
		if (ip->version != 4 || ip->ihl < 5)
			return PARSE_MALFORMED;
		__u32 hlen = (__u32)ip->ihl * 4;
		__u32 tot = bpf_ntohs(ip->tot_len);
		if (tot < hlen || skb->len < 14 + tot)
			return PARSE_MALFORMED;
		p->family = PORIN_FAMILY_V4;
		p->proto = ip->protocol;
		__builtin_memcpy(p->src, &ip->saddr, 4);
		__builtin_memcpy(p->dst, &ip->daddr, 4);
		p->l4_off = 14 + hlen;
		__u16 fo = bpf_ntohs(ip->frag_off);
		if (fo & IP_OFFSET) {
			p->frag = FRAG_LATER;
			p->frag_id = bpf_ntohs(ip->id);
			return PARSE_IP;
		}
		if (fo & IP_MF) {
			p->frag = FRAG_FIRST;
			p->frag_id = bpf_ntohs(ip->id);
		}
	} else if (proto == ETH_P_IPV6_BE) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end)
			return PARSE_MALFORMED;
		if (ip6->version != 6)
			return PARSE_MALFORMED;
		__u32 plen = bpf_ntohs(ip6->payload_len);
		/* payload_len 0 would be a jumbogram: not supported, drop. */
		if (plen == 0 || skb->len < 14 + 40 + plen)
			return PARSE_MALFORMED;
		p->family = PORIN_FAMILY_V6;
		__builtin_memcpy(p->src, &ip6->saddr, 16);
		__builtin_memcpy(p->dst, &ip6->daddr, 16);
		__u8 nh = ip6->nexthdr;
		if (parse_ipv6_ext(skb, p, nh) < 0)
			return PARSE_MALFORMED;
		if (p->frag == FRAG_LATER)
			return PARSE_IP;
	} else {
		return PARSE_UNSUPPORTED;
	}

	if (parse_l4(skb, p) < 0)
		return PARSE_MALFORMED;
	return PARSE_IP;
}
