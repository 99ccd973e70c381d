//! Maintenance windows: `"Mon-Fri 01:00-05:00 Europe/Berlin"`.
//!
//! A window is a set of weekdays, a start and an end time of day, and a time zone. It may cross
//! midnight (`"Sat 22:00-02:00 UTC"` runs from Saturday 22:00 to Sunday 02:00); the weekday
//! names the day on which the window opens. Daylight-saving changes are handled by jiff: the
//! window opens at the wall-clock time of that zone on that day.

use std::fmt;

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, ZonedDateTime};

#[derive(Clone)]
pub(crate) struct Window {
    /// Indexed by `Weekday::to_monday_zero_offset()`.
    days: [bool; 7],
    start: Time,
    end: Time,
    tz: TimeZone,
    text: String,
}

impl fmt::Debug for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Window({:?})", self.text)
    }
}

impl PartialEq for Window {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

const DAYS: [(&str, &str, Weekday); 7] = [
    ("mon", "monday", Weekday::Monday),
    ("tue", "tuesday", Weekday::Tuesday),
    ("wed", "wednesday", Weekday::Wednesday),
    ("thu", "thursday", Weekday::Thursday),
    ("fri", "friday", Weekday::Friday),
    ("sat", "saturday", Weekday::Saturday),
    ("sun", "sunday", Weekday::Sunday),
];

fn day(s: &str) -> Result<Weekday, String> {
    let key = s.trim().to_ascii_lowercase();
    DAYS.iter()
        .find(|(short, long, _)| key == *short || key == *long)
        .map(|(_, _, d)| *d)
        .ok_or_else(|| format!("{s:?} is not a weekday (Mon, Tue, Wed, Thu, Fri, Sat, Sun)"))
}

fn time(s: &str) -> Result<Time, String> {
    let (h, m) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not a time of day HH:MM"))?;
    let h: i8 = h
        .parse()
        .map_err(|_| format!("{s:?} is not a time of day HH:MM"))?;
    let m: i8 = m
        .parse()
        .map_err(|_| format!("{s:?} is not a time of day HH:MM"))?;
    if h == 24 && m == 0 {
        return Ok(Time::MAX);
    }
    Time::new(h, m, 0, 0).map_err(|_| format!("{s:?} is not a time of day HH:MM"))
}

impl Window {
    /// Parse `DAYS START-END [ZONE]`; DAYS is `Mon-Fri`, `Sat,Sun`, `daily` or `*`; ZONE is an
    /// IANA name (default UTC).
    pub(crate) fn parse(text: &str) -> Result<Window, String> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(format!(
                "{text:?} is not a window like \"Mon-Fri 01:00-05:00 Europe/Berlin\""
            ));
        }
        let mut days = [false; 7];
        let spec = parts[0];
        if spec.eq_ignore_ascii_case("daily") || spec == "*" {
            days = [true; 7];
        } else {
            for item in spec.split(',') {
                match item.split_once('-') {
                    Some((a, b)) => {
                        let (a, b) = (day(a)?, day(b)?);
                        let mut d = a;
                        loop {
                            days[d.to_monday_zero_offset() as usize] = true;
                            if d == b {
                                break;
                            }
                            d = d.next();
                        }
                    }
                    None => days[day(item)?.to_monday_zero_offset() as usize] = true,
                }
            }
        }
        let (s, e) = parts[1]
            .split_once('-')
            .ok_or_else(|| format!("{:?} is not a time range HH:MM-HH:MM", parts[1]))?;
        let (start, end) = (time(s)?, time(e)?);
        if start == end {
            return Err(format!(
                "{:?}: a window must not start and end at the same time",
                parts[1]
            ));
        }
        let tz = match parts.get(2) {
            Some(name) => TimeZone::get(name).map_err(|_| format!("{name:?} is not a known time zone (use an IANA name such as Europe/Berlin or UTC)"))?,
            None => TimeZone::UTC,
        };
        Ok(Window {
            days,
            start,
            end,
            tz,
            text: text.to_string(),
        })
    }

    fn crosses_midnight(&self) -> bool {
        self.end <= self.start
    }

    /// Whether `now` is inside the window.
    pub(crate) fn contains(&self, now: Timestamp) -> bool {
        let z = now.to_zoned_datetime(self.tz.clone());
        let t = z.time();
        let today = self.days[z.weekday().to_monday_zero_offset() as usize];
        if !self.crosses_midnight() {
            return today && t >= self.start && t < self.end;
        }
        let yesterday = self.days[z.weekday().previous().to_monday_zero_offset() as usize];
        (today && t >= self.start) || (yesterday && t < self.end)
    }

    /// The next opening at or after `now` (now itself when inside), within two weeks.
    pub(crate) fn next_open(&self, now: Timestamp) -> Option<Timestamp> {
        if self.contains(now) {
            return Some(now);
        }
        let z: ZonedDateTime = now.to_zoned_datetime(self.tz.clone());
        for offset in 0..15 {
            let date = z.date().checked_add(offset.days()).ok()?;
            if !self.days[date.weekday().to_monday_zero_offset() as usize] {
                continue;
            }
            let open = date
                .to_datetime(self.start)
                .to_zoned_datetime(self.tz.clone())
                .ok()?;
            if open.timestamp() >= now {
                return Some(open.timestamp());
            }
        }
        None
    }

    /// When the window that contains `now` closes.
    #[cfg(test)]
    pub(crate) fn closes_after(&self, now: Timestamp) -> Option<Timestamp> {
        if !self.contains(now) {
            return None;
        }
        let z = now.to_zoned_datetime(self.tz.clone());
        let date = if self.crosses_midnight() && z.time() >= self.start {
            z.date().tomorrow().ok()?
        } else {
            z.date()
        };
        let close = if self.end == Time::MAX {
            date.tomorrow().ok()?.to_datetime(Time::MIN)
        } else {
            date.to_datetime(self.end)
        };
        close
            .to_zoned_datetime(self.tz.clone())
            .ok()
            .map(|z| z.timestamp())
    }
}

/// Inside any of the windows (no windows: always).
pub(crate) fn any_contains(windows: &[Window], now: Timestamp) -> bool {
    windows.is_empty() || windows.iter().any(|w| w.contains(now))
}

/// When the next window opens, told in that window's own zone as well as in UTC, the way a
/// change board reads it: `Sat 2026-12-05 01:00 Europe/Berlin (00:00 UTC)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Opening {
    pub at: Timestamp,
    pub window: Window,
}

impl Opening {
    /// The earliest opening of any window at or after `now`; None without windows.
    pub(crate) fn next(windows: &[Window], now: Timestamp) -> Option<Opening> {
        windows
            .iter()
            .filter_map(|w| {
                w.next_open(now).map(|at| Opening {
                    at,
                    window: w.clone(),
                })
            })
            .min_by_key(|o| o.at)
    }
}

impl fmt::Display for Opening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local = self.at.to_zoned_datetime(self.window.tz.clone());
        let zone = self.window.tz.iana_name().unwrap_or("local");
        let utc = self.at.to_zoned_datetime(TimeZone::UTC);
        write!(f, "{} {}", local.strftime("%a %Y-%m-%d %H:%M"), zone)?;
        if zone != "UTC" {
            if utc.date() == local.date() {
                write!(f, " ({} UTC)", utc.strftime("%H:%M"))?;
            } else {
                write!(f, " ({} UTC)", utc.strftime("%a %H:%M"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_opening_is_told_in_its_zone_and_in_utc() {
        let w = |s: &str| Window::parse(s).unwrap();
        let windows = [w("Sat 01:00-05:00 Europe/Berlin"), w("Sun 03:00-04:00 UTC")];
        // Friday 12:00 UTC: Berlin's Saturday 01:00 (CET, UTC+1) comes first.
        let next = Opening::next(&windows, ts("2026-12-04T12:00:00Z")).unwrap();
        assert_eq!(next.at, ts("2026-12-05T00:00:00Z"));
        assert_eq!(
            next.to_string(),
            "Sat 2026-12-05 01:00 Europe/Berlin (00:00 UTC)"
        );
        // Saturday 06:00 UTC: Sunday's UTC window is next, said once.
        let next = Opening::next(&windows, ts("2026-12-05T06:00:00Z")).unwrap();
        assert_eq!(next.to_string(), "Sun 2026-12-06 03:00 UTC");
        // Across midnight in UTC: Tokyo's 08:00 Monday is Sunday 23:00 UTC.
        let tokyo = [w("Mon 08:00-10:00 Asia/Tokyo")];
        let next = Opening::next(&tokyo, ts("2026-12-04T12:00:00Z")).unwrap();
        assert_eq!(
            next.to_string(),
            "Mon 2026-12-07 08:00 Asia/Tokyo (Sun 23:00 UTC)"
        );
        assert!(Opening::next(&[], ts("2026-12-04T12:00:00Z")).is_none());
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn weekday_window_in_a_zone() {
        let w = Window::parse("Mon-Fri 01:00-05:00 Europe/Berlin").unwrap();
        // 2026-11-24 is a Tuesday; Berlin is UTC+1 in November.
        assert!(w.contains(ts("2026-11-24T00:30:00Z")), "01:30 Berlin");
        assert!(!w.contains(ts("2026-11-23T23:59:00Z")), "00:59 Berlin");
        assert!(
            !w.contains(ts("2026-11-24T04:00:00Z")),
            "05:00 Berlin is the end"
        );
        assert!(!w.contains(ts("2026-11-28T01:00:00Z")), "Saturday");
        assert_eq!(
            w.next_open(ts("2026-11-24T12:00:00Z")),
            Some(ts("2026-11-25T00:00:00Z"))
        );
        assert_eq!(
            w.next_open(ts("2026-11-27T12:00:00Z")),
            Some(ts("2026-11-30T00:00:00Z")),
            "Friday noon -> Monday"
        );
        assert_eq!(
            w.closes_after(ts("2026-11-24T01:00:00Z")),
            Some(ts("2026-11-24T04:00:00Z"))
        );
    }

    #[test]
    fn window_across_midnight() {
        let w = Window::parse("Sat 22:00-02:00 UTC").unwrap();
        assert!(w.contains(ts("2026-11-28T23:00:00Z")), "Saturday 23:00");
        assert!(
            w.contains(ts("2026-11-29T01:00:00Z")),
            "Sunday 01:00 belongs to Saturday's window"
        );
        assert!(!w.contains(ts("2026-11-29T23:00:00Z")), "Sunday 23:00");
        assert_eq!(
            w.closes_after(ts("2026-11-28T23:00:00Z")),
            Some(ts("2026-11-29T02:00:00Z"))
        );
    }

    #[test]
    fn daylight_saving_is_wall_clock() {
        let w = Window::parse("daily 02:30-03:30 America/New_York").unwrap();
        // 2026-07-01 02:45 EDT = 06:45Z; 2026-12-01 02:45 EST = 07:45Z.
        assert!(w.contains(ts("2026-07-01T06:45:00Z")));
        assert!(w.contains(ts("2026-12-01T07:45:00Z")));
        assert!(!w.contains(ts("2026-12-01T06:45:00Z")));
    }

    #[test]
    fn bad_windows_are_explained() {
        for (text, needle) in [
            ("Mon-Fri", "not a window"),
            ("Mon-Fry 01:00-05:00", "weekday"),
            ("Mon 25:00-05:00", "time of day"),
            ("Mon 01:00-05:00 Mars/Olympus", "time zone"),
            ("Mon 01:00-01:00", "same time"),
        ] {
            let e = Window::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
