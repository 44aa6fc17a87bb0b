//! `vault-admin user invite ADDR`, `user create NAME --email ADDR` and `user invites`:
//! invitations to open an account (docs/SECURITY.md §4.1). An invitation's code is mailed
//! through the configured transport with the `vault register … --invite CODE` command
//! that uses it, or printed with `--print` for the operator to hand over. A mail that
//! cannot be sent revokes the invitation it carried, so nothing is left open that nobody
//! received. The invitee's own machine makes the account's keys, as with any registration.

use anyhow::{Context as _, bail};
use clap::Args;
use serde::Serialize;
use vault_server::accounts::invitations::{self, Issued};
use vault_server::config::Registration;
use vault_server::db::{self, DbConn, invitations::Invitation};

use crate::context::{Ctx, record};
use crate::out::outln;
use crate::output::{self, Table, iso_time, or_dash};

/// Where an invitation goes and how long it lasts (`user invite`, `user create`).
#[derive(Debug, Args)]
pub struct InviteArgs {
    /// How long the invitation is valid: 30m, 12h, 7d, 2w.
    #[arg(long, value_name = "SPAN", default_value = "7d", value_parser = parse_validity)]
    pub expires: i64,
    /// Print the code (and the command that uses it) instead of mailing it.
    #[arg(long)]
    pub print: bool,
    /// The server address the invitee connects to, as HOST:PORT [default: `listen`, when
    /// it names one address].
    #[arg(long, value_name = "HOST:PORT")]
    pub server: Option<String>,
}

const MAIL_SUBJECT: &str = "You are invited to a Vault server";

/// The longest an invitation may last.
const MAX_VALIDITY_S: i64 = 90 * 86_400;

fn parse_validity(text: &str) -> Result<i64, String> {
    match output::parse_span(text.trim()) {
        Some(s) if s > 0 && s <= MAX_VALIDITY_S => Ok(s),
        Some(_) => Err(format!("{text:?}: an invitation lasts from 1s to 90d")),
        None => Err(format!("invalid span {text:?}: use 30m, 12h, 7d or 2w")),
    }
}

/// `user invite ADDR` (`username` None) and `user create NAME --email ADDR`.
pub fn invite(
    ctx: &Ctx,
    conn: &mut DbConn,
    email: &str,
    username: Option<&str>,
    args: &InviteArgs,
) -> anyhow::Result<()> {
    if ctx.config.registration == Registration::Closed {
        bail!(
            "registration = \"closed\" in the configuration refuses every registration, \
             invited or not: set it to \"invite\" (only invited people) or \"open\" first"
        );
    }
    let expires_at = output::now() + args.expires;
    let issued = invitations::create(conn, email, username, expires_at)
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let server = server_address(ctx, args.server.as_deref());
    let fingerprint = certificate_fingerprint(ctx);
    let command = register_command(&issued, &server, fingerprint.as_deref());
    let what = match &issued.username {
        Some(name) => format!(
            "account {name} set up for {}: invitation {}",
            issued.email, issued.id
        ),
        None => format!("invitation {} for {}", issued.id, issued.email),
    };
    let until = iso_time(issued.expires_at);
    if args.print {
        outln!("{what}, valid until {until}")?;
        outln!("code: {}", issued.code.as_str())?;
        outln!("the invitee runs: {command}")?;
        return Ok(());
    }
    let body = mail_body(&issued, &command);
    match crate::mail::send(ctx, &issued.email, MAIL_SUBJECT, body) {
        Ok(delivery) => {
            outln!(
                "{what}, valid until {until}: mail {}",
                crate::mail::delivered(&delivery)
            )?;
            Ok(())
        }
        Err(e) => {
            revoke_unsent(conn, &issued)?;
            Err(e.context(format!(
                "the invitation mail to {} was not sent, so the invitation was revoked; \
                 fix the mail settings (`vault-admin mail test ADDR`), or run again with \
                 --print and hand the code over yourself",
                issued.email
            )))
        }
    }
}

fn revoke_unsent(conn: &mut DbConn, issued: &Issued) -> anyhow::Result<()> {
    let why = format!(
        "invitation {} for {}: its mail was not sent",
        issued.id, issued.email
    );
    revoke_audited(conn, issued.id, issued.username.as_deref(), &why)
}

/// Revokes invitation `id` and writes `invitation_revoked` with `detail`, in one transaction.
fn revoke_audited(
    conn: &mut DbConn,
    id: i64,
    username: Option<&str>,
    detail: &str,
) -> anyhow::Result<()> {
    db::transaction(conn, |c| {
        db::invitations::revoke(c, id, output::now())?;
        record(c, "invitation_revoked", username, detail)
    })?;
    Ok(())
}

/// The address for `--server`: the one given, else `listen` when it names one address
/// (not 0.0.0.0 or ::), else a placeholder with the port.
fn server_address(ctx: &Ctx, given: Option<&str>) -> String {
    if let Some(given) = given {
        return given.to_string();
    }
    let listen = ctx.config.listen;
    if listen.ip().is_unspecified() {
        eprintln!(
            "note: the server listens on all addresses; the invitation says HOST:{0}. Give \
             --server ADDR:{0} to put in the address people reach it by",
            listen.port()
        );
        format!("HOST:{}", listen.port())
    } else {
        listen.to_string()
    }
}

/// The server certificate's fingerprint, for `--fingerprint`; `None` if it cannot be read
/// (the invitee then trusts it on first use and is told to compare).
fn certificate_fingerprint(ctx: &Ctx) -> Option<String> {
    let (cert, key) = vault_server::tls::files(&ctx.config);
    vault_server::tls::load_files(&cert, &key)
        .ok()
        .map(|identity| identity.fingerprint)
}

/// The command the invitee runs.
fn register_command(issued: &Issued, server: &str, fingerprint: Option<&str>) -> String {
    let name = issued.username.as_deref().unwrap_or("NAME");
    let mut command = format!(
        "vault register {name} --email {} --invite {} --server {server}",
        issued.email,
        issued.code.as_str()
    );
    if let Some(fingerprint) = fingerprint {
        command.push_str(&format!(" --fingerprint {fingerprint}"));
    }
    command
}

/// The invitation mail: what it is, the code, the command, how long it lasts.
fn mail_body(issued: &Issued, command: &str) -> String {
    let opening = match &issued.username {
        Some(name) => format!("An account named {name} is ready for you on a Vault server"),
        None => "You are invited to open an account on a Vault server".to_string(),
    };
    let choose = match &issued.username {
        Some(_) => "",
        None => "Choose NAME: 3 to 32 of a-z, 0-9, '_', '.', '-'. ",
    };
    format!(
        "Hello,\n\n\
         {opening}, an end-to-end encrypted file vault: your files are encrypted on your \
         machine, with keys made there from a password only you know.\n\n\
         Invitation code: {code}\n\n\
         With the `vault` command installed, run:\n\n    {command}\n\n\
         {choose}It asks for a new password and shows your recovery key once.\n\n\
         The code works once, only with this address, until {until}. If you did not expect \
         this mail, ignore it.\n",
        code = issued.code.as_str(),
        until = iso_time(issued.expires_at),
    )
}

/// `user invites`: list them, or `--revoke ID|ADDR`.
pub fn list_or_revoke(conn: &mut DbConn, revoke: Option<&str>, json: bool) -> anyhow::Result<()> {
    match revoke {
        Some(which) => revoke_one(conn, which),
        None => list(conn, json),
    }
}

/// One invitation in `user invites --json`.
#[derive(Debug, Serialize)]
struct InvitationSummary {
    id: i64,
    email: String,
    /// The reserved username (`user create`), if any.
    username: Option<String>,
    /// `open`, `used`, `expired` or `revoked`.
    status: &'static str,
    created_at: i64,
    expires_at: i64,
    used_by: Option<String>,
    used_at: Option<i64>,
    revoked_at: Option<i64>,
    failed_attempts: i64,
}

fn status(i: &Invitation, now: i64) -> &'static str {
    if i.used_at.is_some() {
        "used"
    } else if i.revoked_at.is_some() {
        "revoked"
    } else if i.expires_at <= now {
        "expired"
    } else {
        "open"
    }
}

fn list(conn: &mut DbConn, json: bool) -> anyhow::Result<()> {
    let now = output::now();
    let rows: Vec<InvitationSummary> = db::invitations::list(conn)?
        .into_iter()
        .map(|i| InvitationSummary {
            status: status(&i, now),
            id: i.id,
            email: i.email,
            username: i.username,
            created_at: i.created_at,
            expires_at: i.expires_at,
            used_by: i.used_by,
            used_at: i.used_at,
            revoked_at: i.revoked_at,
            failed_attempts: i.failed_attempts,
        })
        .collect();
    if json {
        return output::print_json(&rows);
    }
    if rows.is_empty() {
        outln!("no invitations (make one with vault-admin user invite ADDR)")?;
        return Ok(());
    }
    let mut table = Table::new(&["ID", "EMAIL", "USER", "STATUS", "CREATED", "EXPIRES"]);
    for r in &rows {
        let status = match (&r.used_by, r.status) {
            (Some(by), "used") => format!("used by {by}"),
            (_, status) => status.to_string(),
        };
        table.row(vec![
            r.id.to_string(),
            r.email.clone(),
            or_dash(r.username.as_deref()).into(),
            status,
            iso_time(r.created_at),
            iso_time(r.expires_at),
        ]);
    }
    table.print()?;
    Ok(())
}

/// Revokes the invitation with id `which`, or the open one of address `which`.
fn revoke_one(conn: &mut DbConn, which: &str) -> anyhow::Result<()> {
    let now = output::now();
    let found = match which.parse::<i64>() {
        Ok(id) => db::invitations::by_id(conn, id)?,
        Err(_) => {
            let email = vault_proto::proto::names::normalize_email(which).map_err(|e| {
                anyhow::anyhow!("{which:?} is neither an invitation id nor an address: {e}")
            })?;
            db::invitations::open_for(conn, &email)?
        }
    };
    let invitation = found.with_context(|| {
        format!("no invitation {which} to revoke (see vault-admin user invites)")
    })?;
    if invitation.used_at.is_some() || invitation.revoked_at.is_some() {
        bail!(
            "invitation {} for {} is {} already; nothing to revoke",
            invitation.id,
            invitation.email,
            status(&invitation, now)
        );
    }
    revoke_audited(
        conn,
        invitation.id,
        invitation.username.as_deref(),
        &format!("invitation {} for {}", invitation.id, invitation.email),
    )?;
    outln!(
        "revoked invitation {} for {}",
        invitation.id,
        invitation.email
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_takes_spans_up_to_ninety_days() {
        assert_eq!(parse_validity("7d"), Ok(7 * 86_400));
        assert_eq!(parse_validity("1h30m"), Ok(5400));
        assert!(parse_validity("91d").is_err());
        assert!(parse_validity("0s").is_err());
        assert!(parse_validity("soon").is_err());
    }
}
