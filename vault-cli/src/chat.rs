//! `vault contact …`, `vault chat …` and `vault profile set`: check the arguments (and read
//! a message from stdin) before connecting, open the session, run the command through
//! `vault_client::chat`, and print text, or JSON with `--json` (output in [`output`]).
//! `listen` says on a terminal (stderr) that it listens, prints each line as it comes and
//! runs until the session ends (exit 1, naming why), it is interrupted or its reader goes
//! away; connection notices go to stderr.

mod output;

use std::io::{IsTerminal, Read, Write};
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::Value;
use vault_client::chat::history::{self, check_limit};
use vault_client::chat::send::{self, MAX_TEXT_BYTES, check_length, check_text, now_ms};
use vault_client::chat::target::{self, show};
use vault_client::chat::{ListenEvent, Listener, attach, contacts, fetch};
use vault_client::files::Files;
use vault_client::files::upload::LocalFile;
use vault_client::state::StateDir;
use vault_core::proto::chat::ContactState;
use vault_core::units::format_size;

use crate::args::{ChatCommand, Command, ContactCommand, ProfileCommand};
use crate::escape::{shown, shown_path};
use crate::out::outln;
use crate::{progress, warnings};

/// Reads a message from `input`: all of it, with one trailing line break removed; it must
/// be UTF-8, not empty, and not longer than any server accepts.
pub fn read_message(input: impl Read) -> anyhow::Result<String> {
    let text = read_text(input)?;
    check_text(&text)?;
    Ok(text)
}

/// [`read_message`] for a message that carries a file: it may be empty.
pub fn read_caption(input: impl Read) -> anyhow::Result<String> {
    read_text(input)
}

/// All of `input` as UTF-8 text, one trailing line break removed, not longer than a
/// message may be.
fn read_text(input: impl Read) -> anyhow::Result<String> {
    // Room for the longest text and a trailing "\r\n", and one byte to notice more.
    let limit = MAX_TEXT_BYTES + 2;
    let mut bytes = Vec::new();
    input
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .context("cannot read the message from standard input")?;
    if bytes.len() > limit {
        bail!(
            "the message on standard input is longer than {MAX_TEXT_BYTES} bytes, the most a \
             message can hold (send a long text as a file with `vault put`)"
        );
    }
    let mut text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("the message on standard input is not UTF-8 text"))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    // Arguments are checked, and a message read, before connecting.
    let mut message = None;
    match &command {
        Command::Chat {
            command: ChatCommand::Send { target, text, file },
        } => {
            target::parse(target)?;
            if let Some(file) = file {
                LocalFile::stat(file)?;
                attach::file_name(file)?;
            }
            message = Some(match (text, file) {
                (Some(text), Some(_)) => {
                    check_length(text)?;
                    text.clone()
                }
                (Some(text), None) => {
                    check_text(text)?;
                    text.clone()
                }
                // The text to go with the file comes from standard input, as a message's
                // without one; it may be empty.
                (None, Some(_)) => {
                    if std::io::stdin().is_terminal() {
                        eprintln!(
                            "Type a message to go with the file, then press Ctrl-D on a line of \
                             its own (Ctrl-D alone: no message)."
                        );
                    }
                    read_caption(std::io::stdin().lock())?
                }
                (None, None) => {
                    if std::io::stdin().is_terminal() {
                        eprintln!("Type the message, then press Ctrl-D on a line of its own.");
                    }
                    read_message(std::io::stdin().lock())?
                }
            });
        }
        Command::Chat {
            command: ChatCommand::History { target, limit, .. },
        } => {
            target::parse(target)?;
            check_limit(*limit)?;
        }
        Command::Profile {
            command: ProfileCommand::Set { display_name },
        } => {
            contacts::display_name(display_name)?;
        }
        _ => {}
    }
    let state = StateDir::from_env()?;
    let files = Files::open(&state).await?;
    let result = match command {
        Command::Contact { command } => contact(&files, command).await,
        Command::Chat {
            command: ChatCommand::Send { target, file, .. },
        } => {
            send_message(
                &files,
                &target,
                message.unwrap_or_default(),
                file.as_deref(),
            )
            .await
        }
        Command::Chat { command } => chat(&files, command).await,
        Command::Profile {
            command: ProfileCommand::Set { display_name },
        } => {
            match contacts::set_display_name(&files, &display_name).await? {
                Some(name) => outln!("Your display name is now \"{}\".", output::clean(&name))?,
                None => outln!("Your display name is cleared.")?,
            }
            Ok(())
        }
        other => Err(anyhow::anyhow!("not a contact or chat command: {other:?}")),
    };
    warnings::defer(files.take_warnings());
    files.close();
    result
}

async fn contact(files: &Files, command: ContactCommand) -> anyhow::Result<()> {
    let (change, user) = match command {
        ContactCommand::List { json } => {
            let list = contacts::list(files).await?;
            if json {
                let list: Vec<Value> = list.iter().map(output::contact_json).collect();
                outln!("{}", serde_json::to_string_pretty(&list)?)?;
            } else if list.is_empty() {
                outln!("No contacts yet; `vault contact add USER` asks someone.")?;
            } else {
                for c in &list {
                    outln!("{}", output::contact_line(c))?;
                }
            }
            return Ok(());
        }
        ContactCommand::Add { user } => (contacts::Change::Add, user),
        ContactCommand::Accept { user } => (contacts::Change::Accept, user),
        ContactCommand::Reject { user } => (contacts::Change::Reject, user),
        ContactCommand::Remove { user } => (contacts::Change::Remove, user),
    };
    let (user, state) = contacts::change(files, change, &user).await?;
    let user = shown(&user);
    match (change, state) {
        (_, Some(ContactState::Contact)) => {
            outln!("You and {user} are contacts now: `vault chat send {user} TEXT`.")?;
        }
        (contacts::Change::Add, _) => {
            outln!("Asked {user} to be your contact; direct messages work once they accept.")?;
        }
        (contacts::Change::Reject, _) => outln!("Rejected {user}'s contact request.")?,
        (_, None) => outln!("{user} is no longer your contact.")?,
        (_, Some(_)) => outln!("Your contact request with {user} is still open.")?,
    }
    Ok(())
}

async fn send_message(
    files: &Files,
    raw_target: &str,
    text: String,
    file: Option<&Path>,
) -> anyhow::Result<()> {
    let target = target::parse(raw_target)?;
    let sent = match file {
        Some(file) => {
            let progress = progress::for_transfer();
            progress.begin(1, LocalFile::stat(file)?.size);
            attach::send_file(files, &target, &text, file, progress.as_ref()).await?
        }
        None => send::send(files, &target, &text).await?,
    };
    outln!(
        "Sent to {} (message {}).",
        shown(&show(&sent.target)),
        sent.id
    )?;
    Ok(())
}

async fn fetch_file(files: &Files, id: i64, local: Option<&Path>) -> anyhow::Result<()> {
    let progress = progress::for_transfer();
    let fetched = fetch::fetch(files, id, local, progress.as_ref()).await?;
    drop(progress);
    let resumed = match fetched.resumed_at {
        0 => String::new(),
        n => format!(" (resumed: {} were here already)", format_size(n)),
    };
    outln!(
        "Saved {} ({}) from {} as {}{resumed}.",
        output::clean(&fetched.name),
        format_size(fetched.bytes),
        output::clean(&fetched.from),
        shown_path(&fetched.local)
    )?;
    Ok(())
}

async fn chat(files: &Files, command: ChatCommand) -> anyhow::Result<()> {
    match command {
        ChatCommand::Send { .. } => bail!("chat send is handled before"),
        ChatCommand::Fetch { id, local } => fetch_file(files, id, local.as_deref()).await,
        ChatCommand::Listen { json } => listen(files, json).await,
        ChatCommand::History {
            target,
            limit,
            before,
            json,
        } => {
            let target = target::parse(&target)?;
            let messages = history::history(files, &target, limit, before).await?;
            if json {
                let list: Vec<Value> = messages.iter().map(output::message_json).collect();
                outln!("{}", serde_json::to_string_pretty(&list)?)?;
                return Ok(());
            }
            if messages.is_empty() {
                outln!("No messages with {}.", shown(&show(&target)))?;
                return Ok(());
            }
            for m in &messages {
                outln!("{}", output::message_line(m, files.user()))?;
            }
            if messages.len() == limit as usize
                && let Some(oldest) = messages.first()
            {
                eprintln!(
                    "Older messages: `vault chat history {} --before {}`",
                    shown(&show(&target)),
                    oldest.id
                );
            }
            Ok(())
        }
        ChatCommand::Inbox { json } => {
            let conversations = history::inbox(files).await?;
            if json {
                let list: Vec<Value> = conversations
                    .iter()
                    .map(output::conversation_json)
                    .collect();
                outln!("{}", serde_json::to_string_pretty(&list)?)?;
            } else if conversations.is_empty() {
                outln!("No conversations yet.")?;
            } else {
                for c in &conversations {
                    outln!("{}", output::conversation_line(c))?;
                }
            }
            Ok(())
        }
    }
}

/// Prints events as they come, each line flushed at once, until the session ends.
async fn listen(files: &Files, json: bool) -> anyhow::Result<()> {
    // Nothing else ends a listen normally, so the key-work warnings are printed now.
    warnings::defer(files.take_warnings());
    warnings::print();
    let mut listener = Listener::new(files)?;
    listener.start().await?;
    if std::io::stderr().is_terminal() {
        eprintln!(
            "Listening for messages to {}; Ctrl-C stops.",
            shown(files.user())
        );
    }
    let mut stdout = std::io::stdout().lock();
    loop {
        let event = listener.next().await?;
        if let Some(text) = output::notice(&event) {
            eprintln!("{text}");
        }
        let line = if json {
            output::event_json(&event).map(|v| v.to_string())
        } else {
            output::event_line(&event, files.user(), now_ms())
        };
        if let Some(line) = line {
            writeln!(stdout, "{line}")?;
            stdout.flush()?;
        }
        if let ListenEvent::Resumed = event {
            tracing::debug!(highest = ?listener.highest_shown(), "listening again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_from_stdin_loses_one_trailing_line_break_only() {
        let read = |input: &[u8]| read_message(input).map_err(|e| e.to_string());
        assert_eq!(read(b"hello\n").as_deref(), Ok("hello"));
        assert_eq!(read(b"hello\r\n").as_deref(), Ok("hello"));
        assert_eq!(read(b"hello").as_deref(), Ok("hello"));
        assert_eq!(
            read(b"line one\nline two\n\n").as_deref(),
            Ok("line one\nline two\n")
        );
        assert_eq!(read("grüße\n".as_bytes()).as_deref(), Ok("grüße"));
    }

    #[test]
    fn an_empty_oversized_or_binary_message_is_refused() {
        let read = |input: &[u8]| read_message(input).map_err(|e| e.to_string());
        for empty in [&b""[..], b"\n", b"  \n"] {
            let err = read(empty).expect_err("empty");
            assert!(err.contains("the message is empty"), "{err}");
        }
        let err = read(&[0xff, 0xfe, b'\n']).expect_err("binary");
        assert!(err.contains("not UTF-8"), "{err}");
        let mut at_limit = vec![b'x'; MAX_TEXT_BYTES];
        at_limit.push(b'\n');
        assert_eq!(read(&at_limit).map(|t| t.len()), Ok(MAX_TEXT_BYTES));
        let err = read(&vec![b'x'; MAX_TEXT_BYTES + 3]).expect_err("too long");
        assert!(err.contains("longer than"), "{err}");
        let err = read(&vec![b'x'; MAX_TEXT_BYTES + 1]).expect_err("just too long");
        assert!(err.contains("at most"), "{err}");
    }
}
