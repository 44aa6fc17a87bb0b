//! Progress bars on stderr (indicatif): bytes, rate, ETA and file count, drawn only when
//! stderr is a terminal. Otherwise transfers report nothing while they run.

use std::io::IsTerminal;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use vault_client::files::progress::{NoProgress, Progress};

/// A bar for bytes with the file count in its message.
#[derive(Debug)]
struct Bar {
    bar: ProgressBar,
    files: std::sync::atomic::AtomicU64,
    total_files: std::sync::atomic::AtomicU64,
}

impl Bar {
    fn message(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.bar.set_message(format!(
            "{}/{} files",
            self.files.load(Relaxed),
            self.total_files.load(Relaxed)
        ));
    }
}

impl Progress for Bar {
    fn begin(&self, files: u64, bytes: u64) {
        self.total_files
            .store(files, std::sync::atomic::Ordering::Relaxed);
        self.bar.set_length(bytes);
        self.message();
    }

    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    fn file_done(&self) {
        self.files
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.message();
    }

    fn note(&self, text: &str) {
        self.bar
            .suspend(|| eprintln!("{}", crate::escape::shown(text)));
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// A progress reporter for a transfer: a bar on a TTY, else one that only prints notes.
pub fn for_transfer() -> Arc<dyn Progress> {
    if !std::io::stderr().is_terminal() {
        return Arc::new(Quiet);
    }
    let style = ProgressStyle::with_template(
        "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    let bar =
        ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr()).with_style(style);
    Arc::new(Bar {
        bar,
        files: 0.into(),
        total_files: 0.into(),
    })
}

/// No bar; retries and skipped files are still worth a line on stderr.
#[derive(Debug)]
struct Quiet;

impl Progress for Quiet {
    fn begin(&self, files: u64, bytes: u64) {
        NoProgress.begin(files, bytes);
    }
    fn advance(&self, _bytes: u64) {}
    fn file_done(&self) {}
    fn note(&self, text: &str) {
        eprintln!("{}", crate::escape::shown(text));
    }
}
