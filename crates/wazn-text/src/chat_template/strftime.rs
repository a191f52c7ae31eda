//! `strftime_now(format)`: the current time formatted like Python's `datetime.strftime`, which
//! some templates use to write today's date into the system prompt (Llama 3.x). The time is
//! UTC; the C-locale names are used.

use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

pub(crate) fn strftime_now(format: String) -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_utc(&format, seconds)
}

/// A moment in UTC, broken into calendar fields.
struct CivilTime {
    year: i64,
    /// 1..=12
    month: u32,
    /// 1..=31
    day: u32,
    /// 0 = Sunday
    weekday: u32,
    /// 1..=366
    day_of_year: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

fn civil_time(unix_seconds: u64) -> CivilTime {
    let days = (unix_seconds / 86_400) as i64;
    let secs_of_day = (unix_seconds % 86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    let day_of_year = (days - days_from_civil(year, 1, 1) + 1) as u32;
    CivilTime {
        year,
        month,
        day,
        // 1970-01-01 was a Thursday.
        weekday: ((days + 4).rem_euclid(7)) as u32,
        day_of_year,
        hour: secs_of_day / 3600,
        minute: secs_of_day / 60 % 60,
        second: secs_of_day % 60,
    }
}

/// Proleptic Gregorian date of a day count from 1970-01-01, computed in 400-year eras
/// (146 097 days each) counted from 0000-03-01, so that leap days fall at an era's year end.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days from 0000-03-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153; // 0 = March
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Python's (C library's) strftime directives, plus glibc's `%-d` style that drops the padding.
/// An unknown directive is written as it stands, as glibc does.
fn format_utc(format: &str, unix_seconds: u64) -> String {
    let t = civil_time(unix_seconds);
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut directive = chars.next();
        let unpadded = directive == Some('-');
        if unpadded {
            directive = chars.next();
        }
        let num = |n: u32, width: usize| {
            if unpadded {
                n.to_string()
            } else {
                format!("{n:0width$}")
            }
        };
        let month_name = MONTHS[(t.month - 1) as usize];
        let weekday_name = WEEKDAYS[t.weekday as usize];
        match directive {
            Some('Y') => out.push_str(&t.year.to_string()),
            Some('y') => out.push_str(&num(t.year.rem_euclid(100) as u32, 2)),
            Some('m') => out.push_str(&num(t.month, 2)),
            Some('d') => out.push_str(&num(t.day, 2)),
            Some('e') => out.push_str(&format!("{:>2}", t.day)),
            Some('j') => out.push_str(&num(t.day_of_year, 3)),
            Some('H') => out.push_str(&num(t.hour, 2)),
            Some('I') => out.push_str(&num((t.hour + 11) % 12 + 1, 2)),
            Some('M') => out.push_str(&num(t.minute, 2)),
            Some('S') => out.push_str(&num(t.second, 2)),
            Some('p') => out.push_str(if t.hour < 12 { "AM" } else { "PM" }),
            Some('B') => out.push_str(month_name),
            Some('b') | Some('h') => out.push_str(&month_name[..3]),
            Some('A') => out.push_str(weekday_name),
            Some('a') => out.push_str(&weekday_name[..3]),
            Some('w') => out.push_str(&t.weekday.to_string()),
            Some('F') => out.push_str(&format!("{}-{:02}-{:02}", t.year, t.month, t.day)),
            Some('T') => out.push_str(&format!("{:02}:{:02}:{:02}", t.hour, t.minute, t.second)),
            Some('Z') => out.push_str("UTC"),
            Some('z') => out.push_str("+0000"),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                if unpadded {
                    out.push('-');
                }
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::format_utc;

    #[derive(serde::Deserialize)]
    struct Case {
        unix_seconds: u64,
        format: String,
        expected: String,
    }

    /// Python's `time.strftime(format, time.gmtime(unix_seconds))` for dates around leap days,
    /// century years and year ends (written by tests/gen_text_fixtures.py).
    #[test]
    fn formats_as_python_strftime() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/strftime_cases.json"
        );
        let text = std::fs::read_to_string(path).expect("fixture tests/data/strftime_cases.json");
        let cases: Vec<Case> = serde_json::from_str(&text).expect("fixture parses");
        assert!(cases.len() > 10);
        for case in &cases {
            assert_eq!(
                format_utc(&case.format, case.unix_seconds),
                case.expected,
                "{} at {}",
                case.format,
                case.unix_seconds
            );
        }
    }
}
