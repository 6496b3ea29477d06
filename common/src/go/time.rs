//! Go's `time.Time` as restic's JSON carries it (RFC 3339 with nanoseconds and the zone
//! offset it was recorded in), and the one proleptic Gregorian calendar behind it.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::{self, Deserialize, Deserializer, Visitor};

use crate::error::{Error, Result};

/// A Go `time.Time` as restic serializes it: an instant plus the UTC offset it was recorded
/// in. The offset is part of the bytes (`+02:00` vs `Z`), so it must survive a round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GoTime {
    /// Seconds since the Unix epoch (UTC).
    pub secs: i64,
    /// Nanoseconds within the second, below 1e9.
    pub nanos: u32,
    /// Offset east of UTC in seconds; 0 is written as `Z`.
    pub offset_secs: i32,
}

/// Go's zero `time.Time` is 0001-01-01T00:00:00Z, which is what a missing time decodes to.
const GO_ZERO_SECS: i64 = -62_135_596_800;

impl Default for GoTime {
    /// Go's zero time, `0001-01-01T00:00:00Z`.
    fn default() -> Self {
        GoTime { secs: GO_ZERO_SECS, nanos: 0, offset_secs: 0 }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl GoTime {
    /// A time from Unix seconds and nanoseconds, recorded at `offset_secs` east of UTC.
    pub fn from_unix(secs: i64, nanos: u32, offset_secs: i32) -> GoTime {
        let carry = i64::from(nanos / 1_000_000_000);
        GoTime { secs: secs + carry, nanos: nanos % 1_000_000_000, offset_secs }
    }

    /// A time in this machine's local zone (`TZ`, `/etc/localtime`), as Go's `time.Local`
    /// gives it: the offset is the one in effect at that instant.
    pub fn local(secs: i64, nanos: u32) -> GoTime {
        GoTime::from_unix(secs, nanos, crate::sys::utc_offset(secs))
    }

    /// Now, in the local zone: what restic records for a snapshot, a lock or a backup's end.
    pub fn now_local() -> GoTime {
        let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        GoTime::local(d.as_secs() as i64, d.subsec_nanos())
    }

    /// Now, in UTC (`Z`): needs no time-zone database, and restic parses any offset.
    pub fn now_utc() -> GoTime {
        let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        GoTime::from_unix(d.as_secs() as i64, d.subsec_nanos(), 0)
    }

    /// Parses RFC 3339 as Go's `time.Time.UnmarshalJSON` does: `YYYY-MM-DDTHH:MM:SS`, an
    /// optional fraction (`.` or `,`, any number of digits, nanoseconds kept), then `Z` or
    /// `±hh:mm`.
    pub fn parse(s: &str) -> Result<GoTime> {
        let bad = |why: &str| Error::format(format!("time {s:?}: {why}"));
        let b = s.as_bytes();
        let num = |from: usize, len: usize| -> Result<u32> {
            let digits = b.get(from..from + len).ok_or_else(|| bad("too short"))?;
            digits.iter().try_fold(0u32, |acc, &d| {
                if d.is_ascii_digit() {
                    Ok(acc * 10 + u32::from(d - b'0'))
                } else {
                    Err(bad("expected a digit"))
                }
            })
        };
        let lit = |at: usize, c: u8| -> Result<()> {
            if b.get(at) == Some(&c) {
                Ok(())
            } else {
                Err(bad(&format!("expected {:?} at {at}", c as char)))
            }
        };
        let year = i64::from(num(0, 4)?);
        lit(4, b'-')?;
        let month = num(5, 2)?;
        lit(7, b'-')?;
        let day = num(8, 2)?;
        lit(10, b'T')?;
        let hour = num(11, 2)?;
        lit(13, b':')?;
        let min = num(14, 2)?;
        lit(16, b':')?;
        let sec = num(17, 2)?;
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(bad("date out of range"));
        }
        if hour > 23 || min > 59 || sec > 59 {
            return Err(bad("time of day out of range"));
        }
        let mut i = 19;
        let mut nanos = 0u32;
        if matches!(b.get(i), Some(b'.' | b',')) && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            i += 1;
            let mut scale = 100_000_000u32;
            while let Some(&d) = b.get(i).filter(|d| d.is_ascii_digit()) {
                // Go reads nine digits and ignores the rest.
                nanos += u32::from(d - b'0') * scale;
                scale /= 10;
                i += 1;
            }
        }
        let offset_secs = match b.get(i) {
            Some(b'Z') if b.len() == i + 1 => 0,
            Some(&sign @ (b'+' | b'-')) if b.len() == i + 6 => {
                let hh = num(i + 1, 2)?;
                lit(i + 3, b':')?;
                let mm = num(i + 4, 2)?;
                if hh > 23 || mm > 59 {
                    return Err(bad("offset out of range"));
                }
                let off = (hh * 3600 + mm * 60) as i32;
                if sign == b'-' {
                    -off
                } else {
                    off
                }
            }
            _ => return Err(bad("expected Z or ±hh:mm at the end")),
        };
        let local = days_from_civil(year, month, day) * 86_400 + i64::from(hour * 3600 + min * 60 + sec);
        Ok(GoTime { secs: local - i64::from(offset_secs), nanos, offset_secs })
    }

    /// Appends Go's RFC 3339 form (no quotes). Years outside 0..=9999, which Go refuses to
    /// encode, are clamped into range as restic does before writing a node.
    pub fn write(&self, out: &mut Vec<u8>) {
        let local = self.secs + i64::from(self.offset_secs);
        let (mut y, mut m, mut d) = civil_from_days(local.div_euclid(86_400));
        let sod = local.rem_euclid(86_400) as u32;
        if !(0..=9999).contains(&y) {
            // restic shifts the year only (Go's AddDate), which turns 29 February into 1 March
            // in a non-leap target year.
            y = y.clamp(0, 9999);
            if m == 2 && d == 29 && !is_leap(y) {
                m = 3;
                d = 1;
            }
        }
        let two = |out: &mut Vec<u8>, v: u32| {
            out.push(b'0' + (v / 10) as u8);
            out.push(b'0' + (v % 10) as u8);
        };
        let y = y as u32;
        two(out, y / 100);
        two(out, y % 100);
        out.push(b'-');
        two(out, m);
        out.push(b'-');
        two(out, d);
        out.push(b'T');
        two(out, sod / 3600);
        out.push(b':');
        two(out, sod / 60 % 60);
        out.push(b':');
        two(out, sod % 60);
        if self.nanos != 0 {
            let mut digits = [0u8; 9];
            let mut n = self.nanos % 1_000_000_000;
            for slot in digits.iter_mut().rev() {
                *slot = b'0' + (n % 10) as u8;
                n /= 10;
            }
            let len = 9 - digits.iter().rev().take_while(|&&c| c == b'0').count();
            out.push(b'.');
            out.extend_from_slice(&digits[..len]);
        }
        if self.offset_secs == 0 {
            out.push(b'Z');
        } else {
            // Go prints whole minutes, truncating toward zero (LMT offsets have seconds).
            let minutes = self.offset_secs / 60;
            out.push(if minutes < 0 { b'-' } else { b'+' });
            let minutes = minutes.unsigned_abs();
            two(out, minutes / 60);
            out.push(b':');
            two(out, minutes % 60);
        }
    }
}

impl fmt::Display for GoTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = Vec::with_capacity(35);
        self.write(&mut buf);
        f.write_str(&String::from_utf8_lossy(&buf))
    }
}

impl<'de> Deserialize<'de> for GoTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<GoTime, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = GoTime;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<GoTime, E> {
                GoTime::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_byte_exact() {
        for s in [
            "2020-01-02T03:04:05Z",
            "2020-01-02T03:04:05.64030738Z",
            "2020-01-02T05:04:05+02:00",
            "2020-01-02T05:04:05.1+02:00",
            "2020-01-01T23:34:05.1-03:30",
            "2026-11-25T06:05:50.044776643+05:30",
            "0001-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999999999Z",
            "0000-02-29T12:00:00Z",
            "9999-12-31T23:59:59.000000001-12:00",
        ] {
            let t = GoTime::parse(s).unwrap();
            assert_eq!(t.to_string(), s);
        }
        let z = GoTime::parse("2020-01-02T03:04:05Z").unwrap();
        assert_eq!(z, GoTime::from_unix(1577934245, 0, 0));
        let plus2 = GoTime::parse("2020-01-02T05:04:05+02:00").unwrap();
        assert_eq!((plus2.secs, plus2.offset_secs), (1577934245, 7200));
        let neg = GoTime::parse("2020-01-01T23:34:05-03:30").unwrap();
        assert_eq!((neg.secs, neg.offset_secs), (1577934245, -12600));
        assert_eq!(GoTime::default().to_string(), "0001-01-01T00:00:00Z");
        assert_eq!(GoTime::from_unix(0, 1_500_000_000, 0).to_string(), "1970-01-01T00:00:01.5Z");
    }

    #[test]
    fn time_parsing_is_go_lenient_and_strict() {
        // Go takes a comma too, reads nine fraction digits and drops the rest; +00:00 is Z.
        assert_eq!(GoTime::parse("2020-01-02T03:04:05,5Z").unwrap().nanos, 500_000_000);
        assert_eq!(GoTime::parse("2020-01-02T03:04:05.1234567891Z").unwrap().nanos, 123_456_789);
        assert_eq!(GoTime::parse("2020-01-02T03:04:05+00:00").unwrap().to_string(), "2020-01-02T03:04:05Z");
        for bad in [
            "2020-13-02T03:04:05Z",
            "2021-02-29T03:04:05Z",
            "2020-01-02T24:04:05Z",
            "2020-01-02T03:04:60Z",
            "2020-01-02t03:04:05Z",
            "2020-01-02T03:04:05",
            "2020-01-02T03:04:05.Z",
            "2020-01-02T03:04:05z",
            "2020-01-02T03:04:05+0200",
            "2020-01-02T03:04:05Zx",
            "20-01-02T03:04:05Z",
        ] {
            assert!(GoTime::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn out_of_range_years_are_clamped_like_restic() {
        let y10000 = days_from_civil(10000, 2, 29) * 86_400;
        assert_eq!(GoTime::from_unix(y10000, 0, 0).to_string(), "9999-03-01T00:00:00Z");
        let y_minus1 = days_from_civil(-1, 6, 1) * 86_400 + 3600;
        assert_eq!(GoTime::from_unix(y_minus1, 0, 0).to_string(), "0000-06-01T01:00:00Z");
        // LMT-style offsets with seconds print whole minutes, truncated toward zero.
        assert_eq!(GoTime::from_unix(0, 0, -(53 * 60 + 28)).to_string(), "1969-12-31T23:06:32-00:53");
    }

    #[test]
    fn local_time_keeps_the_instant() {
        let t = GoTime::local(1577934245, 42);
        assert_eq!((t.secs, t.nanos), (1577934245, 42));
        assert_eq!(t.offset_secs, crate::sys::utc_offset(1577934245));
        let now = GoTime::now_utc();
        assert!(now.offset_secs == 0 && now.to_string().ends_with('Z'), "{now}");
        assert!(GoTime::now_local().secs >= now.secs);
    }

    /// Go's RFC 3339 with nanoseconds, as key files carry their creation time.
    #[test]
    fn utc_like_go() {
        let utc = |secs, nanos| GoTime::from_unix(secs, nanos, 0).to_string();
        assert_eq!(utc(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_594_296_350, 767_321_194), "2020-07-09T12:05:50.767321194Z");
        assert_eq!(utc(1_594_296_350, 500_000_000), "2020-07-09T12:05:50.5Z");
        // 2000-02-29 (leap day of a century year divisible by 400) and the day after.
        assert_eq!(utc(951_782_400, 0), "2000-02-29T00:00:00Z");
        assert_eq!(utc(951_868_799, 10), "2000-02-29T23:59:59.00000001Z");
        assert_eq!(utc(4_107_542_400, 0), "2100-03-01T00:00:00Z");
    }
}
