//! Time: Unix nanoseconds everywhere inside the crate, RFC 3339 (UTC, `Z`) in JSON and on screen.
//!
//! The dataplane stamps events with `bpf_ktime_get_ns()` (CLOCK_MONOTONIC); [`TimeBase`] turns
//! that into wall-clock time with one offset taken when the agent starts. Parsing covers what
//! `--since/--until` accept: RFC 3339 timestamps and relative durations (`30s`, `5m`, `1h30m`).

use std::time::Duration;

/// Unix time in nanoseconds.
pub type UnixNanos = u64;

const NS: u64 = 1_000_000_000;

/// Converts monotonic kernel timestamps to Unix nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeBase {
    /// `realtime - monotonic`, in nanoseconds.
    pub offset_ns: i128,
}

impl TimeBase {
    /// A fixed offset (tests, replay).
    pub fn from_offset(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// Reads CLOCK_REALTIME and CLOCK_MONOTONIC now. Call once at start; NTP steps after that
    /// shift wall times by the step (re-take it periodically if that matters).
    pub fn system() -> Self {
        use nix::time::{ClockId, clock_gettime};
        let ns = |c| {
            clock_gettime(c).map(|t| i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec())).unwrap_or(0)
        };
        let real = ns(ClockId::CLOCK_REALTIME);
        let mono = ns(ClockId::CLOCK_MONOTONIC);
        Self { offset_ns: real - mono }
    }

    /// The Unix time of monotonic timestamp `mono_ns` (clamped at 0).
    pub fn to_unix(&self, mono_ns: u64) -> UnixNanos {
        (i128::from(mono_ns) + self.offset_ns).clamp(0, i128::from(u64::MAX)) as u64
    }

    /// The monotonic timestamp of Unix time `unix_ns`.
    pub fn to_mono(&self, unix_ns: UnixNanos) -> u64 {
        (i128::from(unix_ns) - self.offset_ns).clamp(0, i128::from(u64::MAX)) as u64
    }
}

/// The current Unix time in nanoseconds.
pub fn now_unix() -> UnixNanos {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Days since 1970-01-01 -> (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let d = time::Date::from_julian_day(UNIX_EPOCH_JULIAN_DAY + z as i32).unwrap_or(time::Date::MAX);
    (i64::from(d.year()), u32::from(u8::from(d.month())), u32::from(d.day()))
}

/// (year, month, day) -> days since 1970-01-01; None for a date that does not exist.
fn days_from_civil(y: i64, m: u32, d: u32) -> Option<i64> {
    let month = time::Month::try_from(u8::try_from(m).ok()?).ok()?;
    let date = time::Date::from_calendar_date(i32::try_from(y).ok()?, month, u8::try_from(d).ok()?).ok()?;
    Some(i64::from(date.to_julian_day() - UNIX_EPOCH_JULIAN_DAY))
}

/// The Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

/// `2024-05-06T07:08:09.123456789Z` (always 9 fractional digits: fixed width, sorts as text).
pub fn format_rfc3339(t: UnixNanos) -> String {
    let secs = t / NS;
    let frac = t % NS;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z", s / 3600, s / 60 % 60, s % 60)
}

/// `07:08:09.123` (UTC), for compact output.
pub fn format_clock(t: UnixNanos) -> String {
    let s = (t / NS) % 86_400;
    format!("{:02}:{:02}:{:02}.{:03}", s / 3600, s / 60 % 60, s % 60, (t % NS) / 1_000_000)
}

/// Why a time could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid time {input:?}: {why} (expected RFC 3339 like 2024-05-06T07:08:09Z, or a duration like 90s, 5m, 1h30m)")]
pub struct TimeError {
    pub input: String,
    pub why: &'static str,
}

fn num(s: &str, input: &str) -> Result<u32, TimeError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TimeError { input: input.into(), why: "expected digits" });
    }
    s.parse().map_err(|_| TimeError { input: input.into(), why: "number out of range" })
}

/// Parses RFC 3339: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` (`t`/`z`/space accepted too).
pub fn parse_rfc3339(input: &str) -> Result<UnixNanos, TimeError> {
    let err = |why| TimeError { input: input.into(), why };
    let b = input.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return Err(err("not of the form YYYY-MM-DDTHH:MM:SS"));
    }
    let (y, mo, d) = (num(&input[0..4], input)?, num(&input[5..7], input)?, num(&input[8..10], input)?);
    let (h, mi, s) = (num(&input[11..13], input)?, num(&input[14..16], input)?, num(&input[17..19], input)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return Err(err("field out of range"));
    }
    let mut rest = &input[19..];
    let mut frac_ns = 0u64;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err("empty fraction"));
        }
        let f = &r[..digits.min(9)];
        frac_ns = f.parse::<u64>().map_err(|_| err("bad fraction"))? * 10u64.pow(9 - f.len() as u32);
        rest = &r[digits..];
    }
    let offset_s: i64 = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let v = i64::from(num(&o[1..3], input)?) * 3600 + i64::from(num(&o[4..6], input)?) * 60;
            if o.starts_with('-') { -v } else { v }
        }
        _ => return Err(err("expected Z or a ±HH:MM offset")),
    };
    let days = days_from_civil(i64::from(y), mo, d).ok_or_else(|| err("no such date"))?;
    let secs = days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s) - offset_s;
    if secs < 0 {
        return Err(err("before 1970"));
    }
    Ok(secs as u64 * NS + frac_ns)
}

/// Parses a duration: one or more `<number><unit>` with units `ms`, `s`, `m`, `h`, `d`.
pub fn parse_duration(input: &str) -> Result<Duration, TimeError> {
    let err = |why| TimeError { input: input.into(), why };
    let mut rest = input.trim();
    if rest.is_empty() {
        return Err(err("empty"));
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err("expected a number"));
        }
        let n: u64 = rest[..digits].parse().map_err(|_| err("number out of range"))?;
        rest = &rest[digits..];
        let unit = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let d = match &rest[..unit] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            _ => return Err(err("unknown unit (use ms, s, m, h, d)")),
        };
        total = total.saturating_add(d);
        rest = &rest[unit..];
    }
    Ok(total)
}

/// `--since/--until` value: an RFC 3339 time, or a duration meaning "that long before `now`".
pub fn parse_time_arg(input: &str, now: UnixNanos) -> Result<UnixNanos, TimeError> {
    if input.len() >= 20 && input.as_bytes().get(4) == Some(&b'-') {
        return parse_rfc3339(input);
    }
    let d = parse_duration(input)?;
    Ok(now.saturating_sub(d.as_nanos().min(u128::from(u64::MAX)) as u64))
}

/// Serde adapter: [`UnixNanos`] as an RFC 3339 string.
pub mod rfc3339 {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &UnixNanos, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_rfc3339(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<UnixNanos, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_roundtrip_and_known_values() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        // 2024-02-29T12:34:56.5Z (leap day)
        let t = parse_rfc3339("2024-02-29T12:34:56.5Z").unwrap();
        assert_eq!(t, 1_709_210_096_500_000_000);
        assert_eq!(format_rfc3339(t), "2024-02-29T12:34:56.500000000Z");
        assert_eq!(parse_rfc3339("2024-02-29T14:34:56.5+02:00").unwrap(), t);
        assert_eq!(format_clock(t), "12:34:56.500");
        for t in [1u64, 951_782_400 * NS + 7, 4_102_444_800 * NS - 1] {
            assert_eq!(parse_rfc3339(&format_rfc3339(t)).unwrap(), t);
        }
        assert!(parse_rfc3339("2024-13-01T00:00:00Z").is_err());
        assert!(parse_rfc3339("2024-01-01T00:00:00").is_err());
        assert!(parse_rfc3339("yesterday").is_err());
        // Calendar dates come from the `time` crate: days that do not exist are refused.
        assert!(parse_rfc3339("2023-02-29T00:00:00Z").is_err());
        assert!(parse_rfc3339("2024-04-31T00:00:00Z").is_err());
        assert_eq!(format_rfc3339(4_102_444_800 * NS), "2100-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn durations_and_relative_args() {
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5y").is_err());
        let now = 10_000 * NS;
        assert_eq!(parse_time_arg("10s", now).unwrap(), 9_990 * NS);
        assert_eq!(parse_time_arg("1970-01-01T00:00:01Z", now).unwrap(), NS);
    }

    #[test]
    fn timebase_converts_both_ways() {
        let tb = TimeBase::from_offset(1_000);
        assert_eq!(tb.to_unix(5), 1_005);
        assert_eq!(tb.to_mono(1_005), 5);
        let sys = TimeBase::system();
        assert!(sys.offset_ns > 0);
    }
}
