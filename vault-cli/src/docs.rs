//! `vault completions SHELL` and `vault man DIR`: the shell completion scripts and the
//! manual pages, both generated from the clap definitions in `args`, so they never
//! disagree with what the command accepts.

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

use crate::args::{Cli, Command};

/// Runs `command` if it is one of these two; `None` otherwise.
pub fn run(command: &Command) -> Option<anyhow::Result<()>> {
    match command {
        Command::Completions { shell } => Some(completions(*shell)),
        Command::Man { dir } => Some(man(dir)),
        _ => None,
    }
}

fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "vault", &mut script);
    crate::out::outln!("{}", String::from_utf8_lossy(&script).trim_end())?;
    Ok(())
}

fn man(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
    eprintln!(
        "wrote the manual pages into {}; `man vault` finds them once that directory is on \
         MANPATH (~/.local/share/man/man1 is)",
        dir.display()
    );
    Ok(())
}
