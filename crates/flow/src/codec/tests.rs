use super::*;

fn sample() -> FlowRecord {
    let ep = |ns: &str, pod: &str, ip: &str, port: Option<u16>| FlowEndpoint {
        kind: EndpointKind::Pod,
        namespace: Some(ns.into()),
        pod: Some(pod.into()),
        workload: None,
        network_set: None,
        labels: [("app".to_string(), pod.to_string()), ("tier".to_string(), "x".to_string())].into(),
        identity: Some(1042),
        ip: Some(ip.parse().unwrap()),
        port,
    };
    FlowRecord {
        start_time: 1_700_000_000_123_456_789,
        end_time: 1_700_000_000_923_456_789,
        node: "node-1".into(),
        verdict: Verdict::Denied,
        pending_verdict: Some(PendingVerdict::WouldAllow),
        drop_reason: Some("drop_policy_deny".into()),
        direction: FlowDirection::Ingress,
        reporter: Reporter::Dst,
        ip_family: IpFamily::V4,
        protocol: "tcp".into(),
        icmp: None,
        src: ep("a", "web-1", "10.0.0.1", Some(40000)),
        dst: ep("b", "db-0", "10.0.0.2", Some(5432)),
        enforced_trace: vec!["security|guard|0|deny".into()],
        pending_trace: vec!["security|staged:x|1|allow".into()],
        packets_src_to_dst: 3,
        bytes_src_to_dst: 180,
        packets_dst_to_src: 0,
        bytes_dst_to_src: 0,
        tcp_flags: TcpFlags(TcpFlags::SYN),
        flows_started: 1,
        flows_completed: 0,
        flows_open: 0,
        open: false,
        aggregation: AggregationLevel::FiveTuple,
    }
}

#[test]
fn roundtrip_is_exact_and_smaller_than_json() {
    let mut r = sample();
    let b = to_vec(&r);
    assert_eq!(decode(&b).unwrap(), r);
    let json = serde_json::to_vec(&r).unwrap();
    assert!(b.len() * 2 < json.len(), "binary {} bytes vs JSON {}", b.len(), json.len());
    // the JSON of store format 1 still reads
    assert_eq!(decode(&json).unwrap(), r);
    // every optional shape
    r.pending_verdict = None;
    r.drop_reason = None;
    r.icmp = Some(Icmp { kind: 8, code: 0 });
    r.ip_family = IpFamily::V6;
    r.src.ip = Some("fd00::1".parse().unwrap());
    r.src.port = None;
    r.dst = FlowEndpoint::default();
    r.open = true;
    r.flows_open = u64::MAX;
    r.bytes_src_to_dst = u64::MAX;
    r.aggregation = AggregationLevel::Workload;
    r.end_time = r.start_time - 1;
    assert_eq!(decode(&to_vec(&r)).unwrap(), r);
}

#[test]
fn every_truncation_and_trailing_byte_is_an_error() {
    let b = to_vec(&sample());
    for n in 0..b.len() {
        assert!(decode(&b[..n]).is_err(), "a prefix of {n} bytes decoded");
    }
    let mut long = b.clone();
    long.push(0);
    assert_eq!(decode(&long), Err(CodecError::Trailing(1)));
    let mut bad = b.clone();
    bad[0] = 0x42;
    assert_eq!(decode(&bad), Err(CodecError::Tag(0x42)));
    let mut bad = b;
    bad[2] = 0xff; // flags high byte: unknown bits
    assert!(matches!(decode(&bad), Err(CodecError::Value { what: "flags", .. })));
}

proptest::proptest! {
    /// Arbitrary bytes, and a valid record with bytes changed: never a panic; whatever decodes
    /// re-encodes to the same bytes (the encoding is canonical, so nothing was misread).
    #[test]
    fn corrupt_values_never_panic_or_misread(
        b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..4),
    ) {
        let mut tagged = b.clone();
        if let Some(x) = tagged.first_mut() {
            *x = TAG_V1;
        }
        let mut mutated = to_vec(&sample());
        for (at, v) in flips {
            let n = mutated.len();
            mutated[at % n] = v;
        }
        for input in [b, tagged, mutated] {
            if input.first() == Some(&TAG_V1)
                && let Ok(r) = decode(&input)
            {
                proptest::prop_assert_eq!(to_vec(&r), input);
            }
        }
    }
}

#[test]
fn overlong_varints_are_refused() {
    let mut r = Rd { b: &[0xff; 11], at: 0 };
    assert_eq!(r.varint(), Err(CodecError::Varint(0)));
    let mut r = Rd { b: &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], at: 0 };
    assert_eq!(r.varint(), Ok(u64::MAX));
    let mut r = Rd { b: &[0x80, 0x00], at: 0 };
    assert_eq!(r.varint(), Err(CodecError::Varint(0)), "0 written in two bytes");
    let mut r = Rd { b: &[0x00], at: 0 };
    assert_eq!(r.varint(), Ok(0));
}

/// Records of every shape: both verdicts, v4/v6, ICMP, unknown endpoints, workload aggregation, extreme
/// counters, a record ending before it starts, out-of-order end times.
fn samples() -> Vec<FlowRecord> {
    let a = sample();
    let mut b = sample();
    b.pending_verdict = None;
    b.drop_reason = None;
    b.verdict = Verdict::Allowed;
    b.icmp = Some(Icmp { kind: 8, code: 0 });
    b.ip_family = IpFamily::V6;
    b.src.ip = Some("fd00::1".parse().unwrap());
    b.src.port = None;
    b.dst = FlowEndpoint::default();
    b.open = true;
    b.flows_open = u64::MAX;
    b.bytes_src_to_dst = u64::MAX;
    b.aggregation = AggregationLevel::Workload;
    b.end_time = b.start_time - 1;
    b.enforced_trace.clear();
    let mut c = sample();
    c.end_time = 3;
    c.start_time = u64::MAX;
    c.node = "node-2".into();
    c.src.labels.clear();
    c.src.kind = EndpointKind::World;
    c.src.namespace = None;
    c.src.pod = None;
    c.dst.workload = Some("db".into());
    c.dst.network_set = Some("x".into());
    c.pending_trace = vec!["a".into(), "a".into()];
    vec![a.clone(), b, c, a]
}

fn dict(records: &[FlowRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_dict_block(records, &mut out).unwrap();
    out
}

#[test]
fn dict_blocks_roundtrip_exactly_and_are_small() {
    let recs = samples();
    let b = dict(&recs);
    assert_eq!(b[0], TAG_DICT_BLOCK);
    assert_eq!(dict_block_records(&b), Some(4));
    assert_eq!(decode_many(&b).unwrap(), recs);
    // Many records sharing their metadata: a fraction of version 1's size.
    let many: Vec<FlowRecord> = (0..500u64)
        .map(|i| {
            let mut r = sample();
            r.end_time += i * 1000;
            r.src.port = Some(30000 + i as u16);
            r
        })
        .collect();
    let v1: usize = many.iter().map(|r| to_vec(r).len()).sum();
    let b = dict(&many);
    assert!(b.len() * 3 < v1, "dictionary block {} bytes vs version 1 {v1}", b.len());
    assert_eq!(decode_many(&b).unwrap(), many);
    assert_eq!(BlockEncoder::new().finish(&mut Vec::new()), None, "an empty block is not written");
}

#[test]
fn dict_block_every_truncation_and_changed_byte_is_an_error() {
    let b = dict(&samples());
    for n in 0..b.len() {
        assert!(decode_many(&b[..n]).is_err(), "a prefix of {n} bytes decoded");
    }
    let mut long = b.clone();
    long.push(0);
    assert!(decode_many(&long).is_err());
    // Any one byte changed, to any of a few values: the checksum refuses it.
    for at in 0..b.len() {
        for x in [0x00, 0x01, 0x7f, 0x80, 0xff, b[at] ^ 0x10] {
            if x == b[at] {
                continue;
            }
            let mut bad = b.clone();
            bad[at] = x;
            assert!(decode_many(&bad).is_err(), "byte {at} set to {x:#x} decoded");
        }
    }
}

/// A block whose body is changed and whose checksum is then recomputed (what a checksum collision would
/// give): the structural checks alone must refuse it or decode it to what it says, never panic.
fn resealed(mut b: Vec<u8>) -> Vec<u8> {
    if b.len() >= 8 {
        let n = b.len() - 8;
        let sum = checksum(&b[..n]);
        b[n..].copy_from_slice(&sum.to_le_bytes());
    }
    b
}

proptest::proptest! {
    #[test]
    fn corrupt_dict_blocks_never_panic_or_misread(
        junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
        flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..4),
        cut in proptest::prelude::any::<usize>(),
    ) {
        let good = dict(&samples());
        let mut tagged = junk.clone();
        if let Some(x) = tagged.first_mut() {
            *x = TAG_DICT_BLOCK;
        }
        let mut flipped = good.clone();
        for (at, v) in &flips {
            let n = flipped.len();
            flipped[at % n] = *v;
        }
        let changed = flipped != good;
        // Changed bytes under the original checksum: always refused.
        if changed {
            proptest::prop_assert!(decode_many(&flipped).is_err());
        }
        let mut short = good[..cut % good.len()].to_vec();
        short = resealed(short);
        for input in [junk, resealed(tagged), resealed(flipped), short] {
            if let Ok(recs) = decode_many(&input) {
                // Whatever passes the checks is a block of valid records: encoding them again gives a block
                // that decodes to the same records.
                if input.first() == Some(&TAG_DICT_BLOCK) && !recs.is_empty() {
                    proptest::prop_assert_eq!(decode_many(&dict(&recs)).unwrap(), recs);
                }
            }
        }
    }
}

#[test]
fn checksum_is_stable() {
    // Stored in every block: this value must never change.
    assert_eq!(checksum(b""), checksum(&[]));
    assert_ne!(checksum(b"\0"), checksum(b""));
    assert_eq!(checksum(b"porin flow block"), 9_108_594_818_156_936_574);
}


#[test]
fn a_change_in_one_word_cannot_be_cancelled_by_the_next() {
    // The first checksum let a change in a word's top byte be undone by a change in the next word's low bytes.
    let good = dict(&samples());
    let body = good.len() - 8;
    let sum = checksum(&good[..body]);
    let mut b = good[..body].to_vec();
    for word in 0..(body / 8 - 1).min(8) {
        let top = word * 8 + 7;
        for dt in [0x01u8, 0x4C, 0x80, 0xA5, 0xFF] {
            b[top] ^= dt;
            for low in (word + 1) * 8..(word + 1) * 8 + 3 {
                for dl in 0..=255u8 {
                    b[low] ^= dl;
                    assert_ne!(checksum(&b), sum, "word {word}: top ^ {dt}, byte {low} ^ {dl}");
                    b[low] ^= dl;
                }
            }
            b[top] ^= dt;
        }
    }
}
