//! How `vault-admin` shows things: aligned tables for people, JSON (`--json`) for
//! scripts, and times. Times are Unix seconds inside and ISO-8601 UTC on screen; the
//! calendar arithmetic is done here (proleptic Gregorian, no time-zone database), which
//! is all an audit log or a session list needs.

use serde::Serialize;

use crate::out::{out, outln};
use vault_proto::calendar::{civil_from_days, days_from_civil};

/// A table printed with aligned columns under an upper-case header.
#[derive(Debug)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; cells beyond the header's width are dropped, missing ones left blank.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text: one line per row, columns two spaces apart, no trailing blanks.
    pub fn render(&self) -> String {
        let columns = self.headers.len();
        let cell = |row: &[String], i: usize| row.get(i).cloned().unwrap_or_default();
        let header: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, width) in widths.iter_mut().enumerate() {
                *width = (*width).max(cell(row, i).chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate().take(columns) {
                let text = cell(row, i);
                line.push_str(&text);
                if i + 1 < columns {
                    let pad = width.saturating_sub(text.chars().count()) + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    pub fn print(&self) -> std::io::Result<()> {
        out!("{}", self.render())
    }
}

/// `key: value` lines with the values aligned.
pub fn render_fields(fields: &[(&str, String)]) -> String {
    let width = fields
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    fields
        .iter()
        .map(|(k, v)| {
            let pad = width - k.chars().count() + 1;
            format!("{k}:{}{v}\n", " ".repeat(pad))
        })
        .collect()
}

pub fn print_fields(fields: &[(&str, String)]) -> std::io::Result<()> {
    out!("{}", render_fields(fields))
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

pub use vault_proto::units::plural;

/// `text`, or `-` for nothing.
pub fn or_dash(text: Option<&str>) -> &str {
    match text {
        Some(t) if !t.is_empty() => t,
        _ => "-",
    }
}

/// `yes` or `no`.
pub fn yes_no(flag: bool) -> &'static str {
    if flag { "yes" } else { "no" }
}

/// A byte count for people: `10.0 GiB`.
pub fn size(bytes: i64) -> String {
    vault_proto::units::format_size(u64::try_from(bytes).unwrap_or(0))
}

/// Unix seconds as ISO-8601 UTC: `2026-01-31T12:00:00Z`.
pub fn iso_time(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A span of seconds for people, at most two units: `42s`, `5m 3s`, `1h 2m`, `3d 4h`.
pub fn duration(secs: i64) -> String {
    let secs = secs.max(0);
    let units = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let Some(first) = units.iter().position(|(n, _)| secs >= *n) else {
        return "0s".into();
    };
    let (n1, u1) = units[first];
    let mut out = format!("{}{u1}", secs / n1);
    if let Some(&(n2, u2)) = units.get(first + 1) {
        let rest = secs % n1 / n2;
        if rest > 0 {
            out.push_str(&format!(" {rest}{u2}"));
        }
    }
    out
}

/// The current time in Unix seconds.
pub fn now() -> i64 {
    vault_server::db::now()
}

/// Reads a point in time: Unix seconds (`1767225600`), a span back from `now` (`30s`,
/// `10m`, `2h`, `7d`, `2w`, or combined like `1h30m`), or an RFC 3339 date-time
/// (`2026-01-31T12:00:00Z`, `2026-01-31T13:00:00+01:00`, or a bare date `2026-01-31`
/// meaning its midnight UTC).
pub fn parse_time(text: &str, now: i64) -> Result<i64, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "invalid time {text:?}: use Unix seconds, a span back from now (30m, 2h, 7d) \
             or an RFC 3339 date-time (2026-01-31T12:00:00Z)"
        )
    };
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().map_err(|_| bad());
    }
    if let Some(span) = parse_span(t) {
        return Ok(now.saturating_sub(span));
    }
    parse_rfc3339(t).ok_or_else(bad)
}

/// `1h30m` → 5400. `None` unless the whole text is number–unit pairs.
pub fn parse_span(text: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        let unit = match rest[digits..].chars().next()? {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        rest = &rest[digits + 1..];
    }
    Some(total)
}

/// `YYYY-MM-DD[(T|t| )HH:MM:SS[.frac](Z|z|±HH:MM)]` → Unix seconds.
fn parse_rfc3339(text: &str) -> Option<i64> {
    let num = |s: &str| -> Option<i64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let date = text.get(..10)?;
    let (y, m, d) = (
        num(date.get(0..4)?)?,
        num(date.get(5..7)?)?,
        num(date.get(8..10)?)?,
    );
    if &date[4..5] != "-" || &date[7..8] != "-" || !(1..=12).contains(&m) {
        return None;
    }
    if d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    let rest = &text[10..];
    if rest.is_empty() {
        return Some(days * 86_400);
    }
    let sep = rest.chars().next()?;
    if !matches!(sep, 'T' | 't' | ' ') {
        return None;
    }
    let time = rest.get(1..9)?;
    let (hh, mm, ss) = (
        num(time.get(0..2)?)?,
        num(time.get(3..5)?)?,
        num(time.get(6..8)?)?,
    );
    if &time[2..3] != ":" || &time[5..6] != ":" || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let mut zone = &rest[9..];
    if let Some(frac) = zone.strip_prefix('.') {
        let digits = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        if digits == 0 {
            return None;
        }
        zone = &frac[digits..];
    }
    let offset = match zone {
        "Z" | "z" => 0,
        _ => {
            let sign = match zone.get(..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let (oh, om) = (num(zone.get(1..3)?)?, num(zone.get(4..6)?)?);
            if zone.len() != 6 || &zone[3..4] != ":" || oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss.min(59) - offset)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn iso_times() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_time(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso_time(1_767_225_599), "2025-12-31T23:59:59Z");
        assert_eq!(iso_time(1_800_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(iso_time(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn seconds_and_spans() {
        assert_eq!(parse_time("1767225600", NOW), Ok(1_767_225_600));
        assert_eq!(parse_time("0", NOW), Ok(0));
        assert_eq!(parse_time("30s", NOW), Ok(NOW - 30));
        assert_eq!(parse_time("10m", NOW), Ok(NOW - 600));
        assert_eq!(parse_time("2h", NOW), Ok(NOW - 7200));
        assert_eq!(parse_time("7d", NOW), Ok(NOW - 7 * 86_400));
        assert_eq!(parse_time("2w", NOW), Ok(NOW - 14 * 86_400));
        assert_eq!(parse_time(" 1h30m ", NOW), Ok(NOW - 5400));
    }

    #[test]
    fn rfc3339_date_times() {
        assert_eq!(parse_time("2026-01-01T00:00:00Z", NOW), Ok(1_767_225_600));
        assert_eq!(parse_time("2026-01-01", NOW), Ok(1_767_225_600));
        assert_eq!(parse_time("2026-01-01t00:00:00z", NOW), Ok(1_767_225_600));
        assert_eq!(
            parse_time("2026-01-01 01:00:00+01:00", NOW),
            Ok(1_767_225_600)
        );
        assert_eq!(
            parse_time("2025-12-31T19:00:00-05:00", NOW),
            Ok(1_767_225_600)
        );
        assert_eq!(
            parse_time("2026-01-01T00:00:00.250Z", NOW),
            Ok(1_767_225_600)
        );
        assert_eq!(parse_time("2000-02-29T00:00:00Z", NOW), Ok(951_782_400));
    }

    #[test]
    fn bad_times_say_what_is_accepted() {
        for bad in [
            "",
            "soon",
            "-5",
            "10x",
            "h",
            "1.5h",
            "2026-13-01",
            "2026-02-30",
            "2025-02-29",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00+1:00",
            "2026-01-01T00:00:00.Z",
            "2026/01/01",
            "99999999999999999999",
        ] {
            let err = parse_time(bad, NOW).expect_err(bad);
            assert!(err.contains("RFC 3339"), "{bad}: {err}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(duration(-3), "0s");
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(60), "1m");
        assert_eq!(duration(303), "5m 3s");
        assert_eq!(duration(3720), "1h 2m");
        assert_eq!(duration(3601), "1h");
        assert_eq!(duration(3 * 86_400 + 4 * 3600 + 5), "3d 4h");
    }

    #[test]
    fn tables_align_and_trim() {
        let mut t = Table::new(&["USER", "EMAIL", "LOCKED"]);
        t.row(vec!["bob".into(), "bob@example.org".into(), "no".into()]);
        t.row(vec!["alexandra".into(), "a@b.c".into()]);
        assert_eq!(
            t.render(),
            "USER       EMAIL            LOCKED\n\
             bob        bob@example.org  no\n\
             alexandra  a@b.c\n"
        );
    }

    #[test]
    fn fields_align() {
        assert_eq!(
            render_fields(&[("user", "bob".into()), ("live sessions", "2".into())]),
            "user:          bob\nlive sessions: 2\n"
        );
    }

    #[test]
    fn small_helpers() {
        assert_eq!(or_dash(None), "-");
        assert_eq!(or_dash(Some("")), "-");
        assert_eq!(or_dash(Some("x")), "x");
        assert_eq!(yes_no(true), "yes");
        assert_eq!(size(10 << 30), "10.0 GiB");
        assert_eq!(size(-1), "0 B");
    }
}
