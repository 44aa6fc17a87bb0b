//! Join codes (docs/FORMAT.md §8.3). A code is `id.secret`; the server sees only the id and an auth
//! value derived from the secret, and keeps a SHA-256 of that, with the group keys the
//! inviter's client sealed under another key derived from the secret. Opening shows the
//! sealed keys to whoever proves the auth value; joining adds them as a member with the
//! envelopes their client made from those keys and uses the code up once. A code that
//! does not exist, has expired, is used up or comes with the wrong auth value gets one
//! and the same answer.

use aws_lc_rs::digest;
use vault_proto::proto::groups::{MAX_INVITE_TTL_S, MAX_INVITE_USES};
use vault_proto::proto::{
    ApiError, ErrorCode, GroupRole, InviteInfo, NewEnvelope, Response, SecretBytes,
};
use vault_proto::units::plural;

use super::access;
use super::envelopes;
use super::manage::signer;
use super::tasks::generation;
use super::{Caller, change};
use crate::db::groups::{self, Invite, NewInvite};
use crate::db::{self, DbConn};
use crate::error::Failure;
use crate::state::ServerState;

/// The most bytes of sealed keys a code may carry.
pub const MAX_SEALED_KEYS: usize = 64 * 1024;
/// The auth value's length in bytes (an HKDF output).
const AUTH_LEN: std::ops::RangeInclusive<usize> = 16..=64;

/// What `group_invite_create` carries.
#[derive(Debug)]
pub struct NewCode {
    pub auth: SecretBytes,
    pub sealed_keys: Vec<u8>,
    pub uses: u32,
    pub expires_s: u64,
}

fn invalid() -> ApiError {
    ApiError::forbidden(
        "this join code is invalid, expired or used up; ask whoever gave it to you for a new one",
    )
}

fn auth_hash(auth: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, auth).as_ref().to_vec()
}

/// Refuses a code that is missing, expired, used up or not proven by `auth` (compared in
/// constant time), all with the same answer.
fn check_code(invite: Option<&Invite>, auth: &SecretBytes, now: i64) -> Result<(), ApiError> {
    let given = auth_hash(auth.dangerously_leak_secret());
    let Some(invite) = invite else {
        return Err(invalid());
    };
    let proven =
        aws_lc_rs::constant_time::verify_slices_are_equal(&given, &invite.auth_hash).is_ok();
    if !proven || invite.expires_at <= now || invite.uses_left < 1 {
        return Err(invalid());
    }
    Ok(())
}

pub async fn create(
    state: &ServerState,
    caller: &Caller,
    raw: &str,
    code: NewCode,
) -> Result<Response, ApiError> {
    if !(1..=MAX_INVITE_USES).contains(&code.uses) {
        return Err(ApiError::bad_request(format!(
            "a join code can be used 1 to {MAX_INVITE_USES} times, not {}",
            code.uses
        )));
    }
    if !(1..=MAX_INVITE_TTL_S).contains(&code.expires_s) {
        return Err(ApiError::bad_request(format!(
            "a join code expires after 1 s to {} days, not {} s",
            MAX_INVITE_TTL_S / 86_400,
            code.expires_s
        )));
    }
    if code.sealed_keys.len() > MAX_SEALED_KEYS {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "the sealed keys of a join code have at most {MAX_SEALED_KEYS} bytes, not {}",
                code.sealed_keys.len()
            ),
        ));
    }
    if !AUTH_LEN.contains(&code.auth.dangerously_leak_secret().len()) {
        return Err(ApiError::bad_request(
            "the auth part of a join code has the wrong length",
        ));
    }
    let hash = auth_hash(code.auth.dangerously_leak_secret());
    let (raw, caller) = (raw.to_owned(), caller.clone());
    super::write(state, move |c| {
        let a = access::member(c, &raw, caller.user_id(), true)?;
        a.require_manager("invite")?;
        let now = db::now();
        let expires_at = now.saturating_add(i64::try_from(code.expires_s).unwrap_or(i64::MAX));
        let invite_id = groups::insert_invite(
            c,
            &NewInvite {
                group_id: a.group.id,
                created_by: caller.user_id(),
                auth_hash: &hash,
                sealed_keys: &code.sealed_keys,
                uses_left: i64::from(code.uses),
                expires_at,
                created_at: now,
            },
        )?;
        caller.audit(
            c,
            "group.invite",
            None,
            &format!(
                "join code {invite_id} for group {}: {}, valid for {} s",
                a.group.name,
                plural(code.uses, "use", "uses"),
                code.expires_s
            ),
        )?;
        Ok(Response::InviteCreated {
            invite_id,
            expires_at,
        })
    })
    .await
}

/// Refuses a join by someone who is a member already.
fn check_not_member(conn: &mut DbConn, group: &groups::Group, user_id: i64) -> Result<(), Failure> {
    if groups::member(conn, group.id, user_id)?.is_some() {
        return Err(ApiError::conflict(format!(
            "you are already a member of group {}",
            group.name
        ))
        .into());
    }
    Ok(())
}

pub async fn open(
    state: &ServerState,
    caller: &Caller,
    invite_id: i64,
    auth: SecretBytes,
) -> Result<Response, ApiError> {
    let user = caller.user_id();
    super::read(state, move |c| {
        let invite = groups::invite(c, invite_id)?;
        check_code(invite.as_ref(), &auth, db::now())?;
        let Some(invite) = invite else {
            return Err(invalid().into());
        };
        let group = groups::by_id(c, invite.group_id)?.ok_or_else(invalid)?;
        check_not_member(c, &group, user)?;
        Ok(Response::InviteOpened(InviteInfo {
            group_id: group.id,
            group: group.name,
            sealed_keys: invite.sealed_keys.into(),
        }))
    })
    .await
}

pub async fn join(
    state: &ServerState,
    caller: &Caller,
    invite_id: i64,
    auth: SecretBytes,
    list: Vec<NewEnvelope>,
) -> Result<Response, ApiError> {
    let list = envelopes::parse(list)?;
    let caller = caller.clone();
    super::write(state, move |c| {
        let locked = groups::lock_by_invite(c, invite_id)?;
        let now = db::now();
        check_code(locked.as_ref().map(|(_, i)| i), &auth, now)?;
        let Some((group, invite)) = locked else {
            return Err(invalid().into());
        };
        check_not_member(c, &group, caller.user_id())?;
        change::check_room(c, &group)?;
        let me = caller.username().to_owned();
        let current = group.key_generation.map(generation);
        for e in &list {
            if e.member != me {
                return Err(ApiError::bad_request(format!(
                    "a join brings only the joiner's own envelopes, not one for {}",
                    e.member
                ))
                .into());
            }
            if current.is_none_or(|g| e.generation > g) {
                return Err(ApiError::bad_request(format!(
                    "group {} has no key generation {}",
                    group.name, e.generation
                ))
                .into());
            }
        }
        groups::insert_member(
            c,
            group.id,
            caller.user_id(),
            GroupRole::Member.as_str(),
            now,
        )?;
        let (signer_name, key) = signer(c, &caller)?;
        let ids = std::collections::HashMap::from([(me.clone(), caller.user_id())]);
        envelopes::store(c, group.id, &list, &ids, (&signer_name, &key), now)?;
        groups::use_invite(c, &invite)?;
        caller.audit(
            c,
            "group.join",
            None,
            &format!(
                "{me} joined group {} with join code {}, with {}",
                group.name,
                invite.id,
                plural(list.len(), "envelope", "envelopes")
            ),
        )?;
        Ok(Response::GroupJoined {
            group_id: group.id,
            name: group.name,
        })
    })
    .await
}
