//! Business durations as written in policies: `"15m"`, `"4h"`, `"2s"`, `"1h30m"`, `"3d"`.
//!
//! Owns parsing and the canonical formatting used for hashing and JSON. A day (`d`) is always
//! 24 hours of *business* time, never a calendar day. Policy durations are whole seconds; the
//! in-memory type everywhere in this crate is [`jiff::SignedDuration`].

use jiff::SignedDuration;
use thiserror::Error;

/// Why a duration text was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DurationError {
    /// Nothing to parse.
    #[error("empty duration")]
    Empty,
    /// A character that is neither a digit, a unit nor a space.
    #[error("unexpected character {0:?}; expected digits followed by d, h, m or s")]
    Unexpected(char),
    /// Digits without a unit, e.g. `"15"`.
    #[error("number {0} has no unit (d, h, m or s)")]
    MissingUnit(u64),
    /// A unit without digits, e.g. `"h"`.
    #[error("unit {0:?} has no number before it")]
    MissingNumber(char),
    /// Units must appear at most once, largest first (`1h30m`, not `30m1h`).
    #[error("unit {0:?} is repeated or out of order; write the largest unit first (e.g. 1d2h30m)")]
    Order(char),
    /// Larger than this crate can represent.
    #[error("duration is too large")]
    Overflow,
    /// Zero durations are not targets.
    #[error("duration must be greater than zero")]
    Zero,
}

/// Parses `"1d2h30m15s"`-style text (units `d`=24h, `h`, `m`, `s`; at least one part; largest
/// unit first; spaces between parts allowed). Zero is rejected: these are SLA targets.
///
/// ```
/// use incident_sla::parse_duration;
/// use jiff::SignedDuration;
/// assert_eq!(parse_duration("1h30m").unwrap(), SignedDuration::from_mins(90));
/// assert_eq!(parse_duration("3d").unwrap(), SignedDuration::from_hours(72));
/// assert!(parse_duration("15").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<SignedDuration, DurationError> {
    let mut total: i64 = 0;
    let mut number: Option<u64> = None;
    let mut last_rank: usize = 0;
    let mut parts = 0;
    for ch in text.trim().chars() {
        if let Some(digit) = ch.to_digit(10) {
            let n = number.unwrap_or(0);
            number = Some(
                n.checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(digit)))
                    .ok_or(DurationError::Overflow)?,
            );
            continue;
        }
        if ch.is_whitespace() {
            if let Some(n) = number {
                return Err(DurationError::MissingUnit(n));
            }
            continue;
        }
        let (rank, secs_per_unit) = match ch {
            'd' => (1, 86_400),
            'h' => (2, 3_600),
            'm' => (3, 60),
            's' => (4, 1),
            other => return Err(DurationError::Unexpected(other)),
        };
        let n = number.take().ok_or(DurationError::MissingNumber(ch))?;
        if rank <= last_rank {
            return Err(DurationError::Order(ch));
        }
        last_rank = rank;
        let n = i64::try_from(n).map_err(|_| DurationError::Overflow)?;
        total = n
            .checked_mul(secs_per_unit)
            .and_then(|s| total.checked_add(s))
            .ok_or(DurationError::Overflow)?;
        parts += 1;
    }
    if let Some(n) = number {
        return Err(DurationError::MissingUnit(n));
    }
    if parts == 0 {
        return Err(DurationError::Empty);
    }
    if total == 0 {
        return Err(DurationError::Zero);
    }
    Ok(SignedDuration::from_secs(total))
}

/// Canonical text of a duration: largest units first, zero parts omitted (`5400s` ->
/// `"1h30m"`, `86400s` -> `"1d"`, zero -> `"0s"`, negative values get a leading `-`, sub-second
/// parts are written as decimals of the seconds part). [`parse_duration`] reads back every
/// positive whole-second output.
pub fn format_duration(duration: SignedDuration) -> String {
    let mut out = String::new();
    if duration.is_negative() {
        out.push('-');
    }
    let secs = duration.as_secs().unsigned_abs();
    let nanos = duration.subsec_nanos().unsigned_abs();
    let (d, rest) = (secs / 86_400, secs % 86_400);
    let (h, rest) = (rest / 3_600, rest % 3_600);
    let (m, s) = (rest / 60, rest % 60);
    for (n, unit) in [(d, 'd'), (h, 'h'), (m, 'm')] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push_str(&format!("{s}.{}s", frac.trim_end_matches('0')));
    } else if s > 0 || secs == 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_combinations() {
        assert_eq!(parse_duration("15m"), Ok(SignedDuration::from_mins(15)));
        assert_eq!(parse_duration("4h"), Ok(SignedDuration::from_hours(4)));
        assert_eq!(parse_duration("2s"), Ok(SignedDuration::from_secs(2)));
        assert_eq!(parse_duration("1h30m"), Ok(SignedDuration::from_mins(90)));
        assert_eq!(parse_duration("3d"), Ok(SignedDuration::from_hours(72)));
        assert_eq!(
            parse_duration(" 1d 2h 3m 4s "),
            Ok(SignedDuration::from_secs(86_400 + 7_200 + 180 + 4))
        );
    }

    #[test]
    fn rejects_malformed_text() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("15"), Err(DurationError::MissingUnit(15)));
        assert_eq!(parse_duration("h"), Err(DurationError::MissingNumber('h')));
        assert_eq!(parse_duration("30m1h"), Err(DurationError::Order('h')));
        assert_eq!(parse_duration("1h1h"), Err(DurationError::Order('h')));
        assert_eq!(parse_duration("1w"), Err(DurationError::Unexpected('w')));
        assert_eq!(parse_duration("-1h"), Err(DurationError::Unexpected('-')));
        assert_eq!(parse_duration("0m"), Err(DurationError::Zero));
        assert_eq!(
            parse_duration("99999999999999999999d"),
            Err(DurationError::Overflow)
        );
    }

    #[test]
    fn formats_canonically_and_round_trips() {
        assert_eq!(format_duration(SignedDuration::from_mins(90)), "1h30m");
        assert_eq!(format_duration(SignedDuration::from_hours(24)), "1d");
        assert_eq!(format_duration(SignedDuration::ZERO), "0s");
        assert_eq!(format_duration(SignedDuration::from_secs(-61)), "-1m1s");
        assert_eq!(format_duration(SignedDuration::from_millis(1500)), "1.5s");
        for text in ["15m", "4h", "2s", "1h30m", "3d", "1d2h3m4s"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
        }
    }
}
