//! `vault-admin audit`: the audit log, oldest first, optionally since a time and about
//! one user. Without `--limit` it shows the newest 1000 entries and says so on stderr
//! when there may be more.

use clap::Args;
use vault_proto::proto::names;
use vault_server::db;

use crate::context::Ctx;
use crate::out::outln;
use crate::output::{self, Table, iso_time, or_dash};

const DEFAULT_LIMIT: i64 = 1000;

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only entries at or after T: Unix seconds, a span back from now (10m, 2h, 7d), or
    /// an RFC 3339 date-time (2026-01-31T12:00:00Z).
    #[arg(long, value_name = "T", value_parser = parse_since)]
    since: Option<i64>,
    /// Only entries about this user.
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// At most N entries (the newest N) [default: 1000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..))]
    limit: Option<i64>,
    #[arg(long)]
    json: bool,
}

fn parse_since(text: &str) -> Result<i64, String> {
    output::parse_time(text, output::now())
}

pub fn run(ctx: &Ctx, args: AuditArgs) -> anyhow::Result<()> {
    let db = ctx.db()?;
    let conn = &mut *db.conn()?;
    let user = args
        .user
        .map(|u| names::normalize_username(&u).unwrap_or(u));
    let limit = args.limit.unwrap_or(DEFAULT_LIMIT);
    let entries = db::audit::query(conn, args.since, user.as_deref(), limit)?;
    if args.json {
        return output::print_json(&entries);
    }
    if entries.is_empty() {
        outln!("no audit entries match")?;
        return Ok(());
    }
    let mut table = Table::new(&["TIME", "ACTOR", "EVENT", "USER", "IP", "DETAIL"]);
    for e in &entries {
        table.row(vec![
            iso_time(e.at),
            e.actor.clone(),
            e.event.clone(),
            or_dash(e.username.as_deref()).into(),
            or_dash(e.client_ip.as_deref()).into(),
            e.detail.clone(),
        ]);
    }
    table.print()?;
    if args.limit.is_none() && entries.len() as i64 == limit {
        eprintln!("(the newest {limit} entries; older ones need --since or a larger --limit)");
    }
    Ok(())
}
