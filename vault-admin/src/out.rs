//! Standard output for everything `vault-admin` prints. A write returns its error instead
//! of panicking, and `main` ends a command whose reader went away (`vault-admin audit |
//! head -1`) quietly: exit 0, nothing on stderr. Printing through [`out!`]/[`outln!`] is
//! the rule (`print!`/`println!` are denied in this crate).

use std::fmt;
use std::io::{self, Write};

/// Writes to stdout: `out!("{text}")?`. Returns the write's `io::Error`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*), false)
    };
}
pub(crate) use out;

/// Writes one line to stdout: `outln!("{name}")?`. Returns the write's `io::Error`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*), true)
    };
}
pub(crate) use outln;

/// Text on stdout, as [`out!`] and [`outln!`] write it.
pub fn write(args: fmt::Arguments<'_>, line: bool) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_fmt(args)?;
    if line {
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Whether `e` failed because stdout's reader went away.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<io::Error>())
        .any(|io| io.kind() == io::ErrorKind::BrokenPipe)
}
