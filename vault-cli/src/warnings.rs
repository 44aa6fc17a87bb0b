//! Warnings that must not fail the command (key work done for other group members):
//! collected while it runs and printed on stderr, one `warning: …` line each, after the
//! command's output or its `error: …` line, so that a failed command's first line on
//! stderr is still its error.

use std::io::Write;
use std::sync::Mutex;

static PENDING: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Queues `warnings` to be printed when the command ends.
pub fn defer(warnings: Vec<String>) {
    PENDING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(warnings);
}

/// The queued warnings as lines, each once.
fn take_lines() -> Vec<String> {
    std::mem::take(&mut *PENDING.lock().unwrap_or_else(|e| e.into_inner()))
        .into_iter()
        .map(|w| format!("warning: {}", crate::escape::shown(&w)))
        .collect()
}

/// Prints the queued warnings on stderr (a closed stderr loses them, nothing more).
pub fn print() {
    let mut err = std::io::stderr().lock();
    for line in take_lines() {
        let _ = writeln!(err, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_warning_is_one_line_printed_once() {
        defer(vec!["could not give bob\nthe key".into(), "second".into()]);
        assert_eq!(
            take_lines(),
            [
                "warning: $'could not give bob\\nthe key'",
                "warning: second"
            ]
        );
        assert!(take_lines().is_empty());
    }
}
