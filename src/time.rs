//! Calendar maths and the clock: the `YYYYMMDD-HHMMSS` stamps in conflict, trash and
//! set-aside names, the dates people read, and now in Unix seconds. No other I/O.

/// `YYYYMMDD-HHMMSS` in UTC: conflict copies, trash entries, set-aside indexes.
pub fn stamp(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}")
}

/// `2026-11-24 19:04:50 UTC`.
pub fn readable(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// How long before `now` time `t` was, as people read it (`5m 3s`); a time ahead reads `0s`.
pub fn ago(now: i64, t: i64) -> String {
    let secs = now.saturating_sub(t).max(0) as u64;
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

/// UTC calendar fields of a Unix time (Howard Hinnant's days-from-civil, inverted):
/// (year, month, day, hour, minute, second). Also the date in the SFTP server's `ls -l` names.
pub fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

/// Unix seconds of a `YYYYMMDD-HHMMSS` stamp (UTC), as `stamp` writes it; `None` for any
/// other shape or an impossible date.
pub fn parse_stamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 15 || b[8] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, sec) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    // Howard Hinnant's days-from-civil.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if mo > 2 { mo - 3 } else { mo + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec;
    // 31 February and the like come back as another day: not a stamp we wrote.
    (stamp(secs) == s).then_some(secs)
}

/// Now, in Unix seconds (negative before 1970, should a clock say so).
pub fn now_secs() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_fields_and_stamps() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil(-1), (1969, 12, 31, 23, 59, 59));
        assert_eq!(stamp(1_764_011_090), "20251124-190450");
        assert_eq!(readable(1_764_011_090), "2025-11-24 19:04:50 UTC");
        assert_eq!(ago(1_000, 697), "5m 3s");
        assert_eq!(ago(1_000, 2_000), "0s");
        for t in [0, 1_764_011_090, 951_782_400, -1, 4_102_444_799] {
            assert_eq!(parse_stamp(&stamp(t)), Some(t), "{t}");
        }
        for bad in [
            "20250231-000000",
            "2025112-190450",
            "20251124-196450",
            "2025x124-190450",
        ] {
            assert_eq!(parse_stamp(bad), None, "{bad}");
        }
    }
}
