//! The result table: one row per figure with its reference (a ceiling measured in the same
//! run, or a target), the ratio to it and a verdict; printed aligned or as JSON.

use serde::Serialize;

/// How a figure compares with its reference.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    /// A ceiling or a figure with no target.
    Info,
    /// Not measured (the reason is in the row's note).
    NotAvailable,
}

/// One row of the table.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub figure: String,
    pub value: Option<f64>,
    pub unit: &'static str,
    /// What the value is compared with, for people (`≥ 0.9 × quinn`, `≤ 64 MiB`).
    pub reference: String,
    /// `value / reference value`.
    pub ratio: Option<f64>,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Row {
    /// A figure with nothing to compare with.
    pub fn info(figure: &str, value: f64, unit: &'static str, reference: &str) -> Row {
        Row {
            figure: figure.to_string(),
            value: Some(value),
            unit,
            reference: reference.to_string(),
            ratio: None,
            verdict: Verdict::Info,
            note: None,
        }
    }

    /// A figure that must reach at least `min_ratio × base`.
    pub fn at_least(
        figure: &str,
        value: f64,
        unit: &'static str,
        base: f64,
        min_ratio: f64,
        reference: &str,
    ) -> Row {
        let ratio = value / base;
        Row {
            figure: figure.to_string(),
            value: Some(value),
            unit,
            reference: reference.to_string(),
            ratio: Some(ratio),
            verdict: if ratio >= min_ratio {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            note: None,
        }
    }

    /// A figure that must stay at or below `limit`.
    pub fn at_most(
        figure: &str,
        value: f64,
        unit: &'static str,
        limit: f64,
        reference: &str,
    ) -> Row {
        let ratio = value / limit;
        Row {
            figure: figure.to_string(),
            value: Some(value),
            unit,
            reference: reference.to_string(),
            ratio: Some(ratio),
            verdict: if ratio <= 1.0 {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            note: None,
        }
    }

    /// A figure that was not measured, and why.
    pub fn not_available(figure: &str, unit: &'static str, reference: &str, why: &str) -> Row {
        Row {
            figure: figure.to_string(),
            value: None,
            unit,
            reference: reference.to_string(),
            ratio: None,
            verdict: Verdict::NotAvailable,
            note: Some(why.to_string()),
        }
    }
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub runs: usize,
    pub big_file_bytes: u64,
    pub small_files: usize,
    pub chat_messages: usize,
    pub server_limits: String,
    pub rows: Vec<Row>,
}

impl Report {
    /// The aligned text table.
    pub fn table(&self) -> String {
        let header = ["figure", "value", "reference", "ratio", "result"];
        let cells: Vec<[String; 5]> = self
            .rows
            .iter()
            .map(|row| {
                [
                    row.figure.clone(),
                    match row.value {
                        Some(v) => format!("{} {}", number(v), row.unit),
                        None => "—".to_string(),
                    },
                    row.reference.clone(),
                    row.ratio
                        .map_or_else(|| "—".to_string(), |r| format!("{r:.2}")),
                    match row.verdict {
                        Verdict::Pass => "pass".to_string(),
                        Verdict::Fail => "FAIL".to_string(),
                        Verdict::Info => String::new(),
                        Verdict::NotAvailable => format!(
                            "not available ({})",
                            row.note.as_deref().unwrap_or_default()
                        ),
                    },
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &cells {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = format!(
            "vault-bench ({} mode, median of {} run(s); {} MiB file, {} small files, {} chat messages; server limits: {})\n",
            self.mode,
            self.runs,
            self.big_file_bytes >> 20,
            self.small_files,
            self.chat_messages,
            self.server_limits
        );
        let line = |cells: &[String]| {
            let mut text = String::new();
            for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
                let pad = width.saturating_sub(cell.chars().count());
                // Numbers right-aligned, words left-aligned.
                if i == 1 || i == 3 {
                    text.push_str(&" ".repeat(pad));
                    text.push_str(cell);
                } else {
                    text.push_str(cell);
                    text.push_str(&" ".repeat(pad));
                }
                text.push_str("  ");
            }
            text.trim_end().to_string() + "\n"
        };
        out.push_str(&line(&header.map(String::from)));
        out.push_str(&line(&widths.map(|w| "-".repeat(w))));
        for row in &cells {
            out.push_str(&line(row));
        }
        for row in &self.rows {
            if row.verdict != Verdict::NotAvailable
                && let Some(note) = &row.note
            {
                out.push_str(&format!("  {}: {note}\n", row.figure));
            }
        }
        out
    }
}

/// A figure with three significant digits or so.
fn number(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The `p` quantile of `values` (`0 < p ≤ 1`) by the nearest rank: the smallest value
/// that at least `p` of them do not exceed.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[7.0]), 7.0);
    }

    #[test]
    fn percentile_by_nearest_rank() {
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 0.99), 99.0);
        assert_eq!(percentile(&hundred, 0.5), 50.0);
        assert_eq!(percentile(&hundred, 1.0), 100.0);
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 0.99), 3.0);
        assert_eq!(percentile(&[7.0], 0.01), 7.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn verdicts_follow_the_targets() {
        assert_eq!(
            Row::at_least("put", 90.0, "MB/s", 100.0, 0.9, "").verdict,
            Verdict::Pass
        );
        assert_eq!(
            Row::at_least("put", 89.0, "MB/s", 100.0, 0.9, "").verdict,
            Verdict::Fail
        );
        assert_eq!(
            Row::at_most("rss", 64.0, "MiB", 64.0, "").verdict,
            Verdict::Pass
        );
        assert_eq!(
            Row::at_most("rss", 65.0, "MiB", 64.0, "").verdict,
            Verdict::Fail
        );
    }

    #[test]
    fn table_aligns_columns_and_explains_missing_rows() {
        let report = Report {
            mode: "quick",
            runs: 1,
            big_file_bytes: 64 << 20,
            small_files: 500,
            chat_messages: 200,
            server_limits: "defaults".into(),
            rows: vec![
                Row::info("raw quinn", 812.25, "MB/s", "ceiling"),
                Row::not_available("first sync", "files/s", "≥ 2000", "vault sync missing"),
            ],
        };
        let table = report.table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert!(lines[3].starts_with("raw quinn   "), "{table}");
        assert!(lines[3].contains("812 MB/s"), "{table}");
        assert!(
            lines[4].ends_with("not available (vault sync missing)"),
            "{table}"
        );
        // The value column is right-aligned: both data rows end it at the same place.
        let end = lines[3].find(" MB/s").expect("unit") + " MB/s".len();
        assert_eq!(
            lines[4].chars().position(|c| c == '—').map(|i| i + 1),
            Some(end),
            "{table}"
        );
    }
}
