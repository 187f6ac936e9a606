//! `PacketCapture` (`porin.io/v1`, also Calico's `projectcalico.org/v3` shape; namespaced): capture the packets
//! of the selected workloads of the namespace to pcap files, on every node that runs one of them.
//!
//! ```yaml
//! apiVersion: porin.io/v1
//! kind: PacketCapture
//! metadata: {name: dns-trouble, namespace: shop}
//! spec:
//!   selector: app == 'frontend'        # Calico selector over the namespace's pods (default: all())
//!   filters:                           # ORed; protocol and ports ANDed; none: every packet
//!     - {protocol: UDP, ports: [53]}
//!     - {protocol: TCP, ports: ["8000:8080"]}
//!   startTime: "2026-12-03T16:00:00Z"  # optional; in the past or absent: now
//!   endTime: "2026-12-03T17:00:00Z"    # optional; absent: until deleted
//!   snapLen: 16384                     # Porin: bytes kept per packet (1-16384)
//!   maxSizeBytes: 10485760             # Porin (Felix's captureMaxSizeBytes): rotate a file past this size
//!   maxFiles: 2                        # Porin (Felix's captureMaxFiles): files kept per endpoint, oldest deleted
//! ```
//!
//! Calico keeps the size limits in Felix's configuration; Porin has no per-node configuration object, so
//! they are optional fields of the capture, with Felix's defaults.

use serde::{Deserialize, Serialize};

use crate::porin::{PortSpec, ProtocolSpec};

/// Bytes kept of each packet, most and default (the kernel's per-CPU buffer).
pub const MAX_SNAP_LEN: u32 = 16384;
/// Felix's `captureMaxSizeBytes`.
pub const DEFAULT_MAX_SIZE_BYTES: u64 = 10 << 20;
/// Felix's `captureMaxFiles`.
pub const DEFAULT_MAX_FILES: u32 = 2;
/// Bounds of the size limits: a file holds at least one full packet; at most 1000 files of 1 GiB per endpoint.
pub const MIN_SIZE_BYTES: u64 = 1024;
pub const MAX_SIZE_BYTES: u64 = 1 << 30;
pub const MAX_FILES: u32 = 1000;
/// More filters than this are refused (each port entry is one kernel filter).
pub const MAX_FILTERS: usize = 64;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PacketCaptureSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<CaptureFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snap_len: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_files: Option<u32>,
}

/// One filter: an optional protocol and optional ports (a number or `"lo:hi"`), matched against the source or
/// the destination port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaptureFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<ProtocolSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
}

/// A filter entry as the dataplane applies it: protocol (None = any) and a port range (None = any port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FilterEntry {
    pub protocol: Option<u8>,
    pub ports: Option<(u16, u16)>,
}

impl PacketCaptureSpec {
    pub fn snap_len(&self) -> u32 {
        self.snap_len.unwrap_or(MAX_SNAP_LEN)
    }
    pub fn max_size_bytes(&self) -> u64 {
        self.max_size_bytes.unwrap_or(DEFAULT_MAX_SIZE_BYTES)
    }
    pub fn max_files(&self) -> u32 {
        self.max_files.unwrap_or(DEFAULT_MAX_FILES)
    }

    /// The filters, one entry per (protocol, port range); empty = every packet. Only for a valid spec.
    pub fn entries(&self) -> Vec<FilterEntry> {
        let mut out = Vec::new();
        for f in &self.filters {
            let protocol = f.protocol.as_ref().and_then(ProtocolSpec::number);
            if f.ports.is_empty() {
                out.push(FilterEntry { protocol, ports: None });
            }
            for p in &f.ports {
                if let Ok(crate::validate::PortMatch::Range(lo, hi)) = crate::validate::parse_port_spec(p) {
                    out.push(FilterEntry { protocol, ports: Some((lo, hi)) });
                }
            }
        }
        out
    }

    /// `(start, end)` in epoch seconds (None: open). Only for a valid spec.
    pub fn window(&self) -> (Option<i64>, Option<i64>) {
        let t = |s: &Option<String>| s.as_deref().and_then(|s| parse_time(s).ok());
        (t(&self.start_time), t(&self.end_time))
    }
}

/// Field problems: (path, message).
pub fn check(s: &PacketCaptureSpec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(sel) = &s.selector
        && let Err(e) = porin_selector::Selector::parse(sel)
    {
        out.push(("spec.selector".into(), format!("{sel:?}: {e}")));
    }
    if s.filters.len() > MAX_FILTERS {
        out.push(("spec.filters".into(), format!("{} filters: at most {MAX_FILTERS}", s.filters.len())));
    }
    for (i, f) in s.filters.iter().enumerate() {
        let proto = match &f.protocol {
            Some(p) => match p.number() {
                Some(n) => Some(n),
                None => {
                    out.push((format!("spec.filters[{i}].protocol"), format!("{p:?}: expected TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or 1-255")));
                    continue;
                }
            },
            None => None,
        };
        if !f.ports.is_empty() && !matches!(proto, Some(6 | 17 | 132)) {
            out.push((format!("spec.filters[{i}].ports"), "ports require protocol TCP, UDP or SCTP".into()));
        }
        for (j, p) in f.ports.iter().enumerate() {
            match crate::validate::parse_port_spec(p) {
                Ok(crate::validate::PortMatch::Range(..)) => {}
                Ok(crate::validate::PortMatch::Named(n)) => {
                    out.push((format!("spec.filters[{i}].ports[{j}]"), format!("{n:?}: named ports are not supported in captures")))
                }
                Err(m) => out.push((format!("spec.filters[{i}].ports[{j}]"), m)),
            }
        }
    }
    let mut times = [None, None];
    for (k, (path, v)) in [("spec.startTime", &s.start_time), ("spec.endTime", &s.end_time)].into_iter().enumerate() {
        if let Some(v) = v {
            match parse_time(v) {
                Ok(t) => times[k] = Some(t),
                Err(m) => out.push((path.into(), m)),
            }
        }
    }
    if let [Some(a), Some(b)] = times
        && b <= a
    {
        out.push(("spec.endTime".into(), "must be after spec.startTime".into()));
    }
    if let Some(n) = s.snap_len
        && !(1..=MAX_SNAP_LEN).contains(&n)
    {
        out.push(("spec.snapLen".into(), format!("{n}: expected 1-{MAX_SNAP_LEN} bytes")));
    }
    if let Some(n) = s.max_size_bytes
        && !(MIN_SIZE_BYTES..=MAX_SIZE_BYTES).contains(&n)
    {
        out.push(("spec.maxSizeBytes".into(), format!("{n}: expected {MIN_SIZE_BYTES}-{MAX_SIZE_BYTES} bytes")));
    }
    if let Some(n) = s.max_files
        && !(1..=MAX_FILES).contains(&n)
    {
        out.push(("spec.maxFiles".into(), format!("{n}: expected 1-{MAX_FILES}")));
    }
    out
}

/// RFC 3339 (`2026-12-03T16:00:00Z`, fractions and `±HH:MM` offsets allowed) to epoch seconds.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not an RFC 3339 time (like 2026-12-03T16:00:00Z)");
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| s.get(r).filter(|x| x.bytes().all(|c| c.is_ascii_digit())).and_then(|x| x.parse::<i64>().ok());
    let (y, mo, d, h, mi, sec) = (num(0..4), num(5..7), num(8..10), num(11..13), num(14..16), num(17..19));
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(sec)) = (y, mo, d, h, mi, sec) else { return Err(bad()) };
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return Err(bad());
        }
        rest = &r[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) && &rest[3..4] == ":" => {
            let (Some(oh), Some(om)) = (num(s.len() - 5..s.len() - 3), num(s.len() - 2..s.len())) else { return Err(bad()) };
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            let o = oh * 3600 + om * 60;
            if rest.starts_with('-') { -o } else { o }
        }
        _ => return Err(bad()),
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&mo) || d < 1 || d > days_in[(mo - 1) as usize] || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (yy, mm) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_to_epoch_seconds() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_time("2026-12-03T16:00:00Z"), Ok(1_796_313_600));
        assert_eq!(parse_time("2026-12-03T17:00:00.5+01:00"), Ok(1_796_313_600));
        assert_eq!(parse_time("2024-02-29T00:00:00Z"), Ok(1_709_164_800));
        for bad in ["2023-02-29T00:00:00Z", "2026-12-03 16:00:00Z", "2026-12-03T16:00:00", "yesterday", "2026-13-01T00:00:00Z"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn checks_name_the_field() {
        let ok = PacketCaptureSpec {
            selector: Some("app == 'web'".into()),
            filters: vec![CaptureFilter { protocol: Some(ProtocolSpec::Name("UDP".into())), ports: vec![PortSpec::Number(53), PortSpec::Text("8000:8080".into())] }],
            start_time: Some("2026-12-03T16:00:00Z".into()),
            end_time: Some("2026-12-03T17:00:00Z".into()),
            ..Default::default()
        };
        assert!(check(&ok).is_empty());
        assert_eq!(
            ok.entries(),
            [FilterEntry { protocol: Some(17), ports: Some((53, 53)) }, FilterEntry { protocol: Some(17), ports: Some((8000, 8080)) }]
        );
        let bad = PacketCaptureSpec {
            selector: Some("app ==".into()),
            filters: vec![
                CaptureFilter { protocol: Some(ProtocolSpec::Name("TPC".into())), ports: vec![] },
                CaptureFilter { protocol: Some(ProtocolSpec::Name("ICMP".into())), ports: vec![PortSpec::Number(1)] },
                CaptureFilter { protocol: Some(ProtocolSpec::Number(6)), ports: vec![PortSpec::Text("http".into()), PortSpec::Text("9:1".into())] },
            ],
            start_time: Some("2026-12-03T17:00:00Z".into()),
            end_time: Some("2026-12-03T16:00:00Z".into()),
            snap_len: Some(0),
            max_size_bytes: Some(10),
            max_files: Some(0),
        };
        let paths: Vec<String> = check(&bad).into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            [
                "spec.selector",
                "spec.filters[0].protocol",
                "spec.filters[1].ports",
                "spec.filters[2].ports[0]",
                "spec.filters[2].ports[1]",
                "spec.endTime",
                "spec.snapLen",
                "spec.maxSizeBytes",
                "spec.maxFiles"
            ]
        );
    }
}
