// The check behind the `flow_event_decode` fuzz target (fuzz/) and the stable
// `fuzz_event_decode` test, which both include this file by path.

use porin_dataplane::Event;
use porin_dataplane::abi::RawEvent;

/// Decodes `data` as one ring-buffer record. It must never panic; a record that
/// decodes must re-encode to a record that decodes to the same event, whose
/// canonical bytes agree with `data` on every byte the decoder reads, and which
/// is itself canonical (a second encode gives the same bytes).
pub fn check_event_decode(data: &[u8]) {
    let Ok(ev) = Event::decode(data) else {
        // Refusals are fine; short input must be refused.
        assert!(data.len() >= std::mem::size_of::<RawEvent>() || Event::decode(data).is_err());
        return;
    };
    assert!(data.len() >= std::mem::size_of::<RawEvent>(), "decoded a short record of {} bytes", data.len());
    let raw = ev.encode();
    let bytes = raw.as_bytes();
    let again = Event::decode(bytes).expect("a re-encoded event decodes");
    assert_eq!(again, ev, "decode(encode(e)) != e");
    assert_eq!(again.encode().as_bytes(), bytes, "encoding is not canonical");
    let orig = RawEvent::from_bytes(data).expect("length checked");
    // Every field the decoder interprets is carried over unchanged.
    assert_eq!(
        (orig.ts_ns, orig.packets, orig.bytes, orig.endpoint_id, orig.peer_identity, orig.rule_id, orig.ifindex, orig.policy_rev),
        (raw.ts_ns, raw.packets, raw.bytes, raw.endpoint_id, raw.peer_identity, raw.rule_id, raw.ifindex, raw.policy_rev)
    );
    assert_eq!(
        (orig.r#type, orig.dir, orig.family, orig.proto, orig.reason, orig.tcp_flags, orig.sport, orig.dport),
        (raw.r#type, raw.dir, raw.family, raw.proto, raw.reason, raw.tcp_flags, raw.sport, raw.dport)
    );
    let used = match orig.family {
        0 => 0,
        4 => 4,
        _ => 16,
    };
    assert_eq!((&orig.src[..used], &orig.dst[..used]), (&raw.src[..used], &raw.dst[..used]));
}
