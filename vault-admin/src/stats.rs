//! `vault-admin stats`: counts for a dashboard. The keys are stable: `bytes` is the
//! ciphertext the file store holds (all versions, trash included, personal and group
//! spaces), also given as `stored_bytes`; `messages` counts stored chat messages and
//! `messages_24h` those that arrived in the last 24 hours (counts only, never content);
//! `disk` is the data directory's disk: free and total bytes, the free-space floor below
//! which uploads are refused, and the reserve held for deletions.

use clap::Args;
use serde::Serialize;
use vault_server::db;
use vault_server::maintenance::stats::{file_stats, message_stats};
use vault_server::space::{Space, SpaceReport};

use crate::context::Ctx;
use crate::output;

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[arg(long)]
    json: bool,
}

/// The numbers `stats` reports.
#[derive(Debug, Serialize)]
struct Stats {
    users: i64,
    locked_users: i64,
    /// Live sessions.
    sessions: i64,
    /// Throttle subjects (accounts and addresses) locked right now.
    throttled: i64,
    groups: i64,
    files: i64,
    bytes: i64,
    directories: i64,
    versions: i64,
    stored_bytes: i64,
    trash_items: i64,
    uploads_in_progress: i64,
    messages: i64,
    messages_24h: i64,
    disk: Option<SpaceReport>,
}

pub fn run(ctx: &Ctx, args: StatsArgs) -> anyhow::Result<()> {
    let db = ctx.db()?;
    let conn = &mut *db.conn()?;
    let f = file_stats(conn, output::now())?;
    let m = message_stats(conn, output::now())?;
    let s = Stats {
        users: db::users::count(conn)?,
        locked_users: db::users::count_locked(conn)?,
        sessions: db::sessions::count_live(conn)?,
        throttled: db::throttle::count_locked(conn, output::now())?,
        groups: db::groups::count(conn)?,
        files: f.files,
        bytes: f.stored_bytes,
        directories: f.directories,
        versions: f.versions,
        stored_bytes: f.stored_bytes,
        trash_items: f.trash_items,
        uploads_in_progress: f.uploads_in_progress,
        messages: m.total,
        messages_24h: m.last_24h,
        disk: Space::new(&ctx.config.data_dir, &ctx.config.storage)
            .report()
            .ok(),
    };
    if args.json {
        return output::print_json(&s);
    }
    output::print_fields(&[
        ("users", s.users.to_string()),
        ("locked users", s.locked_users.to_string()),
        ("live sessions", s.sessions.to_string()),
        ("throttled now", s.throttled.to_string()),
        ("groups", s.groups.to_string()),
        ("files", s.files.to_string()),
        ("directories", s.directories.to_string()),
        ("versions", s.versions.to_string()),
        (
            "stored bytes",
            format!(
                "{} ({}, ciphertext)",
                s.stored_bytes,
                output::size(s.stored_bytes)
            ),
        ),
        ("trash items", s.trash_items.to_string()),
        ("uploads in progress", s.uploads_in_progress.to_string()),
        (
            "chat messages",
            format!("{} ({} in the last 24 h)", s.messages, s.messages_24h),
        ),
        (
            "disk",
            s.disk
                .as_ref()
                .map_or_else(|| "cannot be looked at".into(), SpaceReport::line),
        ),
    ])?;
    Ok(())
}
