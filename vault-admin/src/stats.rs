//! `vault-admin stats`: counts for a dashboard. The keys are stable: `files`, `bytes`
//! and `groups` are 0 until those features are stored by the server.

use clap::Args;
use serde::Serialize;
use vault_server::db;

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
}

pub fn run(ctx: &Ctx, args: StatsArgs) -> anyhow::Result<()> {
    let db = ctx.db()?;
    let conn = &mut *db.conn()?;
    let s = Stats {
        users: db::users::count(conn)?,
        locked_users: db::users::count_locked(conn)?,
        sessions: db::sessions::count_live(conn)?,
        throttled: db::throttle::count_locked(conn, output::now())?,
        groups: 0,
        files: 0,
        bytes: 0,
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
        ("bytes", format!("{} ({})", s.bytes, output::size(s.bytes))),
    ]);
    Ok(())
}
