//! The key requests: a user's public key, the caller's own envelopes of a group, a new
//! generation (the first key, or the rotation a removal left pending), envelopes for
//! members who lack them (key healing), and the list of such work (`key_tasks`).

use std::collections::{BTreeSet, HashMap};
use vault_proto::units::plural;

use vault_proto::proto::{
    ApiError, ByteBuf, EnvelopeInfo, NewEnvelope, Response, Rotation, UserKey,
};

use super::Caller;
use super::access;
use super::envelopes;
use super::manage::{rotate as store_rotation, signer};
use super::tasks::{self, generation};
use crate::db::{self, groups, users};
use crate::state::ServerState;

pub async fn user_key(state: &ServerState, raw: &str) -> Result<Response, ApiError> {
    let name = access::username(raw)?;
    super::read(state, move |c| {
        let user = users::by_name(c, &name)?
            .ok_or_else(|| ApiError::not_found(format!("there is no user named {name}")))?;
        Ok(Response::UserKey(UserKey {
            username: user.username,
            public_key: ByteBuf::from(user.public_key),
        }))
    })
    .await
}

pub async fn group_keys(
    state: &ServerState,
    caller: &Caller,
    raw: &str,
) -> Result<Response, ApiError> {
    let (raw, user) = (raw.to_owned(), caller.user_id());
    super::read(state, move |c| {
        let a = access::member(c, &raw, user, false)?;
        let envelopes = groups::envelopes_of(c, a.group.id, user)?
            .into_iter()
            .map(|e| EnvelopeInfo {
                generation: generation(e.generation),
                envelope: ByteBuf::from(e.envelope),
                signature: ByteBuf::from(e.signature),
                signer: e.signer,
                signer_key: ByteBuf::from(e.signer_key),
            })
            .collect();
        Ok(Response::GroupKeys {
            group_id: a.group.id,
            generation: a.group.key_generation.map(generation),
            envelopes,
        })
    })
    .await
}

/// `group_rotate`: the first key of a group without one (generation 0), or the next
/// generation while a rotation is pending, made by a member who holds the one in force.
pub async fn rotate(
    state: &ServerState,
    caller: &Caller,
    raw: &str,
    rotation: Rotation,
) -> Result<Response, ApiError> {
    let (raw, caller) = (raw.to_owned(), caller.clone());
    super::write(state, move |c| {
        let a = access::member(c, &raw, caller.user_id(), true)?;
        let name = a.group.name.clone();
        let expected = match (
            a.group.key_generation.map(generation),
            a.group.needs_rotation,
        ) {
            (None, _) => 0,
            (Some(current), true) => {
                let mine = groups::generations_of(c, a.group.id, caller.user_id())?;
                if !mine.contains(&i64::from(current)) {
                    return Err(ApiError::forbidden(format!(
                        "you do not hold the key in force of group {name} (generation \
                         {current}), so you cannot make the next one; a member who does will"
                    ))
                    .into());
                }
                current.saturating_add(1)
            }
            (Some(current), false) => {
                return Err(ApiError::conflict(format!(
                    "group {name} needs no new key: generation {current} is in force and nobody \
                     left since; run the command again"
                ))
                .into());
            }
        };
        let members = groups::members(c, a.group.id)?;
        let names: BTreeSet<String> = members.iter().map(|m| m.username.clone()).collect();
        let list = envelopes::check_rotation(rotation, expected, &names)?;
        store_rotation(c, &caller, &a.group, expected, &list, &members)?;
        caller.audit(
            c,
            "group.rotate",
            None,
            &format!(
                "made key generation {expected} of group {name} for {}",
                plural(members.len(), "member", "members")
            ),
        )?;
        Ok(Response::Ok)
    })
    .await
}

/// `group_put_envelopes` (key healing): envelopes of generations the caller holds, for
/// members who lack them. Nothing is stored unless every one is in order; an envelope is
/// never replaced.
pub async fn put_envelopes(
    state: &ServerState,
    caller: &Caller,
    raw: &str,
    list: Vec<NewEnvelope>,
) -> Result<Response, ApiError> {
    let list = envelopes::parse(list)?;
    if list.is_empty() {
        return Err(ApiError::bad_request("no envelopes to store"));
    }
    let (raw, caller) = (raw.to_owned(), caller.clone());
    super::write(state, move |c| {
        let a = access::member(c, &raw, caller.user_id(), true)?;
        let name = a.group.name.clone();
        let current = a
            .group
            .key_generation
            .map(generation)
            .ok_or_else(envelopes::changed)?;
        let ids: HashMap<String, i64> = groups::members(c, a.group.id)?
            .into_iter()
            .map(|m| (m.username, m.member.user_id))
            .collect();
        let held = tasks::held_in(c, &[a.group.id])?
            .remove(&a.group.id)
            .unwrap_or_default();
        let none = BTreeSet::new();
        let mine = held.get(&caller.user_id()).unwrap_or(&none);
        for e in &list {
            if e.generation > current {
                return Err(envelopes::changed().into());
            }
            let Some(user_id) = ids.get(&e.member) else {
                return Err(ApiError::conflict(format!(
                    "{} is not a member of group {name} (any more); run the command again",
                    e.member
                ))
                .into());
            };
            if !mine.contains(&e.generation) {
                return Err(ApiError::forbidden(format!(
                    "you do not hold generation {} of group {name}'s key, so you cannot wrap it",
                    e.generation
                ))
                .into());
            }
            if held.get(user_id).is_some_and(|h| h.contains(&e.generation)) {
                return Err(ApiError::conflict(format!(
                    "{} already holds generation {} of group {name}'s key; nothing was stored",
                    e.member, e.generation
                ))
                .into());
            }
        }
        let (signer_name, key) = signer(c, &caller)?;
        envelopes::store(c, a.group.id, &list, &ids, (&signer_name, &key), db::now())?;
        let mut whom: Vec<&str> = list.iter().map(|e| e.member.as_str()).collect();
        whom.sort_unstable();
        whom.dedup();
        caller.audit(
            c,
            "group.wrap",
            None,
            &format!(
                "wrapped {} of group {name}'s key for {}",
                plural(list.len(), "envelope", "envelopes"),
                whom.join(", ")
            ),
        )?;
        Ok(Response::Ok)
    })
    .await
}

pub async fn key_tasks(state: &ServerState, caller: &Caller) -> Result<Response, ApiError> {
    let user = caller.user_id();
    super::read(state, move |c| {
        Ok(Response::KeyTasks {
            tasks: tasks::for_user(c, user)?,
        })
    })
    .await
}
