//! Standard output for everything `vault` prints. A write returns its error instead of
//! panicking, and `main` ends a command whose reader went away (`vault ls | head -1`)
//! quietly: exit 0, nothing on stderr, as ripgrep does. Printing through
//! [`outln!`] is the rule (`print!`/`println!` are denied in this crate).

use std::fmt;
use std::io::{self, Write};

/// Writes one line to stdout: `outln!("{name}")?`. Returns the write's `io::Error`.
macro_rules! outln {
    () => {
        $crate::out::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// One line on stdout, as [`outln!`] writes it.
pub fn line(args: fmt::Arguments<'_>) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_fmt(args)?;
    out.write_all(b"\n")
}

/// Whether `e` failed because stdout's reader went away (a broken pipe anywhere in its
/// chain of causes).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<io::Error>())
        .any(|io| io.kind() == io::ErrorKind::BrokenPipe)
}
