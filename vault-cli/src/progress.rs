//! Progress bars on stderr (indicatif): bytes, rate, ETA and file count, drawn only when
//! stderr is a terminal. Otherwise transfers report nothing while they run. A watch's
//! bar turns into a one-line status between rounds ([`StatusLine`]).

use std::io::IsTerminal;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use vault_client::files::progress::{NoProgress, Progress};

/// A bar for bytes with the file count in its message.
struct Bar {
    bar: ProgressBar,
    /// The bar's look, set again when a watch's round begins.
    style: ProgressStyle,
    files: std::sync::atomic::AtomicU64,
    total_files: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Bar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bar")
            .field("bar", &self.bar)
            .finish_non_exhaustive()
    }
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
        use std::sync::atomic::Ordering::Relaxed;
        self.total_files.store(files, Relaxed);
        self.files.store(0, Relaxed);
        self.bar.set_length(bytes);
        self.bar.set_position(0);
        self.bar.reset_eta();
        self.bar.set_style(self.style.clone());
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

    fn retreat(&self, bytes: u64) {
        self.bar.dec(bytes);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// A progress reporter for a transfer: a bar on a TTY, else one that only prints notes.
pub fn for_transfer() -> Arc<dyn Progress> {
    match Bar::on_terminal() {
        Some(bar) => Arc::new(bar),
        None => Arc::new(Quiet),
    }
}

/// Progress for an input of unknown length (`vault put - REMOTE`): the bytes read so far and
/// the rate, on a terminal.
pub fn for_pipe_input() -> Arc<dyn Progress> {
    if !std::io::stderr().is_terminal() {
        return Arc::new(Quiet);
    }
    let style = ProgressStyle::with_template(
        "{spinner} {bytes} from standard input, {binary_bytes_per_sec}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(style);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    Arc::new(Counter(bar))
}

/// A count of bytes with no total ([`for_pipe_input`]).
#[derive(Debug)]
struct Counter(ProgressBar);

impl Progress for Counter {
    fn begin(&self, _files: u64, _bytes: u64) {}

    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }

    fn file_done(&self) {}

    fn note(&self, text: &str) {
        self.0
            .suspend(|| eprintln!("{}", crate::escape::shown(text)));
    }

    fn retreat(&self, bytes: u64) {
        self.0.dec(bytes);
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

impl Bar {
    /// A bar on stderr, `None` when stderr is not a terminal.
    fn on_terminal() -> Option<Bar> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let style = ProgressStyle::with_template(
            "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
            .with_style(style.clone());
        Some(Bar {
            bar,
            style,
            files: 0.into(),
            total_files: 0.into(),
        })
    }
}

/// A watch's line on a terminal: the transfer bar while a round moves something, else
/// what the watch is doing and for how long (`watching … · in step for 3m`).
#[derive(Debug)]
pub struct StatusLine {
    bar: Bar,
    /// What the line said last, so a round that changes nothing does not restart its
    /// clock.
    said: std::sync::Mutex<String>,
}

impl StatusLine {
    /// `None` when stderr is not a terminal.
    pub fn on_terminal() -> Option<Arc<StatusLine>> {
        Bar::on_terminal().map(|bar| {
            Arc::new(StatusLine {
                bar,
                said: Default::default(),
            })
        })
    }

    /// Shows `text` (names in it already escaped) followed by how long it has held: since
    /// this call, unless the line said the same before and `moved` is false.
    pub fn idle(&self, text: &str, moved: bool) {
        let mut said = self.said.lock().unwrap_or_else(|e| e.into_inner());
        let style = ProgressStyle::with_template("{msg} for {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        // Style first: a frame between the two is short (`1/1 files for 0s`), not the
        // bar with this line after it.
        self.bar.bar.set_style(style);
        self.bar.bar.set_message(text.to_owned());
        if moved || *said != text {
            self.bar.bar.reset_elapsed();
            *said = text.to_owned();
        }
        self.bar
            .bar
            .enable_steady_tick(std::time::Duration::from_secs(1));
    }

    /// Runs `print` with the line cleared, then draws it again.
    pub fn suspend<R>(&self, print: impl FnOnce() -> R) -> R {
        self.bar.bar.suspend(print)
    }
}

impl Progress for StatusLine {
    /// A round with something to do shows the transfer bar; one with nothing leaves the
    /// line as it is.
    fn begin(&self, files: u64, bytes: u64) {
        if files > 0 {
            self.bar.bar.disable_steady_tick();
            self.bar.begin(files, bytes);
        }
    }
    fn advance(&self, bytes: u64) {
        self.bar.advance(bytes);
    }
    fn file_done(&self) {
        self.bar.file_done();
    }
    fn note(&self, text: &str) {
        self.bar.note(text);
    }
    fn retreat(&self, bytes: u64) {
        self.bar.retreat(bytes);
    }
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
