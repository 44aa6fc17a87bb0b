//! `vault-admin user …`: list and inspect accounts, invite people (`crate::invitations`),
//! lock and unlock accounts, delete them,
//! set quotas, clear login throttling, and list or end sessions. Sessions are ended in
//! the database; a running server notices within `sessions.check_interval_ms` and closes
//! the connections with the reason. Deleting an account deletes its files too (blobs are
//! queued for gc) and takes it out of its groups (refused while it owns one). `set-quota`
//! takes effect at once: the server reads the quota on every check. Every change is
//! audited with actor `admin`; a command that changes nothing (unlocking an unlocked
//! account) writes no entry.

use std::collections::HashMap;

use anyhow::bail;
use clap::Subcommand;
use serde::Serialize;
use vault_proto::proto::names;
use vault_server::accounts::change;
use vault_server::db::{self, DbConn, DbError, throttle::FailureRow, users::User};
use vault_server::groups::change as group_change;
use vault_server::maintenance::stats::used_bytes_of_user;
use vault_server::throttle::account_subject;

use crate::context::{Ctx, record};
use crate::invitations::{self, InviteArgs};
use crate::out::outln;
use crate::output::{self, Table, iso_time, or_dash, plural, yes_no};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List all accounts: name, email, locked, quota, live sessions, created.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one account, with its public-key fingerprint and login throttle state.
    Show {
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Invite ADDR to open an account: mails a single-use code (or prints it with --print).
    Invite {
        #[arg(value_name = "ADDR")]
        email: String,
        #[command(flatten)]
        how: InviteArgs,
    },
    /// Set up an account named USER for ADDR: mails an invitation that reserves the name;
    /// the user finishes with `vault register USER --invite CODE`, making the keys.
    Create {
        user: String,
        #[arg(long, value_name = "ADDR")]
        email: String,
        #[command(flatten)]
        how: InviteArgs,
    },
    /// List invitations (open, used, expired, revoked), or revoke one.
    Invites {
        /// Revoke the invitation with this id, or the open one of this address.
        #[arg(long, value_name = "ID|ADDR")]
        revoke: Option<String>,
        #[arg(long, conflicts_with = "revoke")]
        json: bool,
    },
    /// Lock an account: refuse its logins and end its live sessions.
    Lock { user: String },
    /// Unlock a locked account.
    Unlock { user: String },
    /// Delete an account for good (needs --yes).
    Delete {
        user: String,
        /// Confirm that the account and everything it owns may be lost.
        #[arg(long)]
        yes: bool,
    },
    /// Set an account's storage quota, e.g. 10GiB, 500MB, or bytes.
    SetQuota {
        user: String,
        #[arg(value_name = "SIZE", value_parser = parse_quota)]
        size: i64,
    },
    /// Clear an account's failed-login count and lock (`user:NAME`).
    ResetThrottle { user: String },
    /// List an account's live sessions.
    Sessions {
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// End one or all live sessions of an account.
    Kick {
        user: String,
        /// End only this session (an id from `vault-admin user sessions USER`).
        #[arg(long, value_name = "ID")]
        session: Option<i64>,
    },
}

pub fn run(ctx: &Ctx, command: UserCommand) -> anyhow::Result<()> {
    let db = ctx.db()?;
    let conn = &mut *db.conn()?;
    match command {
        UserCommand::List { json } => list(conn, json),
        UserCommand::Show { user, json } => show(conn, &user, json),
        UserCommand::Invite { email, how } => invitations::invite(ctx, conn, &email, None, &how),
        UserCommand::Create { user, email, how } => {
            invitations::invite(ctx, conn, &email, Some(&user), &how)
        }
        UserCommand::Invites { revoke, json } => {
            invitations::list_or_revoke(conn, revoke.as_deref(), json)
        }
        UserCommand::Lock { user } => lock(conn, &user),
        UserCommand::Unlock { user } => unlock(conn, &user),
        UserCommand::Delete { user, yes } => delete(ctx, conn, &user, yes),
        UserCommand::SetQuota { user, size } => set_quota(conn, &user, size),
        UserCommand::ResetThrottle { user } => reset_throttle(conn, &user),
        UserCommand::Sessions { user, json } => sessions(conn, &user, json),
        UserCommand::Kick { user, session } => kick(conn, &user, session),
    }
}

/// A quota from the command line: a size that fits the database's signed column.
pub(crate) fn parse_quota(text: &str) -> Result<i64, String> {
    let bytes = vault_proto::units::parse_size(text)?;
    i64::try_from(bytes).map_err(|_| format!("size {text:?} is too large"))
}

/// The account named `name` (case-folded like the server does), or an error that says
/// where to look.
pub(crate) fn find_user(conn: &mut DbConn, name: &str) -> anyhow::Result<User> {
    let folded = names::normalize_username(name).unwrap_or_else(|_| name.to_string());
    match db::users::by_name(conn, &folded)? {
        Some(user) => Ok(user),
        None => bail!("no user named {name:?} (see vault-admin user list)"),
    }
}

/// One account in `user list --json`.
#[derive(Debug, Serialize)]
struct UserSummary {
    username: String,
    email: String,
    locked: bool,
    quota_bytes: i64,
    live_sessions: i64,
    created_at: i64,
}

fn list(conn: &mut DbConn, json: bool) -> anyhow::Result<()> {
    let users = db::users::list(conn)?;
    let counts: HashMap<i64, i64> = db::users::live_session_counts(conn)?.into_iter().collect();
    let rows: Vec<UserSummary> = users
        .into_iter()
        .map(|u| UserSummary {
            live_sessions: counts.get(&u.id).copied().unwrap_or(0),
            username: u.username,
            email: u.email,
            locked: u.locked,
            quota_bytes: u.quota_bytes,
            created_at: u.created_at,
        })
        .collect();
    if json {
        return output::print_json(&rows);
    }
    if rows.is_empty() {
        outln!("no users yet")?;
        return Ok(());
    }
    let mut table = Table::new(&["USER", "EMAIL", "LOCKED", "QUOTA", "SESSIONS", "CREATED"]);
    for r in &rows {
        table.row(vec![
            r.username.clone(),
            r.email.clone(),
            yes_no(r.locked).into(),
            output::size(r.quota_bytes),
            r.live_sessions.to_string(),
            iso_time(r.created_at),
        ]);
    }
    table.print()?;
    Ok(())
}

/// Login throttle state in `user show --json` and `throttle list --json`.
#[derive(Debug, Serialize)]
pub struct ThrottleState {
    pub subject: String,
    pub failures: i64,
    pub last_failure_at: i64,
    pub locked_until: i64,
    /// Seconds until the next attempt is allowed; 0 when not locked.
    pub seconds_left: i64,
}

impl ThrottleState {
    pub fn new(row: FailureRow, now: i64) -> ThrottleState {
        ThrottleState {
            seconds_left: (row.locked_until - now).max(0),
            subject: row.subject,
            failures: row.failures,
            last_failure_at: row.last_failure_at,
            locked_until: row.locked_until,
        }
    }

    /// `-`, or `2027-01-15T08:00:30Z (30s left)`.
    pub fn locked_text(&self) -> String {
        if self.seconds_left > 0 {
            format!(
                "{} ({} left)",
                iso_time(self.locked_until),
                output::duration(self.seconds_left)
            )
        } else {
            "-".into()
        }
    }
}

/// The password KDF parameters an account uses, in `user show --json`.
#[derive(Debug, Serialize)]
struct KdfSummary {
    memory_kib: i64,
    iterations: i64,
    parallelism: i64,
}

/// One account in `user show --json`.
#[derive(Debug, Serialize)]
struct UserDetail {
    username: String,
    email: String,
    locked: bool,
    quota_bytes: i64,
    /// Ciphertext bytes of the user's files (all versions, trash included).
    used_bytes: i64,
    created_at: i64,
    live_sessions: usize,
    public_key_fingerprint: String,
    kdf: KdfSummary,
    throttle: Option<ThrottleState>,
}

fn show(conn: &mut DbConn, name: &str, json: bool) -> anyhow::Result<()> {
    let user = find_user(conn, name)?;
    let live = db::sessions::live_for_user(conn, user.id)?.len();
    let used_bytes = used_bytes_of_user(conn, user.id)?;
    let throttle = db::throttle::get(conn, &account_subject(&user.username))?
        .map(|row| ThrottleState::new(row, output::now()));
    let d = UserDetail {
        public_key_fingerprint: vault_proto::fingerprint::sha256_fingerprint(&user.public_key),
        kdf: KdfSummary {
            memory_kib: user.kdf_memory_kib,
            iterations: user.kdf_iterations,
            parallelism: user.kdf_parallelism,
        },
        username: user.username,
        email: user.email,
        locked: user.locked,
        quota_bytes: user.quota_bytes,
        used_bytes,
        created_at: user.created_at,
        live_sessions: live,
        throttle,
    };
    if json {
        return output::print_json(&d);
    }
    let throttle = match &d.throttle {
        None => "no failed logins".to_string(),
        Some(t) if t.seconds_left > 0 => format!(
            "{}, locked until {}",
            plural(t.failures, "failed login", "failed logins"),
            t.locked_text()
        ),
        Some(t) => format!(
            "{}, the last at {}, not locked",
            plural(t.failures, "failed login", "failed logins"),
            iso_time(t.last_failure_at)
        ),
    };
    output::print_fields(&[
        ("user", d.username.clone()),
        ("email", d.email.clone()),
        ("locked", yes_no(d.locked).into()),
        (
            "quota",
            format!("{} ({} bytes)", output::size(d.quota_bytes), d.quota_bytes),
        ),
        (
            "used",
            format!("{} ({} bytes)", output::size(d.used_bytes), d.used_bytes),
        ),
        ("created", iso_time(d.created_at)),
        ("live sessions", d.live_sessions.to_string()),
        ("public key", d.public_key_fingerprint.clone()),
        (
            "password kdf",
            format!(
                "argon2id, {} KiB, {}, {}",
                d.kdf.memory_kib,
                plural(d.kdf.iterations, "iteration", "iterations"),
                plural(d.kdf.parallelism, "lane", "lanes")
            ),
        ),
        ("login throttle", throttle),
    ])?;
    Ok(())
}

fn lock(conn: &mut DbConn, name: &str) -> anyhow::Result<()> {
    let user = find_user(conn, name)?;
    let ended = change::lock(conn, &user)?;
    if user.locked {
        outln!("{} was already locked", user.username)?;
    } else {
        outln!("locked {}", user.username)?;
    }
    if ended > 0 {
        outln!("ended {}", plural(ended, "live session", "live sessions"))?;
    }
    Ok(())
}

fn unlock(conn: &mut DbConn, name: &str) -> anyhow::Result<()> {
    let user = find_user(conn, name)?;
    if !user.locked {
        outln!("{} is not locked", user.username)?;
        return Ok(());
    }
    change::unlock(conn, &user)?;
    outln!("unlocked {}", user.username)?;
    Ok(())
}

fn delete(ctx: &Ctx, conn: &mut DbConn, name: &str, yes: bool) -> anyhow::Result<()> {
    let user = find_user(conn, name)?;
    let owned = group_change::owned_by(conn, user.id).map_err(crate::groups::failure)?;
    if !owned.is_empty() {
        let names: Vec<&str> = owned.iter().map(|g| g.name.as_str()).collect();
        bail!(
            "not deleting {0}: it owns {1} {2}. Set another owner \
             (`vault-admin group set-owner GROUP USER`) or delete the group \
             (`vault-admin group delete GROUP --yes`) first",
            user.username,
            if names.len() == 1 { "group" } else { "groups" },
            names.join(", ")
        );
    }
    if !yes {
        let live = db::sessions::live_for_user(conn, user.id)?.len();
        bail!(
            "not deleting {0} without --yes: this removes the account for good; its keys, \
             and with them every file it stored, cannot be recovered by anyone, and its \
             {1} end. Run `vault-admin user delete {0} --yes` to go ahead",
            user.username,
            plural(live, "live session", "live sessions")
        );
    }
    let change::Deleted {
        ended,
        files,
        groups,
    } = change::delete(conn, &user, output::now()).map_err(crate::groups::failure)?;
    // Partial uploads go now; gc removes anything left here as an orphan later.
    if !files.partials.is_empty()
        && let Ok(store) = ctx.blobs()
    {
        for problem in files.remove_partials(store.as_ref()) {
            eprintln!("warning: {problem} (gc removes it later)");
        }
    }
    outln!(
        "deleted {} ({} ended)",
        user.username,
        plural(ended, "live session", "live sessions")
    )?;
    if !groups.is_empty() {
        let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        outln!(
            "removed it from {} {}; their next keyed member's client makes a new key \
             generation",
            if names.len() == 1 { "group" } else { "groups" },
            names.join(", ")
        )?;
    }
    if files.entries > 0 || files.uploads > 0 {
        outln!(
            "deleted its {} with {} ({}); gc removes the blobs after the grace period",
            plural(files.entries, "file or folder", "files and folders"),
            plural(files.versions, "version", "versions"),
            output::size(files.bytes)
        )?;
    }
    Ok(())
}

fn set_quota(conn: &mut DbConn, name: &str, bytes: i64) -> anyhow::Result<()> {
    let user = find_user(conn, name)?;
    let shown = format!("{} ({bytes} bytes)", output::size(bytes));
    if user.quota_bytes == bytes {
        outln!("the quota of {} is already {shown}", user.username)?;
        return Ok(());
    }
    change::set_quota(conn, &user, bytes)?;
    outln!("the quota of {} is now {shown}", user.username)?;
    Ok(())
}

fn reset_throttle(conn: &mut DbConn, name: &str) -> anyhow::Result<()> {
    let user = find_user(conn, name)?;
    let subject = account_subject(&user.username);
    let cleared = db::transaction(conn, |c| {
        let cleared = db::throttle::clear(c, &subject)?;
        if cleared {
            record(
                c,
                "throttle_reset",
                Some(&user.username),
                &format!("cleared {subject}"),
            )?;
        }
        Ok::<_, DbError>(cleared)
    })?;
    if cleared {
        outln!("cleared the login throttle of {}", user.username)?;
    } else {
        outln!("{} had no failed logins to clear", user.username)?;
    }
    Ok(())
}

/// One session in `user sessions --json`.
#[derive(Debug, Serialize)]
struct SessionSummary {
    id: i64,
    created_at: i64,
    last_seen_at: i64,
    client_ip: String,
}

fn sessions(conn: &mut DbConn, name: &str, json: bool) -> anyhow::Result<()> {
    let user = find_user(conn, name)?;
    let rows: Vec<SessionSummary> = db::sessions::live_for_user(conn, user.id)?
        .into_iter()
        .map(|s| SessionSummary {
            id: s.id,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            client_ip: s.client_ip,
        })
        .collect();
    if json {
        return output::print_json(&rows);
    }
    if rows.is_empty() {
        outln!("{} has no live sessions", user.username)?;
        return Ok(());
    }
    let mut table = Table::new(&["ID", "CREATED", "LAST SEEN", "CLIENT IP"]);
    for s in &rows {
        table.row(vec![
            s.id.to_string(),
            iso_time(s.created_at),
            iso_time(s.last_seen_at),
            or_dash(Some(&s.client_ip)).into(),
        ]);
    }
    table.print()?;
    Ok(())
}

fn kick(conn: &mut DbConn, name: &str, session: Option<i64>) -> anyhow::Result<()> {
    let user = find_user(conn, name)?;
    if let Some(id) = session {
        let live = db::sessions::by_id(conn, id)?
            .is_some_and(|s| s.user_id == user.id && s.ended_at.is_none());
        if !live {
            bail!(
                "session {id} is not a live session of {0} (see vault-admin user sessions {0})",
                user.username
            );
        }
    }
    let ended = change::kick(conn, &user, session)?;
    match (session, ended) {
        (_, 0) => outln!("{} has no live sessions", user.username)?,
        (Some(id), _) => outln!("ended session {id} of {}", user.username)?,
        (None, n) => outln!(
            "ended {} of {}",
            plural(n, "live session", "live sessions"),
            user.username
        )?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_accept_units_and_refuse_overflow() {
        assert_eq!(parse_quota("10GiB"), Ok(10 << 30));
        assert_eq!(parse_quota("512"), Ok(512));
        assert!(parse_quota("lots").is_err());
        assert!(parse_quota("9999999TiB").is_err());
    }

    #[test]
    fn throttle_state_says_how_long_a_lock_lasts() {
        let row = FailureRow {
            subject: "user:bob".into(),
            failures: 5,
            window_start: 100,
            last_failure_at: 100,
            locked_until: 130,
        };
        let locked = ThrottleState::new(row.clone(), 100);
        assert_eq!(locked.seconds_left, 30);
        assert_eq!(locked.locked_text(), "1970-01-01T00:02:10Z (30s left)");
        let over = ThrottleState::new(row, 200);
        assert_eq!(over.seconds_left, 0);
        assert_eq!(over.locked_text(), "-");
    }
}
