//! RFC 3339 timestamps (UTC, second precision) and `--since` values: calendar arithmetic from the `time` crate,
//! parsing shared with the flow filters ([`porin_flow::time`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the epoch, now.
pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Nanoseconds since the epoch, now (audit keys sort by it).
pub fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// `2024-05-01T12:00:00Z`.
pub fn rfc3339(secs: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second())
}

/// Parse `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` to epoch seconds (the flow store's parser).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    porin_flow::time::parse_rfc3339(s).ok().map(|ns| (ns / 1_000_000_000) as i64)
}

/// Parse `90s`, `15m`, `2h`, `7d`, or combinations like `1h30m` (the flow filters' parser).
pub fn parse_duration(s: &str) -> Option<Duration> {
    porin_flow::time::parse_duration(s).ok()
}

/// `--since` value: a duration back from now, or an RFC 3339 time. Returns epoch seconds.
pub fn parse_since(s: &str) -> Option<i64> {
    parse_duration(s).map(|d| now_secs() - d.as_secs() as i64).or_else(|| parse_rfc3339(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for t in [0, 1_700_000_000, 951_782_400, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339("2024-02-29T12:00:00+02:00"), parse_rfc3339("2024-02-29T10:00:00Z"));
        assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2023-02-29T00:00:00Z"), None);
        assert_eq!(rfc3339(1_709_210_096), "2024-02-29T12:34:56Z");
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("5x"), None);
    }
}
