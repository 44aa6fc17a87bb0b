//! Invitations to open an account (docs/SECURITY.md §4.1). The operator makes one with
//! `vault-admin user invite ADDR` (the invitee chooses the name) or `vault-admin user
//! create NAME --email ADDR` (the name is reserved for that address); its code is mailed
//! or handed over. `vault register NAME --email ADDR --invite CODE` then registers in one
//! go: the code proves the address as a mailed verification code would, and the keys are
//! made on the invitee's machine as always.
//!
//! Codes are those of [`super::codes`] (8 characters, salted SHA-256, a limit on wrong
//! tries); an invitation is bound to its address, single-use, expiring and revocable. With
//! `registration = "invite"` nobody registers without one; with `"open"` one may still be
//! used (and a reserved name stays reserved).

use vault_proto::proto::{ApiError, names};
use vault_proto::units::plural;
use zeroize::Zeroizing;

use super::codes;
use crate::config::CodeConfig;
use crate::db::{self, DbConn, invitations::Invitation, invitations::NewInvitation};

/// A stored invitation and its code in clear, for the mail or the operator's screen.
pub struct Issued {
    pub id: i64,
    pub email: String,
    pub username: Option<String>,
    pub expires_at: i64,
    pub code: Zeroizing<String>,
}

impl std::fmt::Debug for Issued {
    /// Everything but the code.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("username", &self.username)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Stores a new invitation for `email` (revoking an older open one), reserving `username`
/// when given. Refused for an address or a name that already has an account, and for a
/// name another address's invitation reserves. Audited with actor `admin`.
pub fn create(
    conn: &mut DbConn,
    email: &str,
    username: Option<&str>,
    expires_at: i64,
) -> Result<Issued, ApiError> {
    let email = names::normalize_email(email).map_err(ApiError::bad_request)?;
    let username = username
        .map(names::normalize_username)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let now = db::now();
    if expires_at <= now {
        return Err(ApiError::bad_request(
            "an invitation must expire in the future",
        ));
    }
    let code = codes::generate()?;
    let salt = codes::new_salt()?;
    let id = db::transaction(conn, |c| {
        if let Some(owner) = db::users::name_by_email(c, &email)? {
            return Err(ApiError::conflict(format!(
                "{email} already has an account ({owner}); nobody needs an invitation for it"
            )));
        }
        if let Some(name) = &username {
            if db::users::by_name(c, name)?.is_some() {
                return Err(ApiError::conflict(format!(
                    "the username {name} is taken; choose another"
                )));
            }
            if let Some(other) = db::invitations::reserving(c, name, now)?
                && other.email != email
            {
                return Err(ApiError::conflict(format!(
                    "the username {name} is reserved by invitation {} for {}; revoke it first \
                     (`vault-admin user invites --revoke {}`)",
                    other.id, other.email, other.id
                )));
            }
        }
        let id = db::invitations::insert(
            c,
            &NewInvitation {
                email: &email,
                username: username.as_deref(),
                code_salt: &salt,
                code_hash: &codes::hash(&salt, &code),
                created_at: now,
                expires_at,
            },
        )?;
        let reserved = match &username {
            Some(name) => format!(", reserving the username {name}"),
            None => String::new(),
        };
        super::change::record(
            c,
            "invitation_created",
            username.as_deref(),
            &format!("invitation {id} for {email}{reserved}"),
        )?;
        Ok::<_, ApiError>(id)
    })?;
    Ok(Issued {
        id,
        email,
        username,
        expires_at,
        code,
    })
}

/// Checks `input` against the open invitation of `email`, for registering `username`. A
/// wrong code uses up one try (outside any transaction, so that the count stays). Whether
/// the address has an invitation at all is not told: no invitation, a used, revoked or
/// expired one, a dead one and a wrong code all get the same answer (the audit log and
/// `vault-admin user invites` say which).
pub(super) fn check(
    conn: &mut DbConn,
    config: &CodeConfig,
    email: &str,
    username: &str,
    input: &str,
    client_ip: &str,
) -> Result<Invitation, ApiError> {
    let not_valid = || {
        ApiError::forbidden(format!(
            "that invitation code is not valid for {email}: check the code and the address \
             (an invitation works once, until it expires); otherwise ask the server's \
             operator for a new one"
        ))
    };
    let now = db::now();
    let invitation = db::invitations::open_for(conn, email)?
        .filter(|i| i.expires_at > now)
        .ok_or_else(not_valid)?;
    let max = i64::from(config.max_attempts);
    if invitation.failed_attempts >= max {
        return Err(not_valid());
    }
    let given = codes::hash(&invitation.code_salt, &codes::normalize(input));
    if aws_lc_rs::constant_time::verify_slices_are_equal(&given, &invitation.code_hash).is_err() {
        db::invitations::record_failure(conn, invitation.id)?;
        let left = max - invitation.failed_attempts - 1;
        db::audit::record(
            conn,
            &db::audit::Event::anonymous(client_ip, "invitation_rejected").with_detail(&format!(
                "wrong code for invitation {}, {} left",
                invitation.id,
                plural(left, "try", "tries")
            )),
        )?;
        return Err(not_valid());
    }
    if let Some(reserved) = invitation.username.as_deref()
        && reserved != username
    {
        return Err(ApiError::forbidden(format!(
            "this invitation is for the username {reserved}: run `vault register {reserved} \
             --email {email} --invite CODE`"
        )));
    }
    Ok(invitation)
}

/// At account creation, in its transaction: marks the live invitation of `email` used by
/// `username`. Without one, `required` (`registration = "invite"`) refuses; otherwise
/// nothing happens.
pub(super) fn redeem(
    conn: &mut DbConn,
    email: &str,
    username: &str,
    required: bool,
) -> Result<(), ApiError> {
    let now = db::now();
    let live = db::invitations::open_for(conn, email)?
        .filter(|i| i.is_live(now))
        .filter(|i| i.username.as_deref().is_none_or(|name| name == username));
    match live {
        Some(invitation) if db::invitations::redeem(conn, invitation.id, username, now)? => Ok(()),
        _ if required => Err(ApiError::forbidden(format!(
            "the invitation for {email} is no longer valid (revoked, expired or used \
             meanwhile); ask the server's operator for a new one"
        ))),
        _ => Ok(()),
    }
}

/// Refuses `username` when a live invitation reserves it for another address.
pub(super) fn check_not_reserved(
    conn: &mut DbConn,
    username: &str,
    email: &str,
) -> Result<(), ApiError> {
    match db::invitations::reserving(conn, username, db::now())? {
        Some(invitation) if invitation.email != email => Err(ApiError::conflict(
            "that username is reserved for someone the operator invited; choose another",
        )),
        _ => Ok(()),
    }
}
