//! `vault-admin throttle …`: the login throttle's state for every subject (`user:NAME`
//! and `ip:ADDR`), and clearing the per-address part. An account's own state is cleared
//! by `vault-admin user reset-throttle USER`.

use std::net::IpAddr;

use clap::Subcommand;
use vault_server::db::{self, DbConn, DbError};
use vault_server::throttle::ip_subject;

use crate::context::{Ctx, record};
use crate::out::outln;
use crate::output::{self, Table, iso_time, plural};
use crate::users::ThrottleState;

#[derive(Debug, Subcommand)]
pub enum ThrottleCommand {
    /// List every subject with failed logins: failures, last failure, lock.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Clear the state of every source address, or of one with --ip.
    Reset {
        /// Only this address (IPv4 or IPv6).
        #[arg(long, value_name = "ADDR")]
        ip: Option<IpAddr>,
    },
}

pub fn run(ctx: &Ctx, command: ThrottleCommand) -> anyhow::Result<()> {
    let db = ctx.db()?;
    let conn = &mut *db.conn()?;
    match command {
        ThrottleCommand::List { json } => list(conn, json),
        ThrottleCommand::Reset { ip } => reset(conn, ip),
    }
}

fn list(conn: &mut DbConn, json: bool) -> anyhow::Result<()> {
    let now = output::now();
    let rows: Vec<ThrottleState> = db::throttle::list(conn)?
        .into_iter()
        .map(|row| ThrottleState::new(row, now))
        .collect();
    if json {
        return output::print_json(&rows);
    }
    if rows.is_empty() {
        outln!("no failed logins on record")?;
        return Ok(());
    }
    let mut table = Table::new(&["SUBJECT", "FAILURES", "LAST FAILURE", "LOCKED UNTIL"]);
    for r in &rows {
        table.row(vec![
            r.subject.clone(),
            r.failures.to_string(),
            iso_time(r.last_failure_at),
            r.locked_text(),
        ]);
    }
    table.print()?;
    Ok(())
}

fn reset(conn: &mut DbConn, ip: Option<IpAddr>) -> anyhow::Result<()> {
    let (cleared, what) = db::transaction(conn, |c| {
        let (cleared, what) = match ip {
            Some(ip) => {
                let subject = ip_subject(&ip);
                (usize::from(db::throttle::clear(c, &subject)?), subject)
            }
            None => (
                db::throttle::clear_prefix(c, "ip:")?,
                "every address".to_string(),
            ),
        };
        if cleared > 0 {
            let detail = match ip {
                Some(_) => format!("cleared {what}"),
                None => format!(
                    "cleared {what} ({})",
                    plural(cleared, "subject", "subjects")
                ),
            };
            record(c, "throttle_reset", None, &detail)?;
        }
        Ok::<_, DbError>((cleared, what))
    })?;
    match (ip, cleared) {
        (Some(_), 0) => outln!("{what} had no failed logins to clear")?,
        (Some(_), _) => outln!("cleared {what}")?,
        (None, n) => outln!(
            "cleared the login throttle of {}",
            plural(n, "address", "addresses")
        )?,
    }
    Ok(())
}
