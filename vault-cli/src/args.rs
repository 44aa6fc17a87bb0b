//! What the user typed: the clap definitions of every `vault` command.

use clap::{Args, Parser, Subcommand};
use vault_core::proto::GroupRole;

/// Vault: an end-to-end encrypted file vault for the terminal.
///
/// Client state (server, pinned certificate, session) lives in $VAULT_CONFIG_DIR, else
/// $XDG_CONFIG_HOME/vault, else ~/.config/vault. Passwords come from a terminal prompt,
/// --password-stdin (one line), or VAULT_PASSWORD.
#[derive(Debug, Parser)]
#[command(name = "vault", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where the server is and how to trust it.
#[derive(Debug, Args, Clone, Default)]
pub struct ServerArgs {
    /// The server, HOST:PORT, or several instances of one deployment separated by commas
    /// (a:7443,b:7443: the next is tried when one does not answer). Remembered after the
    /// first use.
    #[arg(long, value_name = "HOST:PORT[,…]")]
    pub server: Option<String>,
    /// Pin the server certificate to this fingerprint (from `vault-admin cert show`).
    #[arg(long, value_name = "SHA256:…", conflicts_with = "accept_new_cert")]
    pub fingerprint: Option<String>,
    /// Trust the certificate the server presents now, and pin it (trust on first use).
    #[arg(long)]
    pub accept_new_cert: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct PasswordArgs {
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

/// How transfers run.
#[derive(Debug, Args, Clone, Default)]
pub struct TransferArgs {
    /// Copy directories and everything in them.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Limit the transfer rate, in bytes per second or with a unit (e.g. 4MiB).
    #[arg(long, value_name = "SIZE")]
    pub bwlimit: Option<String>,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

/// Options shared by sync, push and pull.
#[derive(Debug, Args, Clone, Default)]
pub struct SyncArgs {
    /// Print what would happen and change nothing (not even the sync state).
    #[arg(long)]
    pub dry_run: bool,
    /// Leave out paths matching PATTERN (gitignore syntax, relative to LOCAL); repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Print a JSON summary (with --watch: one JSON object per line, per event).
    #[arg(long)]
    pub json: bool,
    /// After the run, keep watching: run again whenever LOCAL or REMOTE changes, until
    /// Ctrl-C or SIGTERM.
    #[arg(long, conflicts_with = "dry_run")]
    pub watch: bool,
}

#[derive(Debug, Subcommand)]
pub enum TrashCommand {
    /// List deletions that can be undone, newest first.
    Ls {
        /// The space: @GROUP (default: your personal space).
        #[arg(value_name = "@GROUP")]
        space: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put a deleted file or directory back where it was: the newest deletion of PATH, or
    /// the one `trash ls` lists as `id N` with --id N.
    #[command(
        override_usage = "vault trash restore <PATH>\n       vault trash restore --id <N> [@GROUP]"
    )]
    Restore {
        /// The deleted path: /a/b (your space) or @group/a/b. With --id: the space the
        /// deletion is in (@GROUP; default: your personal space), or its path, checked.
        #[arg(required_unless_present = "id")]
        path: Option<String>,
        /// The deletion to undo, by the id `vault trash ls` shows (`trash_id` in its JSON).
        #[arg(long, value_name = "N")]
        id: Option<i64>,
    },
    /// Delete everything in the trash for good (asks first on a terminal).
    Empty {
        /// The space: @GROUP (default: your personal space).
        #[arg(value_name = "@GROUP")]
        space: Option<String>,
        /// Do not ask (needed when standard input is not a terminal).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a group; you become its owner and your client makes its first key.
    Create { name: String },
    /// List your groups with your role and whether you hold the key.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a group: id, your role, members, key generation, quota.
    Info {
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List a group's members with their roles, key fingerprints and whether they hold
    /// the key.
    Members {
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make a join code (printed on stdout); whoever holds it can join and read the group.
    Invite {
        name: String,
        /// How many people may join with it.
        #[arg(long, value_name = "N", default_value_t = 1)]
        uses: u32,
        /// How long it stays valid, e.g. 30m, 12h, 7d (at most 30d).
        #[arg(long, value_name = "DURATION", default_value = "7d")]
        expires: String,
    },
    /// Join a group with a join code from `vault group invite`.
    Join { code: String },
    /// Add a user; your client wraps every key generation for their public key.
    Add { name: String, user: String },
    /// Remove a member; the others get a new key generation.
    Remove { name: String, user: String },
    /// Leave a group; the others get a new key generation.
    Leave { name: String },
    /// Give a member a role: owner, manager or member.
    Role {
        name: String,
        user: String,
        #[arg(value_parser = parse_role)]
        role: GroupRole,
    },
    /// Rename a group.
    Rename { old: String, new: String },
    /// Delete a group and every file in it, for good (owner only).
    Delete {
        name: String,
        /// Do not ask (needed when standard input is not a terminal).
        #[arg(long)]
        yes: bool,
    },
}

fn parse_role(text: &str) -> Result<GroupRole, String> {
    text.parse()
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Show your public key's fingerprint, or USER's as the server has it and whether it
    /// is the one you trust.
    Fingerprint {
        user: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pin USER's key after comparing its fingerprint with them (in person, by phone).
    Verify {
        user: String,
        #[arg(value_name = "SHA256:…")]
        fingerprint: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ContactCommand {
    /// Ask USER to become your contact (if they asked you first, you are contacts at once).
    Add { user: String },
    /// Accept USER's contact request.
    Accept { user: String },
    /// Reject USER's contact request.
    Reject { user: String },
    /// End the contact with USER, or withdraw your request (on both sides).
    Remove { user: String },
    /// List your contacts and requests, with online state and when they were last seen.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ChatCommand {
    /// Send a message to a contact (USER) or a group (@GROUP), end-to-end encrypted.
    ///
    /// Without TEXT the message is read from standard input (all of it, one trailing line
    /// break removed); with --file, TEXT may be left out.
    Send {
        /// A contact's username, or @GROUP.
        #[arg(value_name = "TARGET")]
        target: String,
        /// The message (default: standard input).
        text: Option<String>,
        /// Send this file with the message: it is uploaded into your space under
        /// /.vault-chat/ and its key travels inside the message (`vault chat fetch ID`).
        #[arg(long, value_name = "PATH")]
        file: Option<std::path::PathBuf>,
    },
    /// Save the file message ID carries to LOCAL (default: the file's name in the current
    /// directory), checked against the message; an existing file is never overwritten.
    Fetch {
        /// The message's id, as `listen`, `history` and `inbox` show it.
        #[arg(value_name = "ID")]
        id: i64,
        /// Where to save the file (default: its name, in the current directory).
        #[arg(value_name = "LOCAL")]
        local: Option<std::path::PathBuf>,
    },
    /// Print messages, contact requests and presence changes as they arrive (one line each);
    /// reconnects after the connection is lost, stops when the session ends.
    Listen {
        /// Print one JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Show the newest messages with USER or in @GROUP, oldest first, and mark them read.
    History {
        /// A contact's username, or @GROUP.
        #[arg(value_name = "TARGET")]
        target: String,
        /// How many messages (1 to 500).
        #[arg(long, value_name = "N", default_value_t = 50)]
        limit: u32,
        /// Only messages older than message ID (to page back).
        #[arg(long, value_name = "ID")]
        before: Option<i64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List your conversations with their unread counts, newest first.
    Inbox {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Set the name your contacts see next to your username (an empty NAME clears it).
    Set {
        #[arg(long, value_name = "NAME")]
        display_name: String,
    },
}

/// The legacy netdisk's cipher modes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LegacyModeArg {
    Cbc,
    Ecb,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an account: first with --email (a code is mailed), then with --code; or in
    /// one go with --email and the --invite code an operator sent.
    Register {
        /// The username: 3–32 of a-z, 0-9, '_', '.', '-'.
        user: String,
        /// Step 1: the address to mail the verification code to.
        #[arg(
            long,
            value_name = "ADDR",
            required_unless_present = "code",
            conflicts_with = "code"
        )]
        email: Option<String>,
        /// Step 2: the code from the mail.
        #[arg(long, value_name = "CODE")]
        code: Option<String>,
        /// The code of an invitation to this address (from the operator's mail): registers
        /// in one step, no verification code needed.
        #[arg(long, value_name = "CODE", requires = "email")]
        invite: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Log in and unlock your keys on this machine.
    Login {
        user: String,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// End the session and remove the session token and account key from this machine.
    Logout {
        /// Also forget the server address and its pinned certificate.
        #[arg(long)]
        forget_server: bool,
    },
    /// Show who is logged in, where, and the quota.
    Whoami {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change your password (other sessions end; your files stay readable).
    ///
    /// The current password comes from VAULT_PASSWORD or a prompt; the new one from
    /// --password-stdin, VAULT_NEW_PASSWORD, or a prompt.
    Passwd {
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Reset a forgotten password by mailed code: first without --code, then with it.
    ///
    /// With the code, the code is checked and then the recovery key (asked for on a
    /// terminal), before the new password is asked.
    ResetPassword {
        user: String,
        /// Step 2: the code from the mail.
        #[arg(long, value_name = "CODE")]
        code: Option<String>,
        /// The recovery key, which keeps your files readable. Without this option it is
        /// asked for on a terminal, or read from VAULT_RECOVERY_KEY or --recovery-key-stdin:
        /// on the command line it is kept in the shell's history and shown by `ps`.
        #[arg(
            long,
            value_name = "RK",
            requires = "code",
            conflicts_with_all = ["discard_encrypted_data", "recovery_key_stdin"]
        )]
        recovery_key: Option<String>,
        /// Read the recovery key from the first line of standard input (a password from
        /// --password-stdin is then the second line).
        #[arg(long, requires = "code", conflicts_with = "discard_encrypted_data")]
        recovery_key_stdin: bool,
        /// Without the recovery key: start over with fresh keys. Everything encrypted so
        /// far becomes unreadable.
        #[arg(long, requires = "code")]
        discard_encrypted_data: bool,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// List a remote directory (default: /): names; with -l also size, mtime and version count.
    Ls {
        /// A remote path: /a/b (your space) or @group/a/b.
        path: Option<String>,
        /// Long format: size, modification time, versions.
        #[arg(short = 'l')]
        long: bool,
        /// List everything below, recursively.
        #[arg(short = 'R')]
        recursive: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show how much is stored under a remote path (default: /).
    Du {
        path: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the space used and allowed (ciphertext bytes of all versions, trash included).
    Quota {
        /// The space: @GROUP (default: your personal space).
        #[arg(value_name = "@GROUP")]
        space: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Upload files or trees (-r): put LOCAL… REMOTE. Resumable: run it again after a failure.
    /// `put - REMOTE` stores standard input as the file REMOTE.
    #[command(override_usage = "vault put [OPTIONS] <LOCAL>... <REMOTE>")]
    Put {
        /// One or more local sources, then the remote target.
        #[arg(required = true, num_args = 2.., value_name = "PATH")]
        paths: Vec<String>,
        #[command(flatten)]
        transfer: TransferArgs,
        /// Store each file whole (format 1), not as content-defined chunks: nothing is
        /// shared with its other versions or files, and the next edit moves the whole file.
        #[arg(long)]
        whole_file: bool,
    },
    /// Download files or trees (-r): get REMOTE… LOCAL. A file that fails does not stop the
    /// others; each is listed at the end. Resumable: run it again after a failure.
    /// `get REMOTE -` writes the file to standard output (as `vault cat REMOTE`).
    #[command(override_usage = "vault get [OPTIONS] <REMOTE>... <LOCAL>")]
    Get {
        /// One or more remote sources, then the local target.
        #[arg(required = true, num_args = 2.., value_name = "PATH")]
        paths: Vec<String>,
        #[command(flatten)]
        transfer: TransferArgs,
    },
    /// Write a remote file to standard output: each part once it is proved, the whole checked
    /// at the end (exit status 1 if it fails).
    Cat {
        /// The remote file: /a/b (your space) or @group/a/b.
        path: String,
        /// Limit the transfer rate, in bytes per second or with a unit (e.g. 4MiB).
        #[arg(long, value_name = "SIZE")]
        bwlimit: Option<String>,
    },
    /// Two-way sync of a local directory with a remote folder (state in LOCAL/.vault-sync/).
    Sync {
        /// The local directory.
        local: String,
        /// The remote folder: /a/b (your space) or @group/a/b.
        remote: String,
        #[command(flatten)]
        sync: SyncArgs,
    },
    /// One-way mirror LOCAL → REMOTE.
    Push {
        /// The local directory.
        local: String,
        /// The remote folder: /a/b (your space) or @group/a/b.
        remote: String,
        /// Move remote files that are not in LOCAL to the trash.
        #[arg(long)]
        delete: bool,
        #[command(flatten)]
        sync: SyncArgs,
    },
    /// One-way mirror REMOTE → LOCAL.
    Pull {
        /// The remote folder: /a/b (your space) or @group/a/b.
        remote: String,
        /// The local directory (created if missing).
        local: String,
        /// Remove local files that are not in REMOTE (into LOCAL/.vault-sync/trash/).
        #[arg(long)]
        delete: bool,
        #[command(flatten)]
        sync: SyncArgs,
    },
    /// Move a file or directory to the trash.
    Rm {
        path: String,
        /// Remove a directory and everything in it.
        #[arg(short = 'r', long)]
        recursive: bool,
    },
    /// Move or rename a file or directory.
    Mv { src: String, dst: String },
    /// Create a directory (and its parents).
    Mkdir { path: String },
    /// List the kept versions of a file.
    Versions {
        path: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make an older version current again (default: the one before the current).
    Restore {
        path: String,
        #[arg(long, value_name = "N")]
        version: Option<u64>,
    },
    /// List, restore or empty the trash.
    Trash {
        #[command(subcommand)]
        command: TrashCommand,
    },
    /// Shared spaces: create, invite, join, add and remove members, roles.
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Other users' public keys: compare fingerprints and pin them.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Contacts: ask, accept, reject, remove, list.
    Contact {
        #[command(subcommand)]
        command: ContactCommand,
    },
    /// End-to-end encrypted messages to contacts and groups.
    Chat {
        #[command(subcommand)]
        command: ChatCommand,
    },
    /// Your profile: the display name your contacts see.
    Profile {
        #[command(subcommand)]
        command: ProfileCommand,
    },
    /// Decrypt a file of the legacy DES netdisk and store it as a normal vault file.
    ImportLegacy {
        /// The DES key as 16 hex digits.
        #[arg(long, value_name = "KEY")]
        des_key: String,
        /// The legacy cipher mode (CBC with a zero IV, or ECB), both with PKCS#5 padding.
        #[arg(long, value_enum, default_value = "cbc")]
        mode: LegacyModeArg,
        local: String,
        remote: String,
        /// Print a JSON summary.
        #[arg(long)]
        json: bool,
    },
    /// Print the completion script for SHELL on stdout (README: Shell completions and
    /// man pages).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages of vault and each of its commands (vault.1, vault-sync.1, …)
    /// into DIR.
    Man {
        #[arg(value_name = "DIR")]
        dir: std::path::PathBuf,
    },
}

impl Command {
    /// Whether this is sync, push or pull (handled by `sync`).
    pub fn is_sync(&self) -> bool {
        matches!(
            self,
            Command::Sync { .. } | Command::Push { .. } | Command::Pull { .. }
        )
    }

    /// Whether this is a group or key command (handled by `groups`).
    pub fn is_groups(&self) -> bool {
        matches!(self, Command::Group { .. } | Command::Key { .. })
    }

    /// Whether this is a contact, chat or profile command (handled by `chat`).
    pub fn is_chat(&self) -> bool {
        matches!(
            self,
            Command::Contact { .. } | Command::Chat { .. } | Command::Profile { .. }
        )
    }

    /// Whether this is a file command (handled by `files`).
    pub fn is_files(&self) -> bool {
        matches!(
            self,
            Command::Ls { .. }
                | Command::Du { .. }
                | Command::Quota { .. }
                | Command::Put { .. }
                | Command::Get { .. }
                | Command::Cat { .. }
                | Command::Rm { .. }
                | Command::Mv { .. }
                | Command::Mkdir { .. }
                | Command::Versions { .. }
                | Command::Restore { .. }
                | Command::Trash { .. }
                | Command::ImportLegacy { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_definitions_hold_together() {
        Cli::command().debug_assert();
    }

    #[test]
    fn put_and_get_name_their_sources_and_target_once() {
        let mut cli = Cli::command();
        for (name, usage) in [
            ("put", "vault put [OPTIONS] <LOCAL>... <REMOTE>"),
            ("get", "vault get [OPTIONS] <REMOTE>... <LOCAL>"),
        ] {
            let sub = cli.find_subcommand_mut(name).expect(name);
            let shown = sub.render_usage().to_string();
            assert_eq!(shown.trim(), format!("Usage: {usage}"), "{name}");
            let help = sub.render_help().to_string();
            assert!(help.contains("<PATH> <PATH>..."), "{help}");
        }
        let two = Cli::try_parse_from(["vault", "put", "a", "b", "/x/"]).expect("put");
        assert!(matches!(two.command, Command::Put { paths, .. } if paths == ["a", "b", "/x/"]));
        assert!(Cli::try_parse_from(["vault", "get", "/a"]).is_err());
    }
}
