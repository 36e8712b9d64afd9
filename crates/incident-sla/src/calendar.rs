//! Business calendars: a time zone, working hours per weekday, holidays, and the built-in
//! always-working `24x7` calendar. Owns the two pieces of business-time arithmetic everything
//! else is built on: [`Calendar::business_elapsed`] and [`Calendar::add_business`].
//!
//! # Semantics
//!
//! A working range `"08:00-18:00"` on a date is turned into the half-open interval of real
//! instants `[first instant whose local time is >= 08:00, first instant whose local time is >=
//! 18:00)`, computed with jiff's zoned arithmetic. Business time is the *real* time spent inside
//! those intervals. Consequences around DST:
//!
//! * spring forward (Europe/Paris 2026-03-29, 02:00 -> 03:00): `01:00-05:00` holds 3 real hours;
//!   a bound that falls in the skipped hour (`02:30`) resolves to the transition (03:00 CEST);
//! * fall back (2026-10-25, 03:00 -> 02:00): `01:00-05:00` holds 5 real hours; a bound that
//!   falls in the repeated hour resolves to its first occurrence;
//! * `24x7` counts real elapsed time: 4h after 23:00 the night before spring forward is 04:00
//!   CEST, four real hours later.
//!
//! Ranges end at most at `24:00` (midnight of the next day); a range cannot cross midnight
//! (write `22:00-24:00` on one day and `00:00-06:00` on the next). A weekday without hours and
//! every holiday are non-working. Holidays are local dates of the calendar's time zone.

use crate::error::{PolicyError, PolicyErrorKind};
use jiff::civil::{Date, Time, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Name of the built-in calendar that is always working.
pub const ALWAYS: &str = "24x7";

const MINUTES_PER_DAY: u16 = 24 * 60;
const FULL_DAY: [TimeRange; 1] = [TimeRange {
    start: 0,
    end: MINUTES_PER_DAY,
}];
const DAY_KEYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// One working range of a day, in minutes since local midnight; `end` may be 1440 (`24:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeRange {
    start: u16,
    end: u16,
}

impl TimeRange {
    /// Minutes after local midnight at which work starts.
    pub fn start_minutes(self) -> u16 {
        self.start
    }

    /// Minutes after local midnight at which work stops (exclusive, at most 1440).
    pub fn end_minutes(self) -> u16 {
        self.end
    }
}

impl fmt::Display for TimeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// The serialisable, human-written form of a calendar (the TOML/JSON shape):
/// `timezone`, `hours` keyed by `mon`..`sun`, `holidays` as `YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarSpec {
    /// IANA time zone name, e.g. `Europe/Paris`.
    pub timezone: String,
    /// Working ranges per weekday key (`mon`..`sun`); a missing day is not worked.
    #[serde(default)]
    pub hours: BTreeMap<String, String>,
    /// Non-working local dates.
    #[serde(default)]
    pub holidays: Vec<String>,
}

/// A business calendar. Build one with [`Calendar::always`] or [`Calendar::from_spec`];
/// serialises as its normalised [`CalendarSpec`].
#[derive(Debug, Clone)]
pub struct Calendar {
    always: bool,
    tz_name: String,
    tz: TimeZone,
    week: [Vec<TimeRange>; 7],
    holidays: BTreeSet<Date>,
}

impl PartialEq for Calendar {
    fn eq(&self, other: &Self) -> bool {
        if self.always || other.always {
            return self.always == other.always;
        }
        self.tz_name == other.tz_name && self.week == other.week && self.holidays == other.holidays
    }
}

/// The static built-in calendar, handed out by reference where a lookup cannot fail.
pub(crate) static ALWAYS_CALENDAR: Calendar = Calendar {
    always: true,
    tz_name: String::new(),
    tz: TimeZone::UTC,
    week: [
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    ],
    holidays: BTreeSet::new(),
};

impl Calendar {
    /// The built-in `24x7` calendar: every instant is working time, business time is real time.
    pub fn always() -> Calendar {
        ALWAYS_CALENDAR.clone()
    }

    /// Validates and normalises a spec (ranges sorted, touching ranges merged, holidays sorted
    /// and de-duplicated, time zone name canonicalised). Errors name the place as `calendar`.
    pub fn from_spec(spec: &CalendarSpec) -> Result<Calendar, PolicyError> {
        Calendar::build(spec, "calendar")
    }

    pub(crate) fn build(spec: &CalendarSpec, place: &str) -> Result<Calendar, PolicyError> {
        let tz = TimeZone::get(spec.timezone.trim()).map_err(|e| {
            PolicyError::new(
                format!("{place}.timezone"),
                PolicyErrorKind::BadTimeZone {
                    name: spec.timezone.clone(),
                    reason: e.to_string(),
                },
            )
        })?;
        let tz_name = tz
            .iana_name()
            .map(str::to_string)
            .unwrap_or_else(|| spec.timezone.trim().to_string());
        let mut week: [Vec<TimeRange>; 7] = Default::default();
        for (key, value) in &spec.hours {
            let day_place = format!("{place}.hours.{key}");
            let index = DAY_KEYS
                .iter()
                .position(|d| d.eq_ignore_ascii_case(key.trim()))
                .ok_or_else(|| {
                    PolicyError::new(&day_place, PolicyErrorKind::UnknownWeekday(key.clone()))
                })?;
            week[index] = parse_day_hours(value).map_err(|k| PolicyError::new(&day_place, k))?;
        }
        if week.iter().all(Vec::is_empty) {
            return Err(PolicyError::new(
                format!("{place}.hours"),
                PolicyErrorKind::NoWorkingHours,
            ));
        }
        let mut holidays = BTreeSet::new();
        for (i, text) in spec.holidays.iter().enumerate() {
            let date: Date = text.trim().parse().map_err(|e: jiff::Error| {
                PolicyError::new(
                    format!("{place}.holidays[{i}]"),
                    PolicyErrorKind::BadHoliday {
                        value: text.clone(),
                        reason: e.to_string(),
                    },
                )
            })?;
            holidays.insert(date);
        }
        let always =
            tz_name == "UTC" && holidays.is_empty() && week.iter().all(|d| d[..] == FULL_DAY);
        Ok(Calendar {
            always,
            tz_name,
            tz,
            week,
            holidays,
        })
    }

    /// The normalised spec; `Calendar::from_spec(&c.to_spec())` equals `c`. The built-in
    /// calendar is written as UTC with `00:00-24:00` every day, which reads back as `24x7`.
    pub fn to_spec(&self) -> CalendarSpec {
        if self.always {
            return CalendarSpec {
                timezone: "UTC".into(),
                hours: DAY_KEYS
                    .iter()
                    .map(|d| (d.to_string(), "00:00-24:00".to_string()))
                    .collect(),
                holidays: Vec::new(),
            };
        }
        CalendarSpec {
            timezone: self.tz_name.clone(),
            hours: DAY_KEYS
                .iter()
                .zip(&self.week)
                .filter(|(_, ranges)| !ranges.is_empty())
                .map(|(day, ranges)| {
                    let text = ranges
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",");
                    (day.to_string(), text)
                })
                .collect(),
            holidays: self.holidays.iter().map(ToString::to_string).collect(),
        }
    }

    /// True for the always-working calendar.
    pub fn is_always(&self) -> bool {
        self.always
    }

    /// The calendar's time zone (UTC for `24x7`).
    pub fn timezone(&self) -> &TimeZone {
        &self.tz
    }

    /// The IANA name of the time zone (`UTC` for `24x7`).
    pub fn timezone_name(&self) -> &str {
        if self.always { "UTC" } else { &self.tz_name }
    }

    /// Working ranges of a weekday (`00:00-24:00` every day for `24x7`).
    pub fn hours(&self, day: Weekday) -> &[TimeRange] {
        if self.always {
            return &FULL_DAY;
        }
        &self.week[weekday_index(day)]
    }

    /// The holidays, sorted.
    pub fn holidays(&self) -> impl Iterator<Item = Date> + '_ {
        self.holidays.iter().copied()
    }

    /// Is `at` inside working time?
    pub fn is_working(&self, at: Timestamp) -> bool {
        if self.always {
            return true;
        }
        let date = self.tz.to_datetime(at).date();
        let mut buf = Vec::new();
        for d in [date.yesterday().ok(), Some(date), date.tomorrow().ok()]
            .into_iter()
            .flatten()
        {
            self.day_windows(d, &mut buf);
        }
        buf.iter().any(|&(s, e)| s <= at && at < e)
    }

    /// Business time between two instants (zero when `to <= from`): the real time of
    /// `[from, to)` that falls inside working intervals.
    pub fn business_elapsed(&self, from: Timestamp, to: Timestamp) -> SignedDuration {
        if to <= from {
            return SignedDuration::ZERO;
        }
        if self.always {
            return to.duration_since(from);
        }
        let start = self.tz.to_datetime(from).date();
        let mut date = start.yesterday().unwrap_or(start);
        let last = self.tz.to_datetime(to).date();
        let last = last.tomorrow().unwrap_or(last);
        let mut total = SignedDuration::ZERO;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            self.day_windows(date, &mut buf);
            for &(ws, we) in &buf {
                let s = ws.max(from);
                let e = we.min(to);
                if e > s {
                    total = total.saturating_add(e.duration_since(s));
                }
            }
            if date >= last {
                return total;
            }
            match date.tomorrow() {
                Ok(next) => date = next,
                Err(_) => return total,
            }
        }
    }

    /// The earliest instant at which `duration` of business time has elapsed since `start`
    /// (`start` itself for zero or negative durations). Saturates at [`Timestamp::MAX`] when
    /// the answer is beyond jiff's range.
    ///
    /// Friday 17:00 + 2h on `08:00-18:00` Monday-Friday is Monday 09:00; 1h is Friday 18:00.
    pub fn add_business(&self, start: Timestamp, duration: SignedDuration) -> Timestamp {
        if duration <= SignedDuration::ZERO {
            return start;
        }
        if self.always {
            return start.checked_add(duration).unwrap_or(Timestamp::MAX);
        }
        let first = self.tz.to_datetime(start).date();
        let mut date = first.yesterday().unwrap_or(first);
        let mut remaining = duration;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            self.day_windows(date, &mut buf);
            for &(ws, we) in &buf {
                if we <= start {
                    continue;
                }
                let s = ws.max(start);
                let available = we.duration_since(s);
                if available >= remaining {
                    return s.checked_add(remaining).unwrap_or(Timestamp::MAX);
                }
                remaining = remaining.saturating_sub(available);
            }
            match date.tomorrow() {
                Ok(next) => date = next,
                Err(_) => return Timestamp::MAX,
            }
        }
    }

    /// Appends the working intervals of a local date, in order.
    fn day_windows(&self, date: Date, out: &mut Vec<(Timestamp, Timestamp)>) {
        if self.holidays.contains(&date) {
            return;
        }
        for range in &self.week[weekday_index(date.weekday())] {
            if let (Some(s), Some(e)) = (
                self.resolve(date, range.start),
                self.resolve(date, range.end),
            ) && e > s
            {
                out.push((s, e));
            }
        }
    }

    /// The first instant whose local time is at or after `date` + `minutes` (1440 = next
    /// midnight): the unique instant normally, the first occurrence in a fold, the transition
    /// itself in a gap.
    fn resolve(&self, date: Date, minutes: u16) -> Option<Timestamp> {
        let (date, minutes) = if minutes >= MINUTES_PER_DAY {
            (date.tomorrow().ok()?, 0)
        } else {
            (date, minutes)
        };
        let hour = i8::try_from(minutes / 60).ok()?;
        let minute = i8::try_from(minutes % 60).ok()?;
        let time = Time::new(hour, minute, 0, 0).ok()?;
        let ambiguous = self.tz.to_ambiguous_timestamp(date.to_datetime(time));
        match ambiguous.offset() {
            AmbiguousOffset::Unambiguous { .. } => ambiguous.compatible().ok(),
            AmbiguousOffset::Fold { .. } => ambiguous.earlier().ok(),
            AmbiguousOffset::Gap { .. } => {
                // `earlier` reads the local time with the post-gap offset, which lands before
                // the transition; the next transition after it is where the gap starts.
                let before = ambiguous.earlier().ok()?;
                let later = ambiguous.later().ok()?;
                let transition = self.tz.following(before).next().map(|t| t.timestamp());
                Some(transition.map_or(later, |t| t.min(later)))
            }
        }
    }
}

impl Serialize for Calendar {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_spec().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Calendar {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spec = CalendarSpec::deserialize(deserializer)?;
        Calendar::from_spec(&spec).map_err(serde::de::Error::custom)
    }
}

fn weekday_index(day: Weekday) -> usize {
    usize::try_from(day.to_monday_zero_offset()).unwrap_or(0)
}

/// Parses `"08:00-12:00,13:00-17:00"` (empty = not working) into sorted, merged ranges.
fn parse_day_hours(value: &str) -> Result<Vec<TimeRange>, PolicyErrorKind> {
    let bad = |reason: &str| PolicyErrorKind::BadHours {
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let mut ranges = Vec::new();
    for part in value.split(',') {
        let part = part.trim();
        if part.is_empty() {
            if value.trim().is_empty() {
                continue;
            }
            return Err(bad("empty range between commas"));
        }
        let (start, end) = part
            .split_once('-')
            .ok_or_else(|| bad(&format!("{part:?} has no '-' between start and end")))?;
        let start = parse_clock(start.trim()).ok_or_else(|| {
            bad(&format!(
                "start {:?} is not a time HH:MM from 00:00 to 23:59",
                start.trim()
            ))
        })?;
        let end = parse_clock(end.trim()).ok_or_else(|| {
            bad(&format!(
                "end {:?} is not a time HH:MM from 00:00 to 24:00",
                end.trim()
            ))
        })?;
        if start >= MINUTES_PER_DAY {
            return Err(bad("a range cannot start at 24:00"));
        }
        if end <= start {
            return Err(bad(&format!(
                "{part:?} ends before it starts (ranges cannot cross midnight)"
            )));
        }
        ranges.push(TimeRange { start, end });
    }
    ranges.sort();
    let mut merged: Vec<TimeRange> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match merged.last_mut() {
            Some(prev) if range.start < prev.end => {
                return Err(PolicyErrorKind::OverlappingHours {
                    first: prev.to_string(),
                    second: range.to_string(),
                });
            }
            Some(prev) if range.start == prev.end => prev.end = range.end,
            _ => merged.push(range),
        }
    }
    Ok(merged)
}

/// `HH:MM` (one or two hour digits) -> minutes; `24:00` allowed.
fn parse_clock(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    if !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_hours_are_sorted_and_touching_ranges_merged() {
        let r = parse_day_hours("13:00-17:00, 08:00-12:00,12:00-13:00").unwrap();
        assert_eq!(
            r,
            vec![TimeRange {
                start: 480,
                end: 1020
            }]
        );
        assert_eq!(parse_day_hours("").unwrap(), vec![]);
        assert_eq!(
            parse_day_hours("00:00-24:00").unwrap()[0].to_string(),
            "00:00-24:00"
        );
    }

    #[test]
    fn bad_day_hours_are_rejected() {
        for text in [
            "8-18",
            "08:00",
            "08:00-07:00",
            "25:00-26:00",
            "08:60-09:00",
            "24:00-24:00",
            "08:00-12:00,,13:00-14:00",
        ] {
            assert!(
                matches!(parse_day_hours(text), Err(PolicyErrorKind::BadHours { .. })),
                "{text}"
            );
        }
        assert!(matches!(
            parse_day_hours("08:00-12:00,11:00-13:00"),
            Err(PolicyErrorKind::OverlappingHours { .. })
        ));
    }
}
